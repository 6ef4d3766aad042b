//! `~timing` (CONTRACT §7, §8) on `POST /api/v1/publish {channel, data, ~timing?}`, seen by
//! a Helios subscriber of the channel: a hold answers 200 with `deliverAt` and delivers
//! then; a hold beyond ten minutes or a malformed decorator is 400 `BAD_REQUEST`; an
//! `expires_time` already past is 422 `EXPIRED`; expiring while held drops the message
//! (counted under `protocol="api"`); stale deliveries are counted by the delivering
//! protocol; the decorator reaches the subscriber unchanged.

mod timing_common;

use std::collections::HashMap;

use murmur_tests::{Node, Starling};
use serde_json::{json, Value};
use timing_common::{
    api_publish, api_publish_raw, assert_api_error, assert_delay, assert_deliver_at, assert_due,
    canonical, due_for, due_instants, malformed_timings, minute_forms, notification_on, now_ms,
    second_forms, subscribe, timing_count, uniq, up_to_marker, wait_scheduled, wait_timing_count,
    wait_until, DELAY_MS, SOON,
};
use tokio::time::Instant;

/// A node and a Helios subscriber of a fresh channel.
async fn setup() -> (Node, String, Starling) {
    let node = Node::start().await;
    let channel = uniq("api-timing-");
    let mut sub = Starling::connect(&node, &uniq("sub-")).await;
    subscribe(&mut sub, &channel).await;
    (node, channel, sub)
}

