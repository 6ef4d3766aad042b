//! TimeStick session messages over real HTTP on one node (CONTRACT §3): POST (202 and the
//! 400 / 401 / 403 / 404 / 409 / 413 / 429 refusals), routing (requests fan out to the
//! other sessions of the target channel and to Helios subscribers of it, responses go only
//! to the sender of the correlated request, backend and Helios publishes reach sessions as
//! requests from the receiver), the delivered message shapes (`message_id` =
//! `<origin session id>.<message_id>`, `from`), and the metrics.

mod timestick_common;

use std::time::Duration;

use futures_util::future::join_all;
use murmur_tests::{api_post, metric_value, metrics, token, Node, Starling};
use serde_json::{json, Value};
use timestick_common::{
    assert_accepted, assert_delivered_request, assert_error, assert_invalid, request_msg,
    response_msg, start_body, start_json, uniq, uri, Session, RATE_PER_SECOND, SOON,
};

#[actix_rt::test]
async fn requests_fan_out_to_the_other_sessions_of_the_target_only() {
    let node = Node::start().await;
    let target = uniq("room-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    // A second session of the same caller as b.
    let b2 = Session::open(&node, &b.user, &target).await;
    let other = Session::open(&node, &uniq("carol-"), &format!("{target}-other")).await;

    let payload =
        json!({"kind": "chat.message", "text": "Hello from caller!", "n": [1, 2.5, null]});
    let reply = a
        .post(&request_msg(&a.id, "msg-001", payload.clone()))
        .await;
    assert_accepted(&reply, "msg-001");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        reply.headers
    );

    for s in [&b, &b2] {
        let (msgs, _) = s.collect(1, None).await;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_delivered_request(&msgs[0], &s.id, &a.id, &a.user, "msg-001", &payload);
    }
    // Not to the sender itself, not to another target.
    a.expect_quiet(None).await;
    other.expect_quiet(None).await;

    // correlation_id may be omitted on a request; payload may be omitted (null).
    let bare = json!({"type": "request", "session_id": a.id, "message_id": "msg-002"});
    assert_accepted(&a.post(&bare).await, "msg-002");
    let (msgs, _) = b.collect(2, None).await;
    assert_eq!(
        msgs.len(),
        2,
        "nothing was confirmed yet: both again: {msgs:?}"
    );
    assert_delivered_request(&msgs[1], &b.id, &a.id, &a.user, "msg-002", &Value::Null);
}

#[actix_rt::test]
async fn responses_go_only_to_the_sender_of_the_correlated_request() {
    let node = Node::start().await;
    let target = uniq("rpc-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let c = Session::open(&node, &uniq("carol-"), &target).await;

    a.send("q1", json!({"question": 6})).await;
    let (msgs, b_cursor) = b.collect(1, None).await;
    let delivered_id = msgs[0]["message_id"].as_str().unwrap().to_string();
    assert_eq!(delivered_id, format!("{}.q1", a.id));
    let (_, c_cursor) = c.collect(1, None).await;

    // b answers under the id it saw.
    b.reply("r1", &delivered_id, json!({"answer": 42})).await;
    let (msgs, a_cursor) = a.collect(1, None).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        msgs[0],
        json!({
            "type": "response",
            "session_id": a.id,
            "message_id": format!("{}.r1", b.id),
            "correlation_id": "q1",
            "payload": {"answer": 42},
            "from": {"caller": b.user, "protocol": "timestick"}
        })
    );
    // The response reaches nobody else.
    b.expect_quiet(Some(&b_cursor)).await;
    c.expect_quiet(Some(&c_cursor)).await;

    // Several answers to one request are all delivered; a reply is optional (c never
    // answered and nothing happens).
    c.reply("r2", &delivered_id, json!("second opinion")).await;
    let (msgs, _) = a.collect(1, Some(&a_cursor)).await;
    assert_eq!(msgs[0]["message_id"], format!("{}.r2", c.id));
    assert_eq!(msgs[0]["correlation_id"], "q1");
    assert_eq!(msgs[0]["from"]["caller"], c.user.as_str());
}

