//! GradAgenda chat read state (extension, docs/chat.md "Read state"):
//! `request-marking-read` moves a participant's read position forward (never back,
//! never past the newest message); `request-unread-count` answers the position and the
//! other senders' messages after it; devices that opted into `read-reports` get one
//! aggregated `message-read` per session per window — on one node and across nodes —
//! and an old client (no extensions) sees nothing new.

mod chat_common;

use chat_common::{has_cdid, kind, message_id, uniq, ChatClient, CROSS, QUIET};
use murmur_tests::{metric_value, metrics, Cluster, Node};
use serde_json::{json, Value};

const READS: &[&str] = &["read-reports"];

fn mark_action(cdid: &str, session: &str, message: &str) -> Value {
    json!({"cdid": cdid, "type": "request-marking-read", "session-id": session,
           "message-id": message})
}

/// Marks `session` read up to `message` and expects `succeeded`.
async fn mark(c: &mut ChatClient, session: &str, message: &str) {
    let cdid = c.cdid("read");
    c.send(&mark_action(&cdid, session, message)).await;
    c.expect_succeeded(&cdid).await;
}

/// Marks and expects `failed` with exactly `reason`.
async fn mark_fails(c: &mut ChatClient, session: &str, message: &str, reason: &str) {
    let cdid = c.cdid("read");
    c.send(&mark_action(&cdid, session, message)).await;
    assert_eq!(c.expect_failed(&cdid).await, reason, "{}", c.label);
}

/// `request-unread-count` → (read position, unread, newest).
async fn unread(c: &mut ChatClient, session: &str) -> (Value, u64, Value) {
    let cdid = c.cdid("unread");
    c.send(&json!({"cdid": cdid, "type": "request-unread-count", "session-id": session}))
        .await;
    let v = c.expect("the unread count", |v| has_cdid(v, &cdid)).await;
    assert_eq!(kind(&v), "unread-count", "{}: {v}", c.label);
    assert_eq!(v["session-id"], session, "{v}");
    let n = v["unread"]
        .as_u64()
        .unwrap_or_else(|| panic!("unread must be a count: {v}"));
    (
        v["read-message-id"].clone(),
        n,
        v["newest-message-id"].clone(),
    )
}

