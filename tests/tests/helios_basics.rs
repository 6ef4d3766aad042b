//! Helios-Starling built-in methods and pub/sub (CONTRACT §4, §8): `system:ping`,
//! `starling:getToken` / `starling:state`, reserved namespaces, `broker:subscribe`,
//! `broker:unsubscribe`, `broker:publish`, and backend publishes via `/api/v1/publish`.

mod common;

use common::{
    api_publish, assert_base, assert_error_response, assert_success, call, call_ok,
    expect_notification, ping, subscribe, uniq, SOON,
};
use murmur_tests::{decode_hs256, Node, Starling, RECOVERY_SECRET};
use serde_json::{json, Value};

/// `system:ping` answers a success response under the caller's requestId.
#[actix_rt::test]
async fn system_ping_answers() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    for _ in 0..3 {
        ping(&mut s).await;
    }
}

/// `starling:getToken` returns `{token, expiresIn}`; the token is an HS256 JWT signed with
/// the recovery secret carrying `starlingId`, `timestamp`, `state` and `exp`.
#[actix_rt::test]
async fn get_token_returns_a_recovery_token() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let data = call_ok(&mut s, "starling:getToken", json!({})).await;
    let token = data["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token: {data}"));
    let expires_in = data["expiresIn"]
        .as_u64()
        .unwrap_or_else(|| panic!("expiresIn must be a number of seconds: {data}"));
    assert!(expires_in > 0, "{data}");
    let claims = decode_hs256(token, RECOVERY_SECRET)
        .unwrap_or_else(|e| panic!("token must verify with the recovery secret: {e}"));
    let id = claims["starlingId"]
        .as_str()
        .unwrap_or_else(|| panic!("{claims}"));
    assert!(!id.is_empty(), "{claims}");
    assert!(claims["timestamp"].is_number(), "timestamp claim: {claims}");
    assert!(claims["state"].is_object(), "state claim: {claims}");
    let exp = claims["exp"].as_u64().unwrap_or_else(|| panic!("{claims}"));
    let now = murmur_tests::tokens::now_secs() as u64;
    assert!(
        exp > now && exp <= now + expires_in + 5,
        "exp must match expiresIn: {claims} vs {expires_in}"
    );

    // The same Starling always has the same id.
    let again = call_ok(&mut s, "starling:getToken", json!({})).await;
    let claims2 = decode_hs256(again["token"].as_str().unwrap(), RECOVERY_SECRET).unwrap();
    assert_eq!(claims2["starlingId"], claims["starlingId"]);

    // Another Starling has another id.
    let mut other = Starling::connect(&node, "alice").await;
    let (_, other_id) = common::recovery_token(&mut other).await;
    assert_ne!(other_id, id);
}

/// `starling:state` (the reference client's name) is an alias that also returns `state`.
#[actix_rt::test]
async fn starling_state_alias_returns_token_and_state() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let data = call_ok(&mut s, "starling:state", json!({})).await;
    let token = data["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token: {data}"));
    assert!(data["expiresIn"].as_u64().is_some_and(|e| e > 0), "{data}");
    assert!(
        data.get("state").is_some(),
        "starling:state must return state: {data}"
    );
    decode_hs256(token, RECOVERY_SECRET).unwrap_or_else(|e| panic!("token: {e}"));
}

/// Unknown methods in the reserved and built-in namespaces are METHOD_NOT_FOUND.
#[actix_rt::test]
async fn unknown_reserved_methods_are_not_found() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    for method in [
        "system:nope",
        "internal:x",
        "stream:open",
        "helios:hello",
        "broker:nope",
        "starling:nope",
    ] {
        let (id, resp) = call(&mut s, method, json!({})).await;
        assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    }
    ping(&mut s).await;
}

/// A publish from one Starling reaches a subscriber as `type:"notification"` with
/// `notification.topic` = channel and the data; the (unsubscribed) publisher gets nothing.
#[actix_rt::test]
async fn publish_reaches_subscribers_only() {
    let node = Node::start().await;
    let mut sub = Starling::connect(&node, "alice").await;
    let mut publisher = Starling::connect(&node, "bob").await;
    let channel = uniq("news-");
    subscribe(&mut sub, &channel).await;

    let payload = json!({ "headline": "hello", "n": [1, 2, 3], "nested": { "ok": true } });
    call_ok(
        &mut publisher,
        "broker:publish",
        json!({ "channel": channel, "data": payload }),
    )
    .await;
    let n = sub.next_notification(SOON).await;
    assert_base(&n);
    assert_eq!(n["type"], "notification");
    assert_eq!(n["notification"]["topic"], channel.as_str());
    assert_eq!(n["notification"]["data"], payload);

    publisher
        .expect_no_notification("the publisher is not subscribed and must get nothing")
        .await;
}

