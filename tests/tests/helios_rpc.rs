//! Helios-Starling RPC between Starlings (CONTRACT §4): `broker:provide` /
//! `broker:unprovide`, routing `ns:action` to a provider and its answer back under the
//! caller's requestId, METHOD_NOT_FOUND, REQUEST_TIMEOUT, REQUEST_CANCELLED (provider
//! gone, `system:cancel`), reserved namespaces, several providers.

mod common;

use std::time::Duration;

use common::{
    assert_base, assert_error_response, assert_success, call, ping, provide, request_with_timeout,
    uniq, SOON,
};
use murmur_tests::helios::is_response_to;
use murmur_tests::{Node, Starling};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Waits for the request the provider was sent, asserting its shape, method and payload;
/// returns its (provider-side) requestId.
async fn expect_request(p: &mut Starling, method: &str, payload: &Value) -> String {
    let req = p.next_request().await;
    assert_base(&req);
    assert_eq!(req["type"], "request");
    assert_eq!(req["method"], method, "{req}");
    assert_eq!(&req["payload"], payload, "{req}");
    let id = req["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("requestId: {req}"));
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "requestId must be a UUID: {req}"
    );
    id.to_string()
}

/// A call reaches the provider under a fresh requestId with the method and payload; the
/// provider's success answer reaches the caller under the caller's own requestId.
#[actix_rt::test]
async fn call_is_routed_to_the_provider_and_back() {
    let node = Node::start().await;
    let ns = uniq("math");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;

    let method = format!("{ns}:add");
    let payload = json!({ "a": 2, "b": 3 });
    let caller_id = c.send_request(&method, payload.clone()).await;
    let provider_id = expect_request(&mut p, &method, &payload).await;
    assert_ne!(
        provider_id, caller_id,
        "the provider must see a fresh requestId"
    );
    p.respond_ok(&provider_id, json!({ "sum": 5 })).await;

    let resp = c.wait_response(&caller_id, SOON).await;
    let data = assert_success(&resp, &caller_id);
    assert_eq!(data, json!({ "sum": 5 }));
}

/// Several calls in flight at once are each answered under their own requestId, even
/// when the provider answers out of order.
#[actix_rt::test]
async fn concurrent_calls_are_matched_by_request_id() {
    let node = Node::start().await;
    let ns = uniq("calc");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:double");
    let mut caller_ids = Vec::new();
    for i in 0..5 {
        caller_ids.push(c.send_request(&method, json!({ "x": i })).await);
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let req = p.next_request().await;
        seen.push((
            req["requestId"].as_str().unwrap().to_string(),
            req["payload"]["x"].as_i64().unwrap(),
        ));
    }
    for (id, x) in seen.iter().rev() {
        p.respond_ok(id, json!(x * 2)).await;
    }
    for (i, id) in caller_ids.iter().enumerate() {
        let resp = c.wait_response(id, SOON).await;
        assert_eq!(assert_success(&resp, id), json!(i as i64 * 2), "{resp}");
    }
}

/// A provider's error answer (custom code and message) reaches the caller unchanged.
#[actix_rt::test]
async fn provider_error_reaches_the_caller() {
    let node = Node::start().await;
    let ns = uniq("math");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:div");
    let payload = json!({ "a": 1, "b": 0 });
    let caller_id = c.send_request(&method, payload.clone()).await;
    let provider_id = expect_request(&mut p, &method, &payload).await;
    p.respond_err(&provider_id, "DIVISION_BY_ZERO", "cannot divide by zero")
        .await;
    let resp = c.wait_response(&caller_id, SOON).await;
    let error = assert_error_response(&resp, &caller_id, "DIVISION_BY_ZERO");
    assert_eq!(error["message"], "cannot divide by zero");

    // A standard code passes through too.
    let caller_id = c.send_request(&method, payload.clone()).await;
    let provider_id = expect_request(&mut p, &method, &payload).await;
    p.respond_err(&provider_id, "METHOD_ERROR", "boom").await;
    let resp = c.wait_response(&caller_id, SOON).await;
    assert_error_response(&resp, &caller_id, "METHOD_ERROR");
}