/// The next `message-read` of `session` on `c`: its `read-by` as (user, message id).
async fn told(c: &mut ChatClient, session: &str) -> Vec<(String, String)> {
    let v = c
        .expect_within("a message-read", CROSS, |v| {
            kind(v) == "message-read" && v["session-id"] == session
        })
        .await;
    assert!(v.get("cdid").is_none(), "{v}");
    let by: Vec<(String, String)> = v["read-by"]
        .as_array()
        .unwrap_or_else(|| panic!("read-by must be an array: {v}"))
        .iter()
        .map(|e| {
            assert!(e["read-timestamp"].is_u64(), "{e}");
            (
                e["user-id"].as_str().unwrap().to_string(),
                e["message-id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        v["user-id"],
        by[0].0.as_str(),
        "the head repeats the first entry: {v}"
    );
    assert_eq!(v["message-id"], by[0].1.as_str(), "{v}");
    by
}

async fn no_read_report(c: &mut ChatClient) {
    c.assert_none("a message-read", QUIET, |v| kind(v) == "message-read")
        .await;
}

#[actix_rt::test]
async fn marks_move_forward_and_are_told_to_opted_in_devices_only() {
    let node = Node::start().await;
    let (alice, bob, carol, dave) = (uniq("alice"), uniq("bob"), uniq("carol"), uniq("dave"));
    let mut a1 = ChatClient::login_with(&node, &alice, "a1", READS).await;
    let mut a2 = ChatClient::login_with(&node, &alice, "a2", READS).await;
    let mut b = ChatClient::login_with(&node, &bob, "b", READS).await;
    let mut old = ChatClient::login(&node, &carol, "c-old").await;
    let mut d = ChatClient::login_with(&node, &dave, "d", READS).await;
    let (sid, _) = a1.create_group(&[&bob, &carol]).await;
    for c in [&mut b, &mut old] {
        c.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
            .await;
    }

    let (r, n, newest) = unread(&mut b, &sid).await;
    assert_eq!(
        (r, n, newest),
        (Value::Null, 0, Value::Null),
        "no messages yet"
    );
    mark_fails(
        &mut b,
        &sid,
        "1-0",
        "`message-id` is newer than the session's newest message",
    )
    .await;

    let ids: Vec<String> = [
        a1.say(&sid, "one").await,
        a1.say(&sid, "two").await,
        a1.say(&sid, "three").await,
    ]
    .iter()
    .map(message_id)
    .collect();
    let (r, n, newest) = unread(&mut b, &sid).await;
    assert_eq!((r, n), (Value::Null, 3));
    assert_eq!(newest, ids[2].as_str());
    assert_eq!(
        unread(&mut a1, &sid).await.1,
        0,
        "one's own messages are never unread"
    );

    mark(&mut b, &sid, &ids[1]).await;
    let expected = vec![(bob.clone(), ids[1].clone())];
    assert_eq!(told(&mut a1, &sid).await, expected);
    assert_eq!(
        told(&mut a2, &sid).await,
        expected,
        "every device of the sender"
    );
    assert_eq!(
        told(&mut b, &sid).await,
        expected,
        "the reader's devices too"
    );
    let (r, n, _) = unread(&mut b, &sid).await;
    assert_eq!((r, n), (json!(ids[1]), 1));

    // Not back, not twice: no new report.
    mark(&mut b, &sid, &ids[0]).await;
    mark(&mut b, &sid, &ids[1]).await;
    no_read_report(&mut a1).await;
    assert_eq!(unread(&mut b, &sid).await.0, json!(ids[1]));

    // Hostile and foreign marks.
    mark_fails(&mut d, &sid, &ids[2], "not a participant of this session").await;
    mark_fails(&mut b, "no-such-group", &ids[2], "no such session").await;
    mark_fails(
        &mut b,
        &sid,
        "99999999999999-0",
        "`message-id` is newer than the session's newest message",
    )
    .await;
    let cdid = b.cdid("bad");
    b.send(&mark_action(&cdid, &sid, "latest")).await;
    assert_eq!(
        b.expect_failed(&cdid).await,
        "`message-id` must be a message id (`<ms>-<n>`)"
    );
    let cdid = d.cdid("peek");
    d.send(&json!({"cdid": cdid, "type": "request-unread-count", "session-id": sid}))
        .await;
    assert_eq!(
        d.expect_failed(&cdid).await,
        "not a participant of this session"
    );

    // The old client saw the messages and nothing of the reads.
    for body in ["one", "two", "three"] {
        old.expect_broadcast(&sid, body).await;
    }
    no_read_report(&mut old).await;
    let m = metrics(&node).await;
    assert_eq!(
        metric_value(
            &m,
            "murmur_chat_read_reports_total",
            &[("outcome", "queued")]
        ),
        Some(1.0),
        "one mark moved a position"
    );
}

#[actix_rt::test]
async fn a_burst_of_marks_is_one_report_per_window() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login_with(&node, &alice, "a", READS).await;
    let mut b = ChatClient::login_with(&node, &bob, "b", READS).await;
    let mut c = ChatClient::login_with(&node, &carol, "c", READS).await;
    let (sid, _) = a.create_group(&[&bob, &carol]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(message_id(&a.say(&sid, &format!("m{i}")).await));
    }
    // bob reads them one by one, carol jumps to the newest: one batch each, so every
    // mark lands in the same window.
    let marks: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| mark_action(&format!("r{i}"), &sid, id))
        .collect();
    b.send(&json!({"type": "batch-mode-action", "actions": marks}))
        .await;
    c.send(&mark_action("c0", &sid, &ids[4])).await;
    c.expect_succeeded("c0").await;
    for i in 0..5 {
        b.expect_succeeded(&format!("r{i}")).await;
    }
    let mut by = told(&mut a, &sid).await;
    if by.len() < 2 {
        // carol's mark may fall in the next window: still one report per reader.
        by.extend(told(&mut a, &sid).await);
    }
    by.sort();
    let mut expected = vec![
        (bob.clone(), ids[4].clone()),
        (carol.clone(), ids[4].clone()),
    ];
    expected.sort();
    assert_eq!(
        by, expected,
        "bob's five marks are told once, as his newest"
    );
    no_read_report(&mut a).await;
}

#[actix_rt::test]
async fn read_state_crosses_nodes_in_groups_and_direct_sessions() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login_with(cluster.node(0), &alice, "a", READS).await;
    let mut b = ChatClient::login_with(cluster.node(2), &bob, "b", READS).await;
    let mut b_old = ChatClient::login(cluster.node(0), &bob, "b-old").await;

    let direct = a.direct_id(&bob).await;
    let first = message_id(&a.say(&direct, "hello").await);
    let second = message_id(&a.say(&direct, "again").await);
    b.expect_broadcast(&direct, "again").await;
    assert_eq!(unread(&mut b, &direct).await.1, 2);
    mark(&mut b, &direct, &first).await;
    assert_eq!(
        told(&mut a, &direct).await,
        vec![(bob.clone(), first.clone())]
    );
    // The position is the store's: the same from a device on the other node.
    let (r, n, newest) = unread(&mut b_old, &direct).await;
    assert_eq!((r, n, newest), (json!(first), 1, json!(second)));

    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
        .await;
    let g = message_id(&a.say(&sid, "group hello").await);
    b.expect_broadcast(&sid, "group hello").await;
    mark(&mut b, &sid, &g).await;
    assert_eq!(told(&mut a, &sid).await, vec![(bob.clone(), g)]);
    assert_eq!(unread(&mut b_old, &sid).await.1, 0);
    b_old.expect_broadcast(&sid, "group hello").await;
    no_read_report(&mut b_old).await;
}
