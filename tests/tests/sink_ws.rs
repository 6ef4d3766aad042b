//! Sink over WebSocket `/sink?token=` (CONTRACT §2, §6): the client id is the token's
//! `sub`; each binary message is one frame without the length prefix; the same
//! handshake, events, outbox and quarantine as over TCP.

mod sink_common;

use murmur_tests::{
    metric_value, metrics, token, token_alg_none, token_with, NodeBuilder, WsClient, JWT_SECRET,
};
use serde_json::json;
use sink_common::*;

#[actix_rt::test]
async fn the_upgrade_needs_a_valid_token() {
    let node = dev_node().await;
    let refused = [
        node.ws_url("/sink"),
        node.ws_url("/sink?token="),
        node.ws_url("/sink?token=garbage"),
        node.ws_url(&format!("/sink?token={}", token_alg_none("m1"))),
        node.ws_url(&format!(
            "/sink?token={}",
            token_with(JWT_SECRET, "m1", -3600)
        )),
        node.ws_url(&format!(
            "/sink?token={}",
            token_with("another-secret-another-secret-another", "m1", 3600)
        )),
    ];
    for url in refused {
        match Device::try_ws(&url).await {
            Ok(_) => panic!("{url}: upgrade accepted"),
            Err((status, body)) => {
                assert_eq!(status, 401, "{url}: {body}");
                let v: serde_json::Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{url}: error body not JSON ({e}): {body}"));
                assert_eq!(v["error"]["code"], "UNAUTHORIZED", "{url}: {v}");
            }
        }
    }
    // An Authorization header works as well as ?token=.
    let client = uniq("meter-");
    let auth = format!("Bearer {}", token(&client));
    let ws = WsClient::connect_with_headers(&node.ws_url("/sink"), &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|(s, b)| panic!("header token refused: {s} {b}"));
    let mut d = Device::from_ws(ws);
    d.hello_new(rand_u32()).await;
    d.ping().await;
}

#[actix_rt::test]
async fn one_binary_message_is_one_frame_without_a_prefix() {
    let node = dev_node().await;
    let client = uniq("meter-");
    let mut watcher = watch(&node, &client).await;
    let mut d = Device::ws(&node, &client).await;
    // The ORIGINS request vector without a server id, as one message.
    d.send_raw(&hex("00 06 76 31 2e 30 2e 30 00 00 00 01"))
        .await;
    let hello = d.recv_raw().await;
    assert_eq!(
        hello.len(),
        5,
        "hello_new_client is 5 bytes: {}",
        to_hex(&hello)
    );
    assert_eq!(hello[0], 0x11);

    d.send_raw(&hex("50 00")).await;
    assert_eq!(to_hex(&d.recv_raw().await), "60 00", "PONG, no prefix");

    // The PUBLISH vector; the client id is the token's sub.
    d.send_raw(&hex("4f ff 01 06 02 02 03 04 ed 85 cc 83 06 01 05"))
        .await;
    assert_eq!(to_hex(&d.recv_raw().await), "3f ff");
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_eq!(
        data,
        json!({"event_type_id": 1, "schema_version": 6, "key": "AgM=", "offset": 4,
               "timestamp": 1_618_150_125u64, "event_data": "BQ==", "client": client})
    );

    // The largest frame fits one message.
    let mut big = event(2, b"big", 1, &[]);
    let overhead = encode(&publish(5, &big)).len();
    big.data = vec![1; 65_535 - overhead - 2];
    let frame = encode(&publish(5, &big));
    assert_eq!(frame.len(), 65_535);
    d.send_bytes(&frame).await;
    d.expect_ack(5).await;
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_published(&data, &client, &big);

    // A TCP-style prefixed frame is not a frame here: `00 02 50 00` reads as a
    // connection request after the handshake, and closes the connection.
    d.send_raw(&hex("00 02 50 00")).await;
    d.expect_closed(SOON).await;
    expect_no_event(&mut watcher).await;
}

