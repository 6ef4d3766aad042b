//! Client tokens verified with a public key (`MURMUR_JWT_PUBLIC_KEY`, ES256): a token
//! signed with the matching private key opens a Starling and a chat session; one signed
//! with another key, an HS256 token (the wrong algorithm), and `alg: none` are refused.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use murmur_tests::{token_alg_none, NodeBuilder, WsClient};
use serde_json::json;

fn es256(private_pem: &str, sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({"sub": sub, "exp": exp}),
        &key,
    )
    .unwrap()
}

#[actix_rt::test]
async fn es256_public_key_verifies_client_tokens() {
    let trusted = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("murmur-pk-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let public = dir.join("jwt-public.pem");
    std::fs::write(&public, trusted.public_key_pem()).unwrap();

    let node = NodeBuilder::new()
        .env_remove("MURMUR_JWT_SECRET")
        .env("MURMUR_JWT_PUBLIC_KEY", public.to_str().unwrap())
        .spawn()
        .await;

    let good = es256(&trusted.serialize_pem(), "alice");
    let url = node.ws_url(&format!("/starling?token={good}"));
    assert!(
        WsClient::connect(&url).await.is_ok(),
        "a token signed by the trusted key opens"
    );

    let forged = es256(&other.serialize_pem(), "alice");
    for bad in [
        forged,
        murmur_tests::token("alice"),
        token_alg_none("alice"),
    ] {
        let url = node.ws_url(&format!("/starling?token={bad}"));
        match WsClient::connect(&url).await {
            Err((status, _)) => assert_eq!(status, 401, "{bad}"),
            Ok(_) => panic!("token accepted: {bad}"),
        }
    }

    // The same verifier serves chat authentication.
    let mut chat = WsClient::connect(&node.ws_url("/chat")).await.unwrap();
    chat.send_json(
        &json!({"cdid": "1", "type": "authenticate", "user-id": "alice",
        "device-id": "d", "token": good}),
    )
    .await;
    let answer = chat.recv_json().await;
    assert_eq!(answer["status"], "succeeded", "{answer}");
}
