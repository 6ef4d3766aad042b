//! TimeStick START over real HTTP on one node (CONTRACT §2, §3): both START routes and the
//! `timestick://` ↔ `/timestick/<path>` mapping, START-OK and its negotiated capabilities,
//! and every START-ERROR status: 400 (malformed, unsupported version with
//! `supported_versions`, reserved targets), 401, 403 (caller_id ≠ sub), 413 (START body
//! over 16 KiB), 503 while draining. The per-caller limit (429) is in timestick_hostile.rs,
//! the quarantine (403) in timestick_stop_kill.rs.

mod timestick_common;

use std::time::Duration;

use murmur_tests::tokens::now_secs;
use murmur_tests::{
    eventually, metric_value, metrics, token, token_alg_none, token_with, token_with_claims, Node,
    NodeBuilder, JWT_SECRET,
};
use serde_json::{json, Value};
use timestick_common::{
    assert_delivered_request, assert_start_error, assert_start_ok, start_body, start_json,
    start_raw, uniq, uri, Session, MAX_MESSAGE_SIZE, SOON,
};

/// A second session on `target` proves where a session's requests go: `a` sends, `probe`
/// (on `target`) must receive it.
async fn assert_same_target(a: &Session, probe: &Session) {
    let mid = uniq("m-");
    a.send(&mid, json!({"probe": mid})).await;
    let (msgs, _) = probe.collect(1, None).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_delivered_request(
        &msgs[0],
        &probe.id,
        &a.id,
        &a.user,
        &mid,
        &json!({"probe": mid}),
    );
}

#[actix_rt::test]
async fn start_ok_carries_a_fresh_uuid_endpoint_and_negotiated_capabilities() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let tok = token(&user);

    // The seed's own START example (host with a port, nested target path).
    let mut body = start_body(&user, Some("timestick://api.example.com:8443/room/123"));
    let first = start_json(&base, "start", Some(&tok), &body).await;
    let id1 = assert_start_ok(&first, MAX_MESSAGE_SIZE);
    assert!(
        first
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        first.headers
    );
    let second = start_json(&base, "start", Some(&tok), &body).await;
    let id2 = assert_start_ok(&second, MAX_MESSAGE_SIZE);
    assert_ne!(id1, id2, "every START gets a fresh session id");

    // max_message_size = min(caller, receiver); absent → the receiver's.
    body["capabilities"]["max_message_size"] = json!(1000);
    assert_start_ok(&start_json(&base, "start", Some(&tok), &body).await, 1000);
    body["capabilities"]["max_message_size"] = json!(10_000_000);
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &body).await,
        MAX_MESSAGE_SIZE,
    );
    body["capabilities"] = json!({"supports_binary": true});
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &body).await,
        MAX_MESSAGE_SIZE,
    );
    body.as_object_mut().unwrap().remove("capabilities");
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &body).await,
        MAX_MESSAGE_SIZE,
    );

    // Behind a TLS-terminating proxy the transport is the client's scheme.
    let reply = timestick_common::raw_request(
        murmur_tests::Method::POST,
        &format!("{base}/timestick/start"),
        &[
            ("Authorization", &format!("Bearer {tok}")),
            ("X-Forwarded-Proto", "https"),
        ],
        Some(
            start_body(&user, Some(&uri("tls")))
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["transport"], "https", "{}", reply.text());

    // Unknown fields are ignored, at the top level and in capabilities.
    let mut extra = start_body(&user, Some(&uri("extra")));
    extra["future_field"] = json!({"nested": [1, 2, 3]});
    extra["capabilities"]["compression"] = json!("zstd");
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &extra).await,
        MAX_MESSAGE_SIZE,
    );
}

