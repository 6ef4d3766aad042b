//! Hostile input on the Sink TCP listener (development plaintext): largest frames,
//! zero-length frames, truncated LEB128, 10-byte LEB128 overflow, unknown type nibbles,
//! frames before the handshake, connection frames after it. Decided behaviour:
//!
//! * a PUBLISH whose header names a message id but whose payload is malformed → NACK with
//!   machine message `01` and a human reason; the connection stays usable;
//! * anything else undecodable after the handshake (unknown type nibble, a truncated
//!   header, a zero-length frame, a second connection request) → the connection is closed
//!   without an answer;
//! * before the handshake, anything but a well-formed connection request → closed without
//!   an answer.
//!
//! After each case the node must still be healthy.

mod sink_common;

use murmur_tests::{get, Node};
use sink_common::*;

async fn assert_healthy(node: &Node) {
    let (status, body) = get(&format!("{}/healthz", node.internal_url())).await;
    assert_eq!(status, 200, "healthz: {body}");
    // And a fresh device still gets through.
    let (mut d, _, _) = dev_device(node).await;
    d.ping().await;
}

/// The next frame must be a NACK of `id` with machine message `01` (malformed) and a
/// non-empty human reason.
async fn expect_malformed_nack(d: &mut Device, id: u16, what: &str) {
    match d.recv().await {
        Frame::Nack {
            id: got,
            machine,
            human,
        } => {
            assert_eq!(got, id, "{what}: NACK id");
            assert_eq!(machine, vec![0x01], "{what}: machine code 01 (malformed)");
            assert!(!human.is_empty(), "{what}: a human message");
        }
        other => panic!("{what}: expected a NACK, got {other:?}"),
    }
}

/// An event whose PUBLISH frame is exactly `size` bytes.
fn event_of_frame_size(size: usize) -> Event {
    let mut e = event(3, b"big", 1, &[]);
    let overhead = encode(&publish(1, &e)).len();
    e.data = vec![0xab; size - overhead - 2]; // the data chunk's LEB128 length grows by 2
    assert_eq!(encode(&publish(1, &e)).len(), size);
    e
}

