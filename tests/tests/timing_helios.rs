//! `~timing` (CONTRACT §7) on Helios-Starling: the top-level `~timing` of a request.
//! `broker:publish` holds a publication (its answer carries `deliverAt`), an RPC request
//! is held on its way to the provider; a hold beyond ten minutes is `VALIDATION_ERROR`,
//! an `expires_time` already past is `EXPIRED`, a malformed decorator is
//! `INVALID_MESSAGE_FORMAT`; a message that expires while held or while buffered for
//! recovery is dropped and counted; a stale one is delivered and counted; the decorator
//! reaches subscribers and providers unchanged.

mod timing_common;

use std::collections::HashMap;

use murmur_tests::helios::kind;
use murmur_tests::{eventually, metric_value, metrics, Node, Starling};
use serde_json::{json, Value};
use timing_common::{
    assert_delay, assert_deliver_at, assert_due, canonical, due_for, due_instants, helios_err,
    helios_ok, helios_publish, helios_request, malformed_timings, minute_forms, notification_on,
    now_ms, scheduled, second_forms, subscribe, timing_count, uniq, up_to_marker, wait_clock_past,
    wait_scheduled, wait_timing_count, wait_until, DELAY_MS, SOON,
};
use tokio::time::Instant;

/// A node, a subscriber of a fresh channel and a publisher.
async fn setup() -> (Node, String, Starling, Starling) {
    let node = Node::start().await;
    let channel = uniq("timing-");
    let mut sub = Starling::connect(&node, &uniq("sub-")).await;
    subscribe(&mut sub, &channel).await;
    let publisher = Starling::connect(&node, &uniq("pub-")).await;
    (node, channel, sub, publisher)
}

#[actix_rt::test]
async fn delay_milli_holds_a_publication_and_the_answer_says_when() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let timing = json!({ "delay_milli": DELAY_MS });

    let sent = Instant::now();
    let before = now_ms();
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!({"n": 1}),
        Some(timing.clone()),
    )
    .await;
    let after = now_ms();
    let data = helios_ok(&resp);
    assert_eq!(data["channel"], channel.as_str(), "{data}");
    assert!(data["messageId"].is_string(), "{data}");
    assert_deliver_at(
        "broker:publish",
        &data["deliverAt"],
        before + DELAY_MS,
        after + DELAY_MS,
    );

    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_delay("held publication", DELAY_MS, sent.elapsed());
    assert_eq!(n["notification"]["data"], json!({"n": 1}), "{n}");
    assert_eq!(
        n["~timing"], timing,
        "the decorator reaches the subscriber: {n}"
    );

    wait_timing_count(&node, "helios", "held", 1.0).await;
    wait_timing_count(&node, "helios", "released", 1.0).await;
    assert!(
        up_to_marker(&node, &mut sub, &channel).await.is_empty(),
        "delivered exactly once"
    );
}

