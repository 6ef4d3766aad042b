//! GradAgenda chat in cluster mode (three nodes on one real Redis): direct session ids
//! agree on every node; mutable sessions live in the store (created on one node, listed,
//! modified and deleted from others, surviving the node that created them); broadcasts,
//! delivery reports and history cross nodes. CONTRACT §5.

mod chat_common;

use std::collections::BTreeSet;

use chat_common::{
    bodies, delete_action, is_info_for, kind, message_id, modify_action, participants,
    reported_devices, send_action, sorted, uniq, ChatClient, CROSS, QUIET,
};
use murmur_tests::{Cluster, Resp};
use serde_json::Value;

/// The info about `sid` with `status` on a device that did not ask for it.
async fn expect_told(c: &mut ChatClient, sid: &str, status: &str) -> Value {
    let what = format!("{status} info for {sid}");
    let v = c
        .expect_within(&what, CROSS, |v| {
            is_info_for(v, sid) && v["status"] == status
        })
        .await;
    assert!(v.get("cdid").is_none(), "{}: {v}", c.label);
    v
}

#[actix_rt::test]
async fn direct_ids_agree_on_every_node() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut ids = BTreeSet::new();
    for node in cluster.nodes() {
        let mut a = ChatClient::login(node, &alice, node.id()).await;
        let mut b = ChatClient::login(node, &bob, node.id()).await;
        ids.insert(a.direct_id(&bob).await);
        ids.insert(b.direct_id(&alice).await);
    }
    assert_eq!(
        ids.len(),
        1,
        "one direct id for the pair on all nodes: {ids:?}"
    );

    // And it carries messages across nodes: alice on node 0, bob on node 2.
    let sid = ids.into_iter().next().unwrap();
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let mut b = ChatClient::login(cluster.node(2), &bob, "b").await;
    a.say(&sid, "over the bus").await;
    b.expect_broadcast(&sid, "over the bus").await;
}

#[actix_rt::test]
async fn groups_live_in_the_store_across_nodes() {
    let mut cluster = Cluster::start(3).await;
    let (alice, bob, carol, dave) = (uniq("alice"), uniq("bob"), uniq("carol"), uniq("dave"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let mut b = ChatClient::login(cluster.node(1), &bob, "b").await;
    let mut c = ChatClient::login(cluster.node(2), &carol, "c").await;
    let mut d = ChatClient::login(cluster.node(2), &dave, "d").await;

    // Created on node 0: bob on node 1 is told, and lists it from there.
    let (sid, _) = a.create_group(&[&bob]).await;
    expect_told(&mut b, &sid, "created").await;
    let listed = b.list().await;
    let found: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &sid)).collect();
    assert_eq!(found.len(), 1, "{listed:?}");
    assert_eq!(participants(found[0]), sorted(&[&alice, &bob]));

    // A non-participant on node 2 cannot touch it.
    d.send(&modify_action("d-mod", &sid, &[&dave])).await;
    d.expect_failed("d-mod").await;
    d.send(&delete_action("d-del", &sid)).await;
    d.expect_failed("d-del").await;

    // The owner on node 0 makes bob an admin; bob on node 1 is told.
    a.send(
        &serde_json::json!({"cdid": "a-roles", "type": "request-mutable-session-roles",
        "session-id": sid, "admins": [bob]}),
    )
    .await;
    a.expect_info("a-roles").await;
    expect_told(&mut b, &sid, "modified").await;

    // Modified from node 1 (adding carol on node 2): everybody hears of it.
    b.send(&modify_action("b-mod", &sid, &[&alice, &bob, &carol]))
        .await;
    let modified = b.expect_info("b-mod").await;
    assert_eq!(modified["status"], "modified");
    let all = sorted(&[&alice, &bob, &carol]);
    assert_eq!(participants(&modified), all);
    assert_eq!(
        participants(&expect_told(&mut a, &sid, "modified").await),
        all
    );
    assert_eq!(
        participants(&expect_told(&mut c, &sid, "modified").await),
        all
    );
    d.assert_none("info about a group dave is not in", QUIET, |v| {
        is_info_for(v, &sid)
    })
    .await;

    // It is kept in Redis (CONTRACT §5: state lives in the store)...
    let keys = cluster.redis().cmd(&["KEYS", &format!("*{sid}*")]).await;
    assert!(
        matches!(&keys, Resp::Array(Some(k)) if !k.is_empty()),
        "no Redis key names the group {sid}: {keys:?}"
    );
    // ...so when the node that created it dies, the group lives on.
    drop(a);
    cluster.node_mut(0).kill().await;
    let mut c2 = ChatClient::login(cluster.node(2), &carol, "c2").await;
    let listed = c2.list().await;
    assert!(listed.iter().any(|v| is_info_for(v, &sid)), "{listed:?}");
    let mut a2 = ChatClient::login(cluster.node(1), &alice, "a2").await;
    a2.say(&sid, "still here").await;
    b.expect_broadcast(&sid, "still here").await;
    c.expect_broadcast(&sid, "still here").await;

    // carol, a member, may not delete it from node 2; the owner, back on node 1, makes
    // her an admin (the rules are the store's: the same on every node), and she does.
    c.send(&delete_action("c-del0", &sid)).await;
    assert_eq!(
        c.expect_failed("c-del0").await,
        "only the session's owner and admins may change its participants or delete it"
    );
    a2.send(
        &serde_json::json!({"cdid": "a-roles2", "type": "request-mutable-session-roles",
        "session-id": sid, "admins": [bob, carol]}),
    )
    .await;
    a2.expect_info("a-roles2").await;
    expect_told(&mut c, &sid, "modified").await;
    expect_told(&mut b, &sid, "modified").await;
    c.send(&delete_action("c-del", &sid)).await;
    let deleted = c.expect_info("c-del").await;
    assert_eq!(deleted["status"], "deleted");
    expect_told(&mut b, &sid, "deleted").await;
    expect_told(&mut a2, &sid, "deleted").await;
    b.say_fails(&sid, "gone?").await;
    assert!(!b.list().await.iter().any(|v| is_info_for(v, &sid)));
}

