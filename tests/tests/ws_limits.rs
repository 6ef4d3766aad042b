//! WebSocket limits before buffering (CONTRACT §10), on every WebSocket path: a frame —
//! or a fragmented message — whose *declared* length is over the protocol's limit (chat
//! 4096 B, Helios 1 MiB, Sink 65535 B) is closed with 1009 as soon as its header is
//! read, with no payload sent at all; a frame with a reserved bit set closes 1008 (not
//! 1007); the node's memory does not grow, and other connections are unaffected.

use std::time::Duration;

use murmur_tests::wsframe::{OP_BINARY, OP_CONTINUATION, OP_TEXT};
use murmur_tests::{token, Node, WsClient};

/// Where each WebSocket protocol lives, its message limit and its data opcode.
fn paths(node: &Node) -> Vec<(&'static str, String, usize, u8)> {
    let t = token("limits-user");
    vec![
        ("chat", node.ws_url("/chat"), 4096, OP_TEXT),
        (
            "helios",
            node.ws_url(&format!("/starling?token={t}")),
            1 << 20,
            OP_TEXT,
        ),
        (
            "sink",
            node.ws_url(&format!("/sink?token={t}")),
            65535,
            OP_BINARY,
        ),
    ]
}

/// A masked client frame header declaring `len` payload bytes (64-bit length form).
fn header(b0: u8, len: u64) -> Vec<u8> {
    let mut h = vec![b0, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    h
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn expect_close(ws: &mut WsClient, code: u16, reason: &str, what: &str) {
    let close = ws.expect_close_within(Duration::from_secs(5)).await;
    assert_eq!(
        close,
        Some((code, reason.to_string())),
        "{what}: expected close {code} {reason:?}"
    );
}

/// A header declaring 2^40 bytes, then nothing: the close arrives from the header alone,
/// on each path (chat needs no token for this: it is open before `authenticate`).
#[actix_rt::test]
async fn a_huge_declared_frame_is_closed_1009_from_its_header_alone() {
    let node = Node::start().await;
    let before = rss_kib(node.pid());
    for (name, url, limit, op) in paths(&node) {
        let mut ws = WsClient::connect(&url).await.unwrap();
        ws.send_raw(&header(0x80 | op, 1 << 40)).await.unwrap();
        let reason = format!("message larger than {limit} bytes");
        expect_close(&mut ws, 1009, &reason, name).await;
    }
    // Nothing was buffered for them: the node did not grow by anything like a frame.
    let after = rss_kib(node.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// One byte over the limit, declared: refused before the payload is sent.
#[actix_rt::test]
async fn one_byte_over_the_limit_is_refused_before_the_payload() {
    let node = Node::start().await;
    for (name, url, limit, op) in paths(&node) {
        let mut ws = WsClient::connect(&url).await.unwrap();
        ws.send_raw(&header(0x80 | op, limit as u64 + 1))
            .await
            .unwrap();
        let reason = format!("message larger than {limit} bytes");
        expect_close(&mut ws, 1009, &reason, name).await;
    }
}

/// Fragments count together: a first fragment of half the limit, then a continuation
/// whose header takes the message past it, is refused at that header.
#[actix_rt::test]
async fn fragments_are_counted_against_the_limit_as_they_are_declared() {
    let node = Node::start().await;
    for (name, url, limit, op) in paths(&node) {
        let mut ws = WsClient::connect(&url).await.unwrap();
        let half = vec![b'a'; limit / 2 + 1];
        ws.send_frame(false, op, &half).await;
        ws.send_raw(&header(OP_CONTINUATION, (limit / 2 + 1) as u64))
            .await
            .unwrap();
        let reason = format!("message larger than {limit} bytes");
        expect_close(&mut ws, 1009, &reason, name).await;
    }
}

/// RSV1 without a negotiated extension is a framing error: 1008, on every path.
#[actix_rt::test]
async fn a_reserved_bit_closes_1008_not_1007() {
    let node = Node::start().await;
    for (name, url, _, op) in paths(&node) {
        let mut ws = WsClient::connect(&url).await.unwrap();
        let mut frame = vec![0x80 | 0x40 | op, 0x80 | 2, 1, 2, 3, 4];
        frame.extend_from_slice(&[b'{' ^ 1, b'}' ^ 2]);
        ws.send_raw(&frame).await.unwrap();
        expect_close(
            &mut ws,
            1008,
            "reserved bits set (no extension negotiated)",
            name,
        )
        .await;
    }
}

/// While one connection is refused, another on the same node carries on.
#[actix_rt::test]
async fn other_connections_are_unaffected() {
    let node = Node::start().await;
    let t = token("bystander");
    let mut by = murmur_tests::Starling::connect(&node, "bystander").await;
    let mut bad = WsClient::connect(&node.ws_url(&format!("/starling?token={t}")))
        .await
        .unwrap();
    bad.send_raw(&header(0x81, 1 << 40)).await.unwrap();
    expect_close(
        &mut bad,
        1009,
        "message larger than 1048576 bytes",
        "helios",
    )
    .await;
    let pong = by.call_ok("system:ping", serde_json::json!({})).await;
    assert!(pong.is_object() || pong.is_null(), "{pong}");
}