/// Several subscribers each get every message, in publish order; other channels do not
/// leak in.
#[actix_rt::test]
async fn every_subscriber_gets_every_message_in_order() {
    let node = Node::start().await;
    let channel = uniq("fan-");
    let other = uniq("other-");
    let mut subs = Vec::new();
    for user in ["a", "b", "c"] {
        let mut s = Starling::connect(&node, user).await;
        subscribe(&mut s, &channel).await;
        subs.push(s);
    }
    let mut publisher = Starling::connect(&node, "p").await;
    subscribe(&mut publisher, &other).await;
    for i in 0..5 {
        call_ok(
            &mut publisher,
            "broker:publish",
            json!({ "channel": channel, "data": i }),
        )
        .await;
    }
    api_publish(&node, &other, json!("not for you")).await;
    // Published after the 5: had the (unsubscribed) publisher got any of them, they
    // would arrive before this one.
    assert_eq!(
        expect_notification(&mut publisher, &other).await,
        "not for you"
    );
    for s in &mut subs {
        for i in 0..5 {
            assert_eq!(expect_notification(s, &channel).await, json!(i));
        }
    }
    for s in &mut subs {
        s.expect_no_notification("no notification").await;
    }
}

/// After `broker:unsubscribe` nothing more arrives on that channel, while another
/// subscription of the same Starling keeps working.
#[actix_rt::test]
async fn unsubscribe_stops_delivery() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let channel = uniq("ch-");
    let sentinel = uniq("sentinel-");
    subscribe(&mut s, &channel).await;
    subscribe(&mut s, &sentinel).await;
    api_publish(&node, &channel, json!("before")).await;
    assert_eq!(expect_notification(&mut s, &channel).await, "before");

    call_ok(&mut s, "broker:unsubscribe", json!({ "channel": channel })).await;
    api_publish(&node, &channel, json!("after")).await;
    api_publish(&node, &sentinel, json!("sentinel")).await;
    // The sentinel was published later: if "after" were delivered it would come first.
    let n = s.next_notification(SOON).await;
    assert_eq!(n["notification"]["topic"], sentinel.as_str(), "{n}");
    s.expect_no_notification("no notification").await;
}

/// Invalid channel names (empty, whitespace, control characters, too long, not a
/// string, missing) are rejected with VALIDATION_ERROR by subscribe, unsubscribe and
/// publish; the connection stays usable.
#[actix_rt::test]
async fn invalid_channels_are_validation_errors() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let bad: Vec<Value> = vec![
        json!({ "channel": "" }),
        json!({ "channel": "a b" }),
        json!({ "channel": "a\nb" }),
        json!({ "channel": "tab\there" }),
        json!({ "channel": "nul\u{0}" }),
        json!({ "channel": "x".repeat(257) }),
        json!({ "channel": 42 }),
        json!({ "channel": null }),
        json!({ "channel": ["news"] }),
        json!({}),
        json!(null),
        json!("news"),
    ];
    for method in ["broker:subscribe", "broker:unsubscribe", "broker:publish"] {
        for payload in &bad {
            let mut payload = payload.clone();
            if method == "broker:publish" && payload.is_object() {
                payload["data"] = json!(1);
            }
            let (id, resp) = call(&mut s, method, payload.clone()).await;
            assert_eq!(resp["success"], false, "{method} {payload}: {resp}");
            assert_error_response(&resp, &id, "VALIDATION_ERROR");
        }
    }
    // A 256-byte name is still valid.
    let longest = "x".repeat(256);
    let (id, resp) = call(&mut s, "broker:subscribe", json!({ "channel": longest })).await;
    assert_success(&resp, &id);
    ping(&mut s).await;
}

/// A backend publish (`POST /api/v1/publish`) reaches Helios subscribers of the channel.
#[actix_rt::test]
async fn backend_publish_reaches_subscribers() {
    let node = Node::start().await;
    let mut a = Starling::connect(&node, "alice").await;
    let mut b = Starling::connect(&node, "bob").await;
    let channel = uniq("orders/");
    subscribe(&mut a, &channel).await;
    subscribe(&mut b, &channel).await;
    let data = json!({ "order": 7, "items": ["x", "y"] });
    api_publish(&node, &channel, data.clone()).await;
    assert_eq!(expect_notification(&mut a, &channel).await, data);
    assert_eq!(expect_notification(&mut b, &channel).await, data);
}