#[actix_rt::test]
async fn text_and_oversized_messages_close_the_websocket() {
    let node = dev_node().await;
    let client = uniq("meter-");

    let mut d = Device::ws(&node, &client).await;
    d.hello_new(rand_u32()).await;
    d.ws_client().send_text("50 00").await;
    d.expect_closed(SOON).await;
    assert_eq!(
        d.ws_close.clone().flatten().map(|c| c.0),
        Some(1003),
        "unsupported data"
    );

    let mut d = Device::ws(&node, &client).await;
    d.send_raw(&vec![0x50; 65_536]).await;
    d.expect_closed(SOON).await;
    assert_eq!(
        d.ws_close.clone().flatten().map(|c| c.0),
        Some(1009),
        "message too big"
    );
}

#[actix_rt::test]
async fn the_outbox_and_redelivery_over_websocket() {
    let node = dev_node().await;
    let client = uniq("meter-");
    let c = rand_u32();
    for i in 0..3u8 {
        queue(&node, &client, api_event(1, 1, b"w", &[i])).await;
    }
    let mut d = Device::ws(&node, &client).await;
    let s = d.hello_new(c).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(d.expect_publish().await);
    }
    d.expect_silence().await;
    assert_eq!(
        got.iter().map(|(_, e)| e.offset).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    d.send(&Frame::Ack { id: got[0].0 }).await;
    d.send(&Frame::Ack { id: got[2].0 }).await;
    d.ping().await;
    d.close().await;

    let mut d = Device::ws(&node, &client).await;
    d.hello_known(c, s).await;
    let (id, e) = d.expect_publish().await;
    assert_eq!(e, got[1].1);
    d.expect_silence().await;
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    assert_eq!(outbox_depth(&node, &client).await, 0);
}

#[actix_rt::test]
async fn refusals_and_quarantine_close_the_websocket() {
    let node = dev_node().await;
    let client = uniq("meter-");
    let c = rand_u32();
    let mut d = Device::ws(&node, &client).await;
    let s = d.hello_new(c).await;

    // A mismatch: response frame, then a close.
    let mut other = Device::ws(&node, &client).await;
    assert_eq!(
        other.hello(APP, c ^ 1, Some(s)).await,
        ConnectionResponse::InstanceIdMismatch
    );
    other.expect_closed(SOON).await;
    assert_eq!(
        other.ws_close.clone().flatten(),
        Some((1008, "handshake refused".to_string()))
    );
    d.ping().await;

    // Quarantined while connected: code 3 with the messages at once, then a close.
    quarantine(&node, &client, &[9], "tamper switch").await;
    assert_eq!(
        d.recv().await,
        Frame::ConnectionResponse(ConnectionResponse::Quarantined {
            machine: vec![9],
            human: "tamper switch".into()
        })
    );
    d.expect_closed(SOON).await;
    assert_eq!(
        d.ws_close.clone().flatten(),
        Some((4005, "quarantined".to_string()))
    );
    // Quarantined at the handshake: the response frame, then the same close.
    let mut again = Device::ws(&node, &client).await;
    assert!(matches!(
        again.hello(APP, c, Some(s)).await,
        ConnectionResponse::Quarantined { .. }
    ));
    again.expect_closed(SOON).await;
    assert_eq!(
        again.ws_close.clone().flatten(),
        Some((4005, "quarantined".to_string()))
    );
    // Each close was counted once, with its code's label.
    let m = metrics(&node).await;
    for (reason, want) in [("policy_violation", 1.0), ("terminated", 2.0)] {
        assert_eq!(
            metric_value(
                &m,
                "murmur_disconnects_total",
                &[("protocol", "sink"), ("reason", reason)]
            ),
            Some(want),
            "{reason}"
        );
    }
}

#[actix_rt::test]
async fn a_newer_connection_and_the_idle_limit_close_with_their_codes() {
    let node = dev(NodeBuilder::new().env("MURMUR_SINK_IDLE", "1s"))
        .spawn()
        .await;
    let client = uniq("meter-");
    let c = rand_u32();
    let mut first = Device::ws(&node, &client).await;
    let s = first.hello_new(c).await;
    let mut second = Device::ws(&node, &client).await;
    second.hello_known(c, s).await;
    first.expect_closed(SOON).await;
    assert_eq!(
        first.ws_close.clone().flatten(),
        Some((4002, "replaced by a newer connection".to_string()))
    );
    // Nothing from the device for the idle limit (1 s): 4004.
    second.expect_closed(SOON).await;
    assert_eq!(
        second.ws_close.clone().flatten(),
        Some((4004, "idle: nothing received".to_string()))
    );
}
