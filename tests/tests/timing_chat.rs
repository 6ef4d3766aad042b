//! `~timing` (CONTRACT §7, §5) on GradAgenda chat: the top-level `~timing` of
//! `request-sending-a-message`. A held message is acknowledged at once with a
//! `status-response` `succeeded` "scheduled for <time>" and broadcast to every device of
//! every participant (the sender's included) when due; a hold beyond ten minutes or a
//! malformed decorator is a `status-response` `failed` with a reason, an `expires_time`
//! already past is `failed` with the reason "expired"; a message that expires while held
//! is never broadcast nor kept in history, one that expires before a device catches up
//! through history is left out; stale deliveries are counted; the decorator is broadcast
//! unchanged.

mod timing_common;

use std::collections::HashMap;

use murmur_tests::Node;
use serde_json::{json, Value};
use timing_common::{
    assert_delay, assert_due, assert_failed, assert_scheduled, bodies, canonical, due_for,
    due_instants, is_broadcast, malformed_timings, minute_forms, now_ms, second_forms,
    timing_count, uniq, wait_clock_past, wait_scheduled, wait_timing_count, wait_until, Chat,
    DELAY_MS, SOON,
};
use tokio::time::Instant;

/// A node, alice (one device) and bob (one device), and their direct session.
async fn setup() -> (Node, Chat, Chat, String) {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = Chat::login(&node, &alice, "a-phone").await;
    let b = Chat::login(&node, &bob, "b-phone").await;
    let session = a.direct(&bob).await;
    (node, a, b, session)
}

/// `from` sends a plain marker; `to` receives it. Returns the broadcasts of `session` that
/// `to` had received before the marker and not consumed.
async fn up_to_marker(from: &mut Chat, to: &mut Chat, session: &str) -> Vec<Value> {
    let marker = uniq("marker-");
    let cdid = from.say(session, &marker, None).await;
    let own = from.answer(&cdid).await;
    assert!(is_broadcast(&own, session, &marker), "marker sent: {own}");
    to.broadcast(session, &marker, SOON).await;
    to.queued()
        .into_iter()
        .filter(|v| v["type"] == "message-broadcast" && v["session-id"] == session)
        .collect()
}

#[actix_rt::test]
async fn a_held_message_is_acknowledged_at_once_and_broadcast_to_every_device_when_due() {
    let (node, mut a, mut b, session) = setup().await;
    let mut a2 = Chat::login(&node, &a.user, "a-tablet").await;
    let timing = json!({"delay_milli": DELAY_MS});

    let sent = Instant::now();
    let before = now_ms();
    let cdid = a.say(&session, "later", Some(timing.clone())).await;
    let ack = a.answer(&cdid).await;
    let after = now_ms();
    let due = assert_scheduled(&ack);
    assert!(
        due >= before + DELAY_MS && due <= after + DELAY_MS,
        "scheduled for {} — want {}..{}",
        canonical(due),
        canonical(before + DELAY_MS),
        canonical(after + DELAY_MS)
    );
    assert!(
        sent.elapsed().as_millis() < 1000,
        "acknowledged at once, not when due"
    );

    let v = b.broadcast(&session, "later", SOON).await;
    assert_delay("held chat message", DELAY_MS, sent.elapsed());
    assert_eq!(v["sender-id"], a.user.as_str(), "{v}");
    assert_eq!(v["~timing"], timing, "{v}");
    let id = v["message-id"].as_str().unwrap().to_string();
    // The sender's devices get it too, when due (no cdid: the request was answered).
    for c in [&mut a, &mut a2] {
        let own = c.broadcast(&session, "later", SOON).await;
        assert_eq!(own["message-id"], id.as_str(), "{own}");
        assert!(own.get("cdid").is_none(), "{own}");
        assert_eq!(own["~timing"], timing, "{own}");
    }
    wait_timing_count(&node, "chat", "held", 1.0).await;
    wait_timing_count(&node, "chat", "released", 1.0).await;

    // Kept in history once, with the decorator.
    let items = b.history(&session).await;
    assert_eq!(bodies(&items), vec!["later"], "{items:?}");
    assert_eq!(items[0]["~timing"], timing);
    let rest = up_to_marker(&mut a, &mut b, &session).await;
    assert!(rest.is_empty(), "broadcast once: {rest:?}");
}

