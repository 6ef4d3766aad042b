//! GradAgenda chat messages (CONTRACT §5 and the extensions):
//! `request-sending-a-message` → `message-broadcast` to every device of every participant
//! (the sender's too) with `message-id` and `server-timestamp`, the sending connection's
//! copy carrying the cdid; participants only; delivery reports (`message-delivered`);
//! `request-message-history` (`limit`, `since-message-id`); server-side batching of
//! outgoing actions under load; metrics.

mod chat_common;

use std::collections::BTreeSet;
use std::time::Duration;

use chat_common::{
    assert_broadcast, bodies, delete_action, has_cdid, history_action, is_broadcast_of,
    is_info_for, kind, message_id, modify_action, reported_devices, send_action, text_message,
    uniq, ChatClient, MAX_FRAME, QUIET, SOON,
};
use murmur_tests::{eventually, metric_value, metrics, Node};
use serde_json::json;

#[actix_rt::test]
async fn broadcast_reaches_every_device_and_only_the_senders_copy_has_the_cdid() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a1 = ChatClient::login(&node, &alice, "a-phone").await;
    let mut a2 = ChatClient::login(&node, &alice, "a-tablet").await;
    let mut b1 = ChatClient::login(&node, &bob, "b-phone").await;
    let mut b2 = ChatClient::login(&node, &bob, "b-laptop").await;
    let mut c1 = ChatClient::login(&node, &carol, "c-phone").await;
    let (sid, _) = a1.create_group(&[&bob, &carol]).await;

    let before = chat_common::now_ms();
    a1.send(
        &json!({"cdid": "m-1", "type": "request-sending-a-message", "session-id": sid,
                    "message": text_message("hello all"), "sender-timestamp": 1234567}),
    )
    .await;
    let own = a1
        .expect("own copy", |v| is_broadcast_of(v, &sid, "hello all"))
        .await;
    assert_broadcast(&own, &sid, &alice, "hello all");
    assert_eq!(own["cdid"], "m-1", "the sending connection's copy: {own}");
    assert_eq!(own["sender-timestamp"], 1234567, "passed through: {own}");
    let ts = own["server-timestamp"].as_u64().unwrap();
    assert!(
        ts + 1000 >= before && ts <= chat_common::now_ms() + 1000,
        "{ts} vs {before}"
    );
    let id = message_id(&own);
    for c in [&mut a2, &mut b1, &mut b2, &mut c1] {
        let v = c.expect_broadcast(&sid, "hello all").await;
        assert_broadcast(&v, &sid, &alice, "hello all");
        assert!(
            v.get("cdid").is_none(),
            "{}: no cdid on this copy: {v}",
            c.label
        );
        assert_eq!(
            v["message-id"],
            id.as_str(),
            "{}: same message id: {v}",
            c.label
        );
        assert_eq!(v["server-timestamp"], own["server-timestamp"], "{v}");
        assert_eq!(v["sender-timestamp"], 1234567, "{v}");
    }
    // Exactly one copy per device.
    for c in [&mut a1, &mut a2, &mut b1, &mut b2, &mut c1] {
        c.assert_none("a second copy", QUIET, |v| {
            is_broadcast_of(v, &sid, "hello all")
        })
        .await;
    }

    // Different messages have different ids.
    let second = b2.say(&sid, "hi alice").await;
    assert_ne!(message_id(&second), id);
    let v = a1.expect_broadcast(&sid, "hi alice").await;
    assert!(v.get("cdid").is_none(), "{v}");
    b1.expect_broadcast(&sid, "hi alice").await;
}