#[actix_rt::test]
async fn wait_until_time_in_every_accepted_form_is_honoured() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let forms = second_forms();
    let round = due_instants();
    let mut due_of = HashMap::new();
    for form in &forms {
        let due = due_for(form, round);
        let timing = wait_until(form, due);
        let resp = helios_publish(
            &mut publisher,
            &channel,
            json!({"form": form.name}),
            Some(timing.clone()),
        )
        .await;
        let data = helios_ok(&resp);
        // Sub-millisecond digits are dropped (the broker keeps milliseconds).
        assert_deliver_at(form.name, &data["deliverAt"], due, due);
        due_of.insert(form.name.to_string(), (due, timing));
    }
    assert!(now_ms() < round.0, "all were sent before the first was due");

    for _ in &forms {
        let n = notification_on(&mut sub, &channel, SOON).await;
        let arrived = now_ms();
        let name = n["notification"]["data"]["form"]
            .as_str()
            .unwrap()
            .to_string();
        let (due, timing) = due_of
            .remove(&name)
            .unwrap_or_else(|| panic!("unexpected or duplicate notification: {n}"));
        assert_due(&name, due, arrived);
        assert_eq!(n["~timing"], timing, "{n}");
    }
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn minute_precision_and_the_seeds_own_examples_parse() {
    let (node, channel, mut sub, mut publisher) = setup().await;

    // Minute precision, 2 to 3 minutes ahead: held until that minute.
    let minute = (now_ms() / 60_000 + 3) * 60_000;
    for form in minute_forms() {
        let resp = helios_publish(
            &mut publisher,
            &channel,
            json!(form.name),
            Some(wait_until(&form, minute)),
        )
        .await;
        let data = helios_ok(&resp);
        assert_deliver_at(form.name, &data["deliverAt"], minute, minute);
    }
    // A minute already begun (past): not held.
    let past_minute = (now_ms() / 60_000 - 1) * 60_000;
    let form = minute_forms()[0];
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!("past"),
        Some(wait_until(&form, past_minute)),
    )
    .await;
    let data = helios_ok(&resp);
    assert!(
        data.get("deliverAt").is_none(),
        "a past wait_until_time is not a hold: {data}"
    );
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["notification"]["data"], "past", "{n}");

    // The seed's example decorator: its expires_time (2019) is long past → EXPIRED.
    let seed = json!({
        "in_time": "2019-01-23 18:03:27.123Z",
        "out_time": "2019-01-23 18:03:27.123Z",
        "stale_time": "2019-01-24 18:25Z",
        "expires_time": "2019-01-25 18:25Z",
        "delay_milli": 12345,
        "wait_until_time": "2019-01-24 00:00Z"
    });
    let (id, msg) = helios_request(
        "broker:publish",
        json!({"channel": channel, "data": "seed"}),
        Some(seed),
    );
    publisher.ws().send_json(&msg).await;
    let resp = publisher.wait_response(&id, SOON).await;
    helios_err(&resp, &id, "EXPIRED");

    // Without the expiry and the delay: delivered at once, stale (2019), unchanged.
    let seed = json!({
        "in_time": "2019-01-23 18:03:27.123Z",
        "out_time": "2019-01-23 18:03:27.123Z",
        "stale_time": "2019-01-24 18:25Z",
        "wait_until_time": "2019-01-24 00:00Z"
    });
    let resp = helios_publish(&mut publisher, &channel, json!("seed"), Some(seed.clone())).await;
    assert!(helios_ok(&resp).get("deliverAt").is_none(), "{resp}");
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["notification"]["data"], "seed", "{n}");
    assert_eq!(n["~timing"], seed, "{n}");

    // ACA-Py's parsing vectors (ORIGINS), all in 2019: each parses, so each is stale.
    let vectors = [
        "2019-05-17 20:51:19.519437Z",
        "2019-05-17 20:51:19.519437001Z",
        "2019-05-17 20:51:19Z",
        "2019-05-17 20:51Z",
        "2019-11-15T22:37:14",
        "2019-05-17 20:51:19.519437+01:00",
        "2019-05-17T20:51:19.519437+0000",
    ];
    for v in vectors {
        let resp = helios_publish(
            &mut publisher,
            &channel,
            json!(v),
            Some(json!({"stale_time": v})),
        )
        .await;
        helios_ok(&resp);
        let n = notification_on(&mut sub, &channel, SOON).await;
        assert_eq!(n["notification"]["data"], v, "{n}");
    }
    wait_timing_count(&node, "helios", "stale", 1.0 + vectors.len() as f64).await;
    // ACA-Py's BAD_DATE is refused.
    let (id, msg) = helios_request(
        "broker:publish",
        json!({"channel": channel, "data": 0}),
        Some(json!({"stale_time": "BAD_DATE"})),
    );
    publisher.ws().send_json(&msg).await;
    let resp = publisher.wait_response(&id, SOON).await;
    helios_err(&resp, &id, "INVALID_MESSAGE_FORMAT");
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn with_both_delay_and_wait_until_the_later_wins() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let form = second_forms()[0];

    // The delay is later.
    let sent = Instant::now();
    let before = now_ms();
    let timing = json!({"delay_milli": DELAY_MS, "wait_until_time": form.write(before + 300)});
    let resp = helios_publish(&mut publisher, &channel, json!("delay wins"), Some(timing)).await;
    let after = now_ms();
    assert_deliver_at(
        "delay wins",
        &helios_ok(&resp)["deliverAt"],
        before + DELAY_MS,
        after + DELAY_MS,
    );
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["notification"]["data"], "delay wins");
    assert_delay("delay wins", DELAY_MS, sent.elapsed());

    // The wait is later.
    let due = now_ms() + DELAY_MS;
    let timing = json!({"delay_milli": 300, "wait_until_time": form.write(due)});
    let resp = helios_publish(&mut publisher, &channel, json!("wait wins"), Some(timing)).await;
    assert_deliver_at("wait wins", &helios_ok(&resp)["deliverAt"], due, due);
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_due("wait wins", due, now_ms());
    assert_eq!(n["notification"]["data"], "wait wins");
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn holds_beyond_ten_minutes_are_validation_errors_and_ten_minutes_is_allowed() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let form = second_forms()[0];
    let refused = [
        json!({"delay_milli": 600_001}),
        json!({"wait_until_time": form.write(now_ms() + 600_000 + 5_000)}),
        json!({"delay_milli": 1000, "wait_until_time": form.write(now_ms() + 660_000)}),
        json!({"delay_milli": 700_000, "wait_until_time": form.write(now_ms() + 1000)}),
    ];
    for timing in &refused {
        let (id, msg) = helios_request(
            "broker:publish",
            json!({"channel": channel, "data": "too long"}),
            Some(timing.clone()),
        );
        publisher.ws().send_json(&msg).await;
        let resp = publisher.wait_response(&id, SOON).await;
        helios_err(&resp, &id, "VALIDATION_ERROR");
    }
    wait_timing_count(&node, "helios", "rejected", refused.len() as f64).await;

    // Exactly ten minutes, and just under: held.
    let before = now_ms();
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!("10 min"),
        Some(json!({"delay_milli": 600_000})),
    )
    .await;
    let after = now_ms();
    assert_deliver_at(
        "delay 600000",
        &helios_ok(&resp)["deliverAt"],
        before + 600_000,
        after + 600_000,
    );
    let due = now_ms() + 590_000;
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!("9m50s"),
        Some(json!({"wait_until_time": form.write(due)})),
    )
    .await;
    assert_deliver_at("wait 9m50s", &helios_ok(&resp)["deliverAt"], due, due);
    wait_timing_count(&node, "helios", "held", 2.0).await;
    wait_scheduled(&node, 2.0, SOON).await;

    // Nothing was delivered: neither the refused nor the held ones.
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn expired_on_arrival_is_refused_with_expired() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let form = second_forms()[1];
    let refused = [
        json!({"expires_time": canonical(now_ms() - 1000)}),
        json!({"expires_time": form.write(now_ms() / 1000 * 1000 - 1000), "delay_milli": 1000}),
        json!({"expires_time": "2019-01-25 18:25Z", "stale_time": "2030-01-01T00:00:00Z"}),
    ];
    for timing in &refused {
        let (id, msg) = helios_request(
            "broker:publish",
            json!({"channel": channel, "data": "late"}),
            Some(timing.clone()),
        );
        publisher.ws().send_json(&msg).await;
        let resp = publisher.wait_response(&id, SOON).await;
        helios_err(&resp, &id, "EXPIRED");
    }
    wait_timing_count(&node, "helios", "rejected", refused.len() as f64).await;
    // An expiry ahead is fine.
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!("in time"),
        Some(json!({"expires_time": canonical(now_ms() + 60_000)})),
    )
    .await;
    helios_ok(&resp);
    let before_marker = up_to_marker(&node, &mut sub, &channel).await;
    assert_eq!(
        before_marker.len(),
        1,
        "only the unexpired one: {before_marker:?}"
    );
    assert_eq!(before_marker[0]["notification"]["data"], "in time");
}

