//! Helios-Starling recovery (CONTRACT §4): `?recover=<token>` resumes the same Starling
//! (id, subscriptions, provided namespaces), delivers what was buffered while away in
//! order, then `connection:recovered`; invalid, expired, foreign or unknown tokens give
//! `connection:recovery_failed` (and a fresh Starling when a client token is present,
//! else close 4003).

mod common;

use common::{
    api_publish, assert_base, assert_error_response, assert_success, call, ping, provide,
    recovery_token, subscribe, uniq, wait_connections, SOON,
};
use murmur_tests::tokens::now_secs;
use murmur_tests::{token, token_with_claims, Node, Starling, WsClient, RECOVERY_SECRET};
use serde_json::{json, Value};

/// Connects with only `?recover=<token>` (no client token).
async fn recover_only(node: &Node, recovery: &str) -> Starling {
    Starling::connect_url(&node.ws_url(&format!("/starling?recover={recovery}"))).await
}

/// The next message, asserted to be a notification on `topic`; returns its data.
async fn next_is_notification(s: &mut Starling, topic: &str) -> Value {
    let msg = s.ws().recv_json().await;
    assert_base(&msg);
    assert_eq!(msg["type"], "notification", "expected {topic}: {msg}");
    assert_eq!(msg["notification"]["topic"], topic, "{msg}");
    msg["notification"]["data"].clone()
}

/// Asserts the next message is `connection:recovery_failed` with a non-empty reason.
async fn expect_recovery_failed(s: &mut Starling) {
    let data = next_is_notification(s, "connection:recovery_failed").await;
    let reason = data["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("recovery_failed must carry a reason: {data}"));
    assert!(!reason.is_empty(), "{data}");
}

/// Closes `s` and waits until the node has detached it (`remaining` sockets left open).
async fn disconnect(node: &Node, mut s: Starling, remaining: f64) {
    s.close().await;
    wait_connections(node, remaining).await;
}

/// The whole round trip: subscribe + provide, disconnect, 3 messages published while
/// away, recover with `?recover=` alone → the 3 messages in order, then
/// `connection:recovered`; same starlingId; the subscription and the provided namespace
/// work again. While away, the namespace has no provider (METHOD_NOT_FOUND).
#[actix_rt::test]
async fn recovery_restores_identity_buffer_subscriptions_and_provides() {
    let node = Node::start().await;
    let channel = uniq("feed-");
    let ns = uniq("svc");
    let method = format!("{ns}:echo");
    let mut s = Starling::connect(&node, "alice").await;
    let mut c = Starling::connect(&node, "carol").await;
    subscribe(&mut s, &channel).await;
    provide(&mut s, &ns).await;
    let (recovery, starling_id) = recovery_token(&mut s).await;

    disconnect(&node, s, 1.0).await;

    let (id, resp) = call(&mut c, &method, json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    for i in 1..=3 {
        api_publish(&node, &channel, json!({ "seq": i })).await;
    }

    let mut s = recover_only(&node, &recovery).await;
    for i in 1..=3 {
        let data = next_is_notification(&mut s, &channel).await;
        assert_eq!(data, json!({ "seq": i }), "buffered messages in order");
    }
    next_is_notification(&mut s, "connection:recovered").await;

    let (_, again) = recovery_token(&mut s).await;
    assert_eq!(again, starling_id, "recovery must keep the starlingId");

    api_publish(&node, &channel, json!({ "seq": 4 })).await;
    assert_eq!(
        common::expect_notification(&mut s, &channel).await,
        json!({ "seq": 4 })
    );

    let caller_id = c.send_request(&method, json!("ping?")).await;
    let req = s.next_request().await;
    assert_eq!(req["method"], method.as_str());
    assert_eq!(req["payload"], "ping?");
    s.respond_ok(req["requestId"].as_str().unwrap(), json!("pong!"))
        .await;
    let resp = c.wait_response(&caller_id, SOON).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("pong!"));
}

/// Recovery with nothing buffered: `connection:recovered` is the first message. Giving
/// the owner's own client token along with `?recover=` is fine.
#[actix_rt::test]
async fn recovery_with_matching_client_token() {
    let node = Node::start().await;
    let s = Starling::connect(&node, "alice").await;
    let mut s = s;
    let (recovery, starling_id) = recovery_token(&mut s).await;
    disconnect(&node, s, 0.0).await;

    let mut s = Starling::connect_recover(&node, "alice", &recovery).await;
    next_is_notification(&mut s, "connection:recovered").await;
    let (_, again) = recovery_token(&mut s).await;
    assert_eq!(again, starling_id);
}

/// A Starling can be recovered repeatedly (each time with the latest token), and
/// messages published during each absence arrive each time.
#[actix_rt::test]
async fn recovery_can_repeat() {
    let node = Node::start().await;
    let channel = uniq("again-");
    let mut s = Starling::connect(&node, "alice").await;
    subscribe(&mut s, &channel).await;
    let (_, starling_id) = recovery_token(&mut s).await;
    for round in 0..3 {
        let (recovery, _) = recovery_token(&mut s).await;
        disconnect(&node, s, 0.0).await;
        api_publish(&node, &channel, json!(round)).await;
        s = recover_only(&node, &recovery).await;
        assert_eq!(next_is_notification(&mut s, &channel).await, json!(round));
        next_is_notification(&mut s, "connection:recovered").await;
    }
    let (_, id) = recovery_token(&mut s).await;
    assert_eq!(id, starling_id);
}

/// A token shaped like the reference implementation's (`states` instead of `state`, no
/// user claim), signed with the recovery secret, is accepted.
#[actix_rt::test]
async fn reference_shaped_token_is_accepted() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    disconnect(&node, s, 0.0).await;
    let now = now_secs();
    let reference = token_with_claims(
        RECOVERY_SECRET,
        &json!({
            "starlingId": starling_id,
            "states": {},
            "timestamp": now * 1000,
            "iat": now,
            "exp": now + 3600,
        }),
    );
    let mut s = recover_only(&node, &reference).await;
    next_is_notification(&mut s, "connection:recovered").await;
    let (_, id) = recovery_token(&mut s).await;
    assert_eq!(id, starling_id);
}

