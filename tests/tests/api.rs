//! The backend API on the internal port (CONTRACT §2, §4, §8): bearer API key,
//! `POST /api/v1/publish`, `POST /api/v1/starlings/<id>/requests`, `GET /api/v1/nodes`,
//! and the `{"error":{"code","message"}}` error shape.

mod common;

use std::time::Duration;

use common::{expect_notification, ping, recovery_token, subscribe, uniq, SOON};
use murmur_tests::{api_get, api_post, eventually, http, request, Method, Node, Starling, API_KEY};
use serde_json::{json, Value};

/// Asserts the API error shape with `code`.
fn assert_api_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].is_string(),
        "error.message: {body}"
    );
}

/// Sends a raw (not necessarily JSON) body to the internal API with the API key.
async fn post_raw(node: &Node, path: &str, body: &'static str) -> (u16, Value) {
    let url = format!("{}{path}", node.internal_url());
    let mut res = http()
        .post(&url)
        .insert_header(("Authorization", format!("Bearer {API_KEY}")))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let bytes = res.body().await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (res.status().as_u16(), json)
}

/// `/api/v1/*` without the API key, with a wrong key or another scheme → 401
/// `{"error":{"code":"UNAUTHORIZED",..}}`, and nothing is published.
#[actix_rt::test]
async fn api_requires_the_api_key() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let channel = uniq("secret-");
    subscribe(&mut s, &channel).await;
    let url = format!("{}/api/v1/publish", node.internal_url());
    let body = json!({ "channel": channel, "data": "forged" });
    let wrong = "Bearer not-the-api-key".to_string();
    let basic = format!("Basic {API_KEY}");
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("Authorization", wrong.as_str())],
        &[("Authorization", basic.as_str())],
    ];
    for headers in cases {
        let reply = request(Method::POST, &url, headers, Some(&body)).await;
        assert_eq!(reply.status, 401, "{headers:?}: {}", reply.text());
        assert_api_error(&reply.json(), "UNAUTHORIZED");
    }
    let reply = request(
        Method::GET,
        &format!("{}/api/v1/nodes", node.internal_url()),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_api_error(&reply.json(), "UNAUTHORIZED");
    s.expect_no_notification("nothing published").await;
}

