//! Hostile input against TimeStick over real HTTP on one node (CONTRACT §3 and the
//! TimeStick issue): a flood of STARTs for one caller against the 100-session limit,
//! 10 MB bodies (refused with 413 without being buffered whole), path traversal in the
//! target path, non-JSON and wrong-typed bodies, extra fields (ignored), hostile session
//! ids, cursors and ids at and over their bounds. The node stays healthy throughout.

mod timestick_common;

use std::time::Duration;

use futures_util::future::join_all;
use murmur_tests::{token, Node};
use serde_json::{json, Value};
use timestick_common::{
    assert_accepted, assert_error, assert_invalid, assert_start_error, assert_start_ok,
    assert_stopped, raw_exchange, raw_exchange_framed, request_msg, start_body, start_json,
    start_raw, stop_msg, uniq, uri, Session, MAX_MESSAGE_SIZE, SESSIONS_PER_CALLER, SOON,
};

const TEN_MB: usize = 10 * 1024 * 1024;

/// The node still serves START and messages.
async fn assert_healthy(node: &Node) {
    let target = uniq("health-");
    let a = Session::open(node, &uniq("h1-"), &target).await;
    let b = Session::open(node, &uniq("h2-"), &target).await;
    a.send("ping", json!("ok")).await;
    let (msgs, _) = b.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], "ok");
}

#[actix_rt::test]
async fn a_flood_of_starts_gets_exactly_100_sessions() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("flood-");
    let tok = token(&user);
    let target = uniq("flood-room-");
    let body = start_body(&user, Some(&uri(&target)));

    let attempts = 150;
    let replies = join_all((0..attempts).map(|i| {
        let (base, tok, body) = (base.clone(), tok.clone(), body.clone());
        // Both START routes.
        let path = if i % 2 == 0 {
            "start".to_string()
        } else {
            target.clone()
        };
        async move { start_json(&base, &path, Some(&tok), &body).await }
    }))
    .await;
    let ok: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| assert_start_ok(r, MAX_MESSAGE_SIZE))
        .collect();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (ok.len(), limited),
        (SESSIONS_PER_CALLER, attempts - SESSIONS_PER_CALLER),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status == 429) {
        assert_start_error(r, 429);
    }
    let mut unique = ok.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), SESSIONS_PER_CALLER, "session ids are unique");

    // The 101st is refused; another caller is not limited.
    assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 429);
    let other = uniq("other-");
    assert_start_ok(
        &start_json(
            &base,
            "start",
            Some(&token(&other)),
            &start_body(&other, Some(&uri(&target))),
        )
        .await,
        MAX_MESSAGE_SIZE,
    );
    // Ending one session frees one slot, exactly.
    let first = Session {
        id: ok[0].clone(),
        user: user.clone(),
        token: tok.clone(),
        target: target.clone(),
        base: base.clone(),
    };
    assert_accepted(&first.post(&stop_msg(&first.id, "bye", None)).await, "bye");
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &body).await,
        MAX_MESSAGE_SIZE,
    );
    assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 429);
    // The other 99 still work.
    let last = Session {
        id: ok[SESSIONS_PER_CALLER - 1].clone(),
        ..first.clone()
    };
    let (msgs, _) = last.poll_ok(0, None).await;
    assert!(msgs.is_empty());
}

