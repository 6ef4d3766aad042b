//! GradAgenda chat authentication (CONTRACT §2, §5): `authenticate` with a JWT whose `sub`
//! is the `user-id`; every other action before success → `status-response` `failed`
//! (`"not authenticated"`) on a connection that stays open; no success within 10 s →
//! close 1008; a second `authenticate` → `failed`; ids given as numbers are strings.

mod chat_common;

use std::time::Duration;

use chat_common::{
    auth_action, batch_action, create_action, delete_action, direct_action, history_action, kind,
    list_action, modify_action, participants, send_action, uniq, ChatClient, QUIET,
};
use murmur_tests::{token, token_alg_none, token_with, token_with_claims, Node, JWT_SECRET};
use serde_json::json;
use tokio::time::Instant;

#[actix_rt::test]
async fn authenticate_succeeds_with_the_cdid() {
    let node = Node::start().await;
    let user = uniq("alice");
    let mut c = ChatClient::connect(&node).await;
    c.send(&auth_action("a-1", &user, "pixel&aa:bb", &token(&user)))
        .await;
    let reply = c.expect_status("a-1").await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    assert_eq!(reply["type"], "status-response", "{reply}");
    // Authenticated as `user`: the direct session with someone names `user`.
    let other = uniq("bob");
    let info = c.direct(&other).await;
    assert_eq!(participants(&info), chat_common::sorted(&[&user, &other]));
}

#[actix_rt::test]
async fn every_action_before_authentication_fails_and_the_connection_stays() {
    let node = Node::start().await;
    let mut c = ChatClient::connect(&node).await;
    let actions = [
        direct_action("p1", "bob"),
        create_action("p2", &["bob"]),
        modify_action("p3", "some-session", &["bob"]),
        delete_action("p4", "some-session"),
        list_action("p5"),
        send_action("p6", "some-session", "hi"),
        history_action("p7", "some-session", Some(5), None),
    ];
    for a in &actions {
        c.send(a).await;
    }
    for i in 1..=actions.len() {
        let reason = c.expect_failed(&format!("p{i}")).await;
        assert_eq!(reason, "not authenticated", "p{i}");
    }
    // A batch: each inner action is refused on its own.
    c.send(&batch_action(
        "pb",
        vec![list_action("pb1"), direct_action("pb2", "bob")],
    ))
    .await;
    assert_eq!(c.expect_failed("pb1").await, "not authenticated");
    assert_eq!(c.expect_failed("pb2").await, "not authenticated");
    c.assert_none("anything but failures", QUIET, |v| {
        !(kind(v) == "status-response" && v["status"] == "failed")
    })
    .await;

    // Still open, and authentication works afterwards.
    let user = uniq("alice");
    let reply = c.authenticate(&user, "dev", &token(&user)).await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    c.send(&list_action("after")).await;
    c.expect_succeeded("after").await;
}

/// Takes ~10 s: the authentication deadline.
#[actix_rt::test]
async fn unauthenticated_connections_are_closed_after_10_seconds() {
    let node = Node::start().await;
    let started = Instant::now();
    let mut idle = ChatClient::connect(&node).await;
    // A connection that keeps failing (bad token, other actions) is not let off either.
    let mut busy = ChatClient::connect(&node).await;
    // And one that authenticates stays.
    let user = uniq("alice");
    let mut good = ChatClient::login(&node, &user, "dev").await;

    busy.send(&list_action("b1")).await;
    busy.expect_failed("b1").await;
    busy.send(&auth_action("b2", &user, "dev", "not-a-jwt"))
        .await;
    busy.expect_failed("b2").await;

    let (code, reason) = idle.expect_close(Duration::from_secs(15)).await;
    let idle_after = started.elapsed();
    assert_eq!(code, 1008, "idle connection close ({reason:?})");
    let (code, reason) = busy.expect_close(Duration::from_secs(5)).await;
    let busy_after = started.elapsed();
    assert_eq!(code, 1008, "busy connection close ({reason:?})");
    for (what, after) in [("idle", idle_after), ("busy", busy_after)] {
        assert!(
            after >= Duration::from_millis(9_500) && after <= Duration::from_secs(13),
            "{what} connection closed after {after:?}, expected ~10 s"
        );
    }

    // The authenticated connection outlived the deadline.
    good.send(&list_action("alive")).await;
    good.expect_succeeded("alive").await;
}

#[actix_rt::test]
async fn a_second_authenticate_fails_and_changes_nothing() {
    let node = Node::start().await;
    let (alice, mallory) = (uniq("alice"), uniq("mallory"));
    let mut c = ChatClient::login(&node, &alice, "dev").await;

    // Again as the same user, and as someone else with a perfectly valid token.
    c.send(&auth_action("again", &alice, "dev", &token(&alice)))
        .await;
    c.expect_failed("again").await;
    c.send(&auth_action("other", &mallory, "dev2", &token(&mallory)))
        .await;
    c.expect_failed("other").await;
    // In a batch too.
    c.send(&batch_action(
        "b",
        vec![auth_action("inner", &mallory, "dev2", &token(&mallory))],
    ))
    .await;
    c.expect_failed("inner").await;

    // Still alice.
    let bob = uniq("bob");
    let info = c.direct(&bob).await;
    assert_eq!(participants(&info), chat_common::sorted(&[&alice, &bob]));
    let (sid, info) = c.create_group(&[]).await;
    assert_eq!(participants(&info), vec![alice.clone()], "{sid}");
}