#[actix_rt::test]
async fn senders_get_delivery_reports_from_recipient_devices() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a1 = ChatClient::login(&node, &alice, "a-phone").await;
    let mut a2 = ChatClient::login(&node, &alice, "a-tablet").await;
    let mut b1 = ChatClient::login(&node, &bob, "b-phone").await;
    let mut b2 = ChatClient::login(&node, &bob, "b-laptop").await;
    // carol is a participant but offline: her devices cannot report anything.
    let (sid, _) = a1.create_group(&[&bob, &carol]).await;

    let own = a1.say(&sid, "did you get this?").await;
    let id = message_id(&own);
    b1.expect_broadcast(&sid, "did you get this?").await;
    b2.expect_broadcast(&sid, "did you get this?").await;

    let want: BTreeSet<(String, String)> = [
        (bob.clone(), "b-phone".to_string()),
        (bob.clone(), "b-laptop".to_string()),
    ]
    .into();
    for a in [&mut a1, &mut a2] {
        let mut got = BTreeSet::new();
        while got.len() < want.len() {
            let v = a
                .expect("message-delivered", |v| kind(v) == "message-delivered")
                .await;
            assert_eq!(v["session-id"], sid.as_str(), "{v}");
            assert_eq!(v["message-id"], id.as_str(), "{v}");
            for who in reported_devices(&v) {
                assert!(want.contains(&who), "{}: unexpected report {v}", a.label);
                assert!(got.insert(who), "{}: duplicate report {v}", a.label);
            }
        }
        // No report from alice's own devices, none from offline carol.
        a.assert_none("another delivery report", QUIET, |v| {
            kind(v) == "message-delivered"
        })
        .await;
    }
    // Recipients get no reports about their own receipt.
    b1.assert_none("a delivery report", QUIET, |v| {
        kind(v) == "message-delivered"
    })
    .await;

    // carol comes online: later messages are reported from her device too.
    let mut c1 = ChatClient::login(&node, &carol, "c-watch").await;
    let own = a1.say(&sid, "carol?").await;
    c1.expect_broadcast(&sid, "carol?").await;
    let want: BTreeSet<(String, String)> = [
        (bob.clone(), "b-phone".to_string()),
        (bob.clone(), "b-laptop".to_string()),
        (carol.clone(), "c-watch".to_string()),
    ]
    .into();
    let mut got = BTreeSet::new();
    while got.len() < want.len() {
        let v = a1
            .expect("a delivery report of the second message", |v| {
                kind(v) == "message-delivered" && v["message-id"] == own["message-id"]
            })
            .await;
        for who in reported_devices(&v) {
            assert!(want.contains(&who), "unexpected report {v}");
            assert!(got.insert(who), "duplicate report {v}");
        }
    }
}