#[actix_rt::test]
async fn ten_megabyte_bodies_are_413() {
    let node = Node::start().await;
    let s = Session::open(&node, &uniq("big-"), &uniq("big-room-")).await;
    let host = node.public_addr();
    let auth = format!("Bearer {}", s.token);
    let heads = [
        format!(
            "POST /timestick/session/{} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n",
            s.id
        ),
        format!(
            "POST /timestick/start HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n"
        ),
        format!(
            "POST /timestick/room HTTP/1.1\r\nHost: {host}\r\n\
             Content-Type: application/json\r\nContent-Length: {TEN_MB}\r\n\r\n"
        ),
    ];
    for head in &heads {
        let (resp, body) = raw_exchange(host, head, TEN_MB, b'a', Duration::from_secs(20)).await;
        assert_eq!(
            resp.status,
            413,
            "{}: {resp:?} {}",
            head.lines().next().unwrap(),
            String::from_utf8_lossy(&body)
        );
    }
    // Without a Content-Length (chunked): refused once the bound is passed.
    let chunked = [
        format!(
            "POST /timestick/session/{} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            s.id
        ),
        format!(
            "POST /timestick/start HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
    ];
    for head in &chunked {
        let (resp, body) =
            raw_exchange_framed(host, head, TEN_MB, b'{', true, Duration::from_secs(20)).await;
        assert_eq!(
            resp.status,
            413,
            "chunked {}: {resp:?} {}",
            head.lines().next().unwrap(),
            String::from_utf8_lossy(&body)
        );
    }
    // Also through an ordinary client (the whole body is offered).
    let reply = s.post_raw(&vec![b' '; TEN_MB]).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    // Nothing was accepted, the session and the node are fine.
    let (msgs, _) = s.poll_ok(0, None).await;
    assert!(msgs.is_empty());
    s.send("after-big", json!(1)).await;
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn path_traversal_in_the_target_is_refused() {
    let node = Node::start().await;
    let host = node.public_addr();
    let user = uniq("trav-");
    let tok = token(&user);
    let body = start_body(&user, None).to_string();
    // Literal paths, sent as they are (no client-side normalisation).
    for path in [
        "/timestick/../etc/passwd",
        "/timestick/../../../../etc/passwd",
        "/timestick/a/../b",
        "/timestick/a/..",
        "/timestick/./a",
        "/timestick/a/./b",
        "/timestick/a//b",
        "/timestick/%2e%2e/etc/passwd",
        "/timestick/%2E%2E/%2E%2E/etc",
        "/timestick/a/%2e%2e/b",
        "/timestick/..%2fetc%2fpasswd",
        "/timestick/a%5c..%5cb",
        "/timestick/a\\..\\b",
        "/timestick/a%00b",
        "/timestick/a%0ab",
        "/timestick/a%20b",
        "/timestick/%40user/bob",
        "/timestick/session",
        "/timestick/session/a/b",
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (resp, reply) = raw_exchange(host, &head, 0, 0, SOON).await;
        assert_eq!(
            resp.status,
            400,
            "{path}: must be refused, got {resp:?} {}",
            String::from_utf8_lossy(&reply)
        );
        let json: Value = serde_json::from_slice(&reply)
            .unwrap_or_else(|e| panic!("{path}: 400 body is not JSON ({e})"));
        assert_eq!(json["action"], "START-ERROR", "{path}: {json}");
    }
    // The same through requested_uri.
    for target in [
        "../etc/passwd",
        "a/../../b",
        "a/./b",
        "a//b",
        "%2e%2e/x",
        "a%2fb",
        "a\\b",
        "a?b=c",
        "a#frag",
        "a b",
        "a\u{0}b",
        "@user/bob",
    ] {
        let start = start_body(&user, Some(&format!("timestick://host/{target}")));
        let reply = start_json(&node.public_url(), "start", Some(&tok), &start).await;
        assert_start_error(&reply, 400);
    }
    // An over-long target (channel names are at most 256 bytes).
    let long = "a".repeat(257);
    let reply = start_json(
        &node.public_url(),
        &long,
        Some(&tok),
        &start_body(&user, None),
    )
    .await;
    assert_start_error(&reply, 400);
    let ok = "b".repeat(256);
    let reply = start_json(
        &node.public_url(),
        &ok,
        Some(&tok),
        &start_body(&user, None),
    )
    .await;
    assert_start_ok(&reply, MAX_MESSAGE_SIZE);
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn non_json_and_wrong_typed_messages_are_400_and_harmless() {
    let node = Node::start().await;
    let target = uniq("junk-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let id = a.id.as_str();

    for raw in [
        &b""[..],
        b" ",
        b"not json",
        b"{",
        b"[]",
        b"null",
        b"true",
        b"42",
        b"\"request\"",
        b"\xff\xfe\x00\x01",
        b"{\"type\":\"request\",\"session_id\":\"x\"}}",
    ] {
        assert_invalid(&a.post_raw(raw).await, id);
    }
    let wrong_types = [
        json!({"type": 1, "session_id": id, "message_id": "m"}),
        json!({"type": ["request"], "session_id": id, "message_id": "m"}),
        json!({"type": "request", "session_id": 5, "message_id": "m"}),
        json!({"type": "request", "session_id": [id], "message_id": "m"}),
        json!({"type": "request", "session_id": null, "message_id": "m"}),
        json!({"type": "request", "session_id": id, "message_id": {"id": "m"}}),
        json!({"type": "request", "session_id": id, "message_id": true}),
        json!({"type": "request", "session_id": id, "message_id": "x".repeat(257)}),
        json!({"type": "response", "session_id": id, "message_id": "m", "correlation_id": ""}),
        json!({"type": "response", "session_id": id, "message_id": "m", "correlation_id": 3}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": "STOP"}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": ["STOP"]}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": {"action": 1}}),
        json!({"type": "control", "session_id": id, "message_id": "m",
               "payload": {"action": "KILL", "kill_level": "3"}}),
        json!({"type": "control", "session_id": id, "message_id": "m",
               "payload": {"action": "KILL", "kill_level": 2.5}}),
        json!({"type": "control", "session_id": id, "message_id": "m",
               "payload": {"action": "KILL", "kill_level": 18446744073709551615u64}}),
        json!({"type": "request", "session_id": id, "message_id": "m", "~timing": 5}),
    ];
    for case in wrong_types {
        assert_invalid(&a.post(&case).await, id);
    }
    // Nothing leaked to the channel, and the session is alive with its ids unused.
    b.expect_quiet(None).await;

    // Extra fields are ignored (top level and in control payloads); ids at their bound work.
    let mut extra = request_msg(id, &"m".repeat(256), json!({"k": 1}));
    extra["unknown"] = json!({"deep": [1, {"x": null}]});
    extra["priority"] = json!("high");
    assert_accepted(&a.post(&extra).await, &"m".repeat(256));
    let (msgs, _) = b.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], json!({"k": 1}));
    assert!(msgs[0].get("unknown").is_none(), "{}", msgs[0]);
    let mut stop = stop_msg(id, "stop", Some("done"));
    stop["payload"]["extra"] = json!(1);
    stop["x-trace"] = json!("abc");
    assert_accepted(&a.post(&stop).await, "stop");
    assert_stopped(&a.post(&request_msg(id, "z", json!(1))).await, "done");
}

#[actix_rt::test]
async fn hostile_session_ids_are_404() {
    let node = Node::start().await;
    let a = Session::open(&node, &uniq("alice-"), &uniq("ids-")).await;
    let auth = format!("Bearer {}", a.token);
    let host = node.public_addr();
    for path in [
        format!("/timestick/session/{}x", a.id),
        format!("/timestick/session/{}", "9".repeat(5000)),
        "/timestick/session/..%2f..%2fstart".to_string(),
        "/timestick/session/%00".to_string(),
        format!("/timestick/session/{{{}}}", a.id),
        format!("/timestick/session/{}%20", a.id),
    ] {
        let head = format!(
            "GET {path}?wait=0 HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
             Connection: close\r\n\r\n"
        );
        let (resp, body) = raw_exchange(host, &head, 0, 0, SOON).await;
        assert_eq!(
            resp.status,
            404,
            "GET {path}: {resp:?} {}",
            String::from_utf8_lossy(&body)
        );
        let json: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("GET {path}: 404 body is not JSON ({e})"));
        assert_eq!(
            json["error_code"], "SESSION_NOT_FOUND",
            "GET {path}: {json}"
        );
    }
    // A message naming the session in the URL but another in the body.
    let other = Session::open(&node, &uniq("bob-"), &a.target).await;
    let reply = a.post(&request_msg(&other.id, "m", json!(1))).await;
    assert_invalid(&reply, &a.id);
    other.expect_quiet(None).await;
    assert_healthy(&node).await;
    // The untouched session still answers.
    let _ = assert_error(
        &a.with_token(&token(&uniq("x-"))).poll(0, None).await,
        403,
        "FORBIDDEN",
    );
    let (msgs, _) = a.poll_ok(0, None).await;
    assert!(msgs.is_empty());
}

#[actix_rt::test]
async fn hostile_start_bodies() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("alice-");
    let tok = token(&user);
    // Deeply nested JSON within the 16 KiB bound.
    let deep = format!(
        "{{\"action\":\"START\",\"protocol\":\"TimeStick\",\"version\":\"0.1\",\"caller_id\":\"{user}\",\
         \"requested_uri\":\"timestick://h/deep\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let reply = start_raw(&base, "start", Some(&tok), deep.as_bytes()).await;
    assert!(
        reply.status == 200 || reply.status == 400,
        "deep nesting: {} {}",
        reply.status,
        reply.text()
    );
    if reply.status == 400 {
        assert_start_error(&reply, 400);
    }
    // Duplicate keys, odd unicode, a huge caller_id.
    let dup = format!(
        "{{\"action\":\"START\",\"protocol\":\"TimeStick\",\"version\":\"0.1\",\"caller_id\":\"someone-else\",\
         \"caller_id\":\"{user}\",\"requested_uri\":\"timestick://h/dup\"}}"
    );
    let reply = start_raw(&base, "start", Some(&tok), dup.as_bytes()).await;
    assert!(
        reply.status == 200 || reply.status == 400 || reply.status == 403,
        "{} {}",
        reply.status,
        reply.text()
    );
    let huge_caller = "c".repeat(300);
    let reply = start_json(
        &base,
        "start",
        Some(&tok),
        &start_body(&huge_caller, Some(&uri("room"))),
    )
    .await;
    assert_start_error(&reply, 400);
    let reply = start_json(
        &base,
        "start",
        Some(&tok),
        &json!({"action": "START", "protocol": "TimeStick", "version": "0.1",
                "caller_id": user, "requested_uri": "timestick://h/\u{202e}evil"}),
    )
    .await;
    // Printable non-ASCII is a valid channel name; either way it must not break the node.
    assert!(
        reply.status == 200 || reply.status == 400,
        "{}",
        reply.text()
    );
    assert_healthy(&node).await;
}

/// A literal request head (and whatever body bytes follow it) → the response head and
/// JSON body. Nothing more is sent: the connection stays open, so an answer proves the
/// server did not wait for (the rest of) the body.
async fn raw_json(node: &Node, request: &str) -> (timestick_common::Head, Value) {
    let (head, body) = raw_exchange(node.public_addr(), request, 0, 0, SOON).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{}: the body is not JSON ({e}): {head:?} {}",
            request.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&body)
        )
    });
    (head, json)
}

