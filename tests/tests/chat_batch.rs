//! GradAgenda chat client batches (CONTRACT §5): `batch-mode-action` — each inner action
//! carries its own cdid and is answered as if sent alone, in order; batches do not nest.

mod chat_common;

use chat_common::{
    auth_action, batch_action, create_action, direct_action, has_cdid, history_action, is_info_for,
    kind, list_action, participants, send_action, sorted, uniq, ChatClient, MAX_FRAME, QUIET,
};
use murmur_tests::{token, Node};
use serde_json::{json, Value};

/// Collects every action carrying one of `cdids` until each cdid's final answer arrived
/// (`final_of(cdid, action)` says whether an action is that cdid's last answer), then
/// asserts the answers came grouped and in the order of `cdids`.
async fn answers_in_order(
    c: &mut ChatClient,
    cdids: &[&str],
    mut final_of: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut seen: Vec<(String, Value)> = Vec::new();
    let mut done = 0;
    while done < cdids.len() {
        let v = c
            .expect("an answer to the batch", |v| {
                cdids.iter().any(|cd| has_cdid(v, cd))
            })
            .await;
        let cdid = v["cdid"].as_str().unwrap().to_string();
        if final_of(&cdid, &v) {
            done += 1;
        }
        seen.push((cdid, v));
    }
    let order: Vec<&str> = seen.iter().map(|(c, _)| c.as_str()).collect();
    let mut grouped: Vec<&str> = order.clone();
    grouped.dedup();
    assert_eq!(
        grouped,
        cdids,
        "{}: batch answers must come in the batch's order, each action's answers \
         together; got cdids in this order: {order:?}\nactions: {:#?}",
        c.label,
        seen.iter().map(|(_, v)| v).collect::<Vec<_>>()
    );
    seen
}

#[actix_rt::test]
async fn inner_actions_are_answered_in_order_with_their_own_cdids() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    a.say(&sid, "earlier").await;

    let batch = batch_action(
        "outer",
        vec![
            direct_action("i1", &bob),
            json!({"cdid": "i2", "type": "no-such-action"}),
            list_action("i3"),
            history_action("i4", &sid, Some(5), None),
            direct_action("i5", &alice),
            json!({"cdid": "i6", "type": "request-direct-session-info", "user-id": {}}),
        ],
    );
    a.send(&batch).await;
    let cdids = ["i1", "i2", "i3", "i4", "i5", "i6"];
    let seen = answers_in_order(&mut a, &cdids, |cdid, v| match cdid {
        "i3" | "i4" => kind(v) == "status-response",
        _ => true,
    })
    .await;
    let first = |cd: &str| {
        seen.iter()
            .find(|(c, _)| c == cd)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(kind(&first("i1")), "providing-session-info");
    assert_eq!(participants(&first("i1")), sorted(&[&alice, &bob]));
    assert_eq!(first("i2")["status"], "failed");
    assert!(is_info_for(&first("i3"), &sid), "{}", first("i3"));
    assert_eq!(first("i4")["message"]["body"], "earlier");
    // i5 (a direct session with oneself) and i6 answer as they would alone.
    let alone_5 = {
        a.send(&direct_action("alone-5", &alice)).await;
        a.expect("answer to alone-5", |v| has_cdid(v, "alone-5"))
            .await
    };
    assert_eq!(kind(&first("i5")), kind(&alone_5));
    assert_eq!(first("i5")["status"], alone_5["status"]);
    assert_eq!(first("i6")["status"], "failed");
    // The batch itself gets no answer of its own.
    a.assert_none("an answer under the batch's cdid", QUIET, |v| {
        has_cdid(v, "outer")
    })
    .await;
}

#[actix_rt::test]
async fn session_changes_in_a_batch_are_answered_in_order() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    // Create, then list: as if sent alone one after the other, the creation's info
    // comes first and the listing already contains the new group.
    a.send(&batch_action(
        "b",
        vec![create_action("c1", &[&bob]), list_action("c2")],
    ))
    .await;
    let seen = answers_in_order(&mut a, &["c1", "c2"], |cdid, v| {
        cdid == "c1" || kind(v) == "status-response"
    })
    .await;
    let created = &seen[0].1;
    assert_eq!(created["status"], "created", "{created}");
    let sid = created["session-id"].as_str().unwrap();
    let listed: Vec<&Value> = seen
        .iter()
        .filter(|(c, v)| c == "c2" && kind(v) == "providing-session-info")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(is_info_for(listed[0], sid));
}