#[actix_rt::test]
async fn only_participants_may_send() {
    let node = Node::start().await;
    let (alice, bob, mallory) = (uniq("alice"), uniq("bob"), uniq("mallory"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let mut m = ChatClient::login(&node, &mallory, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect("created", |v| is_info_for(v, &sid)).await;
    let direct = a.direct_id(&bob).await;

    let why = m.say_fails(&sid, "spam").await;
    assert!(!why.is_empty());
    m.say_fails(&direct, "spam").await;
    m.say_fails("no-such-session", "spam").await;
    // A forged direct id naming mallory's victims but not mallory.
    m.say_fails(&direct.replace('A', "B"), "spam").await;
    for c in [&mut a, &mut b] {
        c.assert_none("spam", QUIET, |v| kind(v) == "message-broadcast")
            .await;
    }
    // Marker: a real message after the attempts arrives.
    a.say(&sid, "marker").await;
    let v = b.expect_broadcast(&sid, "marker").await;
    assert_eq!(v["sender-id"], alice.as_str());
    b.assert_none("spam", QUIET, |v| {
        kind(v) == "message-broadcast" && v["message"]["body"] == "spam"
    })
    .await;
}

#[actix_rt::test]
async fn direct_sessions_carry_messages_between_the_two() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    // bob never asked for the session info; he receives anyway.
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let sid = a.direct_id(&bob).await;
    a.say(&sid, "psst").await;
    let v = b.expect_broadcast(&sid, "psst").await;
    assert_broadcast(&v, &sid, &alice, "psst");
    b.say(&sid, "yes?").await;
    a.expect_broadcast(&sid, "yes?").await;
}

#[actix_rt::test]
async fn removed_participants_stop_receiving_and_deleted_sessions_refuse_messages() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let mut c = ChatClient::login(&node, &carol, "dev").await;
    let (sid, _) = a.create_group(&[&bob, &carol]).await;
    let (other, _) = a.create_group(&[&carol]).await;
    a.say(&sid, "before").await;
    c.expect_broadcast(&sid, "before").await;

    a.send(&modify_action("drop-carol", &sid, &[&alice, &bob]))
        .await;
    a.expect_info("drop-carol").await;
    c.expect("modified", |v| {
        is_info_for(v, &sid) && v["status"] == "modified"
    })
    .await;

    a.say(&sid, "after").await;
    b.expect_broadcast(&sid, "after").await;
    c.assert_none("a broadcast of the group she left", QUIET, |v| {
        is_broadcast_of(v, &sid, "after")
    })
    .await;
    // Marker in a group carol is still in, sent later: arrives, and "after" never did.
    a.say(&other, "marker").await;
    c.expect_broadcast(&other, "marker").await;
    c.assert_none("a broadcast of the group she left", QUIET, |v| {
        is_broadcast_of(v, &sid, "after")
    })
    .await;

    a.send(&delete_action("del", &sid)).await;
    a.expect_info("del").await;
    a.say_fails(&sid, "into the void").await;
    b.say_fails(&sid, "into the void").await;
    b.assert_none("a broadcast of a deleted session", QUIET, |v| {
        is_broadcast_of(v, &sid, "into the void")
    })
    .await;
}

#[actix_rt::test]
async fn messages_of_one_sender_arrive_in_order() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    let want: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    for (i, body) in want.iter().enumerate() {
        a.send(&send_action(&format!("o{i}"), &sid, body)).await;
    }
    let mut got = Vec::new();
    let mut ids = Vec::new();
    while got.len() < want.len() {
        let v = b
            .expect("next broadcast", |v| kind(v) == "message-broadcast")
            .await;
        got.push(v["message"]["body"].as_str().unwrap().to_string());
        ids.push(message_id(&v));
    }
    assert_eq!(got, want);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "message ids are unique: {ids:?}");
    // The sender's own copies come in order too, each with its cdid.
    for (i, body) in want.iter().enumerate() {
        let v = a
            .expect("own copy", |v| kind(v) == "message-broadcast")
            .await;
        assert_eq!(v["cdid"], format!("o{i}"), "{v}");
        assert_eq!(v["message"]["body"], body.as_str());
    }
}

#[actix_rt::test]
async fn history_catches_up_after_a_reconnect() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "phone").await;
    let (sid, _) = a.create_group(&[&bob]).await;

    let mut ids = Vec::new();
    for i in 1..=2 {
        ids.push(message_id(&a.say(&sid, &format!("h{i}")).await));
        b.expect_broadcast(&sid, &format!("h{i}")).await;
    }
    // bob's phone goes offline; alice carries on.
    b.ws.close().await;
    drop(b);
    for i in 3..=6 {
        ids.push(message_id(&a.say(&sid, &format!("h{i}")).await));
    }

    let mut b = ChatClient::login(&node, &bob, "phone").await;
    // Since the last message bob saw.
    let items = b.history(&sid, None, Some(&ids[1])).await;
    assert_eq!(bodies(&items), ["h3", "h4", "h5", "h6"]);
    for (item, id) in items.iter().zip(&ids[2..]) {
        let body = item["message"]["body"].as_str().unwrap_or_default();
        assert_broadcast(item, &sid, &alice, body);
        assert_eq!(item["message-id"], id.as_str(), "{item}");
        assert_eq!(item["history"], true, "{item}");
    }
    // The last N.
    let items = b.history(&sid, Some(3), None).await;
    assert_eq!(bodies(&items), ["h4", "h5", "h6"]);
    // All (no limit).
    let items = b.history(&sid, None, None).await;
    assert_eq!(bodies(&items), ["h1", "h2", "h3", "h4", "h5", "h6"]);
    // Since the newest: nothing, just the closing status.
    assert!(b.history(&sid, None, Some(&ids[5])).await.is_empty());
    // A limit larger than what exists.
    assert_eq!(b.history(&sid, Some(1000), None).await.len(), 6);
    // History is not broadcast to anyone else.
    a.assert_none("history items", QUIET, |v| v["history"] == true)
        .await;
    // History of the direct session works the same way (empty so far).
    let direct = b.direct_id(&alice).await;
    assert!(b.history(&direct, Some(5), None).await.is_empty());
    a.say(&direct, "d1").await;
    assert_eq!(bodies(&b.history(&direct, Some(5), None).await), ["d1"]);
}

