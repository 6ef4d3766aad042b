//! GradAgenda chat sessions (CONTRACT §5): direct session ids (a pure function of the
//! two user ids, `status` always `unchanged`) and mutable sessions (create / modify /
//! delete / list, participants only, every participant's devices told, the requester's
//! copy carrying its cdid).

mod chat_common;

use chat_common::{
    create_action, delete_action, direct_action, has_cdid, is_info_for, kind, modify_action,
    participants, sorted, uniq, ChatClient, QUIET,
};
use murmur_tests::Node;
use serde_json::Value;

#[actix_rt::test]
async fn direct_session_id_is_symmetric_and_stable() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;

    let info = a.direct(&bob).await;
    assert_eq!(info["session-type"], "direct", "{info}");
    assert_eq!(info["status"], "unchanged", "{info}");
    assert_eq!(participants(&info), sorted(&[&alice, &bob]));
    let ab = info["session-id"].as_str().unwrap().to_string();
    assert!(!ab.is_empty());

    // Both orders, repeatedly, from another device of the same user too.
    assert_eq!(b.direct_id(&alice).await, ab);
    assert_eq!(a.direct_id(&bob).await, ab);
    let mut a2 = ChatClient::login(&node, &alice, "tablet").await;
    assert_eq!(a2.direct_id(&bob).await, ab);

    // Other pairs have other ids.
    let ac = a.direct_id(&carol).await;
    let bc = b.direct_id(&carol).await;
    assert!(ac != ab && bc != ab && ac != bc, "{ab} {ac} {bc}");
    // Concatenation ambiguity must not collide: ("xab", "c") vs ("xa", "bc").
    let mut x1 = ChatClient::login(&node, "xab", "dev").await;
    let mut x2 = ChatClient::login(&node, "xa", "dev").await;
    assert_ne!(x1.direct_id("c").await, x2.direct_id("bc").await);

    // The same pair on a completely fresh node (nothing shared, nothing stored): same id.
    drop((a, a2, b, x1, x2));
    drop(node);
    let fresh = Node::start().await;
    let mut c = ChatClient::login(&fresh, &carol, "dev").await;
    assert_eq!(c.direct_id(&alice).await, ac);
    let mut b = ChatClient::login(&fresh, &bob, "dev").await;
    assert_eq!(b.direct_id(&alice).await, ab);
}

#[actix_rt::test]
async fn direct_session_info_is_only_sent_to_the_requester() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut a2 = ChatClient::login(&node, &alice, "tablet").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    a.direct(&bob).await;
    a2.assert_quiet(QUIET).await;
    b.assert_quiet(QUIET).await;
}

#[actix_rt::test]
async fn unicode_ids_form_direct_sessions() {
    let node = Node::start().await;
    let (alice, bob) = (
        format!("{}-élodie-日本", uniq("")),
        format!("{}-ümit", uniq("")),
    );
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let sid = a.direct_id(&bob).await;
    assert_eq!(b.direct_id(&alice).await, sid);
    a.say(&sid, "bonjour").await;
    b.expect_broadcast(&sid, "bonjour").await;
}

#[actix_rt::test]
async fn direct_sessions_cannot_be_modified_or_deleted() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let sid = a.direct_id(&bob).await;
    a.send(&modify_action("m", &sid, &[&alice, &bob, &carol]))
        .await;
    a.expect_failed("m").await;
    a.send(&delete_action("d", &sid)).await;
    a.expect_failed("d").await;
    b.assert_none("session info", QUIET, |v| {
        kind(v) == "providing-session-info"
    })
    .await;
    // Still the same two-person session.
    assert_eq!(participants(&a.direct(&bob).await), sorted(&[&alice, &bob]));
}

/// Waits for the info about `sid` on a device that did not ask (no cdid), checks it.
async fn expect_told(c: &mut ChatClient, sid: &str, status: &str, users: &[&str]) -> Value {
    let what = format!("{status} info for {sid}");
    let v = c
        .expect(&what, |v| is_info_for(v, sid) && v["status"] == status)
        .await;
    assert_eq!(v["session-type"], "mutable", "{}: {v}", c.label);
    assert_eq!(participants(&v), sorted(users), "{}: {v}", c.label);
    assert!(
        v.get("cdid").is_none(),
        "{}: only the requesting connection's copy carries the cdid: {v}",
        c.label
    );
    v
}