#[actix_rt::test]
async fn delay_milli_holds_an_api_publication() {
    let (node, channel, mut sub) = setup().await;
    let timing = json!({"delay_milli": DELAY_MS});
    let sent = Instant::now();
    let before = now_ms();
    let body = api_publish(&node, &channel, json!({"n": 1}), Some(timing.clone())).await;
    let after = now_ms();
    assert_eq!(body["channel"], channel.as_str(), "{body}");
    assert!(body["messageId"].is_string(), "{body}");
    assert_deliver_at(
        "API publish",
        &body["deliverAt"],
        before + DELAY_MS,
        after + DELAY_MS,
    );

    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_delay("held API publication", DELAY_MS, sent.elapsed());
    assert_eq!(n["notification"]["data"], json!({"n": 1}));
    assert_eq!(n["~timing"], timing, "{n}");
    wait_timing_count(&node, "api", "held", 1.0).await;
    wait_timing_count(&node, "api", "released", 1.0).await;
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn wait_until_time_in_every_accepted_form_is_honoured() {
    let (node, channel, mut sub) = setup().await;
    let forms = second_forms();
    let round = due_instants();
    let mut due_of = HashMap::new();
    for form in &forms {
        let due = due_for(form, round);
        let body = api_publish(
            &node,
            &channel,
            json!(form.name),
            Some(wait_until(form, due)),
        )
        .await;
        assert_deliver_at(form.name, &body["deliverAt"], due, due);
        due_of.insert(form.name.to_string(), due);
    }
    assert!(now_ms() < round.0, "all were sent before the first was due");
    for _ in &forms {
        let n = notification_on(&mut sub, &channel, SOON).await;
        let arrived = now_ms();
        let name = n["notification"]["data"].as_str().unwrap().to_string();
        let due = due_of
            .remove(&name)
            .unwrap_or_else(|| panic!("unexpected or duplicate: {n}"));
        assert_due(&name, due, arrived);
    }

    // Minute precision: the answer names the minute.
    let minute = (now_ms() / 60_000 + 3) * 60_000;
    for form in minute_forms() {
        let body = api_publish(
            &node,
            &channel,
            json!(form.name),
            Some(wait_until(&form, minute)),
        )
        .await;
        assert_deliver_at(form.name, &body["deliverAt"], minute, minute);
    }
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn with_both_delay_and_wait_until_the_later_wins() {
    let (node, channel, mut sub) = setup().await;
    let form = second_forms()[6];
    let sent = Instant::now();
    let before = now_ms();
    let timing = json!({"delay_milli": DELAY_MS, "wait_until_time": form.write(before + 300)});
    let body = api_publish(&node, &channel, json!("delay wins"), Some(timing)).await;
    let after = now_ms();
    assert_deliver_at(
        "delay wins",
        &body["deliverAt"],
        before + DELAY_MS,
        after + DELAY_MS,
    );
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_delay("delay wins", DELAY_MS, sent.elapsed());
    assert_eq!(n["notification"]["data"], "delay wins");

    let due = now_ms() + DELAY_MS;
    let timing = json!({"delay_milli": 200, "wait_until_time": form.write(due)});
    let body = api_publish(&node, &channel, json!("wait wins"), Some(timing)).await;
    assert_deliver_at("wait wins", &body["deliverAt"], due, due);
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_due("wait wins", due, now_ms());
    assert_eq!(n["notification"]["data"], "wait wins");
}

#[actix_rt::test]
async fn holds_beyond_ten_minutes_are_bad_requests() {
    let (node, channel, mut sub) = setup().await;
    let form = second_forms()[0];
    let refused = [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": form.write(now_ms() + 605_000)}),
        json!({"delay_milli": 10, "wait_until_time": form.write(now_ms() + 3_600_000)}),
    ];
    for timing in &refused {
        let (status, body) =
            api_publish_raw(&node, &channel, json!("too long"), Some(timing.clone())).await;
        assert_api_error(status, &body, 400, "BAD_REQUEST");
    }
    wait_timing_count(&node, "api", "rejected", refused.len() as f64).await;
    let before = now_ms();
    let body = api_publish(
        &node,
        &channel,
        json!("ten"),
        Some(json!({"delay_milli": 600_000})),
    )
    .await;
    assert_deliver_at(
        "600000",
        &body["deliverAt"],
        before + 600_000,
        now_ms() + 600_000,
    );
    wait_scheduled(&node, 1.0, SOON).await;
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn expired_on_arrival_is_422_expired() {
    let (node, channel, mut sub) = setup().await;
    let refused = [
        json!({"expires_time": canonical(now_ms() - 1000)}),
        json!({"expires_time": "2019-01-25 18:25Z", "delay_milli": 100}),
        json!({"expires_time": second_forms()[7].write(now_ms() - 5000)}),
    ];
    for timing in &refused {
        let (status, body) =
            api_publish_raw(&node, &channel, json!("late"), Some(timing.clone())).await;
        assert_api_error(status, &body, 422, "EXPIRED");
    }
    wait_timing_count(&node, "api", "rejected", refused.len() as f64).await;
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn expiring_while_held_is_dropped_and_counted_under_api() {
    let (node, channel, mut sub) = setup().await;
    let timing = json!({"delay_milli": DELAY_MS, "expires_time": canonical(now_ms() + 500)});
    let body = api_publish(&node, &channel, json!("doomed"), Some(timing)).await;
    assert!(body["deliverAt"].is_string(), "{body}");
    wait_timing_count(&node, "api", "expired", 1.0).await;
    wait_scheduled(&node, 0.0, SOON).await;
    assert_eq!(timing_count(&node, "api", "released").await, 0.0);
    assert!(
        up_to_marker(&node, &mut sub, &channel).await.is_empty(),
        "the expired publication is never delivered"
    );
}

#[actix_rt::test]
async fn stale_deliveries_are_counted_by_the_subscribers_protocol() {
    let (node, channel, mut sub) = setup().await;
    let timing = json!({"stale_time": "2019-01-24 18:25Z"});
    api_publish(&node, &channel, json!("stale"), Some(timing.clone())).await;
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["notification"]["data"], "stale");
    assert_eq!(n["~timing"], timing);
    wait_timing_count(&node, "helios", "stale", 1.0).await;
}

#[actix_rt::test]
async fn out_time_in_time_and_unknown_fields_pass_through_unchanged() {
    let (node, channel, mut sub) = setup().await;
    let timing = json!({
        "out_time": "2019-01-23 18:03:27.123Z",
        "in_time": "2019-01-23T18:03:27.123456-07:00",
        "x-vendor": [{"a": true}],
    });
    let body = api_publish(&node, &channel, json!("as is"), Some(timing.clone())).await;
    assert!(body.get("deliverAt").is_none(), "not a hold: {body}");
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["~timing"], timing, "{n}");
}

#[actix_rt::test]
async fn malformed_timing_is_a_bad_request() {
    let (node, channel, mut sub) = setup().await;
    let bad: Vec<Value> = malformed_timings();
    for timing in &bad {
        let (status, body) =
            api_publish_raw(&node, &channel, json!("bad"), Some(timing.clone())).await;
        assert_api_error(status, &body, 400, "BAD_REQUEST");
    }
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
    assert_eq!(timing_count(&node, "api", "held").await, 0.0);
}