#[actix_rt::test]
async fn wait_until_time_in_every_accepted_form_is_honoured() {
    let (_node, mut a, mut b, session) = setup().await;
    let forms = second_forms();
    let round = due_instants();
    let mut due_of = HashMap::new();
    for form in &forms {
        let due = due_for(form, round);
        let cdid = a
            .say(&session, form.name, Some(wait_until(form, due)))
            .await;
        let ack = a.answer(&cdid).await;
        assert_eq!(assert_scheduled(&ack), due, "{}: {ack}", form.name);
        due_of.insert(form.name.to_string(), due);
    }
    assert!(now_ms() < round.0, "all were sent before the first was due");
    for _ in &forms {
        let v = b
            .expect("a held broadcast", SOON, |v| {
                v["type"] == "message-broadcast"
            })
            .await;
        let arrived = now_ms();
        let name = v["message"]["body"].as_str().unwrap().to_string();
        let due = due_of
            .remove(&name)
            .unwrap_or_else(|| panic!("unexpected or duplicate: {v}"));
        assert_due(&name, due, arrived);
    }

    // Minute precision: acknowledged for that minute.
    let minute = (now_ms() / 60_000 + 3) * 60_000;
    for form in minute_forms() {
        let cdid = a
            .say(&session, "minute", Some(wait_until(&form, minute)))
            .await;
        assert_eq!(
            assert_scheduled(&a.answer(&cdid).await),
            minute,
            "{}",
            form.name
        );
    }
}

#[actix_rt::test]
async fn with_both_delay_and_wait_until_the_later_wins() {
    let (_node, mut a, mut b, session) = setup().await;
    let form = second_forms()[4];
    let sent = Instant::now();
    let before = now_ms();
    let cdid = a
        .say(
            &session,
            "delay wins",
            Some(json!({"delay_milli": DELAY_MS, "wait_until_time": form.write(before + 200)})),
        )
        .await;
    let due = assert_scheduled(&a.answer(&cdid).await);
    assert!(
        due >= before + DELAY_MS && due <= now_ms() + DELAY_MS,
        "{}",
        canonical(due)
    );
    b.broadcast(&session, "delay wins", SOON).await;
    assert_delay("delay wins", DELAY_MS, sent.elapsed());

    let due = now_ms() + DELAY_MS;
    let cdid = a
        .say(
            &session,
            "wait wins",
            Some(json!({"delay_milli": 100, "wait_until_time": form.write(due)})),
        )
        .await;
    assert_eq!(assert_scheduled(&a.answer(&cdid).await), due);
    b.broadcast(&session, "wait wins", SOON).await;
    assert_due("wait wins", due, now_ms());
}

#[actix_rt::test]
async fn holds_beyond_ten_minutes_fail() {
    let (node, mut a, mut b, session) = setup().await;
    let form = second_forms()[0];
    let refused = [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": form.write(now_ms() + 605_000)}),
    ];
    for timing in &refused {
        let cdid = a.say(&session, "too long", Some(timing.clone())).await;
        let reason = assert_failed(&a.answer(&cdid).await);
        assert_ne!(reason, "expired", "not an expiry: {reason}");
    }
    wait_timing_count(&node, "chat", "rejected", 2.0).await;
    let cdid = a
        .say(
            &session,
            "ten minutes",
            Some(json!({"delay_milli": 600_000})),
        )
        .await;
    assert_scheduled(&a.answer(&cdid).await);
    wait_scheduled(&node, 1.0, SOON).await;
    let before = up_to_marker(&mut a, &mut b, &session).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        bodies(&b.history(&session).await).len(),
        1,
        "only the marker is in history"
    );
}

#[actix_rt::test]
async fn expired_on_arrival_fails_with_expired() {
    let (node, mut a, mut b, session) = setup().await;
    let refused = [
        json!({"expires_time": canonical(now_ms() - 1000)}),
        json!({"expires_time": "2019-01-25 18:25Z", "delay_milli": 1000}),
    ];
    for timing in &refused {
        let cdid = a.say(&session, "late", Some(timing.clone())).await;
        assert_eq!(assert_failed(&a.answer(&cdid).await), "expired");
    }
    wait_timing_count(&node, "chat", "rejected", 2.0).await;
    let before = up_to_marker(&mut a, &mut b, &session).await;
    assert!(before.is_empty(), "{before:?}");
    assert!(!bodies(&b.history(&session).await).contains(&"late".to_string()));
}