/// One chunk of chunked transfer encoding.
fn chunk(data: &[u8]) -> String {
    format!("{:x}\r\n{}\r\n", data.len(), String::from_utf8_lossy(data))
}

/// A session negotiated down to `max` bytes.
async fn small_session(node: &Node, max: u64) -> Session {
    let base = node.public_url();
    let user = uniq("small-");
    let tok = token(&user);
    let target = uniq("small-room-");
    let mut body = start_body(&user, Some(&uri(&target)));
    body["capabilities"]["max_message_size"] = json!(max);
    let reply = start_json(&base, "start", Some(&tok), &body).await;
    Session {
        id: assert_start_ok(&reply, max),
        user,
        token: tok,
        target,
        base,
    }
}

/// CONTRACT §10: a body whose declared length is over its limit is refused at once,
/// before any of it is sent; a chunked body as soon as the chunks received pass the limit
/// (no terminating chunk is ever sent here). The limits: 16 KiB for START, the session's
/// `max_message_size` for a message (at most 65535). Every such refusal closes the
/// connection, so the rest of the body is not read.
#[actix_rt::test]
async fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let node = Node::start().await;
    let host = node.public_addr();
    let big = Session::open(&node, &uniq("big-"), &uniq("big-room-")).await;
    let small = small_session(&node, 512).await;
    let auth = |s: &Session| format!("Authorization: Bearer {}\r\n", s.token);
    let start_head = |path: &str, auth: &str, framing: &str| {
        format!(
            "POST /timestick/{path} HTTP/1.1\r\nHost: {host}\r\n{auth}\
             Content-Type: application/json\r\n{framing}\r\n"
        )
    };
    let post_head = |s: &Session, framing: &str| {
        format!(
            "POST /timestick/session/{} HTTP/1.1\r\nHost: {host}\r\n{}\
             Content-Type: application/json\r\n{framing}\r\n",
            s.id,
            auth(s)
        )
    };
    let start_too_large = json!({"action": "START-ERROR", "protocol": "TimeStick",
                                 "reason": "START body too large"});
    let too_large = |reason: &str| json!({"status": "error", "error_code": "MESSAGE_TOO_LARGE", "error_message": reason});
    let over_receiver = too_large("larger than 65535 bytes, the receiver's max_message_size");
    let over_small = too_large("larger than the session's max_message_size (512 bytes)");
    let over_big = too_large("larger than the session's max_message_size (65535 bytes)");

    // Declared lengths, and not one byte of body.
    let gib = "Content-Length: 1073741824\r\n";
    let cases = [
        (start_head("start", &auth(&big), gib), &start_too_large),
        (
            start_head("start", &auth(&big), "Content-Length: 16385\r\n"),
            &start_too_large,
        ),
        // Before the token is even looked at.
        (
            start_head("room", "", "Content-Length: 16385\r\n"),
            &start_too_large,
        ),
        (post_head(&big, gib), &over_receiver),
        (post_head(&big, "Content-Length: 65536\r\n"), &over_receiver),
        (post_head(&small, "Content-Length: 513\r\n"), &over_small),
    ];
    for (request, want) in &cases {
        let (head, body) = raw_json(&node, request).await;
        let line = request.lines().next().unwrap_or_default();
        assert_eq!(head.status, 413, "{line}: {body}");
        assert_eq!(&body, *want, "{line}");
        assert_eq!(head.header("connection"), Some("close"), "{line}");
    }

    // Chunked: just past the limit, and the request never ends.
    let chunked = "Transfer-Encoding: chunked\r\n";
    let kib = |n: usize| (0..n).map(|_| chunk(&[b' '; 1024])).collect::<String>();
    let cases = [
        (
            format!("{}{}", start_head("start", &auth(&big), chunked), kib(17)),
            &start_too_large,
        ),
        (
            format!(
                "{}{}{}",
                post_head(&small, chunked),
                chunk(&[b' '; 300]),
                chunk(&[b' '; 300])
            ),
            &over_small,
        ),
        (
            format!("{}{}", post_head(&big, chunked), kib(65)),
            &over_big,
        ),
    ];
    for (request, want) in &cases {
        let (head, body) = raw_json(&node, request).await;
        let line = request.lines().next().unwrap_or_default();
        assert_eq!(head.status, 413, "chunked {line}: {body}");
        assert_eq!(&body, *want, "chunked {line}");
        assert_eq!(head.header("connection"), Some("close"), "chunked {line}");
    }

    // At the limit, chunked, is accepted.
    let skeleton = request_msg(&small.id, "fits", json!("")).to_string();
    let exact = request_msg(&small.id, "fits", json!("x".repeat(512 - skeleton.len()))).to_string();
    assert_eq!(exact.len(), 512);
    let (first, rest) = exact.as_bytes().split_at(200);
    let request = format!(
        "{}{}{}0\r\n\r\n",
        post_head(&small, chunked),
        chunk(first),
        chunk(rest)
    );
    let (head, body) = raw_json(&node, &request).await;
    assert_eq!(head.status, 202, "{body}");
    assert_eq!(body, json!({"status": "accepted", "message_id": "fits"}));
    // Nothing else was accepted on either session; the node is fine.
    for s in [&big, &small] {
        s.send("after", json!(1)).await;
    }
    assert_healthy(&node).await;
}

