//! Group chat as channels (docs/chat.md, "Groups on the wire"): a group message is one
//! bus publication, received once by every node with a device of a participant; devices
//! follow their groups from authentication and through membership changes made on other
//! nodes (a device added just before a message still gets it, once); a removed device
//! stops getting them; a restarted node's devices follow their groups again; the sending
//! connection gets its answer and no second copy; deliveries are reported only for
//! frames that were written. Real nodes on a real Redis.

mod chat_common;

use chat_common::{
    auth_action, is_broadcast_of, is_info_for, kind, message_id, modify_action, reported_devices,
    send_action, uniq, ChatClient, CROSS, QUIET,
};
use murmur_tests::stall::Stalled;
use murmur_tests::{metric_value, metrics, token, Cluster, Node, NodeBuilder, WsEvent};
use serde_json::Value;

async fn channel_counter(node: &Node, name: &str) -> f64 {
    metric_value(&metrics(node).await, name, &[("kind", "channel")]).unwrap_or(0.0)
}

/// Every broadcast `c` has queued or receives within the quiet window, as bodies of
/// `sid`, after a barrier: `marker` (sent by `from` on `sid`) is the last to arrive.
async fn bodies_until(c: &mut ChatClient, sid: &str, marker: &str) -> Vec<String> {
    c.expect_within(marker, CROSS, |v| is_broadcast_of(v, sid, marker))
        .await;
    let mut got: Vec<String> = c
        .queued()
        .iter()
        .filter(|v| kind(v) == "message-broadcast" && v["session-id"] == sid)
        .filter_map(|v| v["message"]["body"].as_str().map(str::to_string))
        .collect();
    got.push(marker.to_string());
    c.clear();
    got
}

