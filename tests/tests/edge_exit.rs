//! The connection engine's one exit path: every server-initiated close of a Helios,
//! chat or Sink-over-WebSocket connection is counted exactly once in
//! `murmur_disconnects_total{protocol,reason}`, with the close code the client got; a
//! close the client started is not counted; other connections are unaffected.

mod common;

use murmur_tests::wsframe::{OP_BINARY, OP_TEXT};
use murmur_tests::{metric_value, metrics, token, Node, Starling, WsClient};

fn disconnects(text: &str, protocol: &str, reason: &str) -> f64 {
    metric_value(
        text,
        "murmur_disconnects_total",
        &[("protocol", protocol), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

async fn ws(node: &Node, path: &str) -> WsClient {
    WsClient::connect(&node.ws_url(path))
        .await
        .unwrap_or_else(|e| panic!("upgrade {path}: {e:?}"))
}

#[actix_rt::test]
async fn every_server_initiated_close_is_counted_once_with_its_code() {
    let node = Node::start().await;
    let mut bystander = Starling::connect(&node, "bystander").await;

    // Helios: a frame over 1 MiB (1009), and a WebSocket framing fault (1008).
    let mut big = Starling::connect(&node, "big").await;
    let text = "x".repeat(1024 * 1024 + 1);
    let _ = big
        .ws()
        .try_send_frame(true, OP_TEXT, text.as_bytes())
        .await;
    assert_eq!(big.ws().expect_close().await.map(|c| c.0), Some(1009));
    let mut bad = Starling::connect(&node, "bad").await;
    let _ = bad.ws().try_send_frame(true, 0x3, b"").await;
    assert_eq!(bad.ws().expect_close().await.map(|c| c.0), Some(1008));

    // Chat: a binary frame (1003) and a frame that is not JSON (1008).
    let mut chat_bin = ws(&node, "/chat").await;
    chat_bin.send_frame(true, OP_BINARY, b"\x01").await;
    assert_eq!(
        chat_bin.expect_close().await,
        Some((1003, "binary frames are not accepted".to_string()))
    );
    let mut chat_junk = ws(&node, "/chat").await;
    chat_junk.send_text("not json").await;
    assert_eq!(chat_junk.expect_close().await.map(|c| c.0), Some(1008));

    // Sink over WebSocket: a text message (1003).
    let mut sink = ws(&node, &format!("/sink?token={}", token("dev-1"))).await;
    sink.send_text("hello").await;
    assert_eq!(
        sink.expect_close().await,
        Some((1003, "binary frames only".to_string()))
    );

    // A close the client starts is answered 1000 and not counted.
    let mut polite = ws(&node, "/chat").await;
    polite.close().await;

    // The bystander is served throughout (and is the barrier before reading metrics).
    common::ping(&mut bystander).await;
    let m = metrics(&node).await;
    assert_eq!(disconnects(&m, "helios", "message_too_big"), 1.0, "{m}");
    assert_eq!(disconnects(&m, "helios", "policy_violation"), 1.0, "{m}");
    assert_eq!(disconnects(&m, "chat", "unsupported_data"), 1.0, "{m}");
    assert_eq!(disconnects(&m, "chat", "policy_violation"), 1.0, "{m}");
    assert_eq!(disconnects(&m, "sink", "unsupported_data"), 1.0, "{m}");
    assert_eq!(disconnects(&m, "chat", "normal"), 0.0, "{m}");
}
