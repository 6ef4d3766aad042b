//! `~timing` (CONTRACT §7, §6) on Sink outbox events: the `~timing` of
//! `POST /api/v1/sink/clients/<id>/events`, seen by a development-mode device over
//! plaintext TCP. A hold answers 202 with `deliverAt` and the event enters the outbox (and
//! is PUBLISHed) when due; a hold beyond ten minutes or a malformed decorator is 400
//! `BAD_REQUEST`, an `expires_time` already past is 422 `EXPIRED`; an event that expires
//! while held, or while it waits in the outbox for the device, is dropped and counted; a
//! stale one is delivered and counted. The Sink wire format has no place for the
//! decorator, so pass-through here means: accepted, delivered with its data unchanged.

mod timing_common;

use std::collections::HashMap;

use murmur_shared::sink::Event;
use murmur_tests::Node;
use serde_json::{json, Value};
use timing_common::{
    assert_api_error, assert_delay, assert_deliver_at, assert_due, canonical, data_text, dev_node,
    due_for, due_instants, malformed_timings, minute_forms, now_ms, outbox_depth, rand_u32,
    second_forms, sink_event, sink_queue, sink_queue_raw, timing_count, uniq, wait_clock_past,
    wait_scheduled, wait_timing_count, wait_until, Device, DELAY_MS, SOON,
};
use tokio::time::Instant;

/// A development node and a connected device.
async fn setup() -> (Node, Device) {
    let node = dev_node().await;
    let device = Device::connect(node.sink_addr(), rand_u32()).await;
    (node, device)
}

/// Queues a plain marker event and reads (and ACKs) PUBLISHes up to it, then a PING/PONG
/// barrier so every ACK is applied; returns the events before the marker.
async fn up_to_marker(node: &Node, d: &mut Device) -> Vec<Event> {
    let marker = uniq("marker-");
    sink_queue(node, &d.client, sink_event(&marker, &marker, None)).await;
    let mut before = Vec::new();
    loop {
        let e = d.publish(SOON).await;
        if data_text(&e) == marker {
            // Barrier: the device's ACKs are applied (their entries left the outbox)
            // before the PONG to a later PING.
            d.ping().await;
            return before;
        }
        before.push(e);
    }
}

#[actix_rt::test]
async fn a_held_event_is_published_to_the_device_after_its_delay() {
    let (node, mut d) = setup().await;
    let sent = Instant::now();
    let before = now_ms();
    let body = sink_queue(
        &node,
        &d.client,
        sink_event("k", "held", Some(json!({"delay_milli": DELAY_MS}))),
    )
    .await;
    let after = now_ms();
    assert_deliver_at(
        "Sink event",
        &body["deliverAt"],
        before + DELAY_MS,
        after + DELAY_MS,
    );
    assert!(
        body["offset"].is_u64(),
        "the offset is assigned at once: {body}"
    );
    let e = d.publish(SOON).await;
    assert_delay("held Sink event", DELAY_MS, sent.elapsed());
    assert_eq!(data_text(&e), "held");
    assert_eq!(e.key, b"k".to_vec());
    assert_eq!(e.offset, body["offset"].as_u64().unwrap());
    wait_timing_count(&node, "sink", "held", 1.0).await;
    wait_timing_count(&node, "sink", "released", 1.0).await;
    assert!(
        up_to_marker(&node, &mut d).await.is_empty(),
        "published once"
    );
    assert_eq!(
        outbox_depth(&node, &d.client).await,
        0,
        "ACKed events leave the outbox"
    );
}