#[actix_rt::test]
async fn a_group_message_is_one_bus_publication_received_once_per_node() {
    let cluster = Cluster::start(2).await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a1 = ChatClient::login(cluster.node(0), &alice, "a1").await;
    let mut a2 = ChatClient::login(cluster.node(0), &alice, "a2").await;
    let mut b1 = ChatClient::login(cluster.node(1), &bob, "b1").await;
    let mut b2 = ChatClient::login(cluster.node(1), &bob, "b2").await;
    let mut c1 = ChatClient::login(cluster.node(1), &carol, "c1").await;
    let (sid, _) = a1.create_group(&[&bob, &carol]).await;
    for c in [&mut a2, &mut b1, &mut b2, &mut c1] {
        c.expect_within("created", CROSS, |v| is_info_for(v, &sid))
            .await;
    }
    let published = channel_counter(cluster.node(0), "murmur_bus_published_total").await;
    let received = channel_counter(cluster.node(1), "murmur_bus_received_total").await;

    const N: usize = 10;
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for body in &want {
        a1.say(&sid, body).await;
    }
    for c in [&mut a2, &mut b1, &mut b2, &mut c1] {
        let mut got = Vec::new();
        while got.len() < N {
            let v = c
                .expect_within("the next broadcast", CROSS, |v| {
                    kind(v) == "message-broadcast"
                })
                .await;
            got.push(
                v["message"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert_eq!(got, want, "{}: every message once, in order", c.label);
    }
    // Node 0 published each message once (not once per participant: that was 3), and
    // node 1, with three participant devices, received each once. The reports go the
    // other way: node 1 publishes them, node 0 alone receives them.
    let published_now = channel_counter(cluster.node(0), "murmur_bus_published_total").await;
    assert_eq!(published_now - published, N as f64);
    let received_now = channel_counter(cluster.node(1), "murmur_bus_received_total").await;
    assert_eq!(received_now - received, N as f64);
}

#[actix_rt::test]
async fn members_added_on_another_node_get_the_very_next_message_once() {
    let cluster = Cluster::start(2).await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let mut b = ChatClient::login(cluster.node(1), &bob, "b").await;
    let mut c = ChatClient::login(cluster.node(1), &carol, "c").await;

    // Created and written to at once: node 1 subscribes to the group only once it hears
    // of it, after the message may have passed.
    let (sid, _) = a.create_group(&[&bob]).await;
    a.say(&sid, "first").await;
    a.say(&sid, "second").await;
    assert_eq!(
        bodies_until(&mut b, &sid, "second").await,
        ["first", "second"]
    );

    // Carol is added by a modification and the next message follows at once.
    a.send(&modify_action("add-carol", &sid, &[&alice, &bob, &carol]))
        .await;
    a.expect_info("add-carol").await;
    a.say(&sid, "third").await;
    a.say(&sid, "fourth").await;
    assert_eq!(
        bodies_until(&mut c, &sid, "fourth").await,
        ["third", "fourth"]
    );
    assert_eq!(
        bodies_until(&mut b, &sid, "fourth").await,
        ["third", "fourth"]
    );

    // Carol is removed: the next message is not hers. Barrier: a message in her direct
    // session with alice, sent after it, arrives with nothing before it.
    a.send(&modify_action("drop-carol", &sid, &[&alice, &bob]))
        .await;
    a.expect_info("drop-carol").await;
    c.expect_within("removal", CROSS, |v| {
        is_info_for(v, &sid) && v["status"] == "modified"
    })
    .await;
    a.say(&sid, "fifth").await;
    let direct = a.direct_id(&carol).await;
    a.say(&direct, "barrier").await;
    c.expect_within("the direct barrier", CROSS, |v| {
        is_broadcast_of(v, &direct, "barrier")
    })
    .await;
    let leaked: Vec<Value> = c
        .queued()
        .into_iter()
        .filter(|v| kind(v) == "message-broadcast" && v["session-id"] == sid.as_str())
        .collect();
    assert!(leaked.is_empty(), "removed carol got {leaked:?}");
    assert_eq!(bodies_until(&mut b, &sid, "fifth").await, ["fifth"]);
}

#[actix_rt::test]
async fn devices_follow_their_groups_again_after_their_node_restarts() {
    let mut cluster = Cluster::start(2).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let (sid, _) = a.create_group(&[&bob]).await;

    let builder = cluster.node(1).respawn_builder();
    cluster.node_mut(1).kill().await;
    *cluster.node_mut(1) = builder.spawn().await;
    let mut b = ChatClient::login(cluster.node(1), &bob, "b").await;
    a.say(&sid, "after the restart").await;
    assert_eq!(
        bodies_until(&mut b, &sid, "after the restart").await,
        ["after the restart"]
    );

    // And through a modification made while bob is connected to the new node.
    let mut b2 = ChatClient::login(cluster.node(1), &bob, "b2").await;
    a.send(&modify_action("same", &sid, &[&alice, &bob])).await;
    a.expect_info("same").await;
    a.say(&sid, "still there").await;
    for c in [&mut b, &mut b2] {
        assert_eq!(bodies_until(c, &sid, "still there").await, ["still there"]);
    }
}

#[actix_rt::test]
async fn the_sending_connection_gets_its_answer_and_no_second_copy() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a1 = ChatClient::login(&node, &alice, "a1").await;
    let mut a2 = ChatClient::login(&node, &alice, "a2").await;
    let mut b = ChatClient::login(&node, &bob, "b").await;
    let (sid, _) = a1.create_group(&[&bob]).await;
    b.expect("created", |v| is_info_for(v, &sid)).await;
    // The requester's own change came back once too: as its answer.
    a2.expect("created", |v| is_info_for(v, &sid)).await;

    let own = a1.say(&sid, "mine").await;
    assert!(
        own.get("cdid").is_some(),
        "the answer carries the cdid: {own}"
    );
    for c in [&mut a2, &mut b] {
        let v = c
            .expect("the broadcast", |v| is_broadcast_of(v, &sid, "mine"))
            .await;
        assert_eq!(message_id(&v), message_id(&own));
        assert!(v.get("cdid").is_none(), "{v}");
    }
    // Barrier: bob's answer reaches a1 after anything a1 could still get about "mine".
    b.send(&send_action("b-1", &sid, "yours")).await;
    a1.expect_within("bob's message", CROSS, |v| {
        is_broadcast_of(v, &sid, "yours")
    })
    .await;
    let copies: Vec<Value> = a1
        .queued()
        .into_iter()
        .filter(|v| is_broadcast_of(v, &sid, "mine") || is_info_for(v, &sid))
        .collect();
    assert!(
        copies.is_empty(),
        "a1 got its own broadcast back: {copies:?}"
    );
    a1.assert_none("another copy", QUIET, |v| is_broadcast_of(v, &sid, "mine"))
        .await;
}

/// Deliveries are reported once their frame has left the node for the device's socket:
/// a device that never reads is reported for what its socket actually got (each
/// 3000-byte broadcast is a frame of its own, so its frames count them), and not for
/// what was still queued when it was closed 4001.
#[actix_rt::test]
async fn reports_name_only_devices_whose_frames_were_written() {
    let node = NodeBuilder::new()
        .env("MURMUR_OUTBOUND_MAX_BYTES", "65536")
        .spawn()
        .await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(&node, &alice, "a").await;
    let mut stalled = Stalled::ws(&node.ws_url("/chat"))
        .await
        .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    stalled
        .send_json(&auth_action("auth", &bob, "stalled", &token(&bob)))
        .await;
    match stalled.recv(CROSS).await {
        Some(WsEvent::Text(t)) => assert!(t.contains("succeeded"), "{t}"),
        other => panic!("bob's authentication: {other:?}"),
    }
    let (sid, _) = a.create_group(&[&bob, &carol]).await;
    match stalled.recv(CROSS).await {
        Some(WsEvent::Text(t)) => assert!(t.contains(&sid), "{t}"),
        other => panic!("bob's created info: {other:?}"),
    }

    // Bob's device reads nothing more: flood until it is closed as a slow consumer.
    let body = "x".repeat(3000);
    let slow_closes = || async {
        let m = metrics(&node).await;
        metric_value(
            &m,
            "murmur_disconnects_total",
            &[("protocol", "chat"), ("reason", "slow_consumer")],
        )
        .unwrap_or(0.0)
    };
    let mut sent = 0usize;
    loop {
        a.say(&sid, &body).await;
        sent += 1;
        if sent.is_multiple_of(100) && slow_closes().await == 1.0 {
            break;
        }
        assert!(sent < 20_000, "bob's device was never closed 4001");
    }

    // Barrier: carol connects now, and her report of a last message comes after every
    // report of bob's device (recorded before its close).
    let mut c = ChatClient::login(&node, &carol, "c").await;
    let marker = message_id(&a.say(&sid, "marker").await);
    c.expect("the marker", |v| is_broadcast_of(v, &sid, "marker"))
        .await;
    let mut reported_for_bob = std::collections::BTreeSet::new();
    loop {
        let v = a
            .expect_within("a delivery report", CROSS, |v| {
                kind(v) == "message-delivered"
            })
            .await;
        let devices = reported_devices(&v);
        if devices.iter().any(|(u, _)| u == &bob) {
            assert!(
                devices.contains(&(bob.clone(), "stalled".to_string())),
                "{v}"
            );
            reported_for_bob.insert(message_id(&v));
        }
        if message_id(&v) == marker && devices.iter().any(|(u, _)| u == &carol) {
            break;
        }
    }
    let drained = stalled.drain(CROSS).await;
    assert_eq!(
        drained.close.clone().flatten().map(|c| c.0),
        Some(4001),
        "{drained:?}"
    );
    assert!(!reported_for_bob.contains(&marker));
    assert!(
        reported_for_bob.len() <= drained.messages,
        "{} reported for bob's device, {} frames reached its socket",
        reported_for_bob.len(),
        drained.messages
    );
    assert!(
        drained.messages < sent,
        "some broadcasts were still queued at the close: {} of {sent} reached it",
        drained.messages
    );
}