#[actix_rt::test]
async fn bad_credentials_fail_and_a_later_authenticate_succeeds() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let now = murmur_tests::tokens::now_secs();
    let bad_tokens = [
        ("bob's token for alice", token(&bob)),
        (
            "wrong secret",
            token_with("another-secret-another-secret-0123456789", &alice, 3600),
        ),
        ("expired", token_with(JWT_SECRET, &alice, -3600)),
        ("alg none", token_alg_none(&alice)),
        (
            "no exp",
            token_with_claims(JWT_SECRET, &json!({"sub": alice, "iat": now})),
        ),
        (
            "no sub",
            token_with_claims(JWT_SECRET, &json!({"iat": now, "exp": now + 3600})),
        ),
        ("garbage", "garbage".to_string()),
        ("truncated", {
            let t = token(&alice);
            t[..t.len() - 5].to_string()
        }),
    ];
    let mut c = ChatClient::connect(&node).await;
    for (i, (what, t)) in bad_tokens.iter().enumerate() {
        let cdid = format!("bad-{i}");
        c.send(&auth_action(&cdid, &alice, "dev", t)).await;
        let v = c.expect_status(&cdid).await;
        assert_eq!(v["status"], "failed", "{what}: {v}");
        assert!(v["message"].is_string(), "{what}: failure reason: {v}");
    }
    // Malformed authenticate actions: failed with their cdid.
    let malformed = [
        json!({"cdid": "m1", "type": "authenticate", "user-id": alice, "device-id": "d"}),
        json!({"cdid": "m2", "type": "authenticate", "user-id": alice, "token": token(&alice)}),
        json!({"cdid": "m3", "type": "authenticate", "device-id": "d", "token": token(&alice)}),
        json!({"cdid": "m4", "type": "authenticate", "user-id": [alice], "device-id": "d",
               "token": token(&alice)}),
        json!({"cdid": "m5", "type": "authenticate", "user-id": alice, "device-id": "d",
               "token": 12345}),
        json!({"cdid": "m6", "type": "authenticate", "user-id": alice, "device-id": "d",
               "token": ""}),
    ];
    for m in &malformed {
        c.send(m).await;
    }
    for i in 1..=malformed.len() {
        c.expect_failed(&format!("m{i}")).await;
    }
    // Nothing above authenticated the connection.
    c.send(&list_action("still-out")).await;
    assert_eq!(c.expect_failed("still-out").await, "not authenticated");

    // Right user, right token: now it works, on the same connection.
    let reply = c.authenticate(&alice, "dev", &token(&alice)).await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    let info = c.direct(&bob).await;
    assert_eq!(participants(&info), chat_common::sorted(&[&alice, &bob]));
}

#[actix_rt::test]
async fn user_id_must_equal_the_token_subject() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut c = ChatClient::connect(&node).await;
    // alice's valid token, claiming to be bob.
    c.send(&auth_action("x", &bob, "dev", &token(&alice))).await;
    c.expect_failed("x").await;
    // Case and whitespace matter.
    c.send(&auth_action(
        "y",
        &alice.to_uppercase(),
        "dev",
        &token(&alice),
    ))
    .await;
    c.expect_failed("y").await;
    c.send(&auth_action(
        "z",
        &format!("{alice} "),
        "dev",
        &token(&alice),
    ))
    .await;
    c.expect_failed("z").await;
    let reply = c.authenticate(&alice, "dev", &token(&alice)).await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
}

#[actix_rt::test]
async fn numeric_ids_are_accepted_as_strings() {
    let node = Node::start().await;
    let n: u64 = 4_200_000 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]);
    let me = n.to_string();
    let other = (n + 1).to_string();
    let mut c = ChatClient::connect(&node).await;
    c.send(
        &json!({"cdid": 9, "type": "authenticate", "user-id": n, "device-id": 7,
                   "token": token(&me)}),
    )
    .await;
    let reply = c
        .expect("answer to the numeric authenticate", |v| {
            kind(v) == "status-response"
        })
        .await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    assert_eq!(
        reply["cdid"], "9",
        "numeric cdid comes back as a string: {reply}"
    );

    // Numeric user ids in requests are the same users as their decimal strings.
    c.send(&json!({"cdid": 10, "type": "request-direct-session-info", "user-id": n + 1}))
        .await;
    let info = c.expect_info("10").await;
    assert_eq!(participants(&info), chat_common::sorted(&[&me, &other]));
    let mut o = ChatClient::login(&node, &other, "dev").await;
    let sid = o.direct_id(&me).await;
    assert_eq!(info["session-id"], sid.as_str(), "{info}");

    c.send(
        &json!({"cdid": 11, "type": "request-mutable-session-creation",
                   "user-id": [n + 1]}),
    )
    .await;
    let created = c.expect_info("11").await;
    assert_eq!(participants(&created), chat_common::sorted(&[&me, &other]));

    // The string form of the same user authenticates the same way.
    let mut s = ChatClient::connect(&node).await;
    let reply = s.authenticate(&me, "7", &token(&me)).await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    let groups = s.list().await;
    assert!(
        groups
            .iter()
            .any(|g| g["session-id"] == created["session-id"]),
        "{groups:?}"
    );
}

#[actix_rt::test]
async fn a_user_may_authenticate_from_several_devices() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut devices = Vec::new();
    for d in ["phone", "tablet", "laptop"] {
        devices.push(ChatClient::login(&node, &alice, d).await);
    }
    let bob = uniq("bob");
    let mut b = ChatClient::login(&node, &bob, "phone").await;
    let sid = b.direct_id(&alice).await;
    b.say(&sid, "to all of alice").await;
    for d in &mut devices {
        let v = d.expect_broadcast(&sid, "to all of alice").await;
        chat_common::assert_broadcast(&v, &sid, &bob, "to all of alice");
        assert!(
            v.get("cdid").is_none(),
            "only the sender's copy has a cdid: {v}"
        );
    }
}