#[actix_rt::test]
async fn responses_that_name_no_reachable_request_are_refused() {
    let node = Node::start().await;
    let target = uniq("rpc-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let elsewhere = Session::open(&node, &uniq("eve-"), &uniq("other-")).await;

    // Not of the `<session>.<message>` form, or naming an unknown session.
    for (mid, corr) in [
        ("r-plain", "q1".to_string()),
        ("r-unknown", format!("{}.q1", uuid::Uuid::new_v4())),
        ("r-garbage", "not-a-session.q1".to_string()),
        // A session on another target.
        ("r-other-target", format!("{}.q1", elsewhere.id)),
    ] {
        let reply = b.post(&response_msg(&b.id, mid, &corr, json!(1))).await;
        let body = assert_invalid(&reply, &b.id);
        assert_eq!(body["correlation_id"], corr.as_str(), "{body}");
    }
    a.expect_quiet(None).await;
    elsewhere.expect_quiet(None).await;

    // A request whose sender has ended: 404 ORIGIN_ENDED.
    a.send("q9", json!(9)).await;
    let (msgs, _) = b.collect(1, None).await;
    let corr = msgs[0]["message_id"].as_str().unwrap().to_string();
    let stop = timestick_common::stop_msg(&a.id, "bye", None);
    assert_accepted(&a.post(&stop).await, "bye");
    let reply = b.post(&response_msg(&b.id, "late", &corr, json!(1))).await;
    assert_error(&reply, 404, "ORIGIN_ENDED");
}

#[actix_rt::test]
async fn backend_and_helios_publishes_reach_sessions_as_requests() {
    let node = Node::start().await;
    let target = uniq("feed-");
    let s = Session::open(&node, &uniq("ts-"), &target).await;

    // Backend: POST /api/v1/publish.
    let (status, body) = api_post(
        &node,
        "/api/v1/publish",
        json!({"channel": target, "data": {"price": 17}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let envelope_id = body["messageId"].as_str().unwrap().to_string();
    let (msgs, cursor) = s.collect(1, None).await;
    assert_eq!(
        msgs[0],
        json!({
            "type": "request",
            "session_id": s.id,
            "message_id": envelope_id,
            "correlation_id": null,
            "payload": {"price": 17},
            "from": {"caller": null, "protocol": "api"}
        })
    );

    // Helios: broker:publish on the channel.
    let helios_user = uniq("starling-");
    let mut starling = Starling::connect(&node, &helios_user).await;
    starling
        .call_ok(
            "broker:publish",
            json!({"channel": target, "data": {"from": "helios"}}),
        )
        .await;
    let (msgs, _) = s.collect(1, Some(&cursor)).await;
    let msg = &msgs[0];
    assert_eq!(msg["type"], "request", "{msg}");
    assert_eq!(msg["session_id"], s.id.as_str(), "{msg}");
    assert_eq!(msg["payload"], json!({"from": "helios"}), "{msg}");
    assert!(msg["correlation_id"].is_null(), "{msg}");
    assert_eq!(
        msg["from"],
        json!({"caller": helios_user, "protocol": "helios"}),
        "{msg}"
    );
    assert!(
        msg["message_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{msg}"
    );
}

#[actix_rt::test]
async fn helios_subscribers_of_the_target_receive_requests_as_notifications() {
    let node = Node::start().await;
    let target = format!("{}/sub", uniq("room-"));
    let mut starling = Starling::connect(&node, &uniq("watcher-")).await;
    starling
        .call_ok("broker:subscribe", json!({"channel": target}))
        .await;
    let mut other = Starling::connect(&node, &uniq("bystander-")).await;
    other
        .call_ok("broker:subscribe", json!({"channel": format!("{target}2")}))
        .await;

    // Control: a backend publish on the channel reaches the subscriber.
    let (status, body) = api_post(
        &node,
        "/api/v1/publish",
        json!({"channel": target, "data": "from the backend"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let note = starling.next_notification(SOON).await;
    assert_eq!(note["notification"]["topic"], target.as_str(), "{note}");
    assert_eq!(note["notification"]["data"], "from the backend", "{note}");

    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let payload = json!({"kind": "chat.message", "text": "to everyone"});
    a.send("n1", payload.clone()).await;
    let note = starling
        .try_next_notification(SOON)
        .await
        .unwrap_or_else(|| {
            panic!(
                "a Helios subscriber of {target:?} must receive the TimeStick request \
                 (CONTRACT §3 routing) as a notification; nothing arrived within {SOON:?}"
            )
        });
    assert_eq!(note["protocol"], "helios-starling", "{note}");
    assert_eq!(note["notification"]["topic"], target.as_str(), "{note}");
    assert_eq!(note["notification"]["data"], payload, "{note}");
    assert!(
        other
            .try_next_notification(Duration::from_millis(500))
            .await
            .is_none(),
        "a subscriber of another channel gets nothing"
    );
    // A response is not a channel publication: subscribers do not see it.
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    b.reply("r1", &format!("{}.n1", a.id), json!("private"))
        .await;
    let (msgs, _) = a.collect(1, None).await;
    assert_eq!(msgs[0]["type"], "response", "{msgs:?}");
    assert!(
        starling
            .try_next_notification(Duration::from_millis(500))
            .await
            .is_none(),
        "responses are not broadcast"
    );
}

#[actix_rt::test]
async fn duplicate_message_ids_are_409_and_delivered_once() {
    let node = Node::start().await;
    let target = uniq("dup-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    a.send("same", json!(1)).await;
    let reply = a.post(&request_msg(&a.id, "same", json!(2))).await;
    assert_error(&reply, 409, "DUPLICATE_MESSAGE");
    // A different type with the same id is a replay too.
    let reply = a
        .post(&timestick_common::stop_msg(&a.id, "same", None))
        .await;
    assert_error(&reply, 409, "DUPLICATE_MESSAGE");
    // The id is per session: another session may use it.
    b.send("same", json!(3)).await;

    let (msgs, cursor) = b.collect(1, None).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["payload"], 1);
    b.expect_quiet(Some(&cursor)).await;

    // Concurrent duplicates: exactly one wins.
    let replies = join_all((0..10).map(|i| {
        let a = a.clone();
        async move { a.post(&request_msg(&a.id, "race", json!(i))).await }
    }))
    .await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let duplicates = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!((accepted, duplicates), (1, 9), "{replies:?}");
    let (msgs, cursor) = b.collect(1, Some(&cursor)).await;
    assert_eq!(msgs.len(), 1);
    b.expect_quiet(Some(&cursor)).await;

    let text = metrics(&node).await;
    assert_eq!(
        metric_value(
            &text,
            "murmur_timestick_requests_total",
            &[("kind", "post"), ("status", "409")]
        ),
        Some(11.0),
        "409s are counted by code"
    );
}

#[actix_rt::test]
async fn messages_larger_than_the_negotiated_size_are_413() {
    let node = Node::start().await;
    let base = node.public_url();
    let target = uniq("small-");
    let user = uniq("alice-");
    let tok = token(&user);
    let mut body = start_body(&user, Some(&uri(&target)));
    body["capabilities"]["max_message_size"] = json!(512);
    let reply = start_json(&base, "start", Some(&tok), &body).await;
    let a = Session {
        id: timestick_common::assert_start_ok(&reply, 512),
        user,
        token: tok,
        target: target.clone(),
        base,
    };
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    let fill = |len: usize| {
        let skeleton = request_msg(&a.id, "big", json!("")).to_string();
        request_msg(&a.id, "big", json!("x".repeat(len - skeleton.len())))
    };
    let too_big = fill(513);
    assert_eq!(too_big.to_string().len(), 513);
    assert_error(&a.post(&too_big).await, 413, "MESSAGE_TOO_LARGE");
    let exact = fill(512);
    assert_eq!(exact.to_string().len(), 512);
    assert_accepted(&a.post(&exact).await, "big");
    let (msgs, _) = b.collect(1, None).await;
    assert_eq!(msgs.len(), 1, "only the message that fit: {msgs:?}");
    assert_eq!(msgs[0]["payload"], exact["payload"]);

    // On a session with the full 65535: 65536 bytes are refused, 65535 accepted.
    let c = Session::open(&node, &uniq("carol-"), &target).await;
    let fill = |len: usize, mid: &str| {
        let skeleton = request_msg(&c.id, mid, json!("")).to_string();
        request_msg(&c.id, mid, json!("y".repeat(len - skeleton.len())))
    };
    let reply = c.post(&fill(65_536, "m1")).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_accepted(&c.post(&fill(65_535, "m2")).await, "m2");
}

#[actix_rt::test]
async fn more_than_100_messages_per_second_are_429() {
    let node = Node::start().await;
    let target = uniq("rate-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let a2 = Session::open(&node, &a.user, &target).await;

    let total = 300;
    let started = std::time::SystemTime::now();
    let replies = join_all((0..total).map(|i| {
        let a = a.clone();
        async move {
            a.post(&request_msg(&a.id, &format!("m{i}"), json!(i)))
                .await
        }
    }))
    .await;
    let ended = std::time::SystemTime::now();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as usize
    };
    let windows = secs(ended) - secs(started) + 1;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        accepted + limited.len(),
        total,
        "only 202 or 429: {replies:?}"
    );
    assert!(
        accepted >= RATE_PER_SECOND,
        "the first {RATE_PER_SECOND} in a second are accepted, got {accepted}"
    );
    assert!(
        accepted <= RATE_PER_SECOND * windows,
        "at most {RATE_PER_SECOND}/s: {accepted} accepted within {windows} second(s)"
    );
    assert!(
        !limited.is_empty(),
        "{total} posts within {windows} s must hit the limit"
    );
    for r in &limited {
        assert_error(r, 429, "RATE_LIMITED");
    }
    // The limit is per session: the same caller's other session is unaffected.
    a2.send("other-session", json!(1)).await;
    // And it recovers once the second has passed.
    murmur_tests::eventually(
        "the rate window to pass",
        Duration::from_secs(3),
        || async {
            let r = a.post(&request_msg(&a.id, &uniq("later-"), json!(0))).await;
            (r.status == 202).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn session_requests_need_the_starting_principal() {
    let node = Node::start().await;
    let target = uniq("auth-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let thief = a.with_token(&token(&uniq("mallory-")));

    // Another caller's valid token: 403 for POST and poll, and nothing is delivered.
    let reply = thief.post(&request_msg(&a.id, "stolen", json!(1))).await;
    assert_error(&reply, 403, "FORBIDDEN");
    assert_error(&thief.poll(0, None).await, 403, "FORBIDDEN");
    let stop = timestick_common::stop_msg(&a.id, "stolen-stop", None);
    assert_error(&thief.post(&stop).await, 403, "FORBIDDEN");
    // b's own token on a's session.
    let b_on_a = a.with_token(&b.token);
    assert_error(&b_on_a.poll(0, None).await, 403, "FORBIDDEN");

    // No or bad token: 401.
    for bad in ["", "not-a-jwt", &murmur_tests::token_alg_none(&a.user)] {
        let s = a.with_token(bad);
        assert_error(
            &s.post(&request_msg(&a.id, "x", json!(1))).await,
            401,
            "UNAUTHORIZED",
        );
        assert_error(&s.poll(0, None).await, 401, "UNAUTHORIZED");
    }
    let reply = murmur_tests::request(murmur_tests::Method::GET, &a.url(), &[], None).await;
    assert_error(&reply, 401, "UNAUTHORIZED");

    b.expect_quiet(None).await;
    // The session is intact for its owner, and the message ids the thief used are free.
    a.send("stolen", json!("mine")).await;
    let (msgs, _) = b.collect(1, None).await;
    assert_delivered_request(&msgs[0], &b.id, &a.id, &a.user, "stolen", &json!("mine"));
}

#[actix_rt::test]
async fn unknown_sessions_are_404() {
    let node = Node::start().await;
    let a = Session::open(&node, &uniq("alice-"), &uniq("t-")).await;
    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".to_string(),
        uuid::Uuid::new_v4().simple().to_string(),
        a.id.to_uppercase().replace('-', ""),
    ] {
        let ghost = Session {
            id: id.clone(),
            ..a.clone()
        };
        let reply = ghost.post(&request_msg(&id, "m", json!(1))).await;
        assert_error(&reply, 404, "SESSION_NOT_FOUND");
        assert_error(&ghost.poll(0, None).await, 404, "SESSION_NOT_FOUND");
    }
}

#[actix_rt::test]
async fn invalid_messages_are_400_with_the_seed_error_shape() {
    let node = Node::start().await;
    let a = Session::open(&node, &uniq("alice-"), &uniq("t-")).await;
    let id = a.id.as_str();
    let cases = [
        json!({"type": "request", "message_id": "m"}),
        json!({"type": "request", "session_id": uuid::Uuid::new_v4().to_string(), "message_id": "m"}),
        json!({"type": "request", "session_id": id}),
        json!({"type": "request", "session_id": id, "message_id": 5}),
        json!({"type": "request", "session_id": id, "message_id": ""}),
        json!({"type": "request", "session_id": id, "message_id": "m", "correlation_id": 7}),
        json!({"session_id": id, "message_id": "m"}),
        json!({"type": "notification", "session_id": id, "message_id": "m"}),
        json!({"type": "response", "session_id": id, "message_id": "m"}),
        json!({"type": "response", "session_id": id, "message_id": "m", "correlation_id": null}),
        json!({"type": "control", "session_id": id, "message_id": "m"}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": {"action": "PAUSE"}}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": {"action": "KILL"}}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": {"action": "KILL", "kill_level": 4}}),
        json!({"type": "control", "session_id": id, "message_id": "m", "payload": {"action": "KILL", "kill_level": -1}}),
        json!({"type": "request", "session_id": id, "message_id": "m", "~timing": "soon"}),
    ];
    for case in cases {
        let reply = a.post(&case).await;
        assert_invalid(&reply, id);
    }
    // None of them consumed the message id nor ended the session.
    a.send("m", json!("fine")).await;
}

#[actix_rt::test]
async fn timing_decorators_hold_reject_and_pass_through() {
    let node = Node::start().await;
    let target = uniq("timing-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let with_timing = |mid: &str, timing: Value| {
        let mut m = request_msg(&a.id, mid, json!({"mid": mid}));
        m["~timing"] = timing;
        m
    };

    // Already expired on arrival: 400 with error_code EXPIRED.
    let reply = a
        .post(&with_timing(
            "old",
            json!({"expires_time": "2001-01-01T00:00:00Z"}),
        ))
        .await;
    let body = reply.json();
    assert_eq!(reply.status, 400, "{body}");
    assert_eq!(body["type"], "response", "{body}");
    assert_eq!(body["payload"]["error_code"], "EXPIRED", "{body}");
    // Holds over 10 minutes and malformed decorators: 400 INVALID_MESSAGE.
    for timing in [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": "2999-01-01T00:00:00Z"}),
        json!({"delay_milli": "soon"}),
        json!({"expires_time": "yesterday"}),
    ] {
        assert_invalid(&a.post(&with_timing("bad", timing)).await, &a.id);
    }
    // None of the refused ids was used up.
    b.expect_quiet(None).await;

    // A held request arrives after its delay, with its ~timing passed through.
    let timing = json!({"delay_milli": 1500, "out_time": "2020-01-01 10:00:00"});
    let started = tokio::time::Instant::now();
    assert_accepted(&a.post(&with_timing("held", timing.clone())).await, "held");
    let (msgs, _) = b.poll_ok(1, None).await;
    assert!(msgs.is_empty(), "held for 1.5 s: {msgs:?}");
    let (msgs, _) = b.collect(1, None).await;
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["message_id"], format!("{}.held", a.id));
    assert_eq!(msgs[0]["~timing"], timing, "{}", msgs[0]);
}