/// Percent-escapes in a target path are decoded strictly: bytes that are not UTF-8
/// (`%ff`) or a malformed escape are 400, never replaced (which would make different
/// raw targets share one channel); valid UTF-8 escapes name their target.
#[actix_rt::test]
async fn percent_escapes_that_are_not_utf8_are_refused() {
    let node = Node::start().await;
    let host = node.public_addr();
    let user = uniq("pct-");
    let tok = token(&user);
    let body = start_body(&user, None).to_string();
    let start = |path: &str| {
        format!(
            "POST /timestick/{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let not_utf8 = "the target path is not valid UTF-8 once percent-decoded";
    let malformed = "the target path has a malformed percent-escape";
    for (path, reason) in [
        ("%ff/x", not_utf8),
        ("%fe/x", not_utf8),
        ("room/%c3", not_utf8),
        ("%c3%28", not_utf8),
        ("a%zz", malformed),
        ("a%4", malformed),
    ] {
        let (head, json) = raw_json(&node, &start(path)).await;
        assert_eq!(head.status, 400, "{path}: {json}");
        assert_eq!(json["action"], "START-ERROR", "{path}: {json}");
        assert_eq!(json["reason"], reason, "{path}: {json}");
    }
    // `%C3%BC` is `ü`: the session's target is the same channel as `über-…`.
    let suffix = uniq("");
    let (head, json) = raw_json(&node, &start(&format!("%C3%BCber-{suffix}"))).await;
    assert_eq!(head.status, 200, "{json}");
    let a = Session {
        id: json["session_id"].as_str().unwrap().to_string(),
        user: user.clone(),
        token: tok.clone(),
        target: format!("über-{suffix}"),
        base: node.public_url(),
    };
    let b = Session::open(&node, &uniq("bob-"), &a.target).await;
    b.send("hi", json!("über")).await;
    let (msgs, _) = a.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], "über", "{msgs:?}");
}