/// Invalid recovery tokens (forged signature, expired, garbage, unknown starlingId) with
/// a valid `?token=` → `connection:recovery_failed` with a reason and a fresh, working
/// Starling with another starlingId; the original stays recoverable.
#[actix_rt::test]
async fn invalid_recovery_token_with_client_token_gives_a_fresh_starling() {
    let node = Node::start().await;
    let channel = uniq("orig-");
    let mut s = Starling::connect(&node, "alice").await;
    subscribe(&mut s, &channel).await;
    let (recovery, starling_id) = recovery_token(&mut s).await;
    disconnect(&node, s, 0.0).await;

    let now = now_secs();
    let claims = |exp: i64, id: &str| {
        json!({ "starlingId": id, "sub": "alice", "timestamp": now * 1000,
                "state": {}, "iat": now, "exp": exp })
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let bad_tokens = [
        token_with_claims(
            "a-forged-secret-a-forged-secret-012345",
            &claims(now + 3600, &starling_id),
        ),
        token_with_claims(RECOVERY_SECRET, &claims(now - 3600, &starling_id)),
        "garbage".to_string(),
        token("alice"), // a client token is not a recovery token
        token_with_claims(RECOVERY_SECRET, &claims(now + 3600, &unknown)),
    ];
    for bad in &bad_tokens {
        let mut fresh = Starling::connect_recover(&node, "alice", bad).await;
        expect_recovery_failed(&mut fresh).await;
        ping(&mut fresh).await;
        let (_, fresh_id) = recovery_token(&mut fresh).await;
        assert_ne!(fresh_id, starling_id, "a failed recovery must not resume");
        // The fresh Starling has none of the original's subscriptions.
        api_publish(&node, &channel, json!("for the original")).await;
        fresh.expect_no_notification("no notification").await;
        disconnect(&node, fresh, 0.0).await;
    }

    // The original is untouched and recovers with its real token, with what it missed.
    let mut s = recover_only(&node, &recovery).await;
    for _ in &bad_tokens {
        assert_eq!(
            next_is_notification(&mut s, &channel).await,
            "for the original"
        );
    }
    next_is_notification(&mut s, "connection:recovered").await;
}

/// An invalid recovery token without a client token → `connection:recovery_failed`,
/// then close 4003.
#[actix_rt::test]
async fn invalid_recovery_token_without_client_token_closes_4003() {
    let node = Node::start().await;
    let now = now_secs();
    let forged = token_with_claims(
        "a-forged-secret-a-forged-secret-012345",
        &json!({ "starlingId": uuid::Uuid::new_v4().to_string(), "timestamp": now * 1000,
                 "state": {}, "iat": now, "exp": now + 3600 }),
    );
    for bad in [forged.as_str(), "garbage"] {
        let ws = WsClient::connect(&node.ws_url(&format!("/starling?recover={bad}")))
            .await
            .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
        let mut s = Starling::from_ws(ws);
        expect_recovery_failed(&mut s).await;
        let close = s.ws().expect_close().await;
        assert_eq!(close.as_ref().map(|c| c.0), Some(4003), "{close:?}");
    }
}

/// `?recover=` with the `?token=` of another user → recovery_failed and a fresh Starling
/// for the token's user; the owner can still recover its Starling; the fresh one
/// belongs to the token's user (only they can recover it).
#[actix_rt::test]
async fn foreign_user_cannot_recover_someone_elses_starling() {
    let node = Node::start().await;
    let channel = uniq("private-");
    let mut alice = Starling::connect(&node, "alice").await;
    subscribe(&mut alice, &channel).await;
    let (alice_token, alice_id) = recovery_token(&mut alice).await;
    disconnect(&node, alice, 0.0).await;

    let mut bob = Starling::connect_recover(&node, "bob", &alice_token).await;
    expect_recovery_failed(&mut bob).await;
    let (bob_token, bob_id) = recovery_token(&mut bob).await;
    assert_ne!(bob_id, alice_id);
    api_publish(&node, &channel, json!("for alice")).await;
    bob.expect_no_notification("bob must not get alice's subscriptions")
        .await;
    disconnect(&node, bob, 0.0).await;

    // Alice's Starling was not taken: she recovers it with what she missed.
    let mut alice = recover_only(&node, &alice_token).await;
    assert_eq!(
        next_is_notification(&mut alice, &channel).await,
        "for alice"
    );
    next_is_notification(&mut alice, "connection:recovered").await;
    let (_, id) = recovery_token(&mut alice).await;
    assert_eq!(id, alice_id);

    // Bob's fresh Starling is bob's: alice cannot recover it, bob can.
    let mut thief = Starling::connect_recover(&node, "alice", &bob_token).await;
    expect_recovery_failed(&mut thief).await;
    drop(thief);
    let mut bob = Starling::connect_recover(&node, "bob", &bob_token).await;
    next_is_notification(&mut bob, "connection:recovered").await;
    let (_, id) = recovery_token(&mut bob).await;
    assert_eq!(id, bob_id);
}

/// A provider awaiting recovery is not routed to (METHOD_NOT_FOUND, no stall until a
/// timeout), and after recovery it serves again.
#[actix_rt::test]
async fn provider_awaiting_recovery_is_unregistered_until_it_returns() {
    let node = Node::start().await;
    let ns = uniq("away");
    let method = format!("{ns}:do");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let (recovery, _) = recovery_token(&mut p).await;
    disconnect(&node, p, 1.0).await;

    for _ in 0..3 {
        let (id, resp) = call(&mut c, &method, json!({})).await;
        assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    }

    let mut p = recover_only(&node, &recovery).await;
    next_is_notification(&mut p, "connection:recovered").await;
    let caller_id = c.send_request(&method, json!({ "n": 1 })).await;
    let req = p.next_request().await;
    assert_eq!(req["payload"], json!({ "n": 1 }));
    p.respond_ok(req["requestId"].as_str().unwrap(), json!("back"))
        .await;
    let resp = c.wait_response(&caller_id, SOON).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("back"));
}

