//! `~timing` (CONTRACT §7, §3) on TimeStick: the top-level `~timing` of a posted
//! `request` or `response`. Held requests reach the other sessions of the target when
//! due, held responses reach the requester's queue when due; a hold beyond ten minutes or
//! a malformed decorator is 400 with `error_code` `INVALID_MESSAGE`, an `expires_time`
//! already past is 400 with `error_code` `EXPIRED`; a message that expires while held, or
//! while it waits for a poll (channel history or the session queue), is dropped and
//! counted; stale ones are delivered and counted; the decorator is delivered unchanged.

mod timing_common;

use std::collections::HashMap;

use murmur_tests::Node;
use serde_json::{json, Value};
use timing_common::{
    assert_delay, assert_due, assert_stick_error, canonical, due_for, due_instants,
    malformed_timings, minute_forms, now_ms, second_forms, timing_count, uniq, wait_clock_past,
    wait_scheduled, wait_timing_count, wait_until, Stick, DELAY_MS, SOON,
};
use tokio::time::Instant;

/// A node and two sessions (a sender and a receiver) on one fresh target.
async fn setup() -> (Node, Stick, Stick) {
    let node = Node::start().await;
    let target = uniq("ts-timing-");
    let a = Stick::open(&node, &uniq("alice-"), &target).await;
    let b = Stick::open(&node, &uniq("bob-"), &target).await;
    (node, a, b)
}

fn payload_is(m: &Value, p: &Value) -> bool {
    &m["payload"] == p
}

/// Posts a plain marker request from `from` and polls `to` up to it: the messages before
/// the marker and the cursor after it.
async fn up_to_marker(from: &Stick, to: &Stick, after: Option<&str>) -> (Vec<Value>, String) {
    let marker = json!({"marker": uniq("m-")});
    from.post_ok(&from.request_msg(&uniq("marker-"), marker.clone(), None))
        .await;
    let (_, before, cursor) = to.until(after, SOON, |m| payload_is(m, &marker)).await;
    (before, cursor)
}

#[actix_rt::test]
async fn a_held_request_reaches_the_other_sessions_after_its_delay() {
    let (node, a, b) = setup().await;
    let timing = json!({"delay_milli": DELAY_MS});
    let payload = json!({"n": 1});
    let sent = Instant::now();
    a.post_ok(&a.request_msg("held-1", payload.clone(), Some(timing.clone())))
        .await;
    let (m, before, cursor) = b.until(None, SOON, |m| payload_is(m, &payload)).await;
    assert_delay("held TimeStick request", DELAY_MS, sent.elapsed());
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(m["type"], "request", "{m}");
    assert_eq!(m["message_id"], format!("{}.held-1", a.id), "{m}");
    assert_eq!(m["~timing"], timing, "the decorator is delivered: {m}");
    wait_timing_count(&node, "timestick", "held", 1.0).await;
    wait_timing_count(&node, "timestick", "released", 1.0).await;
    let (rest, _) = up_to_marker(&a, &b, Some(&cursor)).await;
    assert!(rest.is_empty(), "delivered once: {rest:?}");
}

#[actix_rt::test]
async fn a_held_response_reaches_the_requester_after_its_delay() {
    let (node, a, b) = setup().await;
    a.post_ok(&a.request_msg("q-1", json!("question"), None))
        .await;
    let (req, _, _) = b.until(None, SOON, |m| m["payload"] == "question").await;
    let correlation = req["message_id"].as_str().unwrap().to_string();

    let timing = json!({"delay_milli": DELAY_MS, "out_time": canonical(now_ms())});
    let sent = Instant::now();
    b.post_ok(&b.response_msg("r-1", &correlation, json!("answer"), Some(timing.clone())))
        .await;
    let (m, before, _) = a.until(None, SOON, |m| m["payload"] == "answer").await;
    assert_delay("held TimeStick response", DELAY_MS, sent.elapsed());
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(m["type"], "response", "{m}");
    assert_eq!(m["correlation_id"], "q-1", "{m}");
    assert_eq!(m["~timing"], timing, "{m}");
    wait_timing_count(&node, "timestick", "held", 1.0).await;
    wait_timing_count(&node, "timestick", "released", 1.0).await;
}