#[actix_rt::test]
async fn wait_until_time_in_every_accepted_form_is_honoured() {
    let (node, mut d) = setup().await;
    let forms = second_forms();
    let round = due_instants();
    let mut due_of = HashMap::new();
    for form in &forms {
        let due = due_for(form, round);
        let body = sink_queue(
            &node,
            &d.client,
            sink_event(form.name, form.name, Some(wait_until(form, due))),
        )
        .await;
        assert_deliver_at(form.name, &body["deliverAt"], due, due);
        due_of.insert(form.name.to_string(), due);
    }
    assert!(
        now_ms() < round.0,
        "all were queued before the first was due"
    );
    for _ in &forms {
        let e = d.publish(SOON).await;
        let arrived = now_ms();
        let name = data_text(&e);
        let due = due_of
            .remove(&name)
            .unwrap_or_else(|| panic!("unexpected or duplicate event {name:?}"));
        assert_due(&name, due, arrived);
    }
    let minute = (now_ms() / 60_000 + 3) * 60_000;
    for form in minute_forms() {
        let body = sink_queue(
            &node,
            &d.client,
            sink_event("m", "m", Some(wait_until(&form, minute))),
        )
        .await;
        assert_deliver_at(form.name, &body["deliverAt"], minute, minute);
    }
}

#[actix_rt::test]
async fn with_both_delay_and_wait_until_the_later_wins() {
    let (node, mut d) = setup().await;
    let form = second_forms()[9];
    let sent = Instant::now();
    let before = now_ms();
    let timing = json!({"delay_milli": DELAY_MS, "wait_until_time": form.write(before + 100)});
    let body = sink_queue(
        &node,
        &d.client,
        sink_event("a", "delay wins", Some(timing)),
    )
    .await;
    assert_deliver_at(
        "delay wins",
        &body["deliverAt"],
        before + DELAY_MS,
        now_ms() + DELAY_MS,
    );
    assert_eq!(data_text(&d.publish(SOON).await), "delay wins");
    assert_delay("delay wins", DELAY_MS, sent.elapsed());

    let due = now_ms() + DELAY_MS;
    let timing = json!({"delay_milli": 100, "wait_until_time": form.write(due)});
    let body = sink_queue(&node, &d.client, sink_event("b", "wait wins", Some(timing))).await;
    assert_deliver_at("wait wins", &body["deliverAt"], due, due);
    assert_eq!(data_text(&d.publish(SOON).await), "wait wins");
    assert_due("wait wins", due, now_ms());
}

#[actix_rt::test]
async fn holds_beyond_ten_minutes_are_bad_requests() {
    let (node, mut d) = setup().await;
    let form = second_forms()[0];
    for timing in [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": form.write(now_ms() + 605_000)}),
    ] {
        let (status, body) =
            sink_queue_raw(&node, &d.client, sink_event("k", "too long", Some(timing))).await;
        assert_api_error(status, &body, 400, "BAD_REQUEST");
    }
    // The backend API counts its refusals under protocol "api".
    wait_timing_count(&node, "api", "rejected", 2.0).await;
    sink_queue(
        &node,
        &d.client,
        sink_event("k", "ten", Some(json!({"delay_milli": 600_000}))),
    )
    .await;
    wait_scheduled(&node, 1.0, SOON).await;
    assert!(up_to_marker(&node, &mut d).await.is_empty());
}

#[actix_rt::test]
async fn expired_on_arrival_is_422_expired() {
    let (node, mut d) = setup().await;
    for timing in [
        json!({"expires_time": canonical(now_ms() - 1000)}),
        json!({"expires_time": "2019-01-25 18:25Z", "delay_milli": 10}),
    ] {
        let (status, body) =
            sink_queue_raw(&node, &d.client, sink_event("k", "late", Some(timing))).await;
        assert_api_error(status, &body, 422, "EXPIRED");
    }
    wait_timing_count(&node, "api", "rejected", 2.0).await;
    assert!(up_to_marker(&node, &mut d).await.is_empty());
}

#[actix_rt::test]
async fn an_event_that_expires_while_held_is_dropped_and_counted() {
    let (node, mut d) = setup().await;
    let timing = json!({"delay_milli": DELAY_MS, "expires_time": canonical(now_ms() + 500)});
    sink_queue(&node, &d.client, sink_event("k", "doomed", Some(timing))).await;
    wait_timing_count(&node, "sink", "expired", 1.0).await;
    wait_scheduled(&node, 0.0, SOON).await;
    assert_eq!(timing_count(&node, "sink", "released").await, 0.0);
    assert!(
        up_to_marker(&node, &mut d).await.is_empty(),
        "never published"
    );
    assert_eq!(outbox_depth(&node, &d.client).await, 0);
}

