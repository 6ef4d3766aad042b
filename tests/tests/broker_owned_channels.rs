//! Broker-owned channels (CONTRACT §10): the channels the broker itself publishes on —
//! the Sink device feeds `sink/<client id>` and the internal `@…` channels — accept no
//! publication from clients (Helios `broker:publish`, held or not) and cannot be
//! TimeStick targets (a session's requests are publications on its target). Subscribing
//! to a device feed stays allowed, and the backend API (trusted) may still publish there.
//! The rule is `murmur_shared::channel::is_broker_owned`.

mod common;
mod timestick_common;

use common::{api_publish, assert_error_response, call, expect_notification, subscribe};
use murmur_tests::{metric_value, metrics, token, uniq, Node, Starling};
use serde_json::json;
use timestick_common::{assert_start_error, start_body, start_json, uri};

/// The Helios refusal of a publication on a broker-owned channel.
fn owned_message(channel: &str) -> String {
    format!(
        "channel {channel:?} is owned by the broker: clients cannot publish on sink/… or @… channels"
    )
}

/// The TimeStick refusal of a broker-owned target.
const OWNED_TARGET: &str =
    "targets `sink/…` and `@…` are broker-owned channels: they accept no publication";

#[actix_rt::test]
async fn helios_clients_cannot_publish_on_device_feeds() {
    let node = Node::start().await;
    let feed = format!("sink/{}", uniq("dev-"));
    // Subscribing to a device feed is allowed.
    let mut watcher = Starling::connect(&node, &uniq("watcher-")).await;
    subscribe(&mut watcher, &feed).await;

    let mut forger = Starling::connect(&node, &uniq("forger-")).await;
    let plain = json!({"channel": feed, "data": {"forged": "now"}});
    let held = json!({"channel": feed, "data": {"forged": "later"}});
    let (id, resp) = call(&mut forger, "broker:publish", plain).await;
    let e = assert_error_response(&resp, &id, "VALIDATION_ERROR");
    assert_eq!(e["message"], owned_message(&feed), "{resp}");
    // A `~timing` hold is refused the same way, before anything is held.
    let (id, mut msg) = murmur_tests::helios::request("broker:publish", held);
    msg["~timing"] = json!({"delay_milli": 600000});
    forger.ws().send_json(&msg).await;
    let resp = forger.wait_response(&id, common::SOON).await;
    let e = assert_error_response(&resp, &id, "VALIDATION_ERROR");
    assert_eq!(e["message"], owned_message(&feed), "{resp}");
    // A hold is counted before its acknowledgement: none was made.
    let text = metrics(&node).await;
    let held = metric_value(
        &text,
        "murmur_timing_total",
        &[("protocol", "helios"), ("event", "held")],
    );
    assert_eq!(held.unwrap_or(0.0), 0.0, "nothing may be held");
    // The internal channels stay refused too (already by the channel-name rule).
    let (id, resp) = call(
        &mut forger,
        "broker:publish",
        json!({"channel": "@user/victim", "data": 1}),
    )
    .await;
    let e = assert_error_response(&resp, &id, "VALIDATION_ERROR");
    assert_eq!(
        e["message"], "channel names starting with '@' are reserved",
        "{resp}"
    );

    // The backend is trusted and may publish on a feed. Published after the refused
    // ones: had any of them reached the watcher, it would arrive first.
    api_publish(&node, &feed, json!({"from": "backend"})).await;
    assert_eq!(
        expect_notification(&mut watcher, &feed).await,
        json!({"from": "backend"})
    );
    // A publication on an ordinary channel of the same prefix family is fine.
    let ordinary = format!("sinks/{}", uniq("x-"));
    let (id, resp) = call(
        &mut forger,
        "broker:publish",
        json!({"channel": ordinary, "data": 1}),
    )
    .await;
    common::assert_success(&resp, &id);
}

#[actix_rt::test]
async fn timestick_sessions_cannot_target_device_feeds() {
    let node = Node::start().await;
    let base = node.public_url();
    let caller = uniq("ts-");
    let tok = token(&caller);
    let feed = format!("sink/{}", uniq("dev-"));
    let mut watcher = Starling::connect(&node, &uniq("watcher-")).await;
    subscribe(&mut watcher, &feed).await;

    // By path, by requested_uri, and an internal channel.
    let replies = [
        start_json(&base, &feed, Some(&tok), &start_body(&caller, None)).await,
        start_json(
            &base,
            "start",
            Some(&tok),
            &start_body(&caller, Some(&uri(&feed))),
        )
        .await,
        start_json(
            &base,
            "start",
            Some(&tok),
            &start_body(&caller, Some(&uri("@user/victim"))),
        )
        .await,
        // Percent-encoded, the path still names the feed.
        start_json(
            &base,
            &feed.replace('/', "%2F"),
            Some(&tok),
            &start_body(&caller, None),
        )
        .await,
    ];
    for reply in &replies {
        let body = assert_start_error(reply, 400);
        assert_eq!(body["reason"], OWNED_TARGET, "{body}");
    }
    // Nothing was published on the feed: the first thing the watcher gets is this.
    api_publish(&node, &feed, json!("barrier")).await;
    assert_eq!(expect_notification(&mut watcher, &feed).await, "barrier");
}