/// A node started without `MURMUR_API_KEY` answers 401 to everyone.
#[actix_rt::test]
async fn api_without_configured_key_refuses_everyone() {
    let node = murmur_tests::NodeBuilder::new()
        .env_remove("MURMUR_API_KEY")
        .spawn()
        .await;
    let (status, body) = api_post(
        &node,
        "/api/v1/publish",
        json!({ "channel": "x", "data": 1 }),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_api_error(&body, "UNAUTHORIZED");
}

/// Publish with a bad body (not JSON, no channel, bad channel, wrong types) → 400 with
/// the error shape; a good one → 200.
#[actix_rt::test]
async fn publish_rejects_bad_bodies() {
    let node = Node::start().await;
    for raw in ["{not json", "", "[]", "42"] {
        let (status, body) = post_raw(&node, "/api/v1/publish", raw).await;
        assert_eq!(status, 400, "{raw:?}: {body}");
        assert_api_error(&body, "BAD_REQUEST");
    }
    for bad in [
        json!({ "data": 1 }),
        json!({ "channel": "", "data": 1 }),
        json!({ "channel": "a b", "data": 1 }),
        json!({ "channel": "x".repeat(257), "data": 1 }),
        json!({ "channel": 5, "data": 1 }),
        json!({ "channel": null }),
    ] {
        let (status, body) = api_post(&node, "/api/v1/publish", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_api_error(&body, "BAD_REQUEST");
    }
    let (status, body) = api_post(
        &node,
        "/api/v1/publish",
        json!({ "channel": uniq("ok-"), "data": { "x": 1 } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A backend publish reaches a Helios subscriber with the channel as topic.
#[actix_rt::test]
async fn publish_reaches_a_helios_subscriber() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let channel = uniq("alerts/");
    subscribe(&mut s, &channel).await;
    let (status, body) = api_post(
        &node,
        "/api/v1/publish",
        json!({ "channel": channel, "data": { "level": "high" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        expect_notification(&mut s, &channel).await,
        json!({ "level": "high" })
    );
}

/// Backend → Starling: the Starling receives the request (method, payload) and its
/// success answer is the HTTP body `{"success":true,"data":..}` with 200.
#[actix_rt::test]
async fn starling_request_success() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    let path = format!("/api/v1/starlings/{starling_id}/requests");
    let body =
        json!({ "method": "app:getStatus", "payload": { "verbose": true }, "timeoutMs": 5000 });
    let ((status, reply), ()) = tokio::join!(api_post(&node, &path, body), async {
        let req = s.next_request().await;
        common::assert_base(&req);
        assert_eq!(req["method"], "app:getStatus", "{req}");
        assert_eq!(req["payload"], json!({ "verbose": true }), "{req}");
        let id = req["requestId"].as_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{req}");
        s.respond_ok(&id, json!({ "status": "green", "load": 0.5 }))
            .await;
    });
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(reply["data"], json!({ "status": "green", "load": 0.5 }));
    ping(&mut s).await;
}

/// Backend → Starling: an error answer is 200 `{"success":false,"error":{code,message}}`.
#[actix_rt::test]
async fn starling_request_error_answer() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    let path = format!("/api/v1/starlings/{starling_id}/requests");
    let body = json!({ "method": "app:fail", "payload": null, "timeoutMs": 5000 });
    let ((status, reply), ()) = tokio::join!(api_post(&node, &path, body), async {
        let req = s.next_request().await;
        assert_eq!(req["method"], "app:fail");
        let id = req["requestId"].as_str().unwrap().to_string();
        s.respond_err(&id, "NOT_ALLOWED", "no way").await;
    });
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "NOT_ALLOWED", "{reply}");
    assert_eq!(reply["error"]["message"], "no way", "{reply}");
}

/// Backend → Starling: an unknown starling id → 404 with the error shape.
#[actix_rt::test]
async fn starling_request_unknown_id_is_404() {
    let node = Node::start().await;
    let _s = Starling::connect(&node, "alice").await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let path = format!("/api/v1/starlings/{id}/requests");
        let body = json!({ "method": "app:x", "payload": {}, "timeoutMs": 1000 });
        let (status, reply) = api_post(&node, &path, body).await;
        assert_eq!(status, 404, "{id}: {reply}");
        assert_api_error(&reply, "NOT_FOUND");
    }
}

/// Backend → Starling: no answer within `timeoutMs` → 504 REQUEST_TIMEOUT, after about
/// the timeout.
#[actix_rt::test]
async fn starling_request_timeout_is_504() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    let path = format!("/api/v1/starlings/{starling_id}/requests");
    let body = json!({ "method": "app:sleep", "payload": {}, "timeoutMs": 300 });
    let start = tokio::time::Instant::now();
    let (status, reply) = api_post(&node, &path, body).await;
    let elapsed = start.elapsed();
    assert_eq!(status, 504, "{reply}");
    assert_api_error(&reply, "REQUEST_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "504 after {elapsed:?} for timeoutMs 300"
    );
    // The Starling did get the request (and answering it late harms nothing).
    let req = s.next_request().await;
    assert_eq!(req["method"], "app:sleep");
    s.respond_ok(req["requestId"].as_str().unwrap(), json!("late"))
        .await;
    ping(&mut s).await;
}

/// Backend → Starling: a bad method name or a bad body → 400 with the error shape, and
/// the Starling receives nothing.
#[actix_rt::test]
async fn starling_request_bad_input_is_400() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    let path = format!("/api/v1/starlings/{starling_id}/requests");
    let too_long = format!("a:{}", "b".repeat(127));
    for body in [
        json!({ "method": "nocolon", "payload": {} }),
        json!({ "method": "1app:x", "payload": {} }),
        json!({ "method": "app:bad-name", "payload": {} }),
        json!({ "method": "", "payload": {} }),
        json!({ "method": too_long, "payload": {} }),
        json!({ "method": 5, "payload": {} }),
        json!({ "payload": {} }),
        json!({ "method": "app:x", "timeoutMs": "soon" }),
    ] {
        let (status, reply) = api_post(&node, &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_api_error(&reply, "BAD_REQUEST");
    }
    let (status, reply) = post_raw(&node, &path, "{oops").await;
    assert_eq!(status, 400, "{reply}");
    assert_api_error(&reply, "BAD_REQUEST");
    s.expect_none("rejected calls must not reach the Starling", |m| {
        m["type"] == "request"
    })
    .await;
}

/// `GET /api/v1/nodes` lists this node with its session count.
#[actix_rt::test]
async fn nodes_lists_this_node() {
    let node = Node::start().await;
    let _a = Starling::connect(&node, "alice").await;
    let _b = Starling::connect(&node, "bob").await;
    let id = node.id().to_string();
    eventually("GET /api/v1/nodes shows 2 sessions", SOON * 2, || {
        let (node, id) = (&node, &id);
        async move {
            let (status, body) = api_get(node, "/api/v1/nodes").await;
            assert_eq!(status, 200, "{body}");
            let list = body["nodes"].as_array()?;
            let me = list.iter().find(|n| n["id"] == id.as_str())?;
            (me["sessions"] == 2).then_some(())
        }
    })
    .await;
}

/// An unknown API path answers 404 in the error shape.
#[actix_rt::test]
async fn unknown_api_path_is_404() {
    let node = Node::start().await;
    let (status, body) = api_get(&node, "/api/v1/definitely-not-here").await;
    assert_eq!(status, 404, "{body}");
    assert_api_error(&body, "NOT_FOUND");
}