#[actix_rt::test]
async fn history_items_carry_the_cdid_and_come_before_the_status() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    for i in 0..3 {
        a.say(&sid, &format!("x{i}")).await;
    }
    a.send(&history_action("hist-cdid", &sid, Some(10), None))
        .await;
    let mut seen = Vec::new();
    loop {
        let v = a
            .expect("history answer", |v| has_cdid(v, "hist-cdid"))
            .await;
        if kind(&v) == "status-response" {
            assert_eq!(v["status"], "succeeded", "{v}");
            break;
        }
        assert_eq!(kind(&v), "message-broadcast", "{v}");
        assert_eq!(v["history"], true, "{v}");
        seen.push(v);
    }
    assert_eq!(bodies(&seen), ["x0", "x1", "x2"]);
    a.assert_none("items after the closing status", QUIET, |v| {
        has_cdid(v, "hist-cdid")
    })
    .await;
}

#[actix_rt::test]
async fn history_is_for_participants_only_and_checks_its_arguments() {
    let node = Node::start().await;
    let (alice, bob, mallory) = (uniq("alice"), uniq("bob"), uniq("mallory"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut m = ChatClient::login(&node, &mallory, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    let first = a.say(&sid, "secret").await;
    let direct = a.direct_id(&bob).await;
    a.say(&direct, "secret too").await;

    for (cdid, session) in [
        ("h1", sid.as_str()),
        ("h2", direct.as_str()),
        ("h3", "nope"),
    ] {
        m.send(&history_action(cdid, session, Some(10), None)).await;
        m.expect_failed(cdid).await;
    }
    m.assert_none("history items", QUIET, |v| kind(v) == "message-broadcast")
        .await;

    let bad = [
        json!({"cdid": "b1", "type": "request-message-history", "session-id": sid, "limit": 0}),
        json!({"cdid": "b2", "type": "request-message-history", "session-id": sid, "limit": -3}),
        json!({"cdid": "b3", "type": "request-message-history", "session-id": sid,
               "limit": "ten"}),
        json!({"cdid": "b4", "type": "request-message-history", "session-id": sid,
               "since-message-id": "not-an-id"}),
        json!({"cdid": "b5", "type": "request-message-history", "session-id": sid,
               "since-message-id": {"id": first["message-id"]}}),
        json!({"cdid": "b6", "type": "request-message-history"}),
        json!({"cdid": "b7", "type": "request-message-history", "session-id": sid,
               "limit": 2.5}),
    ];
    for b in &bad {
        a.send(b).await;
    }
    for i in 1..=bad.len() {
        a.expect_failed(&format!("b{i}")).await;
    }
    // Still fine.
    assert_eq!(bodies(&a.history(&sid, Some(1), None).await), ["secret"]);
}

#[actix_rt::test]
async fn message_payloads_are_checked() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    let bad = [
        json!({"cdid": "p1", "type": "request-sending-a-message", "session-id": sid,
               "message": "just a string", "sender-timestamp": 1}),
        json!({"cdid": "p2", "type": "request-sending-a-message", "session-id": sid,
               "message": {"body": "no type"}, "sender-timestamp": 1}),
        json!({"cdid": "p3", "type": "request-sending-a-message", "session-id": sid,
               "message": {"type": "text"}, "sender-timestamp": 1}),
        json!({"cdid": "p4", "type": "request-sending-a-message", "session-id": sid,
               "message": text_message("x"), "sender-timestamp": "yesterday"}),
        json!({"cdid": "p5", "type": "request-sending-a-message", "session-id": sid,
               "message": text_message("x")}),
        json!({"cdid": "p6", "type": "request-sending-a-message",
               "message": text_message("x"), "sender-timestamp": 1}),
        // The request fits a frame, but its broadcast would not.
        json!({"cdid": "p7", "type": "request-sending-a-message", "session-id": sid,
               "message": text_message(&"y".repeat(3900)), "sender-timestamp": 1}),
    ];
    for m in &bad {
        assert!(m.to_string().len() <= MAX_FRAME);
        a.send(m).await;
    }
    for i in 1..=bad.len() {
        a.expect_failed(&format!("p{i}")).await;
    }
    b.assert_none("a broadcast of an invalid message", QUIET, |v| {
        kind(v) == "message-broadcast"
    })
    .await;
    // Unicode and structured bodies pass through untouched.
    let body = json!({"type": "text", "body": "ünïcødé 🐦 \"quotes\" \\ \n"});
    a.send(
        &json!({"cdid": "ok", "type": "request-sending-a-message", "session-id": sid,
                   "message": body, "sender-timestamp": 5}),
    )
    .await;
    let v = b
        .expect("the unicode message", |v| kind(v) == "message-broadcast")
        .await;
    assert_eq!(v["message"], body, "{v}");
}

/// A message whose broadcast just fits a frame, then read back through history with the
/// longest cdid the server accepts: every frame the server sends must still be within
/// 4096 bytes (CONTRACT §5), or the request must fail.
#[actix_rt::test]
async fn history_items_of_the_largest_messages_still_fit_a_frame() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    // Find (from above) the largest body the server accepts with cdid "c".
    let mut len = 4000;
    let accepted = loop {
        assert!(len > 3000, "no large message accepted");
        let request = json!({"cdid": "c", "type": "request-sending-a-message",
                             "session-id": sid, "message": text_message(&"z".repeat(len)),
                             "sender-timestamp": 1});
        if request.to_string().len() > MAX_FRAME {
            len -= 8;
            continue;
        }
        a.send(&request).await;
        let v = a
            .expect("answer to a large message", |v| {
                has_cdid(v, "c") && matches!(kind(v), "status-response" | "message-broadcast")
            })
            .await;
        if kind(&v) == "message-broadcast" {
            break v;
        }
        len -= 8;
    };
    eprintln!(
        "largest accepted body: {len} bytes; broadcast frame {} bytes",
        accepted.to_string().len()
    );
    let long_cdid = "k".repeat(128);
    a.send(&history_action(&long_cdid, &sid, Some(1), None))
        .await;
    let v = a
        .expect("history answer", |v| has_cdid(v, &long_cdid))
        .await;
    if kind(&v) == "message-broadcast" {
        assert_eq!(v["message"]["body"].as_str().map(str::len), Some(len));
        a.expect_status(&long_cdid).await;
    } else {
        assert_eq!(v["status"], "failed", "{v}");
    }
}

#[actix_rt::test]
async fn server_batches_under_load_keep_order_and_the_frame_limit() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut a2 = ChatClient::login(&node, &alice, "tablet").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect("created", |v| is_info_for(v, &sid)).await;
    a2.expect("created", |v| is_info_for(v, &sid)).await;

    // 50 messages of ~300 bytes as fast as possible: several broadcasts queue up per
    // receiving connection, and 64 of them would not fit one frame.
    let pad = "p".repeat(300);
    let want: Vec<String> = (0..50).map(|i| format!("{i:02}-{pad}")).collect();
    for (i, body) in want.iter().enumerate() {
        a.send(&send_action(&format!("q{i}"), &sid, body)).await;
    }
    for c in [&mut b, &mut a2, &mut a] {
        let mut got = Vec::new();
        while got.len() < want.len() {
            let v = c
                .expect_within("next broadcast", Duration::from_secs(10), |v| {
                    kind(v) == "message-broadcast"
                })
                .await;
            got.push(v);
        }
        assert_eq!(bodies(&got), want, "{}: order", c.label);
        eprintln!(
            "{}: {} frames, {} of them server batches, largest {} bytes",
            c.label, c.frames, c.batch_frames, c.max_frame_len
        );
        assert!(c.max_frame_len <= MAX_FRAME);
    }
    // The delivery reports (one per message, from bob's device) arrive on both of
    // alice's devices, possibly batched too.
    for c in [&mut a, &mut a2] {
        let mut ids = BTreeSet::new();
        while ids.len() < want.len() {
            let v = c
                .expect_within("delivery report", Duration::from_secs(10), |v| {
                    kind(v) == "message-delivered"
                })
                .await;
            assert_eq!(
                reported_devices(&v),
                vec![(bob.clone(), "dev".to_string())],
                "{v}"
            );
            assert!(ids.insert(message_id(&v)), "duplicate report {v}");
        }
    }
}