#[actix_rt::test]
async fn an_event_that_expires_in_the_outbox_before_the_device_connects_is_dropped() {
    let node = dev_node().await;
    let instance = rand_u32();
    let client = format!("dev-{instance}");
    let expires = now_ms() + 300;
    sink_queue(
        &node,
        &client,
        sink_event(
            "k",
            "expiring",
            Some(json!({"expires_time": canonical(expires)})),
        ),
    )
    .await;
    sink_queue(
        &node,
        &client,
        sink_event(
            "k",
            "kept",
            Some(json!({"expires_time": canonical(now_ms() + 60_000)})),
        ),
    )
    .await;
    assert_eq!(outbox_depth(&node, &client).await, 2);
    wait_clock_past(expires).await;

    let mut d = Device::connect(node.sink_addr(), instance).await;
    assert_eq!(d.client, client);
    let e = d.publish(SOON).await;
    assert_eq!(data_text(&e), "kept", "the expired event is skipped");
    d.ping().await;
    wait_timing_count(&node, "sink", "expired", 1.0).await;
    murmur_tests::eventually("the outbox to empty", SOON, || async {
        (outbox_depth(&node, &client).await == 0).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn stale_events_are_delivered_and_counted() {
    let (node, mut d) = setup().await;
    sink_queue(
        &node,
        &d.client,
        sink_event(
            "k",
            "stale",
            Some(json!({"stale_time": "2019-01-24 18:25Z"})),
        ),
    )
    .await;
    assert_eq!(data_text(&d.publish(SOON).await), "stale");
    wait_timing_count(&node, "sink", "stale", 1.0).await;
}

#[actix_rt::test]
async fn events_with_out_time_in_time_and_unknown_fields_are_accepted_and_delivered_unchanged() {
    let (node, mut d) = setup().await;
    let timing = json!({
        "out_time": "2019-01-23 18:03:27.123Z",
        "in_time": "2019-01-23T18:03:27Z",
        "x-origin": {"site": 4},
    });
    let body = sink_queue(
        &node,
        &d.client,
        sink_event("key-1", "payload \u{1F600}", Some(timing)),
    )
    .await;
    assert!(body.get("deliverAt").is_none(), "not a hold: {body}");
    let e = d.publish(SOON).await;
    assert_eq!(e.key, b"key-1".to_vec());
    assert_eq!(data_text(&e), "payload \u{1F600}");
    assert_eq!(e.event_type_id, 7);
}

#[actix_rt::test]
async fn malformed_timing_is_a_bad_request() {
    let (node, mut d) = setup().await;
    let bad: Vec<Value> = malformed_timings();
    for timing in &bad {
        let (status, body) = sink_queue_raw(
            &node,
            &d.client,
            sink_event("k", "bad", Some(timing.clone())),
        )
        .await;
        assert_api_error(status, &body, 400, "BAD_REQUEST");
    }
    assert!(up_to_marker(&node, &mut d).await.is_empty());
    assert_eq!(outbox_depth(&node, &d.client).await, 0);
}

#[actix_rt::test]
async fn an_unacknowledged_event_that_expires_before_the_reconnect_is_not_redelivered() {
    let (node, mut d) = setup().await;
    let expires = now_ms() + 800;
    sink_queue(
        &node,
        &d.client,
        sink_event(
            "k",
            "unacked",
            Some(json!({"expires_time": canonical(expires)})),
        ),
    )
    .await;
    let (_, e) = d.publish_unacked(SOON).await;
    assert_eq!(data_text(&e), "unacked");
    let (addr, instance, server, client) =
        (node.sink_addr(), d.instance, d.server, d.client.clone());
    d.close().await;
    assert_eq!(
        outbox_depth(&node, &client).await,
        1,
        "unacknowledged: kept for redelivery"
    );
    wait_clock_past(expires).await;

    let mut again = Device::reconnect(addr, instance, server).await;
    // Nothing is redelivered: the first frame after a PING is its PONG.
    again.ping().await;
    wait_timing_count(&node, "sink", "expired", 1.0).await;
    assert!(up_to_marker(&node, &mut again).await.is_empty());
    assert_eq!(
        outbox_depth(&node, &client).await,
        0,
        "dropped from the outbox"
    );
}
