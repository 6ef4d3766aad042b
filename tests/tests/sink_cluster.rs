//! Sink in cluster mode (three nodes on one real Redis, development plaintext TCP):
//! one server instance id per deployment, client instance ids shared, takeover and
//! quarantine on every node, device events durable before the ACK and published across
//! nodes, the outbox surviving the SIGKILL of the node that queued or delivered an event,
//! and NACK `02` (unavailable) while Redis is down.

mod sink_common;

use murmur_tests::{eventually, Cluster, Node};
use murmur_tests::{CROSS, SOON};
use sink_common::*;

async fn dev_cluster(n: usize) -> Cluster {
    Cluster::start_with(n, |_, b| dev(b)).await
}

async fn device_on(node: &Node) -> Device {
    Device::tcp(node.sink_addr()).await
}

#[actix_rt::test]
async fn ids_takeover_and_quarantine_hold_across_nodes() {
    let mut cluster = dev_cluster(3).await;

    // One server instance id, whichever node answers.
    let c = rand_u32();
    let client = dev_id(c);
    let mut first = device_on(cluster.node(0)).await;
    let s = first.hello_new(c).await;
    for i in 1..3 {
        let (_, _, s_i) = dev_device(cluster.node(i)).await;
        assert_eq!(s_i, s, "node {i}");
    }

    // The client's instance id recorded on node 0 is known on node 1: connecting there
    // replaces the connection on node 0.
    let mut second = device_on(cluster.node(1)).await;
    second.hello_known(c, s).await;
    first.expect_closed(CROSS).await;
    second.ping().await;
    // And again from node 2.
    let mut third = device_on(cluster.node(2)).await;
    third.hello_known(c, s).await;
    second.expect_closed(CROSS).await;
    third.ping().await;
    // A wiped device (other instance id, same client id) is refused on any node.
    let mut wiped = Device::ws(cluster.node(0), &client).await;
    assert_eq!(
        wiped.hello(APP, c ^ 0x10, None).await,
        ConnectionResponse::InstanceIdMismatch
    );
    wiped.expect_closed(SOON).await;
    third.ping().await;

    // Quarantine set through node 0: the device connected to node 2 gets code 3 at once
    // and is closed; attempts on node 1 are refused with the same messages.
    quarantine(cluster.node(0), &client, &[0x0b, 0xad], "meter tampered").await;
    let expected = ConnectionResponse::Quarantined {
        machine: vec![0x0b, 0xad],
        human: "meter tampered".into(),
    };
    assert_eq!(
        third.recv_within(CROSS).await,
        Frame::ConnectionResponse(expected.clone())
    );
    third.expect_closed(SOON).await;
    let mut attempt = device_on(cluster.node(1)).await;
    assert_eq!(attempt.hello(APP, c, Some(s)).await, expected);
    attempt.expect_closed(SOON).await;
    assert_eq!(
        client_info(cluster.node(2), &client).await["quarantined"],
        true
    );

    // Lifted through node 1: node 2 accepts the device again.
    let (status, body) = lift(cluster.node(1), &client).await;
    assert_eq!(status, 200, "{body}");
    let mut back = device_on(cluster.node(2)).await;
    back.hello_known(c, s).await;
    back.ping().await;
    back.close().await;

    // The server instance id is in the store: a restarted node answers the same.
    cluster.node_mut(0).kill().await;
    let builder = cluster.node(0).respawn_builder();
    *cluster.node_mut(0) = builder.spawn().await;
    let mut after = device_on(cluster.node(0)).await;
    after.hello_known(c, s).await;
    let (_, _, s_new) = dev_device(cluster.node(0)).await;
    assert_eq!(s_new, s);
}

#[actix_rt::test]
async fn device_events_are_durable_before_the_ack_and_published_on_every_node() {
    let mut cluster = dev_cluster(3).await;
    let (mut d, c, s) = dev_device(cluster.node(0)).await;
    let client = dev_id(c);
    let mut watcher1 = watch(cluster.node(1), &client).await;
    let mut watcher2 = watch(cluster.node(2), &client).await;

    let e = event(21, b"kWh", 9, b"12.5");
    d.send(&publish(1, &e)).await;
    d.expect_ack(1).await;
    // Already in Redis when the ACK arrives (key layout in docs/sink.md).
    let stored = cluster
        .redis()
        .cmd(&["XLEN", &format!("murmur:sink:in:{client}")])
        .await;
    assert_eq!(
        stored.as_int(),
        Some(1),
        "the inbound stream after the ACK: {stored:?}"
    );
    let seen = cluster
        .redis()
        .cmd(&["SCARD", &format!("murmur:sink:seen:{client}")])
        .await;
    assert_eq!(
        seen.as_int(),
        Some(1),
        "the seen-set after the ACK: {seen:?}"
    );
    assert_published(
        &next_event(&mut watcher1, &client, CROSS).await,
        &client,
        &e,
    );
    assert_published(
        &next_event(&mut watcher2, &client, CROSS).await,
        &client,
        &e,
    );

    // The node that ACKed dies. The device, unsure, resends on node 2: the event was
    // stored before the ACK, so it is recognised and not published again.
    cluster.node_mut(0).kill().await;
    d.expect_closed(SOON).await;
    let mut d = device_on(cluster.node(2)).await;
    d.hello_known(c, s).await;
    d.send(&publish(2, &e)).await;
    d.expect_ack(2).await;
    // A new event still goes through.
    let next = event(21, b"kWh", 10, b"12.7");
    d.send(&publish(3, &next)).await;
    d.expect_ack(3).await;
    assert_published(
        &next_event(&mut watcher1, &client, CROSS).await,
        &client,
        &next,
    );
    expect_no_event(&mut watcher1).await;
    assert_published(
        &next_event(&mut watcher2, &client, CROSS).await,
        &client,
        &next,
    );
    expect_no_event(&mut watcher2).await;
}

