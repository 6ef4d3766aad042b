//! The chat demo (`/demo/`) and its token endpoint exist in development mode only; a
//! minted token is a client token this node accepts.

mod common;

use murmur_tests::{get, http, Node, NodeBuilder, Starling};
use serde_json::{json, Value};

async fn post_token(node: &Node, body: &Value) -> (u16, Value) {
    let mut res = http()
        .post(format!("{}/demo/token", node.public_url()))
        .send_json(body)
        .await
        .expect("POST /demo/token");
    let bytes = res.body().await.expect("body");
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_rt::test]
async fn outside_development_mode_there_is_no_demo_and_no_token_endpoint() {
    let node = Node::start().await;
    let (status, _) = get(&format!("{}/demo/", node.public_url())).await;
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{}/demo/sdk/index.js", node.public_url())).await;
    assert_eq!(status, 404);
    let (status, _) = post_token(&node, &json!({"user": "alice"})).await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn in_development_mode_the_page_is_served_and_a_minted_token_connects() {
    let node = NodeBuilder::new().env("MURMUR_DEV", "1").spawn().await;
    let (status, page) = get(&format!("{}/demo/", node.public_url())).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );

    let (status, answer) = post_token(&node, &json!({"user": "alice"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["user"], "alice");
    let token = answer["token"].as_str().expect("a token");
    let url = node.ws_url(&format!("/starling?token={token}"));
    let mut s = Starling::connect_url(&url).await;
    common::ping(&mut s).await;

    // A user name that is not usable is refused.
    let (status, answer) = post_token(&node, &json!({"user": ""})).await;
    assert_eq!(status, 400, "{answer}");
}