#[actix_rt::test]
async fn uri_path_and_start_path_name_the_same_channel() {
    let node = Node::start().await;
    let base = node.public_url();
    let target = format!("{}/lobby/7", uniq("room-"));

    // A probe session started with requested_uri timestick://host:port/<target>.
    let probe = Session::open(&node, &uniq("probe-"), &target).await;

    // START at POST /timestick/<target> (no requested_uri) → same channel.
    let user = uniq("by-path-");
    let tok = token(&user);
    let reply = start_json(&base, &target, Some(&tok), &start_body(&user, None)).await;
    let by_path = Session {
        id: assert_start_ok(&reply, MAX_MESSAGE_SIZE),
        user: user.clone(),
        token: tok.clone(),
        target: target.clone(),
        base: base.clone(),
    };
    assert_same_target(&by_path, &probe).await;

    // A trailing slash names the same target.
    let reply = start_json(
        &base,
        &format!("{target}/"),
        Some(&tok),
        &start_body(&user, None),
    )
    .await;
    let trailing = Session {
        id: assert_start_ok(&reply, MAX_MESSAGE_SIZE),
        ..by_path.clone()
    };
    let (_, cursor) = probe.poll_ok(0, None).await;
    let mid = uniq("m-");
    trailing.send(&mid, json!(1)).await;
    let (msgs, _) = probe.collect(1, Some(&cursor)).await;
    assert_delivered_request(&msgs[0], &probe.id, &trailing.id, &user, &mid, &json!(1));

    // The host (and port) of requested_uri do not matter: only the path names the channel.
    let other_host = Session::open_at(&base, &uniq("host-"), &target).await;
    let reply = start_json(
        &base,
        "start",
        Some(&other_host.token),
        &start_body(
            &other_host.user,
            Some(&format!("timestick://elsewhere.example:1/{target}")),
        ),
    )
    .await;
    let via_other_host = Session {
        id: assert_start_ok(&reply, MAX_MESSAGE_SIZE),
        ..other_host.clone()
    };
    let (_, cursor) = probe.poll_ok(0, None).await;
    let mid = uniq("m-");
    via_other_host.send(&mid, json!(2)).await;
    let (msgs, _) = probe.collect(1, Some(&cursor)).await;
    assert_delivered_request(
        &msgs[0],
        &probe.id,
        &via_other_host.id,
        &via_other_host.user,
        &mid,
        &json!(2),
    );

    // A different path is a different channel.
    let elsewhere = Session::open(&node, &uniq("else-"), &format!("{target}x")).await;
    let (_, cursor) = probe.poll_ok(0, None).await;
    elsewhere.send(&uniq("m-"), json!("not for probe")).await;
    probe.expect_quiet(Some(&cursor)).await;
}

#[actix_rt::test]
async fn malformed_starts_are_400_start_error() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let tok = token(&user);
    let good = start_body(&user, Some(&uri("room")));

    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        ("action missing", without("action")),
        ("action STOP", with("action", json!("STOP"))),
        ("action lower-case", with("action", json!("start"))),
        ("action a number", with("action", json!(1))),
        ("protocol missing", without("protocol")),
        ("protocol other", with("protocol", json!("HTTP"))),
        ("version missing", without("version")),
        ("version a number", with("version", json!(0.1))),
        ("caller_id missing", without("caller_id")),
        ("caller_id empty", with("caller_id", json!(""))),
        ("caller_id a number", with("caller_id", json!(42))),
        ("caller_id null", with("caller_id", Value::Null)),
        ("requested_uri missing", without("requested_uri")),
        ("requested_uri a number", with("requested_uri", json!(7))),
        (
            "requested_uri http",
            with("requested_uri", json!("http://h/room")),
        ),
        (
            "requested_uri without path",
            with("requested_uri", json!("timestick://h")),
        ),
        (
            "requested_uri without host",
            with("requested_uri", json!("timestick:///room")),
        ),
        ("capabilities a string", with("capabilities", json!("all"))),
        (
            "max_message_size 0",
            with("capabilities", json!({"max_message_size": 0})),
        ),
        (
            "max_message_size negative",
            with("capabilities", json!({"max_message_size": -5})),
        ),
        (
            "max_message_size a string",
            with("capabilities", json!({"max_message_size": "64k"})),
        ),
        (
            "max_message_size fractional",
            with("capabilities", json!({"max_message_size": 1.5})),
        ),
    ];
    for (what, body) in cases {
        let reply = start_json(&base, "start", Some(&tok), &body).await;
        let err = assert_start_error(&reply, 400);
        assert!(err.get("supported_versions").is_none(), "{what}: {err}");
    }
    for raw in [
        &b""[..],
        b"not json",
        b"[]",
        b"null",
        b"42",
        b"\"START\"",
        b"{",
        b"\xff\xfe",
    ] {
        let reply = start_raw(&base, "start", Some(&tok), raw).await;
        assert_start_error(&reply, 400);
    }
    // Nothing of the above created a session: the same caller still has all 100 slots,
    // and a valid START works.
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &good).await,
        MAX_MESSAGE_SIZE,
    );
}