#[actix_rt::test]
async fn a_message_that_expires_while_held_is_never_broadcast_nor_kept() {
    let (node, mut a, mut b, session) = setup().await;
    let cdid = a
        .say(
            &session,
            "doomed",
            Some(json!({"delay_milli": DELAY_MS, "expires_time": canonical(now_ms() + 500)})),
        )
        .await;
    assert_scheduled(&a.answer(&cdid).await);
    wait_timing_count(&node, "chat", "expired", 1.0).await;
    wait_scheduled(&node, 0.0, SOON).await;
    assert_eq!(timing_count(&node, "chat", "released").await, 0.0);
    let before = up_to_marker(&mut a, &mut b, &session).await;
    assert!(before.is_empty(), "never broadcast: {before:?}");
    assert!(
        !a.queued()
            .iter()
            .any(|v| is_broadcast(v, &session, "doomed")),
        "not to the sender either"
    );
    let items = b.history(&session).await;
    assert!(
        !bodies(&items).contains(&"doomed".to_string()),
        "not in history: {items:?}"
    );
}

#[actix_rt::test]
async fn history_catch_up_leaves_out_messages_that_expired_meanwhile() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = Chat::login(&node, &alice, "a-phone").await;
    let session = a.direct(&bob).await;
    // bob is offline.
    let expires = now_ms() + 300;
    for (body, timing) in [
        ("expiring", json!({"expires_time": canonical(expires)})),
        (
            "kept",
            json!({"expires_time": canonical(now_ms() + 60_000)}),
        ),
        ("stale", json!({"stale_time": canonical(now_ms() - 1000)})),
    ] {
        let cdid = a.say(&session, body, Some(timing)).await;
        let own = a.answer(&cdid).await;
        assert!(is_broadcast(&own, &session, body), "{own}");
    }
    wait_clock_past(expires).await;

    let mut b = Chat::login(&node, &bob, "b-phone").await;
    let items = b.history(&session).await;
    assert_eq!(
        bodies(&items),
        vec!["kept", "stale"],
        "the expired one is left out"
    );
    wait_timing_count(&node, "chat", "expired", 1.0).await;
    wait_timing_count(&node, "chat", "stale", 1.0).await;
}

#[actix_rt::test]
async fn stale_deliveries_are_counted_per_device() {
    let (node, mut a, mut b, session) = setup().await;
    let timing = json!({"stale_time": "2019-01-24 18:25Z"});
    let cdid = a.say(&session, "stale", Some(timing.clone())).await;
    a.answer(&cdid).await;
    let v = b.broadcast(&session, "stale", SOON).await;
    assert_eq!(v["~timing"], timing);
    wait_timing_count(&node, "chat", "stale", 1.0).await;

    // Held, going stale meanwhile: both devices get it when due, both counted.
    let cdid = a
        .say(
            &session,
            "went stale",
            Some(json!({"delay_milli": 800, "stale_time": canonical(now_ms() + 200)})),
        )
        .await;
    assert_scheduled(&a.answer(&cdid).await);
    b.broadcast(&session, "went stale", SOON).await;
    a.broadcast(&session, "went stale", SOON).await;
    wait_timing_count(&node, "chat", "stale", 3.0).await;
}

#[actix_rt::test]
async fn out_time_in_time_and_unknown_fields_are_broadcast_unchanged() {
    let (_node, mut a, mut b, session) = setup().await;
    let timing = json!({
        "out_time": "2019-01-23 18:03:27.123Z",
        "in_time": "2019-01-23T18:03:27.123+0100",
        "x-client": {"v": [1, 2]},
    });
    let cdid = a.say(&session, "as is", Some(timing.clone())).await;
    let own = a.answer(&cdid).await;
    assert_eq!(own["~timing"], timing, "the sender's copy: {own}");
    let v = b.broadcast(&session, "as is", SOON).await;
    assert_eq!(v["~timing"], timing, "{v}");
    let items = b.history(&session).await;
    assert_eq!(items[0]["~timing"], timing, "history keeps it: {items:?}");

    let cdid = a.say(&session, "plain", None).await;
    a.answer(&cdid).await;
    let v = b.broadcast(&session, "plain", SOON).await;
    assert!(v.get("~timing").is_none(), "{v}");
}

#[actix_rt::test]
async fn malformed_timing_fails_and_nothing_is_sent() {
    let (node, mut a, mut b, session) = setup().await;
    let mut bad = malformed_timings();
    bad.push(Value::Null);
    for timing in &bad {
        let cdid = a.say(&session, "bad", Some(timing.clone())).await;
        let reason = assert_failed(&a.answer(&cdid).await);
        assert_ne!(reason, "expired", "{timing}: {reason}");
    }
    let before = up_to_marker(&mut a, &mut b, &session).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(timing_count(&node, "chat", "held").await, 0.0);
}