/// A method whose namespace nobody provides is METHOD_NOT_FOUND.
#[actix_rt::test]
async fn no_provider_is_method_not_found() {
    let node = Node::start().await;
    let mut c = Starling::connect(&node, "caller").await;
    let (id, resp) = call(&mut c, &format!("{}:add", uniq("nobody")), json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
}

/// `timeoutMs: 300` and a provider that never answers: REQUEST_TIMEOUT arrives after
/// about 300 ms (not before ~250 ms, well before the 30 s default); the provider's late
/// answer is not delivered.
#[actix_rt::test]
async fn request_timeout_honours_timeout_ms() {
    let node = Node::start().await;
    let ns = uniq("slow");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:wait");
    let (caller_id, msg) = request_with_timeout(&method, json!({}), 300);
    let start = Instant::now();
    c.ws().send_json(&msg).await;
    let provider_id = expect_request(&mut p, &method, &json!({})).await;
    let resp = c.wait_response(&caller_id, Duration::from_secs(5)).await;
    let elapsed = start.elapsed();
    assert_error_response(&resp, &caller_id, "REQUEST_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(250),
        "REQUEST_TIMEOUT after {elapsed:?}, before the 300 ms timeout"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "REQUEST_TIMEOUT after {elapsed:?}"
    );

    p.respond_ok(&provider_id, json!("too late")).await;
    ping(&mut p).await; // the late answer was processed
    c.expect_none("a late answer must not reach the caller", |m| {
        is_response_to(m, &caller_id)
    })
    .await;
}

/// When the provider disconnects with a request in flight, the caller gets
/// REQUEST_CANCELLED at once (well before its 10 s timeout).
#[actix_rt::test]
async fn provider_disconnect_cancels_inflight_requests() {
    let node = Node::start().await;
    let ns = uniq("flaky");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:work");
    let (caller_id, msg) = request_with_timeout(&method, json!({ "job": 1 }), 10_000);
    c.ws().send_json(&msg).await;
    expect_request(&mut p, &method, &json!({ "job": 1 })).await;

    let start = Instant::now();
    p.close().await;
    let resp = c.wait_response(&caller_id, Duration::from_secs(3)).await;
    assert_error_response(&resp, &caller_id, "REQUEST_CANCELLED");
    assert!(start.elapsed() < Duration::from_secs(3));

    // The provider is gone (awaiting recovery): the namespace has no provider now.
    let (id, resp) = call(&mut c, &method, json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
}

/// When the provider's TCP connection just drops (no close handshake), in-flight
/// requests are cancelled at once too.
#[actix_rt::test]
async fn provider_connection_drop_cancels_inflight_requests() {
    let node = Node::start().await;
    let ns = uniq("flaky");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:work");
    let (caller_id, msg) = request_with_timeout(&method, json!({}), 10_000);
    c.ws().send_json(&msg).await;
    expect_request(&mut p, &method, &json!({})).await;
    drop(p);
    let resp = c.wait_response(&caller_id, Duration::from_secs(3)).await;
    assert_error_response(&resp, &caller_id, "REQUEST_CANCELLED");
}

/// `system:cancel {requestId}`: the cancel succeeds, the cancelled request is answered
/// REQUEST_CANCELLED, and the provider's later answer is not delivered.
#[actix_rt::test]
async fn system_cancel_cancels_a_call() {
    let node = Node::start().await;
    let ns = uniq("long");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:run");
    let (caller_id, msg) = request_with_timeout(&method, json!({}), 10_000);
    c.ws().send_json(&msg).await;
    let provider_id = expect_request(&mut p, &method, &json!({})).await;

    let start = Instant::now();
    let cancel_id = c
        .send_request("system:cancel", json!({ "requestId": caller_id }))
        .await;
    let cancel_resp = c.wait_response(&cancel_id, SOON).await;
    assert_success(&cancel_resp, &cancel_id);
    let resp = c.wait_response(&caller_id, SOON).await;
    assert_error_response(&resp, &caller_id, "REQUEST_CANCELLED");
    assert!(start.elapsed() < Duration::from_secs(3));

    p.respond_ok(&provider_id, json!("done anyway")).await;
    ping(&mut p).await; // the provider's answer was processed
    c.expect_none("the cancelled request must not be answered again", |m| {
        is_response_to(m, &caller_id)
    })
    .await;

    // The channel between them still works.
    let caller_id = c.send_request(&method, json!({ "again": true })).await;
    let provider_id = expect_request(&mut p, &method, &json!({ "again": true })).await;
    p.respond_ok(&provider_id, json!("ok")).await;
    let resp = c.wait_response(&caller_id, SOON).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("ok"));
}

/// Reserved (`system`, `internal`, `stream`, `helios`) and built-in (`broker`,
/// `starling`) namespaces, and malformed namespaces, cannot be provided.
#[actix_rt::test]
async fn reserved_namespaces_cannot_be_provided() {
    let node = Node::start().await;
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    for ns in [
        "system", "internal", "stream", "helios", "broker", "starling",
    ] {
        let (id, resp) = call(&mut p, "broker:provide", json!({ "namespace": ns })).await;
        assert_error_response(&resp, &id, "VALIDATION_ERROR");
    }
    for bad in [
        json!({ "namespace": "" }),
        json!({ "namespace": "1math" }),
        json!({ "namespace": "math:add" }),
        json!({ "namespace": "ma th" }),
        json!({ "namespace": 5 }),
        json!({}),
    ] {
        let (id, resp) = call(&mut p, "broker:provide", bad.clone()).await;
        assert_eq!(resp["success"], false, "{bad}: {resp}");
        assert_error_response(&resp, &id, "VALIDATION_ERROR");
    }
    // Built-ins keep working for everybody, and nothing reached the would-be provider.
    ping(&mut c).await;
    let (id, resp) = call(&mut c, "system:nope", json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    p.expect_none("nothing more", |m| m["type"] == "request")
        .await;
}

/// After `broker:unprovide`, calls to the namespace are METHOD_NOT_FOUND.
#[actix_rt::test]
async fn unprovide_stops_routing() {
    let node = Node::start().await;
    let ns = uniq("tmp");
    let mut p = Starling::connect(&node, "provider").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:x");
    let caller_id = c.send_request(&method, json!(1)).await;
    let provider_id = expect_request(&mut p, &method, &json!(1)).await;
    p.respond_ok(&provider_id, json!(1)).await;
    c.wait_response(&caller_id, SOON).await;

    common::call_ok(&mut p, "broker:unprovide", json!({ "namespace": ns })).await;
    let (id, resp) = call(&mut c, &method, json!(2)).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    p.expect_none("an unprovided namespace must not be routed", |m| {
        m["type"] == "request"
    })
    .await;
}

/// With two providers of a namespace, calls are served by both (spread over 10 calls).
#[actix_rt::test]
async fn two_providers_share_the_calls() {
    let node = Node::start().await;
    let ns = uniq("shared");
    let mut p1 = Starling::connect(&node, "p1").await;
    let mut p2 = Starling::connect(&node, "p2").await;
    let mut c = Starling::connect(&node, "caller").await;
    provide(&mut p1, &ns).await;
    provide(&mut p2, &ns).await;
    let method = format!("{ns}:who");
    let mut served = [0u32; 2];
    for i in 0..10 {
        let caller_id = c.send_request(&method, json!({ "i": i })).await;
        let (which, req) = tokio::select! {
            r = p1.next_request() => (0, r),
            r = p2.next_request() => (1, r),
        };
        assert_eq!(req["method"], method.as_str());
        assert_eq!(req["payload"], json!({ "i": i }));
        let id = req["requestId"].as_str().unwrap().to_string();
        let p = if which == 0 { &mut p1 } else { &mut p2 };
        p.respond_ok(&id, json!({ "by": which })).await;
        let resp = c.wait_response(&caller_id, SOON).await;
        assert_eq!(assert_success(&resp, &caller_id), json!({ "by": which }));
        served[which] += 1;
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "both providers must serve calls: {served:?}"
    );
}

/// A provider may also call methods, and a Starling may call a namespace it provides
/// itself: the request comes back to it and its answer reaches it as the caller.
#[actix_rt::test]
async fn a_starling_can_call_itself() {
    let node = Node::start().await;
    let ns = uniq("self");
    let mut p = Starling::connect(&node, "solo").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:echo");
    let caller_id = p.send_request(&method, json!("hi")).await;
    let provider_id = expect_request(&mut p, &method, &json!("hi")).await;
    assert_ne!(provider_id, caller_id);
    p.respond_ok(&provider_id, json!("hi back")).await;
    let resp = p.wait_response(&caller_id, SOON).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("hi back"));
}