#[actix_rt::test]
async fn unsupported_version_lists_supported_versions() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let tok = token(&user);
    for version in ["1.0", "0.2", "0.1.0", ""] {
        let mut body = start_body(&user, Some(&uri("room")));
        body["version"] = json!(version);
        let err = assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 400);
        assert_eq!(err["reason"], "Unsupported version", "{err}");
        assert_eq!(err["supported_versions"], json!(["0.1"]), "{err}");
        // Also on the target route.
        let err = assert_start_error(&start_json(&base, "room", Some(&tok), &body).await, 400);
        assert_eq!(err["supported_versions"], json!(["0.1"]), "{err}");
    }
}

#[actix_rt::test]
async fn reserved_targets_are_400() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let tok = token(&user);
    for target in [
        "start",
        "session",
        "session/abc",
        "session/a/b",
        "@user/bob",
    ] {
        let body = start_body(&user, Some(&format!("timestick://h/{target}")));
        let err = assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 400);
        assert!(err.get("supported_versions").is_none(), "{err}");
    }
    // As a START path: `session` and `session/<a>/<b>` reach the START route and are
    // refused (a single segment after `session/` is the session endpoint itself).
    for path in ["session", "session/a/b", "session/x/y/z"] {
        let body = start_body(&user, None);
        assert_start_error(&start_json(&base, path, Some(&tok), &body).await, 400);
    }
    // `/timestick/start` with no requested_uri names no target.
    assert_start_error(
        &start_json(&base, "start", Some(&tok), &start_body(&user, None)).await,
        400,
    );
}

#[actix_rt::test]
async fn missing_or_bad_tokens_are_401() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let body = start_body(&user, Some(&uri("room"))).to_string();
    let url = format!("{base}/timestick/start");
    let now = now_secs();
    let wrong_secret = token_with("another-secret-another-secret-0123", &user, 3600);
    let expired = token_with(JWT_SECRET, &user, -3600);
    let alg_none = token_alg_none(&user);
    let no_exp = token_with_claims(JWT_SECRET, &json!({"sub": user, "iat": now}));
    let no_sub = token_with_claims(JWT_SECRET, &json!({"iat": now, "exp": now + 3600}));
    let good = token(&user);
    let headers: Vec<(String, Option<String>)> = vec![
        ("no header".into(), None),
        ("empty".into(), Some(String::new())),
        ("garbage".into(), Some("Bearer not.a.jwt".into())),
        ("basic".into(), Some(format!("Basic {good}"))),
        ("bare token".into(), Some(good.clone())),
        (
            "wrong secret".into(),
            Some(format!("Bearer {wrong_secret}")),
        ),
        ("expired".into(), Some(format!("Bearer {expired}"))),
        ("alg none".into(), Some(format!("Bearer {alg_none}"))),
        ("no exp".into(), Some(format!("Bearer {no_exp}"))),
        ("no sub".into(), Some(format!("Bearer {no_sub}"))),
    ];
    for (what, auth) in headers {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        for route in [url.clone(), format!("{base}/timestick/room")] {
            let reply = timestick_common::raw_request(
                murmur_tests::Method::POST,
                &route,
                &h,
                Some(body.clone().into_bytes()),
            )
            .await;
            assert_eq!(reply.status, 401, "{what} on {route}: {}", reply.text());
            assert_start_error(&reply, 401);
        }
    }
    let text = metrics(&node).await;
    assert!(
        metric_value(
            &text,
            "murmur_timestick_requests_total",
            &[("kind", "start"), ("status", "200")]
        )
        .is_none(),
        "no START succeeded"
    );
}