/// Session ids are the canonical lower-case UUID text START-OK gives: the upper-case (or
/// mixed-case) spelling of a live session's id names no session (404), on every session
/// endpoint and the admin API.
#[actix_rt::test]
async fn upper_case_session_ids_are_404() {
    let node = Node::start().await;
    let a = Session::open(&node, &uniq("alice-"), &uniq("case-")).await;
    let upper = a.id.to_uppercase();
    assert_ne!(upper, a.id, "the id has letters");
    let first_letter = a.id.find(|c: char| c.is_ascii_lowercase()).unwrap();
    let mut mixed = a.id.clone();
    mixed.replace_range(
        first_letter..=first_letter,
        &a.id[first_letter..=first_letter].to_uppercase(),
    );
    for id in [&upper, &mixed] {
        let s = Session {
            id: id.clone(),
            ..a.clone()
        };
        assert_error(&s.poll(0, None).await, 404, "SESSION_NOT_FOUND");
        let msg = request_msg(id, "m", json!(1));
        assert_error(&s.post(&msg).await, 404, "SESSION_NOT_FOUND");
        let auth = format!("Bearer {}", s.token);
        match timestick_common::Sse::connect(&s, &[("Authorization", &auth)], None).await {
            Err((status, body)) => {
                assert_eq!(status, 404, "{body}");
                assert_eq!(body["error_code"], "SESSION_NOT_FOUND", "{body}");
            }
            Ok(_) => panic!("a stream opened for {id}"),
        }
        let (status, body) = timestick_common::admin(&node, id, "stop", json!({})).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    }
    // The session itself is untouched: not stopped, nothing posted.
    let b = Session::open(&node, &uniq("bob-"), &a.target).await;
    b.send("still", json!("here")).await;
    let (msgs, _) = a.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], "here", "{msgs:?}");
}

