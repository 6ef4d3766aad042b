//! GradAgenda chat presence and typing (extensions, docs/chat.md "Presence" and
//! "Typing"): `request-presence` answers a contact's status and, while watched, pushes
//! every change — online while any device of theirs is connected on any node, offline
//! with `last-seen` when the last one goes, and within a bounded time when their node is
//! SIGKILLed; strangers are refused. `request-typing` reaches the other opted-in devices
//! of the session's participants, at most once per 2 s per device and session.

mod chat_common;

use std::time::Duration;

use chat_common::{has_cdid, kind, now_ms, uniq, ChatClient, CROSS, QUIET};
use murmur_tests::{metric_value, metrics, Cluster, Node};
use serde_json::{json, Value};

/// How long a SIGKILLed node's users may stay online with `MURMUR_HEARTBEAT_TTL=2s`.
const DEAD_NODE_BOUND: Duration = Duration::from_secs(10);

/// `request-presence` of `users` → the `presence` frames (with the cdid).
async fn watch(c: &mut ChatClient, users: &[&str], on: bool) -> Vec<Value> {
    let cdid = c.cdid("presence");
    c.send(&json!({"cdid": cdid, "type": "request-presence", "user-id": users, "watch": on}))
        .await;
    c.collect_until_status(&cdid, "presence").await
}

/// The next pushed `presence` of `user` (no cdid).
async fn pushed(c: &mut ChatClient, user: &str, within: Duration) -> Value {
    let v = c
        .expect_within("a presence change", within, |v| {
            kind(v) == "presence" && v["user-id"] == user && v.get("cdid").is_none()
        })
        .await;
    v
}

fn assert_online(v: &Value, user: &str) {
    assert_eq!(
        (&v["user-id"], &v["status"], &v["last-seen"]),
        (&json!(user), &json!("online"), &Value::Null),
        "{v}"
    );
}

fn assert_offline(v: &Value, user: &str, after: u64) {
    assert_eq!(
        (&v["user-id"], &v["status"]),
        (&json!(user), &json!("offline")),
        "{v}"
    );
    let seen = v["last-seen"]
        .as_u64()
        .unwrap_or_else(|| panic!("last-seen: {v}"));
    assert!(
        seen >= after && seen <= now_ms() + 1000,
        "last-seen {seen} vs {after}: {v}"
    );
}

#[actix_rt::test]
async fn contacts_watch_each_other_come_and_go() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut b = ChatClient::login(&node, &bob, "b").await;
    let mut c = ChatClient::login(&node, &carol, "c").await;
    let mut a1 = ChatClient::login(&node, &alice, "a1").await;
    let (sid, _) = a1.create_group(&[&bob]).await;
    b.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
        .await;

    let now = watch(&mut b, &[&alice], true).await;
    assert_eq!(now.len(), 1);
    assert_online(&now[0], &alice);
    // Strangers are refused, and learn nothing.
    let cdid = c.cdid("peek");
    c.send(&json!({"cdid": cdid, "type": "request-presence", "user-id": [alice]}))
        .await;
    assert_eq!(
        c.expect_failed(&cdid).await,
        format!("{alice:?} shares no session with you")
    );
    let cdid = c.cdid("empty");
    c.send(&json!({"cdid": cdid, "type": "request-presence", "user-id": []}))
        .await;
    assert_eq!(
        c.expect_failed(&cdid).await,
        "`user-id` must name at least one user"
    );

    // A second device of alice changes nothing; the last one going does.
    let a2 = ChatClient::login(&node, &alice, "a2").await;
    drop(a2);
    b.assert_none("a change while alice stays online", QUIET, |v| {
        kind(v) == "presence"
    })
    .await;
    let before = now_ms();
    drop(a1);
    assert_offline(&pushed(&mut b, &alice, CROSS).await, &alice, before);
    let later = watch(&mut b, &[&alice], true).await;
    assert_offline(&later[0], &alice, before);
    let _a3 = ChatClient::login(&node, &alice, "a3").await;
    assert_online(&pushed(&mut b, &alice, CROSS).await, &alice);

    // Unwatched: no more changes.
    watch(&mut b, &[&alice], false).await;
    drop(_a3);
    b.assert_none("a change of an unwatched user", QUIET, |v| {
        kind(v) == "presence"
    })
    .await;
    let m = metrics(&node).await;
    assert!(
        metric_value(&m, "murmur_presence_changes_total", &[("state", "offline")]) >= Some(2.0),
        "two offline changes published"
    );
}