#[actix_rt::test]
async fn frames_of_65535_bytes() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    let client = dev_id(c);
    let mut watcher = watch(&node, &client).await;

    // The largest valid PUBLISH is ACKed and published whole.
    let e = event_of_frame_size(65_535);
    d.send(&publish(0x123, &e)).await;
    d.expect_ack(0x123).await;
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_published(&data, &client, &e);

    // A malformed PUBLISH of the largest size is NACKed; the connection stays usable.
    let mut bad = vec![0x40, 0x05];
    bad.resize(65_535, 0xff);
    d.send_bytes(&bad).await;
    expect_malformed_nack(&mut d, 5, "65535-byte malformed PUBLISH").await;
    d.ping().await;

    // A 65535-byte frame of an unknown type closes the connection, unanswered.
    let mut unknown = vec![0x20, 0x00];
    unknown.resize(65_535, 0x00);
    d.send_bytes(&unknown).await;
    d.expect_closed(SOON).await;

    // The same before the handshake.
    let mut early = Device::tcp(node.sink_addr()).await;
    early.send_bytes(&bad).await;
    early.expect_closed(SOON).await;

    expect_no_event(&mut watcher).await;
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn zero_length_frames_close_the_connection() {
    let node = dev_node().await;

    let mut before = Device::tcp(node.sink_addr()).await;
    before.send_raw(&[0x00, 0x00]).await;
    before.expect_closed(SOON).await;

    let (mut after, _, _) = dev_device(&node).await;
    after.ping().await;
    after.send_raw(&[0x00, 0x00]).await;
    after.expect_closed(SOON).await;

    // Even when a valid frame follows in the same write.
    let (mut both, _, _) = dev_device(&node).await;
    both.send_raw(&hex("00 00 00 02 50 00")).await;
    both.expect_closed(SOON).await;

    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn truncated_publish_payloads_are_nacked_and_the_connection_stays_usable() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    let client = dev_id(c);
    let mut watcher = watch(&node, &client).await;

    let cases: &[(&str, u16, &str)] = &[
        ("40 05 80", 5, "truncated LEB128 event_type_id"),
        ("40 06 01 80 80", 6, "truncated LEB128 schema_version"),
        ("40 07 01 06 02 02", 7, "key chunk longer than the frame"),
        ("40 08 01 06 00 04 ed 85", 8, "truncated LEB128 timestamp"),
        ("40 09 01 06 00 04 05", 9, "no event_data chunk"),
        (
            "40 0a 01 06 00 04 05 03 aa",
            10,
            "event_data chunk longer than the frame",
        ),
        (
            "40 0b 01 06 00 04 05 01 aa bb",
            11,
            "a byte after event_data",
        ),
        (
            "40 0c 01 06 00 04 05 85",
            12,
            "truncated LEB128 event_data length",
        ),
        ("4f ff", 4095, "no payload at all"),
    ];
    for (bytes, id, what) in cases {
        d.send_bytes(&hex(bytes)).await;
        expect_malformed_nack(&mut d, *id, what).await;
    }
    d.ping().await;

    // Still usable for real events.
    let e = event(1, b"k", 1, b"ok");
    d.send(&publish(13, &e)).await;
    d.expect_ack(13).await;
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_published(&data, &client, &e);
    expect_no_event(&mut watcher).await;

    let malformed = sink_events(&node, "in", "malformed").await;
    assert_eq!(malformed, cases.len() as f64, "malformed PUBLISHes counted");
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn leb128_overflow_is_nacked_and_u64_max_is_not() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    let client = dev_id(c);
    let mut watcher = watch(&node, &client).await;

    // 10 bytes whose value exceeds u64 (the 10th byte carries more than one bit).
    let ten_overflow = "ff ff ff ff ff ff ff ff ff 7f";
    let ten_overflow_2 = "80 80 80 80 80 80 80 80 80 02";
    // 11 bytes: longer than any u64.
    let eleven = "80 80 80 80 80 80 80 80 80 80 00";
    let tail = "06 00 04 05 01 aa";
    let cases = [
        (
            format!("40 07 {ten_overflow} {tail}"),
            7,
            "event_type_id 10-byte overflow",
        ),
        (
            format!("40 08 {ten_overflow_2} {tail}"),
            8,
            "event_type_id 10th byte 02",
        ),
        (
            format!("40 09 {eleven} {tail}"),
            9,
            "event_type_id 11 bytes",
        ),
        (
            format!("40 0a 01 06 00 {ten_overflow} 05 01 aa"),
            10,
            "offset overflow",
        ),
        (
            format!("40 0b 01 06 00 04 05 {ten_overflow} aa"),
            11,
            "event_data length overflow",
        ),
        (
            format!("40 0c 01 06 {ten_overflow} 04 05 01 aa"),
            12,
            "key length overflow",
        ),
    ];
    for (bytes, id, what) in &cases {
        d.send_bytes(&hex(bytes)).await;
        expect_malformed_nack(&mut d, *id, what).await;
    }
    d.ping().await;

    // u64::MAX in 10 bytes (`ff ×9 01`) is valid.
    let e = Event {
        event_type_id: u64::MAX,
        schema_version: u64::MAX,
        key: b"max".to_vec(),
        offset: u64::MAX,
        timestamp: u64::MAX,
        data: vec![1],
    };
    let frame = encode(&publish(0x0ab, &e));
    assert!(to_hex(&frame).starts_with("40 ab ff ff ff ff ff ff ff ff ff 01"));
    d.send_bytes(&frame).await;
    d.expect_ack(0x0ab).await;
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_published(&data, &client, &e);

    expect_no_event(&mut watcher).await;
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn frames_before_the_handshake_are_never_answered() {
    let node = dev_node().await;
    let e = event(1, b"k", 1, b"early");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (encode(&Frame::Ping), "PING"),
        (encode(&publish(1, &e)), "PUBLISH"),
        (encode(&Frame::Ack { id: 1 }), "ACK"),
        (hex("71 23 02 01 f4 62 61 64"), "NACK"),
        (encode(&Frame::Pong), "PONG"),
        (hex("10"), "CONNECTION_RESPONSE"),
        (hex("20 00"), "unknown type 2"),
        (hex("ff ff"), "unknown type 15"),
        (hex("00 06 76 31"), "truncated connection request"),
        (hex("00 06 76 31 2e 30 2e 30 00 00"), "truncated client id"),
        (
            hex("00 06 76 31 2e 30 2e 30 00 00 00 01 00 00"),
            "half a server id",
        ),
        (
            hex("00 02 ff fe 00 00 00 01"),
            "application version not UTF-8",
        ),
        (hex("00 8a"), "truncated LEB128 application version length"),
    ];
    for (frame, what) in &cases {
        let mut d = Device::tcp(node.sink_addr()).await;
        d.send_bytes(frame).await;
        // A PING right behind it must not be answered either.
        let _ = d.try_send_bytes(&encode(&Frame::Ping)).await;
        let why = d.expect_closed(SOON).await;
        assert!(!why.is_empty(), "{what}");
    }

    // A frame cut short by the end of the stream (prefix 16, then 3 bytes and FIN).
    let mut raw = Raw::connect(node.sink_addr()).await;
    raw.send_hex("00 10 00 06 76").await;
    tokio::io::AsyncWriteExt::shutdown(&mut raw.stream)
        .await
        .unwrap();
    raw.expect_eof().await;

    assert_eq!(
        sink_events(&node, "in", "accepted").await,
        0.0,
        "nothing was accepted before a handshake"
    );
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn unknown_type_nibbles_after_the_handshake_close_the_connection() {
    let node = dev_node().await;
    for nibble in [2u8, 8, 9, 10, 11, 12, 13, 14, 15] {
        let (mut d, _, _) = dev_device(&node).await;
        d.ping().await;
        d.send_bytes(&[nibble << 4, 0x01, 0x02]).await;
        d.expect_closed(SOON).await;
    }
    // A truncated header of a known type (one byte of ACK / PING) too.
    for b in [0x30u8, 0x50] {
        let (mut d, _, _) = dev_device(&node).await;
        d.send_bytes(&[b]).await;
        d.expect_closed(SOON).await;
    }
    assert_healthy(&node).await;
}

/// A NACK from the server names one of the *device's* PUBLISH ids. A malformed ACK, NACK,
/// PING or PONG carries no PUBLISH id (an ACK/NACK id is one of the server's own message
/// ids), so answering it with a NACK would refuse a PUBLISH the device never sent, or a
/// different one that happens to share the id. The server may close or ignore; it must
/// not NACK.
#[actix_rt::test]
async fn malformed_non_publish_frames_are_never_nacked() {
    let node = dev_node().await;
    let cases = [
        ("30 07 00", "ACK with a trailing byte"),
        ("50 00 00", "PING with a trailing byte"),
        ("60 00 00", "PONG with a trailing byte"),
        ("70 07", "NACK without its machine message chunk"),
        (
            "70 07 05 01",
            "NACK whose machine message is longer than the frame",
        ),
    ];
    for (bytes, what) in cases {
        let (mut d, _, _) = dev_device(&node).await;
        d.send_bytes(&hex(bytes)).await;
        match d.try_recv_raw(QUIET).await {
            None => d.ping().await,
            Some(Rx::Closed(_)) => {}
            Some(Rx::Frame(f)) => panic!(
                "{what}: the server answered {} ({:?}); a NACK may only name a PUBLISH",
                to_hex(&f),
                decode(&f)
            ),
        }
    }
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn connection_frames_after_the_handshake_close_the_connection() {
    let node = dev_node().await;
    let (mut d, c, s) = dev_device(&node).await;
    d.send(&request(APP, c, Some(s))).await;
    d.expect_closed(SOON).await;

    let (mut d, _, _) = dev_device(&node).await;
    d.send(&Frame::ConnectionResponse(ConnectionResponse::Connected))
        .await;
    d.expect_closed(SOON).await;
    assert_healthy(&node).await;
}

#[actix_rt::test]
async fn acks_and_nacks_for_ids_never_sent_are_ignored() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    for id in [0u16, 1, 4095] {
        d.send(&Frame::Ack { id }).await;
        d.send(&Frame::Nack {
            id,
            machine: vec![9],
            human: "never sent".into(),
        })
        .await;
        d.send(&Frame::Pong).await;
    }
    d.expect_silence().await;
    assert!(nacks(&node, &dev_id(c)).await.is_empty());
    assert_healthy(&node).await;
}