#[actix_rt::test]
async fn messages_in_a_batch_are_answered_in_order() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let sid = a.direct_id(&bob).await;
    a.send(&batch_action(
        "b",
        vec![
            send_action("s1", &sid, "one"),
            send_action("s2", &sid, "two"),
            send_action("s3", "not-my-session", "three"),
            send_action("s4", &sid, "four"),
            history_action("s5", &sid, Some(10), None),
        ],
    ))
    .await;
    let seen = answers_in_order(&mut a, &["s1", "s2", "s3", "s4", "s5"], |cdid, v| {
        cdid != "s5" || kind(v) == "status-response"
    })
    .await;
    assert_eq!(seen[0].1["message"]["body"], "one");
    assert_eq!(seen[1].1["message"]["body"], "two");
    assert_eq!(seen[2].1["status"], "failed");
    assert_eq!(seen[3].1["message"]["body"], "four");
    // The history, read after the three sends, holds all three.
    let hist: Vec<&Value> = seen
        .iter()
        .filter(|(c, v)| c == "s5" && kind(v) == "message-broadcast")
        .map(|(_, v)| v)
        .collect();
    let bodies: Vec<&str> = hist
        .iter()
        .map(|v| v["message"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["one", "two", "four"]);
    // The recipient sees the three in order.
    for body in ["one", "two", "four"] {
        let v = b
            .expect("next broadcast", |v| kind(v) == "message-broadcast")
            .await;
        assert_eq!(v["message"]["body"], body, "{v}");
    }
}

#[actix_rt::test]
async fn batches_do_not_nest() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    a.send(&batch_action(
        "outer",
        vec![
            direct_action("n1", &bob),
            batch_action("n2", vec![create_action("n2-inner", &[&bob])]),
            list_action("n3"),
        ],
    ))
    .await;
    let seen = answers_in_order(&mut a, &["n1", "n2", "n3"], |cdid, v| {
        cdid != "n3" || kind(v) == "status-response"
    })
    .await;
    assert_eq!(kind(&seen[1].1), "status-response");
    assert_eq!(seen[1].1["status"], "failed", "{}", seen[1].1);
    // The nested batch's action was not carried out.
    assert!(
        seen.iter()
            .all(|(c, v)| c != "n3" || kind(v) == "status-response"),
        "no group was created: {seen:?}"
    );
    a.assert_none("an answer to the nested action", QUIET, |v| {
        has_cdid(v, "n2-inner") || kind(v) == "providing-session-info"
    })
    .await;
}

#[actix_rt::test]
async fn batches_before_authentication() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut c = ChatClient::connect(&node).await;
    c.send(&batch_action(
        "b",
        vec![
            list_action("x1"),
            auth_action("x2", &alice, "dev", &token(&alice)),
            list_action("x3"),
        ],
    ))
    .await;
    let seen = answers_in_order(&mut c, &["x1", "x2", "x3"], |_, _| true).await;
    assert_eq!(seen[0].1["status"], "failed");
    assert_eq!(seen[0].1["message"], "not authenticated");
    assert_eq!(seen[1].1["status"], "succeeded", "{}", seen[1].1);
    assert_eq!(seen[2].1["status"], "succeeded", "{}", seen[2].1);
    // Authenticated from then on.
    c.send(&direct_action("after", "bob")).await;
    c.expect_info("after").await;
}

#[actix_rt::test]
async fn batch_size_and_entries_are_checked() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut a = ChatClient::login(&node, &alice, "dev").await;

    // 64 inner actions (the documented maximum) are all answered, in order.
    let cdids: Vec<String> = (0..64).map(|i| format!("{i}")).collect();
    let frame = batch_action("full", cdids.iter().map(|c| list_action(c)).collect());
    assert!(frame.to_string().len() <= MAX_FRAME);
    a.send(&frame).await;
    let refs: Vec<&str> = cdids.iter().map(String::as_str).collect();
    answers_in_order(&mut a, &refs, |_, v| kind(v) == "status-response").await;

    // 65: refused as a whole with the batch's cdid; none of them is carried out.
    let over = batch_action(
        "over",
        (0..65).map(|i| list_action(&format!("o{i}"))).collect(),
    );
    assert!(over.to_string().len() <= MAX_FRAME);
    a.send(&over).await;
    a.expect_failed("over").await;
    a.assert_none("an inner answer of a refused batch", QUIET, |v| {
        v["cdid"]
            .as_str()
            .is_some_and(|c| c.starts_with('o') && c != "over")
    })
    .await;

    // Entries that are not action objects fail on their own; the rest still run.
    a.send(&batch_action(
        "mixed",
        vec![
            json!(5),
            json!("list"),
            Value::Null,
            json!([]),
            list_action("m-ok"),
        ],
    ))
    .await;
    for _ in 0..4 {
        let v = a
            .expect("failure for a non-object entry", |v| {
                kind(v) == "status-response" && v["status"] == "failed"
            })
            .await;
        assert!(v["message"].is_string(), "{v}");
    }
    a.expect_succeeded("m-ok").await;

    // `actions` must be an array.
    a.send(&json!({"cdid": "not-array", "type": "batch-mode-action", "actions": {}}))
        .await;
    a.expect_failed("not-array").await;
    a.send(&json!({"cdid": "missing", "type": "batch-mode-action"}))
        .await;
    a.expect_failed("missing").await;
}
