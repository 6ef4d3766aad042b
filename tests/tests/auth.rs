//! Helios-Starling authentication at the `/starling` upgrade (CONTRACT §2, §4): which
//! client tokens open a Starling and which are refused with 401 before the upgrade.

mod common;

use common::{ping, uniq};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use murmur_tests::tokens::now_secs;
use murmur_tests::{
    token, token_alg_none, token_with, token_with_claims, Node, Starling, WsClient, JWT_SECRET,
};
use serde_json::json;

/// Asserts that connecting to `/starling` with `query` and `headers` is refused with 401.
async fn assert_refused(node: &Node, query: &str, headers: &[(&str, &str)], what: &str) {
    let url = node.ws_url(&format!("/starling{query}"));
    match WsClient::connect_with_headers(&url, headers).await {
        Ok(_) => panic!("{what}: the upgrade was accepted, expected 401"),
        Err((status, body)) => assert_eq!(status, 401, "{what}: refused with {status} {body}"),
    }
}

/// A valid HS256 client token in `?token=` opens a working Starling.
#[actix_rt::test]
async fn query_token_opens_a_starling() {
    let node = Node::start().await;
    let url = node.ws_url(&format!("/starling?token={}", token(&uniq("u"))));
    let mut s = Starling::connect_url(&url).await;
    ping(&mut s).await;
}

/// A valid client token in an `Authorization: Bearer` header (no query) opens a Starling.
#[actix_rt::test]
async fn bearer_header_opens_a_starling() {
    let node = Node::start().await;
    let auth = format!("Bearer {}", token(&uniq("u")));
    let ws = WsClient::connect_with_headers(&node.ws_url("/starling"), &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("bearer upgrade refused: {e:?}"));
    let mut s = Starling::from_ws(ws);
    ping(&mut s).await;
}

/// No token at all (neither query nor header, nor a recovery token) → 401.
#[actix_rt::test]
async fn missing_token_is_refused() {
    let node = Node::start().await;
    assert_refused(&node, "", &[], "no token").await;
    assert_refused(&node, "?token=", &[], "empty token").await;
    assert_refused(&node, "?other=1", &[], "unrelated query only").await;
}

/// Expired, wrongly signed, unsigned (`alg: none`), wrong-algorithm, `exp`-less and
/// garbage tokens are refused with 401, in the query and in the header.
#[actix_rt::test]
async fn bad_tokens_are_refused() {
    let node = Node::start().await;
    let now = now_secs();
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &json!({ "sub": "mallory", "iat": now, "exp": now + 3600 }),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let cases = [
        ("expired", token_with(JWT_SECRET, "mallory", -3600)),
        (
            "wrong secret",
            token_with("not-the-secret-not-the-secret-0123456789", "mallory", 3600),
        ),
        ("alg none", token_alg_none("mallory")),
        ("HS384 instead of HS256", hs384),
        (
            "no exp",
            token_with_claims(JWT_SECRET, &json!({ "sub": "mallory", "iat": now })),
        ),
        ("garbage", "garbage".to_string()),
        ("three garbage parts", "a.b.c".to_string()),
    ];
    for (what, bad) in &cases {
        assert_refused(
            &node,
            &format!("?token={bad}"),
            &[],
            &format!("{what} (query)"),
        )
        .await;
        let auth = format!("Bearer {bad}");
        assert_refused(
            &node,
            "",
            &[("Authorization", &auth)],
            &format!("{what} (header)"),
        )
        .await;
    }
    // The node still serves good tokens afterwards.
    let mut s = Starling::connect(&node, "alice").await;
    ping(&mut s).await;
}