#[actix_rt::test]
async fn wait_until_time_in_every_accepted_form_is_honoured() {
    let (_node, a, b) = setup().await;
    let forms = second_forms();
    let round = due_instants();
    let mut due_of = HashMap::new();
    for (i, form) in forms.iter().enumerate() {
        let due = due_for(form, round);
        a.post_ok(&a.request_msg(
            &format!("w-{i}"),
            json!(form.name),
            Some(wait_until(form, due)),
        ))
        .await;
        due_of.insert(form.name.to_string(), due);
    }
    assert!(now_ms() < round.0, "all were sent before the first was due");
    let mut cursor: Option<String> = None;
    while !due_of.is_empty() {
        let (msgs, next) =
            murmur_tests::within("held requests", SOON, b.poll(5, cursor.as_deref())).await;
        let arrived = now_ms();
        cursor = Some(next);
        for m in msgs {
            let name = m["payload"].as_str().unwrap().to_string();
            let due = due_of
                .remove(&name)
                .unwrap_or_else(|| panic!("unexpected or duplicate: {m}"));
            assert_due(&name, due, arrived);
        }
    }

    // Minute precision parses: a past minute is not a hold, one 11+ minutes ahead is
    // refused, one 2-3 minutes ahead is held.
    let form = minute_forms()[0];
    let past = (now_ms() / 60_000 - 1) * 60_000;
    a.post_ok(&a.request_msg(
        "minute-past",
        json!("minute past"),
        Some(wait_until(&form, past)),
    ))
    .await;
    let (_, before, _) = b
        .until(cursor.as_deref(), SOON, |m| m["payload"] == "minute past")
        .await;
    assert!(before.is_empty(), "{before:?}");
    for form in minute_forms() {
        let ahead = (now_ms() / 60_000 + 3) * 60_000;
        a.post_ok(&a.request_msg(
            &uniq("minute-"),
            json!("later"),
            Some(wait_until(&form, ahead)),
        ))
        .await;
        let far = (now_ms() / 60_000 + 12) * 60_000;
        let msg = a.request_msg(
            &uniq("minute-"),
            json!("never"),
            Some(wait_until(&form, far)),
        );
        let (status, body) = a.post(&msg).await;
        assert_stick_error(status, &body, &a.id, "INVALID_MESSAGE");
    }
}

#[actix_rt::test]
async fn with_both_delay_and_wait_until_the_later_wins() {
    let (_node, a, b) = setup().await;
    let form = second_forms()[2];
    let sent = Instant::now();
    let early = (now_ms() + 300) / 1000 * 1000; // whole second, already past or soon
    a.post_ok(&a.request_msg(
        "both-1",
        json!("delay wins"),
        Some(json!({"delay_milli": DELAY_MS, "wait_until_time": form.write(early)})),
    ))
    .await;
    let (_, before, cursor) = b.until(None, SOON, |m| m["payload"] == "delay wins").await;
    assert_delay("delay wins", DELAY_MS, sent.elapsed());
    assert!(before.is_empty(), "{before:?}");

    let due = (now_ms() + 1999) / 1000 * 1000 + 1000; // whole second 2..3 s ahead
    a.post_ok(&a.request_msg(
        "both-2",
        json!("wait wins"),
        Some(json!({"delay_milli": 300, "wait_until_time": form.write(due)})),
    ))
    .await;
    let (_, before, _) = b
        .until(Some(&cursor), SOON, |m| m["payload"] == "wait wins")
        .await;
    assert_due("wait wins", due, now_ms());
    assert!(before.is_empty(), "{before:?}");
}

#[actix_rt::test]
async fn holds_beyond_ten_minutes_are_invalid_messages() {
    let (node, a, b) = setup().await;
    let form = second_forms()[0];
    let refused = [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": form.write(now_ms() + 605_000)}),
    ];
    for (i, timing) in refused.iter().enumerate() {
        let (status, body) = a
            .post(&a.request_msg(
                &format!("long-{i}"),
                json!("too long"),
                Some(timing.clone()),
            ))
            .await;
        assert_stick_error(status, &body, &a.id, "INVALID_MESSAGE");
    }
    wait_timing_count(&node, "timestick", "rejected", 2.0).await;
    a.post_ok(&a.request_msg(
        "ten",
        json!("ten minutes"),
        Some(json!({"delay_milli": 600_000})),
    ))
    .await;
    wait_scheduled(&node, 1.0, SOON).await;
    let (before, _) = up_to_marker(&a, &b, None).await;
    assert!(before.is_empty(), "nothing delivered: {before:?}");
}

#[actix_rt::test]
async fn expired_on_arrival_is_refused_with_error_code_expired() {
    let (node, a, b) = setup().await;
    let refused = [
        json!({"expires_time": canonical(now_ms() - 1000)}),
        json!({"expires_time": "2019-01-25 18:25Z", "delay_milli": 100}),
    ];
    for (i, timing) in refused.iter().enumerate() {
        let (status, body) = a
            .post(&a.request_msg(&format!("late-{i}"), json!("late"), Some(timing.clone())))
            .await;
        assert_stick_error(status, &body, &a.id, "EXPIRED");
    }
    // A response already expired is refused the same way.
    a.post_ok(&a.request_msg("q", json!("q"), None)).await;
    let (req, _, cursor) = b.until(None, SOON, |m| m["payload"] == "q").await;
    let msg = b.response_msg(
        "r-late",
        req["message_id"].as_str().unwrap(),
        json!("late"),
        Some(json!({"expires_time": "2019-01-25T18:25:00.000Z"})),
    );
    let (status, body) = b.post(&msg).await;
    assert_stick_error(status, &body, &b.id, "EXPIRED");
    wait_timing_count(&node, "timestick", "rejected", 3.0).await;
    let (before, _) = up_to_marker(&a, &b, Some(&cursor)).await;
    assert!(before.is_empty(), "{before:?}");
}