#[actix_rt::test]
async fn caller_id_other_than_sub_is_403() {
    let node = Node::start().await;
    let base = node.public_url();
    let alice = uniq("alice-");
    let mallory = uniq("mallory-");
    // mallory's valid token, claiming to be alice.
    let body = start_body(&alice, Some(&uri("room")));
    let err = assert_start_error(
        &start_json(&base, "start", Some(&token(&mallory)), &body).await,
        403,
    );
    assert!(err.get("supported_versions").is_none(), "{err}");
    assert_start_error(
        &start_json(&base, "room", Some(&token(&mallory)), &body).await,
        403,
    );
    // Case matters: ids are compared exactly.
    let upper = start_body(&mallory.to_uppercase(), Some(&uri("room")));
    assert_start_error(
        &start_json(&base, "start", Some(&token(&mallory)), &upper).await,
        403,
    );
    let text = metrics(&node).await;
    assert_eq!(
        metric_value(
            &text,
            "murmur_timestick_requests_total",
            &[("kind", "start"), ("status", "403")]
        ),
        Some(3.0),
        "START 403s are counted by code"
    );
}

#[actix_rt::test]
async fn start_body_over_16_kib_is_413() {
    let node = Node::start().await;
    let base = node.public_url();
    let user = uniq("caller-");
    let tok = token(&user);
    let mut body = start_body(&user, Some(&uri("room")));
    body["padding"] = json!("x".repeat(16 * 1024));
    assert!(body.to_string().len() > 16 * 1024);
    assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 413);
    // Just under the bound is fine (unknown fields ignored).
    let mut body = start_body(&user, Some(&uri("room")));
    let len = body.to_string().len();
    body["padding"] = json!("x".repeat(16 * 1024 - len - 20));
    assert!(body.to_string().len() <= 16 * 1024);
    assert_start_ok(
        &start_json(&base, "start", Some(&tok), &body).await,
        MAX_MESSAGE_SIZE,
    );
}

#[actix_rt::test]
async fn start_while_draining_is_503_and_existing_sessions_keep_working() {
    let mut node = NodeBuilder::new()
        .env("MURMUR_DRAIN_DELAY", "3s")
        .env("MURMUR_DRAIN_TIMEOUT", "6s")
        .spawn()
        .await;
    let base = node.public_url();
    let target = uniq("drain-");
    let a = Session::open(&node, &uniq("a-"), &target).await;
    let b = Session::open(&node, &uniq("b-"), &target).await;
    let user = uniq("late-");
    let tok = token(&user);
    let body = start_body(&user, Some(&uri(&target)));

    node.terminate();
    // readiness turns false at once; during the delay the public port still answers.
    eventually("readyz to turn 503 after SIGTERM", SOON, || async {
        (node.readyz().await == 503).then_some(())
    })
    .await;
    let err = assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 503);
    assert!(err.get("supported_versions").is_none(), "{err}");
    assert_start_error(&start_json(&base, &target, Some(&tok), &body).await, 503);
    // Sessions that already exist are still served while the node drains.
    let mid = uniq("m-");
    a.send(&mid, json!("still here")).await;
    let (msgs, _) = b.collect(1, None).await;
    assert_delivered_request(&msgs[0], &b.id, &a.id, &a.user, &mid, &json!("still here"));
    let exited = node.wait_exit(Duration::from_secs(15)).await;
    assert!(exited.is_some(), "the node exits after draining");
}
