//! Ending TimeStick sessions over real HTTP on one node (CONTRACT §3, §8): caller STOP
//! (STOP-OK, queued messages discarded, then 410), receiver STOP through the admin API
//! (queued messages first, the STOP control last, then 410 with the reason), KILL levels
//! 0–3 from the caller and from the admin API (open polls answered 410 at once, level 2
//! for every session of the caller, level 3 quarantining the caller), the idle timeout
//! (`MURMUR_TIMESTICK_IDLE`), and the lifecycle metrics.

mod timestick_common;

use std::time::Duration;

use murmur_tests::{api_request, metric_value, metrics, within, Method, Node, NodeBuilder};
use serde_json::json;
use timestick_common::{
    admin, assert_accepted, assert_control, assert_delivered_request, assert_killed,
    assert_start_error, assert_stopped, kill_msg, parse_poll, request_msg, start_body, start_json,
    stop_msg, uniq, uri, Session, SOON,
};
use tokio::time::Instant;

#[actix_rt::test]
async fn caller_stop_discards_the_queue_answers_stop_ok_then_410() {
    let node = Node::start().await;
    let target = uniq("stop-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    // b has unpolled traffic: a channel request and a queued response.
    b.send("q", json!("question")).await;
    let (_, _) = a.collect(1, None).await;
    a.reply("r", &format!("{}.q", b.id), json!("answer")).await;
    a.send("chatter", json!("for b")).await;

    let reply = b
        .post(&stop_msg(&b.id, "stop-1", Some("normal-termination")))
        .await;
    assert_accepted(&reply, "stop-1");
    // The next poll brings only STOP-OK: the queued messages were discarded.
    let (msgs, cursor) = b.poll_ok(5, None).await;
    assert_eq!(msgs.len(), 1, "only STOP-OK: {msgs:?}");
    let payload = assert_control(&msgs[0], &b.id, "STOP-OK");
    assert_eq!(payload["reason"], "normal-termination");
    // Until it is confirmed it comes again (at-least-once)...
    let (again, _) = b.poll_ok(5, None).await;
    assert_eq!(again, msgs);
    // ...and once confirmed, polls get 410 with the reason.
    assert_stopped(&b.poll(0, Some(&cursor)).await, "normal-termination");
    // POSTs get 410 at once.
    assert_stopped(
        &b.post(&request_msg(&b.id, "after", json!(1))).await,
        "normal-termination",
    );
    assert_stopped(
        &b.post(&stop_msg(&b.id, "stop-2", None)).await,
        "normal-termination",
    );
    // Traffic on the channel no longer reaches it, and a cannot answer into it.
    a.send("late", json!("too late")).await;
    assert_stopped(&b.poll(0, Some(&cursor)).await, "normal-termination");
    let reply = a
        .post(&timestick_common::response_msg(
            &a.id,
            "r-late",
            &format!("{}.q", b.id),
            json!(1),
        ))
        .await;
    timestick_common::assert_error(&reply, 404, "ORIGIN_ENDED");
}

#[actix_rt::test]
async fn caller_stop_without_reason_and_with_an_open_poll() {
    let node = Node::start().await;
    let b = Session::open(&node, &uniq("bob-"), &uniq("stop-open-")).await;
    let poll = b.poll(20, None);
    let stop = async {
        let reply = b.post(&stop_msg(&b.id, "bye", None)).await;
        assert_accepted(&reply, "bye");
    };
    let (reply, ()) = within("the open poll to get STOP-OK", SOON, async {
        tokio::join!(poll, stop)
    })
    .await;
    let (msgs, _) = parse_poll(&reply);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let payload = assert_control(&msgs[0], &b.id, "STOP-OK");
    assert_eq!(
        payload["reason"], "normal-termination",
        "the default reason"
    );
}

#[actix_rt::test]
async fn receiver_stop_delivers_queued_messages_then_stop_then_410() {
    let node = Node::start().await;
    let target = uniq("rstop-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    a.send("q1", json!(1)).await;
    let (msgs, _) = b.collect(1, None).await;
    b.reply("r1", msgs[0]["message_id"].as_str().unwrap(), json!("resp"))
        .await;
    b.send("b1", json!("b's request")).await;
    // a has: the response (queue) and b's request (channel), unpolled.

    let (status, body) = admin(
        &node,
        &a.id,
        "stop",
        json!({"reason": "maintenance", "details": "node upgrade"}),
    )
    .await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"stopped": true, "reason": "maintenance"}))
    );

    // POSTs are refused at once with the reason...
    let reply = a.post(&request_msg(&a.id, "q2", json!(2))).await;
    let err = assert_stopped(&reply, "maintenance");
    assert_eq!(err["details"], "node upgrade", "{err}");
    // ...traffic after the STOP is not delivered...
    b.send("b2", json!("after the stop")).await;
    // ...and the next poll delivers what was queued, the STOP last.
    let (msgs, cursor) = a.collect(3, None).await;
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let kinds: Vec<&str> = msgs[..2]
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"response") && kinds.contains(&"request"),
        "{msgs:?}"
    );
    let stop = assert_control(&msgs[2], &a.id, "STOP");
    assert_eq!(stop["reason"], "maintenance");
    assert_eq!(stop["details"], "node upgrade");
    // Polls after that get 410 with the reason.
    let err = assert_stopped(&a.poll(0, Some(&cursor)).await, "maintenance");
    assert_eq!(err["details"], "node upgrade");

    // The admin API: stopping again is 410, unknown ids 404, no API key 401.
    let (status, body) = admin(&node, &a.id, "stop", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (410, &json!("GONE")),
        "{body}"
    );
    let (status, body) = admin(&node, &uuid::Uuid::new_v4().to_string(), "stop", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("NOT_FOUND")),
        "{body}"
    );
    let (status, body) = admin(&node, "not-a-session", "stop", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("NOT_FOUND")),
        "{body}"
    );
    let reply = murmur_tests::request(
        Method::POST,
        &format!(
            "{}/api/v1/timestick/sessions/{}/stop",
            node.internal_url(),
            b.id
        ),
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "UNAUTHORIZED");
    // b is untouched by all of this. A body-less admin STOP uses the default reason.
    b.send("b3", json!(3)).await;
    let (status, _) = api_request(
        &node,
        Method::POST,
        &format!("/api/v1/timestick/sessions/{}/stop", b.id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (msgs, _) = b.collect(1, None).await;
    let stop = assert_control(msgs.last().unwrap(), &b.id, "STOP");
    assert_eq!(stop["reason"], "server-initiated");
}

#[actix_rt::test]
async fn kill_level_0_is_a_stop() {
    let node = Node::start().await;
    let target = uniq("k0-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    b.send("x", json!(1)).await;

    // From the caller: like a caller STOP (STOP-OK, queue discarded).
    assert_accepted(&a.post(&kill_msg(&a.id, "k", 0, Some("enough"))).await, "k");
    let (msgs, cursor) = a.poll_ok(5, None).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        assert_control(&msgs[0], &a.id, "STOP-OK")["reason"],
        "enough"
    );
    assert_stopped(&a.poll(0, Some(&cursor)).await, "enough");

    // From the admin API: like a receiver STOP (queued messages, then STOP).
    let c = Session::open(&node, &uniq("carol-"), &target).await;
    b.send("y", json!(2)).await;
    let (status, body) = admin(
        &node,
        &c.id,
        "kill",
        json!({"kill_level": 0, "reason": "calm"}),
    )
    .await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"killed": true, "kill_level": 0}))
    );
    let (msgs, cursor) = c.collect(2, None).await;
    assert_eq!(msgs[0]["payload"], 2, "{msgs:?}");
    assert_eq!(assert_control(&msgs[1], &c.id, "STOP")["reason"], "calm");
    assert_stopped(&c.poll(0, Some(&cursor)).await, "calm");
}