#[actix_rt::test]
async fn a_request_that_expires_while_held_is_dropped_and_counted() {
    let (node, a, b) = setup().await;
    a.post_ok(&a.request_msg(
        "doomed",
        json!("doomed"),
        Some(json!({"delay_milli": DELAY_MS, "expires_time": canonical(now_ms() + 500)})),
    ))
    .await;
    wait_timing_count(&node, "timestick", "expired", 1.0).await;
    wait_scheduled(&node, 0.0, SOON).await;
    assert_eq!(timing_count(&node, "timestick", "released").await, 0.0);
    let (before, _) = up_to_marker(&a, &b, None).await;
    assert!(before.is_empty(), "never delivered: {before:?}");
}

#[actix_rt::test]
async fn messages_that_expire_before_they_are_polled_are_dropped_and_counted() {
    let (node, a, b) = setup().await;
    // A request waiting in the channel for b's next poll.
    let expires = now_ms() + 300;
    a.post_ok(&a.request_msg(
        "x-req",
        json!("expiring request"),
        Some(json!({"expires_time": canonical(expires)})),
    ))
    .await;
    a.post_ok(&a.request_msg(
        "ok-req",
        json!("kept request"),
        Some(json!({"expires_time": canonical(now_ms() + 60_000)})),
    ))
    .await;
    wait_clock_past(expires).await;
    let (before, cursor) = up_to_marker(&a, &b, None).await;
    let payloads: Vec<&Value> = before.iter().map(|m| &m["payload"]).collect();
    assert_eq!(
        payloads,
        vec!["kept request"],
        "the expired request is dropped"
    );
    wait_timing_count(&node, "timestick", "expired", 1.0).await;

    // A response waiting in a's queue.
    a.post_ok(&a.request_msg("q", json!("q"), None)).await;
    let (req, _, _) = b.until(Some(&cursor), SOON, |m| m["payload"] == "q").await;
    let correlation = req["message_id"].as_str().unwrap().to_string();
    let expires = now_ms() + 300;
    b.post_ok(&b.response_msg(
        "r-x",
        &correlation,
        json!("expiring response"),
        Some(json!({"expires_time": canonical(expires)})),
    ))
    .await;
    b.post_ok(&b.response_msg("r-ok", &correlation, json!("kept response"), None))
        .await;
    wait_clock_past(expires).await;
    let (m, before, _) = a
        .until(None, SOON, |m| m["payload"] == "kept response")
        .await;
    assert!(
        before.is_empty(),
        "the expired response is dropped: {before:?}"
    );
    assert_eq!(m["type"], "response", "{m}");
    wait_timing_count(&node, "timestick", "expired", 2.0).await;
}

#[actix_rt::test]
async fn stale_messages_are_delivered_and_counted() {
    let (node, a, b) = setup().await;
    let timing = json!({"stale_time": canonical(now_ms() - 1000)});
    a.post_ok(&a.request_msg("stale", json!("stale"), Some(timing.clone())))
        .await;
    let (m, _, _) = b.until(None, SOON, |m| m["payload"] == "stale").await;
    assert_eq!(m["~timing"], timing, "{m}");
    wait_timing_count(&node, "timestick", "stale", 1.0).await;
}

#[actix_rt::test]
async fn out_time_in_time_and_unknown_fields_pass_through_unchanged() {
    let (_node, a, b) = setup().await;
    let timing = json!({
        "out_time": "2019-01-23 18:03:27.123Z",
        "in_time": "2019-01-23 18:03:27Z",
        "x-hint": {"priority": 3},
    });
    a.post_ok(&a.request_msg("pt", json!("pass"), Some(timing.clone())))
        .await;
    let (req, _, _) = b.until(None, SOON, |m| m["payload"] == "pass").await;
    assert_eq!(req["~timing"], timing, "{req}");

    let reply_timing =
        json!({"in_time": canonical(now_ms()), "out_time": canonical(now_ms()), "custom": "x"});
    b.post_ok(&b.response_msg(
        "pt-r",
        req["message_id"].as_str().unwrap(),
        json!("back"),
        Some(reply_timing.clone()),
    ))
    .await;
    let (resp, _, _) = a.until(None, SOON, |m| m["payload"] == "back").await;
    assert_eq!(resp["~timing"], reply_timing, "{resp}");

    // No decorator in, none out.
    a.post_ok(&a.request_msg("plain", json!("plain"), None))
        .await;
    let (plain, _, _) = b.until(None, SOON, |m| m["payload"] == "plain").await;
    assert!(plain.get("~timing").is_none(), "{plain}");
}

#[actix_rt::test]
async fn malformed_timing_is_an_invalid_message() {
    let (node, a, b) = setup().await;
    let mut bad = malformed_timings();
    bad.push(Value::Null);
    for (i, timing) in bad.iter().enumerate() {
        let (status, body) = a
            .post(&a.request_msg(&format!("bad-{i}"), json!("bad"), Some(timing.clone())))
            .await;
        assert_stick_error(status, &body, &a.id, "INVALID_MESSAGE");
    }
    let (before, _) = up_to_marker(&a, &b, None).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(timing_count(&node, "timestick", "held").await, 0.0);
}
