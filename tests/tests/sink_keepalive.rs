//! Sink keepalive (CONTRACT §6): PING → PONG; a connection with nothing received for
//! the idle limit is closed (`MURMUR_SINK_IDLE`, 90 s by default, 1 s here); the server
//! never PINGs. "Received" means a complete frame.

mod sink_common;

use std::time::{Duration, Instant};

use murmur_tests::{Node, NodeBuilder};
use sink_common::*;

const IDLE: Duration = Duration::from_secs(1);
/// Less than the idle limit: the gap between keepalive frames.
const GAP: Duration = Duration::from_millis(400);

async fn idle_node() -> Node {
    dev(NodeBuilder::new())
        .env("MURMUR_SINK_IDLE", "1s")
        .spawn()
        .await
}

/// Asserts `d` is closed, not before the idle limit counted from `since`.
async fn expect_idle_close(d: &mut Device, since: Instant) {
    d.expect_closed(SOON).await;
    let after = since.elapsed();
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed after {after:?}, before the idle limit {IDLE:?}"
    );
}

#[actix_rt::test]
async fn a_connection_with_nothing_received_is_closed() {
    let node = idle_node().await;
    let (mut d, _, _) = dev_device(&node).await;
    let since = Instant::now();
    expect_idle_close(&mut d, since).await;
}

#[actix_rt::test]
async fn a_connection_without_a_handshake_is_closed_too() {
    let node = idle_node().await;
    let mut d = Device::tcp(node.sink_addr()).await;
    let since = Instant::now();
    expect_idle_close(&mut d, since).await;
}

#[actix_rt::test]
async fn pings_and_pongs_keep_a_connection_open_and_the_server_never_pings() {
    let node = idle_node().await;
    let (mut d, _, _) = dev_device(&node).await;
    let start = Instant::now();
    for round in 0..6 {
        // Nothing from the server in the meantime: it never PINGs on its own.
        if let Some(rx) = d.try_recv_raw(GAP).await {
            panic!("round {round}: the server sent {rx:?} unprompted");
        }
        if round % 2 == 0 {
            d.ping().await;
        } else {
            // An unsolicited PONG is a frame received too; it is not answered.
            d.send(&Frame::Pong).await;
        }
    }
    assert!(
        start.elapsed() > IDLE * 2,
        "kept open for {:?}",
        start.elapsed()
    );
    // Silence from now on: closed.
    let since = Instant::now();
    expect_idle_close(&mut d, since).await;
}

#[actix_rt::test]
async fn a_trickle_of_bytes_that_never_completes_a_frame_does_not_keep_it_open() {
    let node = idle_node().await;
    let (mut d, _, _) = dev_device(&node).await;
    let since = Instant::now();
    // A length prefix announcing 200 bytes, then one byte per GAP.
    d.send_raw(&[0x00, 0xc8]).await;
    let closed = loop {
        match d.try_recv_raw(GAP).await {
            Some(Rx::Closed(_)) => break true,
            Some(Rx::Frame(f)) => panic!("unexpected frame {}", to_hex(&f)),
            None => {}
        }
        if since.elapsed() > SOON {
            break false;
        }
        if d.try_send_raw(&[0x42]).await.is_err() {
            break true;
        }
    };
    assert!(closed, "still open after {:?}", since.elapsed());
    assert!(since.elapsed() >= IDLE - Duration::from_millis(100));
}

#[actix_rt::test]
async fn ping_is_answered_over_websocket_and_idle_websockets_close() {
    let node = idle_node().await;
    let mut d = Device::ws(&node, &uniq("meter-")).await;
    d.hello_new(rand_u32()).await;
    d.ping().await;
    let since = Instant::now();
    expect_idle_close(&mut d, since).await;
}