#[actix_rt::test]
async fn group_lifecycle_notifications_and_authorization() {
    let node = Node::start().await;
    let (alice, bob, carol, dave) = (uniq("alice"), uniq("bob"), uniq("carol"), uniq("dave"));
    let mut a1 = ChatClient::login(&node, &alice, "phone").await;
    let mut a2 = ChatClient::login(&node, &alice, "tablet").await;
    let mut b1 = ChatClient::login(&node, &bob, "phone").await;
    let mut c1 = ChatClient::login(&node, &carol, "phone").await;
    let mut d1 = ChatClient::login(&node, &dave, "phone").await;

    // Create: the creator is a participant; everyone's devices are told.
    a1.send(&create_action("c-1", &[&bob, &carol])).await;
    let created = a1.expect_info("c-1").await;
    assert_eq!(created["type"], "providing-session-info");
    assert_eq!(created["session-type"], "mutable", "{created}");
    assert_eq!(created["status"], "created", "{created}");
    let members = [alice.as_str(), bob.as_str(), carol.as_str()];
    assert_eq!(participants(&created), sorted(&members));
    let sid = created["session-id"].as_str().unwrap().to_string();
    for c in [&mut a2, &mut b1, &mut c1] {
        expect_told(c, &sid, "created", &members).await;
    }
    d1.assert_none("info about a group dave is not in", QUIET, |v| {
        is_info_for(v, &sid)
    })
    .await;

    // A non-participant can do nothing to it.
    d1.send(&modify_action("d-mod", &sid, &[&dave])).await;
    let why = d1.expect_failed("d-mod").await;
    assert!(!why.is_empty());
    d1.send(&delete_action("d-del", &sid)).await;
    d1.expect_failed("d-del").await;
    let reason = d1.say_fails(&sid, "let me in").await;
    assert!(!reason.is_empty());
    for c in [&mut a1, &mut b1, &mut c1] {
        c.assert_none("any effect of dave's attempts", QUIET, |v| {
            is_info_for(v, &sid) || kind(v) == "message-broadcast"
        })
        .await;
    }
    let listed = b1.list().await;
    let mine: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &sid)).collect();
    assert_eq!(mine.len(), 1, "{listed:?}");
    assert_eq!(participants(mine[0]), sorted(&members), "unchanged by dave");

    // A member who is not an admin may not change it (the creator owns it)...
    b1.send(&modify_action("b-mod0", &sid, &[&alice, &bob]))
        .await;
    assert_eq!(
        b1.expect_failed("b-mod0").await,
        "only the session's owner and admins may change its participants or delete it"
    );
    // ...until the owner makes bob an admin (every device is told: `modified`, the same
    // participants; an old client is not shown the roles).
    a1.send(
        &serde_json::json!({"cdid": "a-roles", "type": "request-mutable-session-roles",
        "session-id": sid, "admins": [bob]}),
    )
    .await;
    let roles = a1.expect_info("a-roles").await;
    assert!(
        roles.get("owner").is_none() && roles.get("admins").is_none(),
        "{roles}"
    );
    for c in [&mut a2, &mut b1, &mut c1] {
        expect_told(c, &sid, "modified", &members).await;
    }

    // An admin (not the creator) modifies: bob swaps carol for dave. Old and new
    // participants hear of it; bob's own copy carries his cdid.
    b1.send(&modify_action("b-mod", &sid, &[&alice, &bob, &dave]))
        .await;
    let modified = b1.expect_info("b-mod").await;
    assert_eq!(modified["status"], "modified", "{modified}");
    assert_eq!(modified["session-type"], "mutable", "{modified}");
    let now = [alice.as_str(), bob.as_str(), dave.as_str()];
    assert_eq!(participants(&modified), sorted(&now));
    for c in [&mut a1, &mut a2, &mut d1] {
        expect_told(c, &sid, "modified", &now).await;
    }
    // carol, a participant until now, is told she is out.
    expect_told(&mut c1, &sid, "modified", &now).await;

    // carol has lost her rights; dave is a member, not an admin.
    c1.send(&modify_action("c-mod", &sid, &[&carol])).await;
    assert_eq!(
        c1.expect_failed("c-mod").await,
        "not a participant of this session"
    );
    c1.send(&delete_action("c-del", &sid)).await;
    c1.expect_failed("c-del").await;
    c1.say_fails(&sid, "am I still in?").await;
    assert!(!c1.list().await.iter().any(|v| is_info_for(v, &sid)));
    assert!(d1.list().await.iter().any(|v| is_info_for(v, &sid)));
    d1.send(&delete_action("d-del1", &sid)).await;
    assert_eq!(
        d1.expect_failed("d-del1").await,
        "only the session's owner and admins may change its participants or delete it"
    );

    // bob, an admin, deletes it: every participant's devices are told.
    b1.send(&delete_action("d-del2", &sid)).await;
    let deleted = b1.expect_info("d-del2").await;
    assert_eq!(deleted["status"], "deleted", "{deleted}");
    assert_eq!(deleted["session-id"], sid.as_str());
    for c in [&mut a1, &mut a2, &mut d1] {
        let what = format!("deleted info for {sid}");
        let v = c
            .expect(&what, |v| is_info_for(v, &sid) && v["status"] == "deleted")
            .await;
        assert!(v.get("cdid").is_none(), "{v}");
    }

    // Gone: not listed, cannot be used, modified or deleted again.
    for c in [&mut a1, &mut b1, &mut d1] {
        assert!(!c.list().await.iter().any(|v| is_info_for(v, &sid)));
    }
    a1.say_fails(&sid, "hello?").await;
    a1.send(&modify_action("a-mod", &sid, &[&alice])).await;
    a1.expect_failed("a-mod").await;
    a1.send(&delete_action("a-del", &sid)).await;
    a1.expect_failed("a-del").await;
}