/// A response to a call made before the disconnect is buffered like any other message
/// and delivered on recovery, under the caller's requestId, before
/// `connection:recovered`.
#[actix_rt::test]
async fn response_to_a_call_made_before_the_disconnect_is_delivered_on_recovery() {
    let node = Node::start().await;
    let ns = uniq("later");
    let method = format!("{ns}:compute");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let (recovery, _) = recovery_token(&mut c).await;
    let caller_id = c.send_request(&method, json!({ "n": 6 })).await;
    let req = p.next_request().await;
    disconnect(&node, c, 1.0).await;

    p.respond_ok(req["requestId"].as_str().unwrap(), json!(42))
        .await;
    ping(&mut p).await; // the answer was processed

    let mut c = recover_only(&node, &recovery).await;
    let resp = c.ws().recv_json().await;
    assert_eq!(assert_success(&resp, &caller_id), json!(42), "{resp}");
    next_is_notification(&mut c, "connection:recovered").await;
}

/// Recovering a Starling whose old connection is still open moves it to the new
/// connection: the old one is closed (4002, "replaced"), the new one is the same
/// Starling and gets its messages.
#[actix_rt::test]
async fn recovery_takes_over_a_connection_still_open() {
    let node = Node::start().await;
    let channel = uniq("live-");
    let mut old = Starling::connect(&node, "alice").await;
    subscribe(&mut old, &channel).await;
    let (recovery, starling_id) = recovery_token(&mut old).await;

    let mut new = recover_only(&node, &recovery).await;
    next_is_notification(&mut new, "connection:recovered").await;
    let close = old.ws().expect_close().await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(4002), "{close:?}");

    api_publish(&node, &channel, json!("to the new one")).await;
    assert_eq!(
        common::expect_notification(&mut new, &channel).await,
        "to the new one"
    );
    let (_, id) = recovery_token(&mut new).await;
    assert_eq!(id, starling_id);
}
