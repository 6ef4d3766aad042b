//! GradAgenda chat inbox (extension, docs/chat.md "Inbox"): `request-inbox` lists the
//! user's groups and direct sessions with messages, newest message first, each with a
//! preview of its newest message and the user's unread count, paged by `next-cursor`;
//! the same from every node.

mod chat_common;

use chat_common::{has_cdid, kind, message_id, uniq, ChatClient, CROSS};
use murmur_tests::{eventually, Cluster, Node};
use serde_json::{json, Value};

/// One `request-inbox` page: its items and `next-cursor`.
async fn inbox(
    c: &mut ChatClient,
    limit: Option<u64>,
    cursor: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let cdid = c.cdid("inbox");
    let mut action = json!({"cdid": cdid, "type": "request-inbox"});
    if let Some(l) = limit {
        action["limit"] = json!(l);
    }
    if let Some(k) = cursor {
        action["cursor"] = json!(k);
    }
    c.send(&action).await;
    let mut items = Vec::new();
    loop {
        let v = c
            .expect("an inbox item or the end", |v| has_cdid(v, &cdid))
            .await;
        match kind(&v) {
            "inbox-item" => items.push(v),
            "status-response" => {
                assert_eq!(v["status"], "succeeded", "{v}");
                let next = v
                    .get("next-cursor")
                    .map(|n| n.as_str().unwrap().to_string());
                return (items, next);
            }
            other => panic!("{}: unexpected {other}: {v}", c.label),
        }
    }
}

/// Waits until the clock has passed the millisecond of message id `id` (`<ms>-<n>`).
async fn next_ms(id: &str) {
    let ms: u64 = id.split('-').next().unwrap().parse().unwrap();
    eventually("the next millisecond", CROSS, || async {
        (chat_common::now_ms() > ms).then_some(())
    })
    .await;
}

fn sessions(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["session-id"].as_str().unwrap().to_string())
        .collect()
}

async fn an_inbox_lists_sessions_newest_first(cluster_nodes: (&Node, &Node)) {
    let (n0, n1) = cluster_nodes;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(n0, &alice, "a").await;
    let mut b = ChatClient::login(n1, &bob, "b").await;
    let mut c = ChatClient::login(n1, &carol, "c").await;
    let (g1, _) = a.create_group(&[&bob]).await;
    let (g2, _) = a.create_group(&[&carol]).await;
    let (quiet, _) = a.create_group(&[]).await;
    for (client, sid) in [(&mut b, &g1), (&mut c, &g2)] {
        client
            .expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
            .await;
    }
    let direct = b.direct_id(&alice).await;

    // Each message in a later millisecond than the one before: the order of sessions
    // whose newest messages share a millisecond is their ids' (docs/chat.md).
    let m1 = message_id(&b.say(&g1, "in g1").await);
    next_ms(&m1).await;
    let m2 = message_id(&c.say(&g2, "in g2").await);
    next_ms(&m2).await;
    let photo = json!({"type": "image", "body": {"url": "https://cdn.example.com/1.jpg",
        "mime": "image/jpeg", "size": 10, "caption": "look at this"}});
    let cdid = b.cdid("photo");
    b.send(
        &json!({"cdid": cdid, "type": "request-sending-a-message", "session-id": direct,
        "message": photo, "sender-timestamp": 1}),
    )
    .await;
    let newest = b.expect("the photo", |v| has_cdid(v, &cdid)).await;
    let newest = message_id(&newest);
    a.expect_within("the photo", CROSS, |v| {
        v["session-id"] == direct.as_str() && kind(v) == "message-broadcast"
    })
    .await;

    let (items, next) = inbox(&mut a, None, None).await;
    assert_eq!(
        sessions(&items),
        vec![direct.clone(), g2.clone(), g1.clone(), quiet.clone()]
    );
    assert_eq!(next, None, "one page holds them all");
    assert_eq!(
        items[0],
        json!({"type": "inbox-item", "cdid": items[0]["cdid"], "session-id": direct,
            "session-type": "direct", "unread": 1, "last-message": {"message-id": newest,
            "sender-id": bob, "server-timestamp": items[0]["last-message"]["server-timestamp"],
            "message-type": "image", "preview": "look at this"}})
    );
    assert_eq!(items[1]["last-message"]["preview"], "in g2");
    assert_eq!(items[1]["session-type"], "mutable");
    assert_eq!(
        items[3]["last-message"],
        Value::Null,
        "a group without messages"
    );
    assert_eq!(items[3]["unread"], 0);

    // Paged, and the read mark moves the count.
    let (first, next) = inbox(&mut a, Some(2), None).await;
    assert_eq!(sessions(&first), vec![direct.clone(), g2.clone()]);
    let (rest, end) = inbox(&mut a, Some(2), next.as_deref()).await;
    assert_eq!(sessions(&rest), vec![g1.clone(), quiet]);
    assert_eq!(end, None);
    let cdid = a.cdid("read");
    a.send(
        &json!({"cdid": cdid, "type": "request-marking-read", "session-id": direct,
        "message-id": newest}),
    )
    .await;
    a.expect_succeeded(&cdid).await;
    let (items, _) = inbox(&mut a, Some(1), None).await;
    assert_eq!(items[0]["unread"], 0, "{}", items[0]);

    // Bob's inbox from the other node: his group and the direct session, none unread.
    let (items, _) = inbox(&mut b, None, None).await;
    assert_eq!(sessions(&items), vec![direct, g1]);
    assert!(items.iter().all(|i| i["unread"] == 0), "{items:?}");

    // Hostile pages.
    for (field, bad, reason) in [
        ("limit", json!(0), "`limit` must be an integer in 1..=100"),
        (
            "limit",
            json!(1000),
            "`limit` must be an integer in 1..=100",
        ),
        (
            "cursor",
            json!("nope"),
            "`cursor` must be a `next-cursor` of this listing",
        ),
    ] {
        let cdid = a.cdid("bad");
        let mut action = json!({"cdid": cdid, "type": "request-inbox"});
        action[field] = bad;
        a.send(&action).await;
        assert_eq!(a.expect_failed(&cdid).await, reason);
    }
}

#[actix_rt::test]
async fn an_inbox_on_one_node() {
    let node = Node::start().await;
    an_inbox_lists_sessions_newest_first((&node, &node)).await;
}

#[actix_rt::test]
async fn an_inbox_across_nodes() {
    let cluster = Cluster::start(3).await;
    an_inbox_lists_sessions_newest_first((cluster.node(0), cluster.node(2))).await;
}
