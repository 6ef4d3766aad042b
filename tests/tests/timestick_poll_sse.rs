//! TimeStick delivery over real HTTP on one node (CONTRACT §3): the long-poll
//! (`wait`, `after`, cursor confirmation, at-least-once across lost responses, the
//! parameter checks, the per-poll limit) and Server-Sent Events (`id:` = cursor, resumption
//! with `Last-Event-ID` after a dropped stream, the end of the stream after the final
//! control message, auth).

mod timestick_common;

use std::time::Duration;

use murmur_tests::{api_post, token, within, Node};
use serde_json::{json, Value};
use timestick_common::{
    admin, assert_control, assert_delivered_request, assert_error, assert_stopped, bearer,
    parse_poll, uniq, Session, Sse, SOON,
};
use tokio::time::Instant;

/// `n` backend publications on `target` with payload `{"n": i}` (no rate limit applies).
async fn publish_n(node: &Node, target: &str, range: std::ops::Range<usize>) {
    for i in range {
        let (status, body) = api_post(
            node,
            "/api/v1/publish",
            json!({"channel": target, "data": {"n": i}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn payload_ns(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["payload"]["n"].as_u64().unwrap_or_else(|| panic!("{m}")))
        .collect()
}

#[actix_rt::test]
async fn a_long_poll_returns_as_soon_as_a_message_is_waiting() {
    let node = Node::start().await;
    let target = uniq("lp-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    let started = Instant::now();
    let poll = b.poll(20, None);
    let send = async {
        // The poll is parked before the message exists; POST it from here.
        a.send("m1", json!("wake up")).await;
    };
    let (reply, ()) = within("the long-poll to return", SOON, async {
        tokio::join!(poll, send)
    })
    .await;
    let (msgs, cursor) = parse_poll(&reply);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_delivered_request(&msgs[0], &b.id, &a.id, &a.user, "m1", &json!("wake up"));

    // A poll with nothing waiting returns after `wait` with an empty list and a cursor.
    let started = Instant::now();
    let reply = b.poll(1, Some(&cursor)).await;
    let (msgs, cursor2) = parse_poll(&reply);
    assert!(msgs.is_empty(), "{msgs:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "wait=1 took {took:?}"
    );
    assert_eq!(
        reply.json().as_object().map(|o| o.len()),
        Some(2),
        "exactly messages and cursor: {}",
        reply.text()
    );
    // wait=0 answers at once.
    let started = Instant::now();
    let (msgs, _) = b.poll_ok(0, Some(&cursor2)).await;
    assert!(msgs.is_empty());
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[actix_rt::test]
async fn cursors_confirm_and_unconfirmed_messages_come_again() {
    let node = Node::start().await;
    let target = uniq("cur-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    // b gets a channel request from a; a gets a queued response from b.
    a.send("q1", json!("question")).await;
    let (first, b_c1) = b.poll_ok(5, None).await;
    assert_eq!(first.len(), 1);
    b.reply("r1", &format!("{}.q1", a.id), json!("answer"))
        .await;
    a.send("q2", json!("another")).await;
    b.send("b-req", json!("from b")).await;

    // a polls: the response and b's request. Pretend the answer was lost.
    let (a_first, a_c1) = a.collect(2, None).await;
    assert_eq!(a_first.len(), 2, "{a_first:?}");
    let kinds: Vec<&str> = a_first
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"response") && kinds.contains(&"request"),
        "{a_first:?}"
    );
    // The same poll again (no `after`): the same messages, in the same order.
    let (again, a_c1_again) = a.poll_ok(5, None).await;
    assert_eq!(
        again, a_first,
        "at-least-once: unconfirmed messages come again"
    );
    assert_eq!(a_c1_again, a_c1);

    // Repeating b's old cursor also replays what came after it.
    let (b_after, b_c2) = b.collect(1, Some(&b_c1)).await;
    assert_eq!(b_after.len(), 1, "{b_after:?}");
    assert_eq!(b_after[0]["message_id"], format!("{}.q2", a.id));
    let (b_again, _) = b.poll_ok(5, Some(&b_c1)).await;
    assert_eq!(b_again, b_after, "an old cursor replays");

    // A poll with the latest cursor confirms: nothing new → empty.
    let a_c2 = a.expect_quiet(Some(&a_c1)).await;
    // Once confirmed, neither a poll without `after` nor the old cursor brings them back.
    a.expect_quiet(None).await;
    a.expect_quiet(Some(&a_c2)).await;
    b.expect_quiet(Some(&b_c2)).await;
    b.expect_quiet(None).await;
    b.expect_quiet(Some(&b_c1)).await;

    // New messages after confirmation are delivered normally.
    a.send("q3", json!(3)).await;
    let (msgs, _) = b.collect(1, None).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["message_id"], format!("{}.q3", a.id));
}

#[actix_rt::test]
async fn one_poll_returns_at_most_100_messages_in_order() {
    let node = Node::start().await;
    let target = uniq("many-");
    let s = Session::open(&node, &uniq("reader-"), &target).await;
    publish_n(&node, &target, 0..150).await;
    let (first, c1) = s.poll_ok(5, None).await;
    assert_eq!(first.len(), 100);
    assert_eq!(payload_ns(&first), (0..100).collect::<Vec<u64>>());
    let (rest, c2) = s.poll_ok(5, Some(&c1)).await;
    assert_eq!(payload_ns(&rest), (100..150).collect::<Vec<u64>>());
    s.expect_quiet(Some(&c2)).await;
}

#[actix_rt::test]
async fn poll_parameters_are_checked() {
    let node = Node::start().await;
    let s = Session::open(&node, &uniq("alice-"), &uniq("q-")).await;
    for query in [
        "wait=61",
        "wait=-1",
        "wait=abc",
        "wait=1.5",
        "wait=99999999999999999999999",
        "after=garbage",
        "after=1-2",
        "after=a-b.1",
        "after=1-2.-1",
        "after=99999999999999999999999-0.1",
        "wait=1&after=..%2F..",
    ] {
        let reply = s.get_query(query).await;
        assert_error(&reply, 400, "INVALID_REQUEST");
    }
    // 60 is the largest wait; 0 and an empty value (the default) are accepted. Only the
    // bounds are checked here: a message makes the 60 s poll return at once.
    let other = Session::open(&node, &uniq("bob-"), &s.target).await;
    s.send("y", json!(2)).await;
    let started = Instant::now();
    let (msgs, _) = parse_poll(&other.get_query("wait=60").await);
    assert_eq!(msgs.len(), 1);
    assert!(started.elapsed() < SOON);
    let (msgs, _) = parse_poll(&other.get_query("wait=&after=").await);
    assert_eq!(msgs.len(), 1, "an empty after is no cursor: {msgs:?}");
}

#[actix_rt::test]
async fn sse_streams_events_and_resumes_after_a_dropped_stream() {
    let node = Node::start().await;
    let target = uniq("sse-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;

    let mut sse = Sse::open(&b, None).await;
    assert!(
        sse.head()
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        sse.head()
    );
    for i in 0..3 {
        a.send(&format!("m{i}"), json!({"n": i})).await;
    }
    let events = sse.take(3).await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event, "message");
        assert_delivered_request(
            &e.data,
            &b.id,
            &a.id,
            &a.user,
            &format!("m{i}"),
            &json!({"n": i}),
        );
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "every event has its own id: {ids:?}"
    );
    // The event ids are poll cursors: polling after the second returns the third.
    let (msgs, _) = b.poll_ok(5, Some(&events[1].id)).await;
    // (that poll confirmed up to event 2; event 3 stays until confirmed)
    assert_eq!(msgs, vec![events[2].data.clone()]);

    // Drop the stream; more messages arrive while nobody listens.
    drop(sse);
    for i in 3..5 {
        a.send(&format!("m{i}"), json!({"n": i})).await;
    }
    // Resume after event 3: events 4 and 5 (nothing lost, nothing repeated).
    let mut sse = Sse::open(&b, Some(&events[2].id)).await;
    let resumed = sse.take(2).await;
    assert_eq!(
        payload_ns(&resumed.iter().map(|e| e.data.clone()).collect::<Vec<_>>()),
        vec![3, 4]
    );
    assert!(sse.try_next(Duration::from_millis(500)).await.is_none());
    drop(sse);

    // Resuming from an older id replays what was not confirmed since (at-least-once)...
    let mut sse = Sse::open(&b, Some(&events[2].id)).await;
    let replay = sse.take(2).await;
    assert_eq!(replay, resumed, "the same events, with the same ids");
    drop(sse);
    // ...and `Last-Event-ID` confirmed up to event 3: a poll without a cursor starts after it.
    let (msgs, _) = b.poll_ok(5, None).await;
    assert_eq!(payload_ns(&msgs), vec![3, 4]);

    // `?after=` works like Last-Event-ID.
    let auth = bearer(&b.token);
    let Ok(mut sse) = Sse::connect(
        &b,
        &[("Authorization", &auth)],
        Some(&format!("after={}", resumed[0].id)),
    )
    .await
    else {
        panic!("SSE with ?after= refused");
    };
    let e = sse.next().await;
    assert_eq!(e, resumed[1]);
}

#[actix_rt::test]
async fn sse_delivers_the_final_stop_then_410() {
    let node = Node::start().await;
    let target = uniq("sse-end-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    let mut sse = Sse::open(&b, None).await;
    // An idle stream sends keep-alive comments, not events.
    assert!(
        sse.comments_within(1, SOON).await,
        "a keep-alive comment after an empty read"
    );

    a.send("m1", json!("before stop")).await;
    let first = sse.next().await;
    assert_eq!(first.data["payload"], "before stop");
    let (status, body) = admin(
        &node,
        &b.id,
        "stop",
        json!({"reason": "maintenance", "details": "back soon"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stop = sse.next().await;
    let payload = assert_control(&stop.data, &b.id, "STOP");
    assert_eq!(payload["reason"], "maintenance");
    assert_eq!(payload["details"], "back soon");
    // (That the stream then ends promptly is `sse_streams_end_promptly_after_the_final_stop`.)
    drop(sse);
    // A reconnect that confirms the STOP gets 410 with the reason.
    let auth = bearer(&b.token);
    let err = Sse::connect(
        &b,
        &[("Authorization", &auth), ("Last-Event-ID", &stop.id)],
        None,
    )
    .await
    .err()
    .expect("410 after the final STOP was confirmed");
    assert_eq!(err.0, 410, "{err:?}");
    assert_eq!(err.1["reason"], "maintenance", "{err:?}");
    let reply = b.poll(0, Some(&stop.id)).await;
    assert_stopped(&reply, "maintenance");
}

#[actix_rt::test]
async fn sse_requires_the_session_principal() {
    let node = Node::start().await;
    let s = Session::open(&node, &uniq("alice-"), &uniq("sse-auth-")).await;
    let thief = bearer(&token(&uniq("mallory-")));
    let err = Sse::connect(&s, &[("Authorization", &thief)], None)
        .await
        .err()
        .expect("another caller's token is refused");
    assert_eq!(err.0, 403, "{err:?}");
    assert_eq!(err.1["error_code"], "FORBIDDEN");
    let err = Sse::connect(&s, &[], None)
        .await
        .err()
        .expect("no token is refused");
    assert_eq!(err.0, 401, "{err:?}");
    assert_eq!(err.1["error_code"], "UNAUTHORIZED");
    let ghost = Session {
        id: uuid::Uuid::new_v4().to_string(),
        ..s.clone()
    };
    let auth = bearer(&s.token);
    let err = Sse::connect(&ghost, &[("Authorization", &auth)], None)
        .await
        .err()
        .expect("unknown session");
    assert_eq!(err.0, 404, "{err:?}");
    let err = Sse::connect(
        &s,
        &[("Authorization", &auth), ("Last-Event-ID", "nonsense")],
        None,
    )
    .await
    .err()
    .expect("a bad Last-Event-ID is refused");
    assert_eq!(err.0, 400, "{err:?}");
    assert_eq!(err.1["error_code"], "INVALID_REQUEST");
    // The refusals did not harm the session.
    let (msgs, _) = s.poll_ok(0, None).await;
    assert!(msgs.is_empty());
}

#[actix_rt::test]
async fn a_session_queue_keeps_the_newest_1000_unconfirmed_messages() {
    let node = Node::start().await;
    let target = uniq("queue-");
    let reader = Session::open(&node, &uniq("reader-"), &target).await;
    let responders: Vec<Session> = futures_util::future::join_all((0..11).map(|_| {
        let (node, target) = (&node, target.clone());
        async move { Session::open(node, &uniq("resp-"), &target).await }
    }))
    .await;
    reader.send("q", json!("answer me, a lot")).await;
    let correlation = format!("{}.q", reader.id);
    // 11 × 91 = 1001 responses (each responder stays under 100 messages per second).
    let posts = responders.iter().flat_map(|r| {
        let correlation = correlation.clone();
        (0..91).map(move |i| {
            let (r, correlation) = (r.clone(), correlation.clone());
            async move {
                let mid = format!("r{i}");
                let reply = r
                    .post(&timestick_common::response_msg(
                        &r.id,
                        &mid,
                        &correlation,
                        json!(i),
                    ))
                    .await;
                timestick_common::assert_accepted(&reply, &mid);
            }
        })
    });
    futures_util::future::join_all(posts).await;

    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (msgs, next) = reader.poll_ok(0, cursor.as_deref()).await;
        if msgs.is_empty() {
            break;
        }
        assert!(msgs.len() <= 100);
        got.extend(msgs);
        cursor = Some(next);
    }
    assert_eq!(got.len(), 1000, "the queue keeps the newest 1000");
    let mut ids: Vec<&str> = got
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "no duplicates");
    assert!(got
        .iter()
        .all(|m| m["type"] == "response" && m["correlation_id"] == "q"));
}

/// The stream ends after the session's final control message (gateway/src/timestick/sse.rs
/// module docs; a client reading an open stream learns the session is over). 60 sessions
/// with an open stream each are stopped by the receiver at once; every stream must deliver
/// the STOP and then end within 5 s (its internal wait is 15 s, so a stream that missed the
/// end lingers visibly).
#[actix_rt::test]
async fn sse_streams_end_promptly_after_the_final_stop() {
    let node = Node::start().await;
    let target = uniq("sse-ends-");
    let sessions = futures_util::future::join_all((0..60).map(|_| {
        let (node, target) = (&node, target.clone());
        async move { Session::open(node, &uniq("s-"), &target).await }
    }))
    .await;
    // Open every stream and wait until each is parked (its first, empty read answered
    // with a keep-alive).
    let streams = futures_util::future::join_all(sessions.iter().map(|s| async move {
        let mut sse = Sse::open(s, None).await;
        assert!(
            sse.comments_within(1, SOON).await,
            "a keep-alive on a fresh stream"
        );
        sse
    }))
    .await;
    let outcomes =
        futures_util::future::join_all(sessions.iter().zip(streams).map(|(s, mut sse)| {
            let node = &node;
            async move {
                let (status, body) = admin(node, &s.id, "stop", json!({"reason": "bye"})).await;
                assert_eq!(status, 200, "{body}");
                let stop = sse.next().await;
                assert_eq!(assert_control(&stop.data, &s.id, "STOP")["reason"], "bye");
                let started = Instant::now();
                let ended = sse.ends_within(SOON).await;
                (s.id.clone(), ended, started.elapsed())
            }
        }))
        .await;
    let lingering: Vec<String> = outcomes
        .iter()
        .filter(|(_, ended, _)| !ended)
        .map(|(id, _, took)| format!("{id}: still open {took:?} after its final STOP"))
        .collect();
    assert!(
        lingering.is_empty(),
        "{} of {} streams did not end after the final STOP:\n{}",
        lingering.len(),
        outcomes.len(),
        lingering.join("\n")
    );
}

/// A well-formed cursor the broker never issued — ahead of the channel's newest
/// publication or of the session's queue — is refused with 400 `INVALID_REQUEST` (poll,
/// `?after=` and `Last-Event-ID` alike) and confirms nothing: the session keeps receiving
/// channel traffic and its own queue afterwards.
#[actix_rt::test]
async fn cursors_from_the_future_are_refused_and_confirm_nothing() {
    let node = Node::start().await;
    let target = uniq("future-");
    let a = Session::open(&node, &uniq("alice-"), &target).await;
    let b = Session::open(&node, &uniq("bob-"), &target).await;
    a.send("m0", json!(0)).await;
    let (msgs, c0) = b.collect(1, None).await;
    assert_eq!(msgs[0]["payload"], 0);
    let (channel_pos, queue_pos) = c0.rsplit_once('.').unwrap();
    let ahead_in_channel = format!("99999999999999-0.{queue_pos}");
    let ahead_in_queue = format!("{channel_pos}.{}", queue_pos.parse::<u64>().unwrap() + 1);
    for forged in [
        &ahead_in_channel,
        &ahead_in_queue,
        &"1-0.99999999".to_string(),
    ] {
        let body = assert_error(&b.poll(0, Some(forged)).await, 400, "INVALID_REQUEST");
        assert_eq!(
            body["error_message"], "after is ahead of every cursor this session was given",
            "{forged}: {body}"
        );
        let auth = bearer(&b.token);
        match Sse::connect(
            &b,
            &[("Authorization", &auth), ("Last-Event-ID", forged)],
            None,
        )
        .await
        {
            Err((status, body)) => {
                assert_eq!(status, 400, "{forged}: {body}");
                assert_eq!(body["error_code"], "INVALID_REQUEST", "{body}");
            }
            Ok(_) => panic!("a stream resumed after the forged cursor {forged}"),
        }
        match Sse::connect(
            &b,
            &[("Authorization", &auth)],
            Some(&format!("after={forged}")),
        )
        .await
        {
            Err((status, _)) => assert_eq!(status, 400, "{forged}"),
            Ok(_) => panic!("a stream opened after the forged cursor {forged}"),
        }
    }
    // The session still gets channel traffic (a request, a backend publication) and its
    // queue (a response), and the real cursor still works.
    a.send("m1", json!(1)).await;
    publish_n(&node, &target, 2..3).await;
    let (msgs, c1) = b.collect(2, Some(&c0)).await;
    assert_eq!(msgs[0]["payload"], 1, "{msgs:?}");
    assert_eq!(msgs[1]["payload"], json!({"n": 2}), "{msgs:?}");
    b.send("q", json!("question")).await;
    let (got, _) = a.collect(2, None).await;
    let question = got
        .iter()
        .find(|m| m["payload"] == "question")
        .unwrap_or_else(|| panic!("a got {got:?}"));
    a.reply(
        "r",
        question["message_id"].as_str().unwrap(),
        json!("answer"),
    )
    .await;
    let (msgs, c2) = b.collect(1, Some(&c1)).await;
    assert_eq!(msgs[0]["type"], "response", "{msgs:?}");
    assert_eq!(msgs[0]["payload"], "answer", "{msgs:?}");
    // Its own cursor, the newest one it was given, is accepted.
    let (msgs, _) = b.poll_ok(0, Some(&c2)).await;
    assert!(msgs.is_empty(), "{msgs:?}");
}