#[actix_rt::test]
async fn typing_reaches_the_other_opted_in_devices_rate_limited() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let typing = &["typing"];
    let mut a = ChatClient::login_with(&node, &alice, "a", typing).await;
    let mut a_other = ChatClient::login_with(&node, &alice, "a-other", typing).await;
    let mut b = ChatClient::login_with(&node, &bob, "b", typing).await;
    let mut b_old = ChatClient::login(&node, &bob, "b-old").await;
    let mut c = ChatClient::login_with(&node, &carol, "c", typing).await;
    let (sid, _) = a.create_group(&[&bob]).await;
    for dev in [&mut b, &mut b_old, &mut a_other] {
        dev.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
            .await;
    }

    a.send(&json!({"cdid": "t1", "type": "request-typing", "session-id": sid}))
        .await;
    a.expect_succeeded("t1").await;
    let is_typing = |v: &Value| kind(v) == "typing";
    for dev in [&mut b, &mut a_other] {
        let v = dev.expect_within("typing", CROSS, is_typing).await;
        assert_eq!(
            v,
            json!({"type": "typing", "session-id": sid, "user-id": alice, "device-id": "a"})
        );
    }
    a.send(&json!({"cdid": "t2", "type": "request-typing", "session-id": sid}))
        .await;
    assert_eq!(
        a.expect_failed("t2").await,
        "typing indicators: at most one per 2 s per session"
    );
    c.send(&json!({"cdid": "t3", "type": "request-typing", "session-id": sid}))
        .await;
    assert_eq!(
        c.expect_failed("t3").await,
        "not a participant of this session"
    );
    for dev in [&mut a, &mut b_old, &mut b] {
        dev.assert_none("a typing indicator", QUIET, is_typing)
            .await;
    }
    // Never stored: the history has no trace of it.
    assert!(b.history(&sid, None, None).await.is_empty());
    // In a direct session too, without a cdid: no answer, just the indicator.
    let direct = b.direct_id(&alice).await;
    b.send(&json!({"type": "request-typing", "session-id": direct}))
        .await;
    let v = a.expect_within("typing", CROSS, is_typing).await;
    assert_eq!(v["session-id"], direct.as_str());
    b.assert_none("an answer to a typing without cdid", QUIET, |v| {
        has_cdid(v, "") || kind(v) == "status-response"
    })
    .await;
}

#[actix_rt::test]
async fn a_killed_nodes_users_go_offline_across_the_cluster() {
    let mut cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_HEARTBEAT_TTL", "2s")).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut b = ChatClient::login(cluster.node(0), &bob, "b").await;
    let mut a = ChatClient::login(cluster.node(1), &alice, "a").await;
    let sid = a.direct_id(&bob).await;
    a.say(&sid, "hi").await;
    b.expect_broadcast(&sid, "hi").await;
    let now = watch(&mut b, &[&alice], true).await;
    assert_online(&now[0], &alice);
    let mut a_back = ChatClient::login(cluster.node(0), &alice, "a-back").await;
    drop(a_back);
    b.assert_none("a change while alice is online on node 1", QUIET, |v| {
        kind(v) == "presence"
    })
    .await;

    let killed = now_ms();
    cluster.node_mut(1).kill().await;
    drop(a);
    assert_offline(
        &pushed(&mut b, &alice, DEAD_NODE_BOUND).await,
        &alice,
        killed,
    );
    a_back = ChatClient::login(cluster.node(0), &alice, "a-back2").await;
    assert_online(&pushed(&mut b, &alice, CROSS).await, &alice);
    drop(a_back);
}

#[actix_rt::test]
async fn typing_crosses_nodes() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let typing = &["typing"];
    let mut a = ChatClient::login_with(cluster.node(0), &alice, "a", typing).await;
    let mut b = ChatClient::login_with(cluster.node(2), &bob, "b", typing).await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
        .await;
    a.send(&json!({"type": "request-typing", "session-id": sid}))
        .await;
    let v = b
        .expect_within("typing", CROSS, |v| kind(v) == "typing")
        .await;
    assert_eq!(
        v,
        json!({"type": "typing", "session-id": sid, "user-id": alice, "device-id": "a"})
    );
    a.assert_none("its own typing", QUIET, |v| kind(v) == "typing")
        .await;
}
