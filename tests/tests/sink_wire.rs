//! Sink wire format (CONTRACT §6, ORIGINS.md Sink): every hex vector of the reference
//! through the codec, the same bytes sent raw over TCP (length prefix included) to prove
//! wire compatibility, and the server's own frames compared byte for byte.

mod sink_common;

use murmur_tests::{get, NodeBuilder};
use serde_json::json;
use sink_common::*;

/// The ORIGINS vectors, `(frame, hex without the TCP prefix)`.
fn vectors() -> Vec<(Frame, &'static str)> {
    vec![
        (
            request("v1.0.0", 1, Some(2)),
            "00 06 76 31 2e 30 2e 30 00 00 00 01 00 00 00 02",
        ),
        (
            request("v1.0.0", 1, None),
            "00 06 76 31 2e 30 2e 30 00 00 00 01",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::Connected),
            "10",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::HelloNewClient(4_294_967_295)),
            "11 ff ff ff ff",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::InstanceIdMismatch),
            "12",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::UnsupportedProtocolVersion),
            "14",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::UnsupportedApplicationVersion),
            "15",
        ),
        (
            Frame::ConnectionResponse(ConnectionResponse::Quarantined {
                machine: vec![1, 2],
                human: "maintenance".into(),
            }),
            "13 02 01 02 6d 61 69 6e 74 65 6e 61 6e 63 65",
        ),
        (Frame::Ack { id: 0 }, "30 00"),
        (Frame::Ack { id: 4095 }, "3f ff"),
        (Frame::Ping, "50 00"),
        (Frame::Pong, "60 00"),
        (
            Frame::Publish {
                id: 4095,
                event: Event {
                    event_type_id: 1,
                    schema_version: 6,
                    key: vec![2, 3],
                    offset: 4,
                    timestamp: 1_618_150_125,
                    data: vec![5],
                },
            },
            "4f ff 01 06 02 02 03 04 ed 85 cc 83 06 01 05",
        ),
        (
            Frame::Nack {
                id: 291,
                machine: vec![0x01, 0xf4],
                human: "bad".into(),
            },
            "71 23 02 01 f4 62 61 64",
        ),
    ]
}

#[test]
fn the_codec_passes_every_origins_vector_byte_for_byte() {
    for (frame, bytes) in vectors() {
        assert_eq!(to_hex(&encode(&frame)), bytes, "encode {frame:?}");
        assert_eq!(decode(&hex(bytes)), Ok(frame), "decode {bytes}");
    }
    // "a ping on the TCP stream"
    assert_eq!(
        prefixed(&encode(&Frame::Ping)).map(|b| to_hex(&b)),
        Some("00 02 50 00".to_string())
    );
    let mut reader = FrameReader::new();
    reader.extend(&hex("00 02 50 00 00 02 3f"));
    assert_eq!(reader.next_frame(), Some(hex("50 00")));
    assert_eq!(reader.next_frame(), None, "half a frame is not a frame");
}

#[test]
fn the_codec_rejects_unknown_types_and_truncated_frames_without_panicking() {
    // Unknown type nibbles: 2 and 8..=15.
    for nibble in [2u8, 8, 9, 10, 11, 12, 13, 14, 15] {
        let frame = [nibble << 4, 0x00];
        assert!(decode(&frame).is_err(), "type {nibble}: {frame:02x?}");
    }
    // Every proper prefix of every vector is an error or a shorter valid frame, never a
    // panic; prefixes of fixed-size frames are errors.
    for (frame, bytes) in vectors() {
        let bytes = hex(bytes);
        for cut in 0..bytes.len() {
            let r = decode(&bytes[..cut]);
            let variable_tail = matches!(
                frame,
                Frame::Nack { .. }
                    | Frame::ConnectionResponse(ConnectionResponse::Quarantined { .. })
                    | Frame::ConnectionRequest { .. }
            );
            if !variable_tail {
                assert!(r.is_err(), "truncated {frame:?} at {cut}: {r:?}");
            }
        }
    }
    // Truncated LEB128 and a 10-byte overflow inside a PUBLISH name the id to NACK.
    let e = decode(&hex("40 05 80")).unwrap_err();
    assert_eq!(e.id, Some(5));
    let mut overflow = hex("40 07");
    overflow.extend([0xff; 9]);
    overflow.push(0x7f);
    overflow.extend(hex("06 00 00 00 00"));
    assert_eq!(decode(&overflow).unwrap_err().id, Some(7));
}

/// Reads a CONNECTION_RESPONSE hello from the raw stream: `00 05 11 <S>` → S.
async fn raw_hello(raw: &mut Raw) -> u32 {
    let got = raw.read(7).await;
    assert_eq!(
        to_hex(&got[..3]),
        "00 05 11",
        "hello_new_client with its prefix"
    );
    u32::from_be_bytes([got[3], got[4], got[5], got[6]])
}