#[actix_rt::test]
async fn broadcasts_reports_and_history_cross_nodes() {
    let cluster = Cluster::start(3).await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    // alice on nodes 0 and 2, bob on nodes 1 and 2, carol on node 1.
    let mut a1 = ChatClient::login(cluster.node(0), &alice, "a-n0").await;
    let mut a2 = ChatClient::login(cluster.node(2), &alice, "a-n2").await;
    let mut b1 = ChatClient::login(cluster.node(1), &bob, "b-n1").await;
    let mut b2 = ChatClient::login(cluster.node(2), &bob, "b-n2").await;
    let mut c1 = ChatClient::login(cluster.node(1), &carol, "c-n1").await;
    let (sid, _) = a1.create_group(&[&bob, &carol]).await;
    for dev in [&mut a2, &mut b1, &mut b2, &mut c1] {
        expect_told(dev, &sid, "created").await;
    }

    // Ten messages from node 0, sent back to back.
    let want: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    for (i, body) in want.iter().enumerate() {
        a1.send(&send_action(&format!("s{i}"), &sid, body)).await;
    }
    let mut ids = Vec::new();
    for i in 0..want.len() {
        let v = a1
            .expect_within("own copy", CROSS, |v| kind(v) == "message-broadcast")
            .await;
        assert_eq!(v["cdid"], format!("s{i}"), "{v}");
        ids.push(message_id(&v));
    }
    for dev in [&mut a2, &mut b1, &mut b2, &mut c1] {
        let mut got = Vec::new();
        while got.len() < want.len() {
            let v = dev
                .expect_within("a broadcast", CROSS, |v| kind(v) == "message-broadcast")
                .await;
            assert!(v.get("cdid").is_none(), "{}: {v}", dev.label);
            assert_eq!(v["sender-id"], alice.as_str());
            got.push(v);
        }
        assert_eq!(bodies(&got), want, "{}: in order", dev.label);
        let got_ids: Vec<String> = got.iter().map(message_id).collect();
        assert_eq!(got_ids, ids, "{}: same message ids", dev.label);
    }

    // Delivery reports from the three recipient devices (two nodes) reach alice on
    // node 0 for every message.
    let want_reports: BTreeSet<(String, String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), bob.clone(), "b-n1".to_string()),
                (id.clone(), bob.clone(), "b-n2".to_string()),
                (id.clone(), carol.clone(), "c-n1".to_string()),
            ]
        })
        .collect();
    let mut got_reports = BTreeSet::new();
    while got_reports.len() < want_reports.len() {
        let v = a1
            .expect_within("a delivery report", CROSS, |v| {
                kind(v) == "message-delivered"
            })
            .await;
        assert_eq!(v["session-id"], sid.as_str(), "{v}");
        let id = message_id(&v);
        for (user, device) in reported_devices(&v) {
            let key = (id.clone(), user, device);
            assert!(want_reports.contains(&key), "unexpected report {v}");
            assert!(got_reports.insert(key), "duplicate report {v}");
        }
    }

    // History, written through node 0, read from node 1 by a device that was offline.
    let mut b3 = ChatClient::login(cluster.node(1), &bob, "b-late").await;
    let items = b3.history(&sid, Some(4), None).await;
    assert_eq!(bodies(&items), ["x6", "x7", "x8", "x9"]);
    let items = b3.history(&sid, None, Some(&ids[7])).await;
    assert_eq!(bodies(&items), ["x8", "x9"]);
    let items = b3.history(&sid, None, None).await;
    assert_eq!(bodies(&items), want);
    let hist_ids: Vec<String> = items.iter().map(message_id).collect();
    assert_eq!(hist_ids, ids);

    // A reply from node 2 reaches node 0 and node 1.
    b2.say(&sid, "reply from n2").await;
    a1.expect_broadcast(&sid, "reply from n2").await;
    c1.expect_broadcast(&sid, "reply from n2").await;
    b1.expect_broadcast(&sid, "reply from n2").await;
}

#[actix_rt::test]
async fn devices_leaving_a_node_do_not_cut_off_the_others() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut b = ChatClient::login(cluster.node(0), &bob, "b").await;
    let mut a1 = ChatClient::login(cluster.node(1), &alice, "a1").await;
    let mut a2 = ChatClient::login(cluster.node(1), &alice, "a2").await;
    let mut a3 = ChatClient::login(cluster.node(2), &alice, "a3").await;
    let sid = b.direct_id(&alice).await;
    b.say(&sid, "first").await;
    for a in [&mut a1, &mut a2, &mut a3] {
        a.expect_broadcast(&sid, "first").await;
    }

    // One of the two devices on node 1 leaves: the other one there still receives.
    a1.ws.close().await;
    drop(a1);
    b.say(&sid, "second").await;
    a2.expect_broadcast(&sid, "second").await;
    a3.expect_broadcast(&sid, "second").await;

    // The last one on node 1 leaves; a new one there receives again.
    a2.ws.close().await;
    drop(a2);
    b.say(&sid, "third").await;
    a3.expect_broadcast(&sid, "third").await;
    let mut a4 = ChatClient::login(cluster.node(1), &alice, "a4").await;
    b.say(&sid, "fourth").await;
    a4.expect_broadcast(&sid, "fourth").await;
    a3.expect_broadcast(&sid, "fourth").await;
}