#[actix_rt::test]
async fn a_publication_that_expires_while_held_is_dropped_and_counted() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let expires = now_ms() + 500;
    let timing = json!({"delay_milli": DELAY_MS, "expires_time": canonical(expires)});
    let resp = helios_publish(&mut publisher, &channel, json!("doomed"), Some(timing)).await;
    assert!(
        helios_ok(&resp)["deliverAt"].is_string(),
        "accepted and held: {resp}"
    );
    // One that expires after it is due is delivered.
    let timing = json!({"delay_milli": 300, "expires_time": canonical(now_ms() + 60_000)});
    let resp = helios_publish(&mut publisher, &channel, json!("survivor"), Some(timing)).await;
    helios_ok(&resp);

    // The scheduler reaches the doomed one when it is due (1.5 s) and drops it.
    wait_timing_count(&node, "helios", "expired", 1.0).await;
    wait_timing_count(&node, "helios", "released", 1.0).await;
    wait_scheduled(&node, 0.0, SOON).await;
    let got = up_to_marker(&node, &mut sub, &channel).await;
    let data: Vec<&Value> = got.iter().map(|n| &n["notification"]["data"]).collect();
    assert_eq!(data, vec!["survivor"], "the expired one is never delivered");
}

#[actix_rt::test]
async fn stale_messages_are_delivered_and_counted_per_delivery() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let mut sub2 = Starling::connect(&node, &uniq("sub-")).await;
    subscribe(&mut sub2, &channel).await;

    let stale = json!({"stale_time": canonical(now_ms() - 1000)});
    helios_ok(
        &helios_publish(
            &mut publisher,
            &channel,
            json!("stale"),
            Some(stale.clone()),
        )
        .await,
    );
    for s in [&mut sub, &mut sub2] {
        let n = notification_on(s, &channel, SOON).await;
        assert_eq!(n["notification"]["data"], "stale");
        assert_eq!(n["~timing"], stale);
    }
    wait_timing_count(&node, "helios", "stale", 2.0).await;

    // Not stale yet: delivered, not counted.
    let fresh = json!({"stale_time": canonical(now_ms() + 60_000)});
    helios_ok(&helios_publish(&mut publisher, &channel, json!("fresh"), Some(fresh)).await);
    for s in [&mut sub, &mut sub2] {
        let n = notification_on(s, &channel, SOON).await;
        assert_eq!(n["notification"]["data"], "fresh");
    }

    // Goes stale while held: counted at delivery.
    let held = json!({"delay_milli": DELAY_MS, "stale_time": canonical(now_ms() + 300)});
    helios_ok(&helios_publish(&mut publisher, &channel, json!("went stale"), Some(held)).await);
    for s in [&mut sub, &mut sub2] {
        let n = notification_on(s, &channel, SOON).await;
        assert_eq!(n["notification"]["data"], "went stale");
    }
    wait_timing_count(&node, "helios", "stale", 4.0).await;
    let text = metrics(&node).await;
    assert_eq!(
        metric_value(
            &text,
            "murmur_deliveries_total",
            &[("protocol", "helios"), ("outcome", "stale")]
        ),
        Some(4.0),
        "stale deliveries are also a delivery outcome"
    );
}