#[actix_rt::test]
async fn kill_level_1_answers_an_open_poll_410_at_once() {
    let node = Node::start().await;
    let target = uniq("k1-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let a2 = Session::open(&node, &a.user, &target).await;
    b.send("queued", json!("dropped by the kill")).await;
    let (_, _) = a.collect(1, None).await;

    // The caller kills from the POST side while a poll is open.
    let started = Instant::now();
    let (_, cursor) = a.poll_ok(0, None).await;
    let poll = a.poll(30, Some(&cursor));
    let kill = async {
        let reply = a
            .post(&kill_msg(&a.id, "kill", 1, Some("emergency-shutdown")))
            .await;
        assert_accepted(&reply, "kill");
    };
    let (reply, ()) = within("the open poll to be answered", SOON, async {
        tokio::join!(poll, kill)
    })
    .await;
    assert!(started.elapsed() < SOON);
    assert_killed(&reply, 1, "emergency-shutdown");
    // Nothing is delivered any more, POSTs are refused.
    assert_killed(&a.poll(0, None).await, 1, "emergency-shutdown");
    assert_killed(
        &a.post(&request_msg(&a.id, "after", json!(1))).await,
        1,
        "emergency-shutdown",
    );
    // Level 1 is this session only.
    a2.send("still-alive", json!(1)).await;
    let (msgs, _) = b.collect(1, None).await;
    assert_delivered_request(&msgs[0], &b.id, &a2.id, &a2.user, "still-alive", &json!(1));

    // From the admin API, with an open poll on b.
    let (_, cursor) = b.poll_ok(0, None).await;
    let poll = b.poll(30, Some(&cursor));
    let kill = async {
        let (status, body) = admin(
            &node,
            &b.id,
            "kill",
            json!({"kill_level": 1, "reason": "abuse"}),
        )
        .await;
        assert_eq!(
            (status, body),
            (200, json!({"killed": true, "kill_level": 1}))
        );
    };
    let (reply, ()) = within("the open poll to be answered", SOON, async {
        tokio::join!(poll, kill)
    })
    .await;
    assert_killed(&reply, 1, "abuse");
    let (status, body) = admin(&node, &b.id, "kill", json!({"kill_level": 3})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (410, &json!("GONE")),
        "{body}"
    );
    let (status, body) = admin(&node, &b.id, "stop", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (410, &json!("GONE")),
        "{body}"
    );

    // A killed session frees its caller's slot; a session killed without a reason gets one.
    let c = Session::open(&node, &uniq("carol-"), &target).await;
    assert_accepted(&c.post(&kill_msg(&c.id, "k", 1, None)).await, "k");
    assert_killed(&c.poll(0, None).await, 1, "killed-by-caller");
    let d = Session::open(&node, &uniq("dave-"), &target).await;
    let (status, _) = admin(&node, &d.id, "kill", json!({"kill_level": 1})).await;
    assert_eq!(status, 200);
    assert_killed(&d.poll(0, None).await, 1, "killed-by-receiver");
}

#[actix_rt::test]
async fn admin_kill_checks_its_body() {
    let node = Node::start().await;
    let s = Session::open(&node, &uniq("alice-"), &uniq("kb-")).await;
    for body in [
        json!({"kill_level": 4}),
        json!({"kill_level": -1}),
        json!({"kill_level": "1"}),
        json!({"reason": "no level"}),
        json!([]),
    ] {
        let (status, reply) = admin(&node, &s.id, "kill", body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(reply["error"]["code"], "BAD_REQUEST", "{body} → {reply}");
    }
    let (status, reply) = admin(
        &node,
        &uuid::Uuid::new_v4().to_string(),
        "kill",
        json!({"kill_level": 1}),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (404, &json!("NOT_FOUND"))
    );
    // Still alive.
    let (msgs, _) = s.poll_ok(0, None).await;
    assert!(msgs.is_empty());
}

#[actix_rt::test]
async fn kill_level_2_ends_every_session_of_the_caller_only() {
    let node = Node::start().await;
    let target = uniq("k2-");
    let mallory = uniq("mallory-");
    let m1 = Session::open(&node, &mallory, &target).await;
    let m2 = Session::open(&node, &mallory, &target).await;
    let m3 = Session::open(&node, &mallory, &format!("{target}-elsewhere")).await;
    let bob = Session::open(&node, &uniq("bob-"), &target).await;

    let (_, cursor) = m2.poll_ok(0, None).await;
    let poll = m2.poll(30, Some(&cursor));
    let kill = async {
        let reply = m1
            .post(&kill_msg(&m1.id, "k2", 2, Some("all of them")))
            .await;
        assert_accepted(&reply, "k2");
    };
    let (reply, ()) = within("the open poll of the caller's other session", SOON, async {
        tokio::join!(poll, kill)
    })
    .await;
    assert_killed(&reply, 2, "all of them");
    for s in [&m1, &m2, &m3] {
        assert_killed(&s.poll(0, None).await, 2, "all of them");
        assert_killed(
            &s.post(&request_msg(&s.id, "x", json!(1))).await,
            2,
            "all of them",
        );
    }
    // Other callers are unaffected.
    bob.send("fine", json!(1)).await;
    let (msgs, _) = bob.poll_ok(0, None).await;
    assert!(msgs.is_empty(), "{msgs:?}");
    // Level 2 does not quarantine.
    let again = Session::open(&node, &mallory, &target).await;
    bob.send("fine-2", json!(2)).await;
    let (msgs, _) = again.collect(1, None).await;
    assert_delivered_request(&msgs[0], &again.id, &bob.id, &bob.user, "fine-2", &json!(2));
}

#[actix_rt::test]
async fn kill_level_3_kills_all_and_quarantines_the_caller() {
    let node = Node::start().await;
    let base = node.public_url();
    let target = uniq("k3-");
    let mallory = uniq("mallory-");
    let m1 = Session::open(&node, &mallory, &target).await;
    let m2 = Session::open(&node, &mallory, &target).await;
    let bob = Session::open(&node, &uniq("bob-"), &target).await;

    assert_accepted(
        &m1.post(&kill_msg(&m1.id, "k3", 3, Some("emergency"))).await,
        "k3",
    );
    assert_killed(&m1.poll(0, None).await, 3, "emergency");
    assert_killed(&m2.poll(0, None).await, 3, "emergency");
    // Quarantined: START is 403 on both routes.
    let body = start_body(&mallory, Some(&uri(&target)));
    let tok = murmur_tests::token(&mallory);
    let err = assert_start_error(&start_json(&base, "start", Some(&tok), &body).await, 403);
    assert!(
        err["reason"].as_str().unwrap().contains("quarantine"),
        "{err}"
    );
    assert_start_error(&start_json(&base, &target, Some(&tok), &body).await, 403);
    // Others are not.
    let carol = Session::open(&node, &uniq("carol-"), &target).await;
    bob.send("hi", json!(1)).await;
    let (msgs, _) = carol.collect(1, None).await;
    assert_eq!(msgs.len(), 1);

    // Through the admin API too.
    let eve = uniq("eve-");
    let e1 = Session::open(&node, &eve, &target).await;
    let e2 = Session::open(&node, &eve, &target).await;
    let (status, body) = admin(
        &node,
        &e2.id,
        "kill",
        json!({"kill_level": 3, "reason": "banned"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"killed": true, "kill_level": 3}))
    );
    assert_killed(&e1.poll(0, None).await, 3, "banned");
    let err = assert_start_error(
        &start_json(
            &base,
            "start",
            Some(&murmur_tests::token(&eve)),
            &start_body(&eve, Some(&uri(&target))),
        )
        .await,
        403,
    );
    assert!(
        err["reason"].as_str().unwrap().contains("quarantine"),
        "{err}"
    );
}

#[actix_rt::test]
async fn idle_sessions_are_stopped_by_the_receiver() {
    let node = NodeBuilder::new()
        .env("MURMUR_TIMESTICK_IDLE", "2s")
        .spawn()
        .await;
    let target = uniq("idle-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;

    // Activity keeps it alive: three 1 s polls back to back (3 s > the 2 s idle time).
    let mut cursor = None;
    for _ in 0..3 {
        let (msgs, next) = a.poll_ok(1, cursor.as_deref()).await;
        assert!(msgs.is_empty(), "{msgs:?}");
        cursor = Some(next);
    }
    // Then silence: a long-poll started now (it counts as activity once, at its start) is
    // answered with the receiver's STOP `idle-timeout`.
    let started = Instant::now();
    let (msgs, cursor) = a.poll_ok(20, cursor.as_deref()).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "idle STOP took {took:?}");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let payload = assert_control(&msgs[0], &a.id, "STOP");
    assert_eq!(payload["reason"], "idle-timeout");
    assert_stopped(&a.poll(0, Some(&cursor)).await, "idle-timeout");
    assert_stopped(
        &a.post(&request_msg(&a.id, "late", json!(1))).await,
        "idle-timeout",
    );
    let text = metrics(&node).await;
    assert_eq!(
        metric_value(
            &text,
            "murmur_timestick_sessions_total",
            &[("event", "idle_timeout")]
        ),
        Some(1.0),
        "{text}"
    );
}

#[actix_rt::test]
async fn lifecycle_and_request_metrics() {
    let node = Node::start().await;
    let target = uniq("metrics-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let c = Session::open(&node, &uniq("carol-"), &target).await;
    a.send("m1", json!(1)).await;
    let (_, cursor) = b.collect(1, None).await;
    assert_eq!(
        a.post(&request_msg(&a.id, "m1", json!(1))).await.status,
        409
    );
    assert_accepted(&b.post(&stop_msg(&b.id, "s", None)).await, "s");
    assert_accepted(&c.post(&kill_msg(&c.id, "k", 1, None)).await, "k");
    let (status, _) = admin(&node, &a.id, "stop", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(b.poll(0, Some(&cursor)).await.status, 200);

    let text = metrics(&node).await;
    let req = |kind: &str, status: &str| {
        metric_value(
            &text,
            "murmur_timestick_requests_total",
            &[("kind", kind), ("status", status)],
        )
    };
    assert_eq!(req("start", "200"), Some(3.0), "{text}");
    assert_eq!(req("post", "202"), Some(3.0), "{text}");
    assert_eq!(req("post", "409"), Some(1.0), "{text}");
    assert!(req("poll", "200").is_some_and(|n| n >= 2.0), "{text}");
    let ev = |event: &str| {
        metric_value(
            &text,
            "murmur_timestick_sessions_total",
            &[("event", event)],
        )
    };
    assert_eq!(ev("started"), Some(3.0), "{text}");
    assert_eq!(ev("stopped_by_caller"), Some(1.0), "{text}");
    assert_eq!(ev("stopped_by_receiver"), Some(1.0), "{text}");
    assert_eq!(ev("killed"), Some(1.0), "{text}");
    assert!(
        metric_value(
            &text,
            "murmur_messages_in_total",
            &[("protocol", "timestick")]
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "murmur_messages_out_total",
            &[("protocol", "timestick")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

/// CONTRACT §3 lists the drain among the receiver-initiated STOPs, and ARCHITECTURE's
/// SIGTERM sequence tells TimeStick clients to reconnect with "a receiver STOP with
/// reason". An embedded node cannot keep its sessions past its exit: a client whose
/// stream is open when the node drains must get that STOP before the node goes away.
#[actix_rt::test]
async fn a_draining_embedded_node_stops_its_sessions_with_a_reason() {
    let mut node = NodeBuilder::new()
        .env("MURMUR_DRAIN_DELAY", "1s")
        .env("MURMUR_DRAIN_TIMEOUT", "4s")
        .spawn()
        .await;
    let s = Session::open(&node, &uniq("alice-"), &uniq("drain-")).await;
    let mut sse = timestick_common::Sse::open(&s, None).await;
    node.terminate();
    let started = Instant::now();
    let event = sse.try_next(Duration::from_secs(10)).await;
    let event = event.unwrap_or_else(|| {
        panic!(
            "session {}: no receiver STOP on its open stream while the node drained \
             (SIGTERM, MURMUR_DRAIN_DELAY=1s, MURMUR_DRAIN_TIMEOUT=4s); the stream {} after \
             {:?}",
            s.id,
            if sse.is_ended() {
                "was ended by the server"
            } else {
                "stayed silent"
            },
            started.elapsed()
        )
    });
    let payload = assert_control(&event.data, &s.id, "STOP");
    assert!(
        payload["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{payload}"
    );
    assert!(sse.ends_within(Duration::from_secs(10)).await);
    assert!(node.wait_exit(Duration::from_secs(10)).await.is_some());
}