/// The routes under `/timestick` are told apart by method and path alone: `POST` starts
/// (any path but a session's), `POST`/`GET` on `/session/<id>` post and poll, `GET` on
/// `/session/<id>/stream` streams; every other method or shape is a bare 404. A `POST`
/// to a stream path is a START for the reserved target `session/…`; a repeated poll
/// parameter is refused before the session is looked at.
#[actix_rt::test]
async fn routes_are_told_apart_by_method_and_path() {
    let node = Node::start().await;
    let host = node.public_addr();
    let a = Session::open(&node, &uniq("routes-"), &uniq("routes-room-")).await;
    let request = |method: &str, path: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            a.token,
            body.len()
        )
    };
    let session = format!("/timestick/session/{}", a.id);
    for (method, path) in [
        ("PUT", session.clone()),
        ("DELETE", session.clone()),
        ("PATCH", session.clone()),
        ("HEAD", session.clone()),
        ("DELETE", format!("{session}/stream")),
        ("GET", "/timestick/start".to_string()),
        ("GET", "/timestick".to_string()),
        ("POST", "/timestick".to_string()),
        ("GET", "/timestick/session/".to_string()),
        ("GET", format!("{session}/more")),
    ] {
        let (head, body) = raw_exchange(host, &request(method, &path, ""), 0, 0, SOON).await;
        assert_eq!(head.status, 404, "{method} {path}");
        if method != "HEAD" {
            assert!(body.is_empty(), "{method} {path}: {body:?}");
        }
    }
    let start = start_body(&a.user, None).to_string();
    let (head, json) = raw_json(
        &node,
        &request("POST", &format!("{session}/stream"), &start),
    )
    .await;
    assert_eq!(head.status, 400, "{json}");
    assert_eq!(
        json,
        json!({"action": "START-ERROR", "protocol": "TimeStick",
               "reason": "targets `start` and `session/…` are reserved"})
    );
    let (head, body) = raw_exchange(
        host,
        &request("GET", &format!("{session}?wait=0&wait=1"), ""),
        0,
        0,
        SOON,
    )
    .await;
    assert_eq!(head.status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("duplicate field `wait`"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The session itself was not touched by any of it.
    let b = Session::open(&node, &uniq("routes-b-"), &a.target).await;
    b.send("still", json!("here")).await;
    let (msgs, _) = a.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], "here", "{msgs:?}");
}