#[actix_rt::test]
async fn listing_gives_one_info_per_session_then_succeeded() {
    let node = Node::start().await;
    let (alice, bob, carol) = (uniq("alice"), uniq("bob"), uniq("carol"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let mut c = ChatClient::login(&node, &carol, "dev").await;

    // Nothing yet: just the closing status.
    assert!(a.list().await.is_empty());

    let (g1, _) = a.create_group(&[&bob]).await;
    let (g2, _) = a.create_group(&[&bob, &carol]).await;
    let (g3, _) = a.create_group(&[]).await;
    let expected = [
        (g1.clone(), sorted(&[&alice, &bob])),
        (g2.clone(), sorted(&[&alice, &bob, &carol])),
        (g3.clone(), sorted(&[&alice])),
    ];

    let cdid = "the-listing";
    a.send(&chat_common::list_action(cdid)).await;
    let items = a.collect_until_status(cdid, "providing-session-info").await;
    assert_eq!(items.len(), 3, "one info per session: {items:?}");
    for (sid, users) in &expected {
        let found: Vec<&Value> = items.iter().filter(|v| is_info_for(v, sid)).collect();
        assert_eq!(found.len(), 1, "{sid} in {items:?}");
        let v = found[0];
        assert!(has_cdid(v, cdid), "{v}");
        assert_eq!(v["session-type"], "mutable", "{v}");
        assert_eq!(&participants(v), users, "{v}");
        let status = v["status"].as_str().unwrap_or_default();
        assert!(
            ["created", "modified", "unchanged"].contains(&status),
            "listing status: {v}"
        );
    }
    // Nothing more for that cdid after the closing status.
    a.assert_none("listing items after the final status", QUIET, |v| {
        has_cdid(v, cdid)
    })
    .await;

    let b_items = b.list().await;
    let mut b_sids: Vec<&str> = b_items
        .iter()
        .map(|v| v["session-id"].as_str().unwrap())
        .collect();
    b_sids.sort();
    let mut want = vec![g1.as_str(), g2.as_str()];
    want.sort();
    assert_eq!(b_sids, want);
    let c_items = c.list().await;
    assert_eq!(c_items.len(), 1, "{c_items:?}");
    assert!(is_info_for(&c_items[0], &g2));
}

#[actix_rt::test]
async fn creation_always_includes_the_creator_once() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (_, info) = a.create_group(&[]).await;
    assert_eq!(participants(&info), vec![alice.clone()]);
    let (_, info) = a.create_group(&[&bob]).await;
    assert_eq!(participants(&info), sorted(&[&alice, &bob]));
    let (_, info) = a.create_group(&[&bob, &alice]).await;
    assert_eq!(participants(&info), sorted(&[&alice, &bob]));
    // Different groups with the same people are different sessions.
    let (g1, _) = a.create_group(&[&bob]).await;
    let (g2, _) = a.create_group(&[&bob]).await;
    assert_ne!(g1, g2);
}

#[actix_rt::test]
async fn modifying_unknown_or_emptying_sessions_fails() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let mut b = ChatClient::login(&node, &bob, "dev").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect("created", |v| is_info_for(v, &sid)).await;

    a.send(&modify_action("unknown", "no-such-session", &[&alice]))
        .await;
    a.expect_failed("unknown").await;
    a.send(&delete_action("unknown-del", "no-such-session"))
        .await;
    a.expect_failed("unknown-del").await;
    a.send(&modify_action("empty", &sid, &[])).await;
    a.expect_failed("empty").await;
    b.assert_none("info after failed requests", QUIET, |v| {
        is_info_for(v, &sid)
    })
    .await;
    let listed = a.list().await;
    let g: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &sid)).collect();
    assert_eq!(g.len(), 1);
    assert_eq!(participants(g[0]), sorted(&[&alice, &bob]));
    // Direct-session info for a nonsense peer id is refused with the cdid.
    a.send(&direct_action("nonsense", "")).await;
    a.expect_failed("nonsense").await;
}