#[actix_rt::test]
async fn out_time_in_time_and_unknown_fields_pass_through_unchanged() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let timing = json!({
        "out_time": "2019-01-23 18:03:27.123Z",
        "in_time": "2024-02-29T23:59:59.999+01:00",
        "x-trace": {"hops": [1, "two", null], "deep": {"k": 1.5}},
        "note": "unchanged"
    });
    let resp = helios_publish(
        &mut publisher,
        &channel,
        json!("as is"),
        Some(timing.clone()),
    )
    .await;
    assert!(
        helios_ok(&resp).get("deliverAt").is_none(),
        "not a hold: {resp}"
    );
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["~timing"], timing, "{n}");

    // Held too: the whole decorator, delay included, is passed on.
    let mut held = timing.clone();
    held["delay_milli"] = json!(300);
    helios_ok(
        &helios_publish(
            &mut publisher,
            &channel,
            json!("held as is"),
            Some(held.clone()),
        )
        .await,
    );
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert_eq!(n["notification"]["data"], "held as is");
    assert_eq!(n["~timing"], held, "{n}");

    // No decorator in, none out.
    helios_ok(&helios_publish(&mut publisher, &channel, json!("plain"), None).await);
    let n = notification_on(&mut sub, &channel, SOON).await;
    assert!(n.get("~timing").is_none(), "{n}");
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
}