#[actix_rt::test]
async fn origins_bytes_work_raw_over_tcp() {
    let node = dev_node().await;
    let mut watcher = watch(&node, "dev-1").await;

    // The request without a server id (client 1, app v1.0.0), with its 2-byte prefix.
    let mut first = Raw::connect(node.sink_addr()).await;
    first
        .send_hex("00 0c  00 06 76 31 2e 30 2e 30 00 00 00 01")
        .await;
    let server = raw_hello(&mut first).await;

    // "a ping on the TCP stream" and its pong.
    first.send_hex("00 02 50 00").await;
    first.expect_hex("00 02 60 00").await;

    // The PUBLISH vector (id 4095) → ACK 4095 `3f ff`.
    first
        .send_hex("00 0f  4f ff 01 06 02 02 03 04 ed 85 cc 83 06 01 05")
        .await;
    first.expect_hex("00 02 3f ff").await;
    let data = next_event(&mut watcher, "dev-1", SOON).await;
    assert_eq!(
        data,
        json!({"event_type_id": 1, "schema_version": 6, "key": "AgM=", "offset": 4,
               "timestamp": 1_618_150_125u64, "event_data": "BQ==", "client": "dev-1"})
    );

    // The NACK vector for an id the server never sent is ignored; `30 00` (ACK 0) too.
    first.send_hex("00 08  71 23 02 01 f4 62 61 64").await;
    first.send_hex("00 02 30 00").await;
    first.send_hex("00 02 50 00").await;
    first.expect_hex("00 02 60 00").await;

    // The request vector with server id 2: not this deployment's id → mismatch `12`, close.
    assert_ne!(
        server, 2,
        "astronomically unlikely: the random server id is 2"
    );
    let mut wrong = Raw::connect(node.sink_addr()).await;
    wrong
        .send_hex("00 10  00 06 76 31 2e 30 2e 30 00 00 00 01 00 00 00 02")
        .await;
    wrong.expect_hex("00 01 12").await;
    wrong.expect_eof().await;

    // The same request with the real server id → connected `10`; it replaces `first`.
    let mut second = Raw::connect(node.sink_addr()).await;
    let mut req = hex("00 10  00 06 76 31 2e 30 2e 30 00 00 00 01");
    req.extend(server.to_be_bytes());
    second.send(&req).await;
    second.expect_hex("00 01 10").await;
    first.expect_eof().await;

    // Server → device: the PUBLISH vector's event queued through the API arrives with the
    // same payload bytes (`4 | id:12` header, then the reference payload).
    let body = json!({"event_type_id": 1, "schema_version": 6, "key": "AgM=", "offset": 4,
                      "timestamp": 1_618_150_125u64, "event_data": "BQ=="});
    let queued = queue(&node, "dev-1", body).await;
    assert_eq!(queued["offset"], 4, "{queued}");
    let got = second.read(17).await;
    assert_eq!(to_hex(&got[..2]), "00 0f", "length prefix of the PUBLISH");
    assert_eq!(got[2] >> 4, 4, "type nibble PUBLISH: {}", to_hex(&got));
    assert_eq!(
        to_hex(&got[4..]),
        "01 06 02 02 03 04 ed 85 cc 83 06 01 05",
        "PUBLISH payload"
    );
    let ack = vec![0x00, 0x02, 0x30 | (got[2] & 0x0f), got[3]];
    second.send(&ack).await;
    second.send_hex("00 02 50 00").await;
    second.expect_hex("00 02 60 00").await;
    assert_eq!(outbox_depth(&node, "dev-1").await, 0, "ACKed event removed");

    // The quarantine vector: machine 01 02, human "maintenance" → `13 02 01 02 ...`, close;
    // to the connected device at once, and to the next connection attempt.
    quarantine(&node, "dev-1", &[1, 2], "maintenance").await;
    second
        .expect_hex("00 0f  13 02 01 02 6d 61 69 6e 74 65 6e 61 6e 63 65")
        .await;
    second.expect_eof().await;
    let mut third = Raw::connect(node.sink_addr()).await;
    third.send(&req).await;
    third
        .expect_hex("00 0f  13 02 01 02 6d 61 69 6e 74 65 6e 61 6e 63 65")
        .await;
    third.expect_eof().await;

    // Protocol version 1 in the low nibble → `14`, close.
    let mut v1 = Raw::connect(node.sink_addr()).await;
    v1.send_hex("00 0c  01 06 76 31 2e 30 2e 30 00 00 00 07")
        .await;
    v1.expect_hex("00 01 14").await;
    v1.expect_eof().await;

    expect_no_event(&mut watcher).await;
}

#[actix_rt::test]
async fn unsupported_application_version_is_byte_15() {
    let node = dev(NodeBuilder::new())
        .env("MURMUR_SINK_MIN_APP_VERSION", "2.0.0")
        .spawn()
        .await;
    let mut raw = Raw::connect(node.sink_addr()).await;
    raw.send_hex("00 0c  00 06 76 31 2e 30 2e 30 00 00 00 01")
        .await;
    raw.expect_hex("00 01 15").await;
    raw.expect_eof().await;
    let (status, _) = get(&format!("{}/healthz", node.internal_url())).await;
    assert_eq!(status, 200);
}