#[actix_rt::test]
async fn the_outbox_survives_the_sigkill_of_the_node_that_queued_or_sent_the_event() {
    let mut cluster = dev_cluster(3).await;
    let c = rand_u32();
    let client = dev_id(c);

    // Queued through node 0 while the device is away; node 0 is killed.
    let body = api_event(30, 1, b"fw", b"update-1");
    queue(cluster.node(0), &client, body).await;
    cluster.node_mut(0).kill().await;
    let mut d = device_on(cluster.node(1)).await;
    let s = d.hello_new(c).await;
    let (id, e) = d.expect_publish_within(CROSS).await;
    assert_eq!(
        (e.key.as_slice(), e.data.as_slice(), e.offset),
        (&b"fw"[..], &b"update-1"[..], 1)
    );
    d.expect_silence().await;
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    assert_eq!(outbox_depth(cluster.node(2), &client).await, 0);

    // Queued through node 2 while the device is connected to node 1: woken across the
    // bus. The device does not ACK; node 1 dies; the event is redelivered on node 2.
    queue(
        cluster.node(2),
        &client,
        api_event(30, 1, b"fw", b"update-2"),
    )
    .await;
    let (_, sent) = d.expect_publish_within(CROSS).await;
    assert_eq!(
        (sent.data.as_slice(), sent.offset),
        (&b"update-2"[..], 2),
        "offsets shared across nodes"
    );
    cluster.node_mut(1).kill().await;
    d.expect_closed(SOON).await;
    let mut d = device_on(cluster.node(2)).await;
    d.hello_known(c, s).await;
    let (id, again) = d.expect_publish_within(CROSS).await;
    assert_eq!(again, sent, "redelivered unchanged");
    d.expect_silence().await;

    // NACKed on node 2; the NACK list is in the store.
    d.send(&Frame::Nack {
        id,
        machine: vec![0x42],
        human: "flash full".into(),
    })
    .await;
    d.ping().await;
    let list = nacks(cluster.node(2), &client).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["event"]["event_data"], b64(b"update-2"));
    assert_eq!(list[0]["machine_message"], b64(&[0x42]));
    assert_eq!(list[0]["human_message"], "flash full");
    assert_eq!(outbox_depth(cluster.node(2), &client).await, 0);
    d.close().await;

    // Node 0 comes back: nothing is left to deliver, the NACK list is the same there.
    let builder = cluster.node(0).respawn_builder();
    *cluster.node_mut(0) = builder.spawn().await;
    assert_eq!(nacks(cluster.node(0), &client).await, list);
    let mut d = device_on(cluster.node(0)).await;
    d.hello_known(c, s).await;
    d.expect_silence().await;
}

#[actix_rt::test]
async fn a_publish_while_redis_is_down_is_nacked_unavailable() {
    let mut cluster = dev_cluster(1).await;
    let (mut d, c, _) = dev_device(cluster.node(0)).await;
    let e = event(1, b"k", 1, b"v");
    d.send(&publish(1, &e)).await;
    d.expect_ack(1).await;

    cluster.redis_mut().stop().await;
    let e2 = event(1, b"k", 2, b"v2");
    d.send(&publish(2, &e2)).await;
    match d.recv_within(CROSS * 2).await {
        Frame::Nack { id, machine, human } => {
            assert_eq!(id, 2);
            assert_eq!(
                machine,
                vec![0x02],
                "machine code 02 = unavailable, retry later"
            );
            assert!(!human.is_empty());
        }
        other => panic!("expected NACK 02 while Redis is down, got {other:?}"),
    }
    d.ping().await;

    // Redis back (empty): once the node is ready again, the same event is accepted.
    cluster.redis_mut().start_again().await;
    let node = cluster.node(0);
    eventually("the node to be ready again", CROSS * 2, || async {
        (node.readyz().await == 200).then_some(())
    })
    .await;
    d.send(&publish(3, &e2)).await;
    d.expect_ack(3).await;
    assert_eq!(sink_events(node, "in", "unavailable").await, 1.0);
    let _ = c;
}