#[actix_rt::test]
async fn metrics_count_chat_actions_and_connections() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let b = ChatClient::login(&node, &bob, "dev").await;
    let sid = a.direct_id(&bob).await;
    for i in 0..3 {
        a.say(&sid, &format!("n{i}")).await;
    }
    let text = metrics(&node).await;
    let conns = metric_value(&text, "murmur_connections", &[("protocol", "chat")]);
    assert_eq!(
        conns,
        Some(2.0),
        "murmur_connections{{protocol=\"chat\"}}:\n{text}"
    );
    let actions = metric_value(&text, "murmur_chat_actions_total", &[])
        .unwrap_or_else(|| panic!("murmur_chat_actions_total missing:\n{text}"));
    // 2 authentications, 1 direct-session request, 3 messages.
    assert!(actions >= 6.0, "murmur_chat_actions_total = {actions}");

    drop(b);
    eventually("chat connections gauge drops to 1", SOON, || async {
        let text = metrics(&node).await;
        (metric_value(&text, "murmur_connections", &[("protocol", "chat")]) == Some(1.0))
            .then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_device_leaving_does_not_cut_off_the_users_other_devices() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a1 = ChatClient::login(&node, &alice, "phone").await;
    let a2 = ChatClient::login(&node, &alice, "tablet").await;
    let mut a3 = ChatClient::login(&node, &alice, "laptop").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let sid = b.direct_id(&alice).await;
    b.say(&sid, "one").await;
    a1.expect_broadcast(&sid, "one").await;

    // The tablet hangs up cleanly, the laptop just vanishes.
    let mut a2 = a2;
    a2.ws.close().await;
    drop(a2);
    drop(a3);
    b.say(&sid, "two").await;
    a1.expect_broadcast(&sid, "two").await;
    // A new device of alice's joins later and receives what follows.
    a3 = ChatClient::login(&node, &alice, "laptop").await;
    b.say(&sid, "three").await;
    a1.expect_broadcast(&sid, "three").await;
    a3.expect_broadcast(&sid, "three").await;
    a3.assert_none("messages from before it connected", QUIET, |v| {
        is_broadcast_of(v, &sid, "one") || is_broadcast_of(v, &sid, "two")
    })
    .await;
}

#[actix_rt::test]
async fn history_returns_at_most_100_per_request_and_pages_with_since() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    let want: Vec<String> = (0..130).map(|i| format!("n{i:03}")).collect();
    for (i, body) in want.iter().enumerate() {
        a.send(&send_action(&format!("w{i}"), &sid, body)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..want.len() {
        let v = a
            .expect_within("own copy", Duration::from_secs(10), |v| {
                kind(v) == "message-broadcast"
            })
            .await;
        ids.push(message_id(&v));
    }
    // Without a limit, and with a larger one: the newest 100.
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    assert_eq!(bodies(&b.history(&sid, None, None).await), want[30..]);
    assert_eq!(bodies(&b.history(&sid, Some(5000), None).await), want[30..]);
    // Paging forward from the start with since-message-id.
    let page = b.history(&sid, None, Some(&ids[0])).await;
    assert_eq!(page.len(), 100);
    assert_eq!(bodies(&page), want[1..101]);
    let last = message_id(&page[99]);
    assert_eq!(
        bodies(&b.history(&sid, None, Some(&last)).await),
        want[101..]
    );
}

/// The broadcast budget is exact (docs/chat.md): a message is refused only when one of
/// the frames it is really sent as would exceed 4096 bytes — the sender's copy with its
/// own cdid, the other devices' copies, the history form — with the message id (not yet
/// assigned when the check runs) counted as 20 characters. So the largest accepted body
/// makes the sender's copy exactly 4096 bytes minus what its real id is shorter than 20,
/// every device gets it within 4096 bytes, and one byte more is refused.
#[actix_rt::test]
async fn the_largest_message_that_fits_is_accepted_and_one_byte_more_is_refused() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "phone").await;
    let mut a2 = ChatClient::login(&node, &alice, "tablet").await;
    let mut b = ChatClient::login(&node, &bob, "phone").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    // A long cdid (40 bytes), so the sender's copy is the largest form.
    let cdid = |tag: char| format!("{tag}{}", "c".repeat(39));
    let send = |tag: char, body: &str| {
        json!({"cdid": cdid(tag), "type": "request-sending-a-message", "session-id": sid,
               "message": text_message(body), "sender-timestamp": 1})
    };
    let own_copy =
        |v: &serde_json::Value| matches!(kind(v), "message-broadcast" | "status-response");

    // Learn the frame's fixed part from a one-byte body.
    a.send(&send('p', "z")).await;
    let probe = a
        .expect("probe answer", |v| own_copy(v) && has_cdid(v, &cdid('p')))
        .await;
    assert_eq!(kind(&probe), "message-broadcast", "{probe}");
    let fixed = probe.to_string().len() - 1 - message_id(&probe).len();
    let largest = MAX_FRAME - fixed - 20;

    let body = "z".repeat(largest);
    a.send(&send('l', &body)).await;
    let own = a
        .expect("answer to the largest", |v| {
            own_copy(v) && has_cdid(v, &cdid('l'))
        })
        .await;
    assert_eq!(
        kind(&own),
        "message-broadcast",
        "a {largest}-byte body fits: {}",
        own.to_string().chars().take(200).collect::<String>()
    );
    let len = own.to_string().len();
    assert_eq!(
        len,
        MAX_FRAME - (20 - message_id(&own).len()),
        "sender's frame"
    );
    // Every other device gets it (ChatClient checks every frame against 4096 bytes).
    for c in [&mut a2, &mut b] {
        c.expect_broadcast(&sid, "z").await;
        let v = c.expect_broadcast(&sid, &body).await;
        assert!(v.get("cdid").is_none(), "{}", c.label);
        assert!(v.to_string().len() <= MAX_FRAME);
    }

    let body_over = "z".repeat(largest + 1);
    a.send(&send('o', &body_over)).await;
    let refused = a.expect_failed(&cdid('o')).await;
    assert_eq!(refused, "message too large for a broadcast frame");

    // The refused message went nowhere: the next broadcast each device gets is this one.
    a.say(&sid, "after").await;
    for c in [&mut a2, &mut b] {
        let v = c
            .expect("the next broadcast", |v| kind(v) == "message-broadcast")
            .await;
        assert_eq!(v["message"]["body"], "after", "{}", c.label);
    }
    // History serves the largest message with a short cdid, within a frame.
    a.send(&history_action("h", &sid, Some(2), None)).await;
    let item = a.expect("history item", |v| has_cdid(v, "h")).await;
    assert_eq!(kind(&item), "message-broadcast", "{item}");
    assert_eq!(item["history"], true);
    assert_eq!(
        item["message"]["body"].as_str().map(str::len),
        Some(largest)
    );
    assert!(item.to_string().len() <= MAX_FRAME);
}