#[actix_rt::test]
async fn malformed_timing_is_invalid_message_format_and_nothing_is_published() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    let bad = malformed_timings();
    for timing in &bad {
        let (id, msg) = helios_request(
            "broker:publish",
            json!({"channel": channel, "data": "bad"}),
            Some(timing.clone()),
        );
        publisher.ws().send_json(&msg).await;
        let resp = publisher.wait_response(&id, SOON).await;
        helios_err(&resp, &id, "INVALID_MESSAGE_FORMAT");
    }
    // An explicit null is malformed too (CONTRACT §4: not valid protocol JSON).
    let (id, msg) = helios_request(
        "broker:publish",
        json!({"channel": channel, "data": "bad"}),
        Some(Value::Null),
    );
    publisher.ws().send_json(&msg).await;
    helios_err(
        &publisher.wait_response(&id, SOON).await,
        &id,
        "INVALID_MESSAGE_FORMAT",
    );
    // The connection stays open and served.
    publisher.call_ok("system:ping", json!({})).await;
    assert!(up_to_marker(&node, &mut sub, &channel).await.is_empty());
    assert_eq!(timing_count(&node, "helios", "held").await, 0.0);
}

#[actix_rt::test]
async fn a_held_rpc_request_reaches_the_provider_after_its_delay() {
    let node = Node::start().await;
    let ns = uniq("svc");
    let method = format!("{ns}:echo");
    let mut provider = Starling::connect(&node, &uniq("prov-")).await;
    provider
        .call_ok("broker:provide", json!({"namespace": ns}))
        .await;
    let mut caller = Starling::connect(&node, &uniq("caller-")).await;

    let timing = json!({"delay_milli": DELAY_MS, "out_time": canonical(now_ms())});
    let (id, msg) = helios_request(&method, json!({"q": 1}), Some(timing.clone()));
    let sent = Instant::now();
    caller.ws().send_json(&msg).await;
    let req = provider.next_request().await;
    assert_delay("held RPC request", DELAY_MS, sent.elapsed());
    assert_eq!(req["method"], method.as_str(), "{req}");
    assert_eq!(req["payload"], json!({"q": 1}), "{req}");
    assert_eq!(
        req["~timing"], timing,
        "the provider sees the decorator: {req}"
    );
    provider
        .respond_ok(req["requestId"].as_str().unwrap(), json!({"a": 1}))
        .await;
    let resp = caller.wait_response(&id, SOON).await;
    assert_eq!(helios_ok(&resp), json!({"a": 1}));
    wait_timing_count(&node, "helios", "held", 1.0).await;
    wait_timing_count(&node, "helios", "released", 1.0).await;

    // Expires while held: the provider never sees it; the caller times out.
    let timing = json!({"delay_milli": DELAY_MS, "expires_time": canonical(now_ms() + 500)});
    let (id, mut msg) = helios_request(&method, json!({"q": 2}), Some(timing));
    msg["timeoutMs"] = json!(3000);
    caller.ws().send_json(&msg).await;
    let resp = caller.wait_response(&id, SOON).await;
    helios_err(&resp, &id, "REQUEST_TIMEOUT");
    wait_timing_count(&node, "helios", "expired", 1.0).await;
    // The job was dropped (counted above) before the timeout answered; the provider got
    // nothing: the next request it sees is a fresh one.
    let (id, msg) = helios_request(&method, json!({"q": 3}), None);
    caller.ws().send_json(&msg).await;
    let req = provider.next_request().await;
    assert_eq!(
        req["payload"],
        json!({"q": 3}),
        "the expired request was never delivered: {req}"
    );
    provider
        .respond_ok(req["requestId"].as_str().unwrap(), json!(3))
        .await;
    caller.wait_response(&id, SOON).await;
}

