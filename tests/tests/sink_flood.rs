//! A device that floods PUBLISH frames without reading its ACKs (hostile input). The
//! server handles one frame at a time and writes its ACK before reading the next, so such
//! a device is slowed down by TCP flow control rather than buffered for: the node stays
//! healthy, its memory bounded, and every ACK is there once the device reads.

mod sink_common;

use std::time::Duration;

use murmur_tests::{get, within, Node};
use sink_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLOOD: usize = 20_000;
/// Bytes of event data per PUBLISH (20 000 × 1 KiB ≈ 20 MiB in flight).
const DATA: usize = 1024;
const RSS_GROWTH_LIMIT_KIB: u64 = 200 * 1024;

async fn healthz(node: &Node) -> u16 {
    get(&format!("{}/healthz", node.internal_url())).await.0
}

#[actix_rt::test]
async fn a_publish_flood_without_reading_acks_keeps_the_node_healthy_and_bounded() {
    let node = dev_node().await;
    let pid = node.pid();
    let c = rand_u32();

    let mut stream = TcpStream::connect(node.sink_addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let hello = prefixed(&encode(&request(APP, c, None))).unwrap();
    stream.write_all(&hello).await.unwrap();
    let mut answer = [0u8; 7];
    within("hello", SOON, stream.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(to_hex(&answer[..3]), "00 05 11", "hello_new_client");
    let (mut rd, mut wr) = stream.into_split();

    let rss_before = rss_kib(pid);
    let mut flood = Vec::with_capacity(FLOOD * (DATA + 24));
    for i in 0..FLOOD {
        let e = event(1, b"flood", i as u64, &[(i % 251) as u8; DATA]);
        flood.extend(prefixed(&encode(&publish((i & 0x0fff) as u16, &e))).unwrap());
    }
    let mut writer = tokio::spawn(async move { wr.write_all(&flood).await.map(|()| wr) });

    // While the device writes and does not read: the node answers its health check and
    // its memory stays bounded. Stop watching once the flood is written, or once the
    // server stopped reading (flow control: no progress between two looks).
    let mut rss_max = rss_before;
    let mut last_accepted = -1.0;
    let mut looks = 0;
    let written = within(
        "the flood to be written or stalled",
        Duration::from_secs(60),
        async {
            loop {
                looks += 1;
                assert_eq!(healthz(&node).await, 200, "healthz during the flood");
                rss_max = rss_max.max(rss_kib(pid));
                let accepted = sink_events(&node, "in", "accepted").await;
                if accepted == last_accepted {
                    break None; // stalled by flow control
                }
                last_accepted = accepted;
                if let Ok(r) = tokio::time::timeout(Duration::from_millis(250), &mut writer).await {
                    break Some(r.expect("writer task").expect("writing the flood"));
                }
            }
        },
    )
    .await;
    rss_max = rss_max.max(rss_kib(pid));
    assert_eq!(
        healthz(&node).await,
        200,
        "healthz after the flood was sent"
    );

    // Now the device reads: every ACK, in order, with its PUBLISH's id.
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut acked = 0usize;
    within("all ACKs", Duration::from_secs(60), async {
        while acked < FLOOD {
            while let Some(f) = reader.next_frame() {
                assert_eq!(
                    decode(&f),
                    Ok(Frame::Ack {
                        id: (acked & 0x0fff) as u16
                    }),
                    "ACK #{acked}"
                );
                acked += 1;
            }
            if acked == FLOOD {
                break;
            }
            let n = rd.read(&mut buf).await.expect("reading ACKs");
            assert!(n > 0, "connection closed after {acked} ACKs");
            reader.extend(&buf[..n]);
        }
    })
    .await;
    let mut wr = match written {
        Some(wr) => wr,
        None => within(
            "the rest of the flood to be written",
            Duration::from_secs(30),
            writer,
        )
        .await
        .expect("writer task")
        .expect("writing the flood"),
    };
    rss_max = rss_max.max(rss_kib(pid));

    assert_eq!(sink_events(&node, "in", "accepted").await, FLOOD as f64);
    let growth = rss_max.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "RSS grew by {growth} KiB ({rss_before} → {rss_max} KiB) over {looks} looks"
    );
    assert_eq!(healthz(&node).await, 200);

    // The connection is still a working Sink connection.
    wr.write_all(&prefixed(&encode(&Frame::Ping)).unwrap())
        .await
        .unwrap();
    let mut pong = [0u8; 4];
    within("PONG", SOON, rd.read_exact(&mut pong))
        .await
        .unwrap();
    assert_eq!(to_hex(&pong), "00 02 60 00");
}