#[actix_rt::test]
async fn a_message_that_expires_in_the_recovery_buffer_is_not_replayed() {
    let node = Node::start().await;
    let channel = uniq("away-");
    let mut s = Starling::connect(&node, &uniq("away-")).await;
    subscribe(&mut s, &channel).await;
    let token = s.call_ok("starling:getToken", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    s.close().await;
    eventually("the Starling to be detached", SOON, || async {
        let text = metrics(&node).await;
        (metric_value(&text, "murmur_connections", &[("protocol", "helios")]) == Some(0.0))
            .then_some(())
    })
    .await;

    let expires = now_ms() + 300;
    timing_common::api_publish(
        &node,
        &channel,
        json!("expiring"),
        Some(json!({"expires_time": canonical(expires)})),
    )
    .await;
    timing_common::api_publish(
        &node,
        &channel,
        json!("kept"),
        Some(json!({"out_time": canonical(now_ms())})),
    )
    .await;
    timing_common::api_publish(&node, &channel, json!("stale"), Some(json!({"stale_time": canonical(now_ms() - 1000), "expires_time": canonical(now_ms() + 60_000)}))).await;
    wait_clock_past(expires).await;

    let mut back = Starling::connect_url(&node.ws_url(&format!("/starling?recover={token}"))).await;
    let mut got = Vec::new();
    loop {
        let n = back.next_notification(SOON).await;
        if n["notification"]["topic"] == "connection:recovered" {
            break;
        }
        assert_eq!(n["notification"]["topic"], channel.as_str(), "{n}");
        got.push(n["notification"]["data"].clone());
    }
    assert_eq!(
        got,
        vec![json!("kept"), json!("stale")],
        "the expired one is dropped"
    );
    wait_timing_count(&node, "helios", "expired", 1.0).await;
    wait_timing_count(&node, "helios", "stale", 1.0).await;
}

#[actix_rt::test]
async fn the_scheduled_gauge_is_the_held_queue_depth() {
    let (node, channel, mut sub, mut publisher) = setup().await;
    assert_eq!(scheduled(&node).await, 0.0);
    for i in 0..3 {
        helios_ok(
            &helios_publish(
                &mut publisher,
                &channel,
                json!(i),
                Some(json!({"delay_milli": 600_000})),
            )
            .await,
        );
    }
    for i in 3..5 {
        helios_ok(
            &helios_publish(
                &mut publisher,
                &channel,
                json!(i),
                Some(json!({"delay_milli": DELAY_MS})),
            )
            .await,
        );
    }
    wait_scheduled(&node, 5.0, SOON).await;
    for _ in 3..5 {
        let n = notification_on(&mut sub, &channel, SOON).await;
        assert!(kind(&n) == "notification", "{n}");
    }
    wait_scheduled(&node, 3.0, SOON).await;
    wait_timing_count(&node, "helios", "held", 5.0).await;
    wait_timing_count(&node, "helios", "released", 2.0).await;
    let text = metrics(&node).await;
    assert!(
        text.contains("# TYPE murmur_scheduled_messages gauge"),
        "murmur_scheduled_messages is a gauge"
    );
}

/// CONTRACT §7 ("`out_time`, `in_time` and unknown fields are passed through unchanged",
/// on every JSON message): a provider's response carries a `~timing` (RFC 0032's `in_time`
/// is defined for exactly this: when the request that elicited the response was
/// received); the caller must get it unchanged, as a TimeStick requester does.
#[actix_rt::test]
async fn a_providers_response_carries_its_timing_back_to_the_caller() {
    let node = Node::start().await;
    let ns = uniq("svc");
    let method = format!("{ns}:ask");
    let mut provider = Starling::connect(&node, &uniq("prov-")).await;
    provider
        .call_ok("broker:provide", json!({"namespace": ns}))
        .await;
    let mut caller = Starling::connect(&node, &uniq("caller-")).await;

    let (id, msg) = helios_request(
        &method,
        json!("question"),
        Some(json!({"out_time": canonical(now_ms())})),
    );
    caller.ws().send_json(&msg).await;
    let req = provider.next_request().await;
    let received = now_ms();
    let timing = json!({
        "in_time": canonical(received),
        "out_time": canonical(now_ms()),
        "x-served-by": "provider",
    });
    let mut answer =
        murmur_tests::helios::response_ok(req["requestId"].as_str().unwrap(), json!("answer"));
    answer["~timing"] = timing.clone();
    provider.ws().send_json(&answer).await;

    let resp = caller.wait_response(&id, SOON).await;
    assert_eq!(helios_ok(&resp), json!("answer"));
    assert_eq!(
        resp.get("~timing"),
        Some(&timing),
        "the provider's ~timing must reach the caller unchanged: {resp}"
    );
}
