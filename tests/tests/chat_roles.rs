//! GradAgenda chat group access control (extension, docs/chat.md "Roles"): a group's
//! creator owns it; only the owner and admins change its participants or delete it;
//! only the owner hands out roles; anyone leaves (an owner's group passes to an admin);
//! the rules hold on every node; a group stored before roles existed keeps the earlier
//! rule; devices that opted into `roles` see `owner` / `admins`, old clients do not.

mod chat_common;

use chat_common::{
    delete_action, is_info_for, kind, modify_action, participants, sorted, uniq, ChatClient, CROSS,
    QUIET,
};
use murmur_tests::{Cluster, Node};
use serde_json::{json, Value};

const ROLES: &[&str] = &["roles"];

fn roles_action(cdid: &str, session: &str, owner: Option<&str>, admins: Option<&[&str]>) -> Value {
    let mut v =
        json!({"cdid": cdid, "type": "request-mutable-session-roles", "session-id": session});
    if let Some(o) = owner {
        v["owner"] = json!(o);
    }
    if let Some(a) = admins {
        v["admins"] = json!(a);
    }
    v
}

fn leave_action(cdid: &str, session: &str) -> Value {
    json!({"cdid": cdid, "type": "request-leaving-mutable-session", "session-id": session})
}

/// Sends `action` and expects `failed` with exactly `reason`.
async fn refused(c: &mut ChatClient, action: Value, reason: &str) {
    let cdid = action["cdid"].as_str().unwrap().to_string();
    c.send(&action).await;
    assert_eq!(
        c.expect_failed(&cdid).await,
        reason,
        "{}: {action}",
        c.label
    );
}

/// The next info about `sid` with `status` on a device that did not ask for it.
async fn told(c: &mut ChatClient, sid: &str, status: &str) -> Value {
    let what = format!("{status} info for {sid}");
    c.expect_within(&what, CROSS, |v| {
        is_info_for(v, sid) && v["status"] == status
    })
    .await
}

const NOT_ADMIN: &str =
    "only the session's owner and admins may change its participants or delete it";

#[actix_rt::test]
async fn owners_and_admins_change_groups_members_only_leave() {
    let node = Node::start().await;
    let (alice, bob, carol, dave) = (uniq("alice"), uniq("bob"), uniq("carol"), uniq("dave"));
    let mut a = ChatClient::login_with(&node, &alice, "a", ROLES).await;
    let mut b = ChatClient::login_with(&node, &bob, "b", ROLES).await;
    let mut c_old = ChatClient::login(&node, &carol, "c-old").await;
    let mut d = ChatClient::login_with(&node, &dave, "d", ROLES).await;
    let (sid, created) = a.create_group(&[&bob, &carol]).await;
    assert_eq!(
        (&created["owner"], &created["admins"]),
        (&json!(alice), &json!([])),
        "{created}"
    );
    let theirs = told(&mut b, &sid, "created").await;
    assert_eq!(theirs["owner"], alice.as_str(), "{theirs}");
    let old = told(&mut c_old, &sid, "created").await;
    assert!(
        old.get("owner").is_none() && old.get("admins").is_none(),
        "an old client: {old}"
    );

    // Members may not change or delete it; the roles are the owner's.
    refused(
        &mut b,
        modify_action("b-mod", &sid, &[&alice, &bob]),
        NOT_ADMIN,
    )
    .await;
    refused(&mut c_old, delete_action("c-del", &sid), NOT_ADMIN).await;
    refused(
        &mut b,
        roles_action("b-roles", &sid, None, Some(&[&bob])),
        "only the session's owner may change its roles",
    )
    .await;
    refused(
        &mut d,
        roles_action("d-roles", &sid, Some(&dave), None),
        "not a participant of this session",
    )
    .await;
    refused(
        &mut a,
        roles_action("a-r0", &sid, None, Some(&[&dave])),
        &format!("{dave:?} is not a participant of this session"),
    )
    .await;
    refused(
        &mut a,
        roles_action("a-r1", &sid, None, None),
        "give an `owner`, `admins`, or both",
    )
    .await;
    refused(
        &mut a,
        json!({"cdid": "a-r2", "type": "request-mutable-session-roles", "session-id": sid, "admins": "bob"}),
        "`admins` must be an array of at most 256 user ids",
    )
    .await;
    for c in [&mut b, &mut c_old] {
        c.assert_none("a change nobody made", QUIET, |v| is_info_for(v, &sid))
            .await;
    }

    // bob made an admin: he adds dave; the owner stays in.
    a.send(&roles_action("a-roles", &sid, None, Some(&[&bob])))
        .await;
    let info = a.expect_info("a-roles").await;
    assert_eq!(
        (&info["owner"], &info["admins"]),
        (&json!(alice), &json!([bob])),
        "{info}"
    );
    told(&mut b, &sid, "modified").await;
    told(&mut c_old, &sid, "modified").await;
    refused(
        &mut b,
        modify_action("b-drop", &sid, &[&bob, &carol]),
        "the owner cannot be removed: the owner leaves or hands the session over",
    )
    .await;
    b.send(&modify_action(
        "b-add",
        &sid,
        &[&alice, &bob, &carol, &dave],
    ))
    .await;
    let added = b.expect_info("b-add").await;
    assert_eq!(participants(&added), sorted(&[&alice, &bob, &carol, &dave]));
    told(&mut d, &sid, "modified").await;
    told(&mut a, &sid, "modified").await;
    told(&mut c_old, &sid, "modified").await;

    // carol leaves: she is told, and gets nothing of the group any more.
    c_old.send(&leave_action("c-leave", &sid)).await;
    let left = c_old.expect_info("c-leave").await;
    assert_eq!(
        participants(&left),
        sorted(&[&alice, &bob, &dave]),
        "{left}"
    );
    told(&mut a, &sid, "modified").await;
    told(&mut d, &sid, "modified").await;
    a.say(&sid, "after carol").await;
    b.expect_broadcast(&sid, "after carol").await;
    c_old
        .assert_none("a message of a group she left", QUIET, |v| {
            kind(v) == "message-broadcast"
        })
        .await;

    // The owner leaves: bob, the admin, owns it now.
    a.send(&leave_action("a-leave", &sid)).await;
    let after = a.expect_info("a-leave").await;
    assert_eq!(
        (&after["owner"], &after["admins"]),
        (&json!(bob), &json!([])),
        "{after}"
    );
    let seen = told(&mut d, &sid, "modified").await;
    assert_eq!(seen["owner"], bob.as_str());
    refused(
        &mut a,
        delete_action("a-del", &sid),
        "not a participant of this session",
    )
    .await;
    refused(&mut d, delete_action("d-del", &sid), NOT_ADMIN).await;

    // The listing shows the roles to those who asked for them.
    let listed = d.list().await;
    let mine: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &sid)).collect();
    assert_eq!(mine[0]["owner"], bob.as_str(), "{listed:?}");

    // bob and dave leave: the last one out deletes the group.
    b.send(&leave_action("b-leave", &sid)).await;
    b.expect_info("b-leave").await;
    d.send(&leave_action("d-leave", &sid)).await;
    let gone = d.expect_info("d-leave").await;
    assert_eq!(gone["status"], "deleted", "{gone}");
    refused(&mut d, leave_action("d-again", &sid), "no such session").await;
}

#[actix_rt::test]
async fn rules_hold_across_nodes_and_old_groups_keep_the_earlier_rule() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login_with(cluster.node(0), &alice, "a", ROLES).await;
    let mut b = ChatClient::login_with(cluster.node(2), &bob, "b", ROLES).await;
    let (sid, _) = a.create_group(&[&bob]).await;
    told(&mut b, &sid, "created").await;
    refused(&mut b, delete_action("b-del", &sid), NOT_ADMIN).await;

    // A group stored by an earlier version: no owner, no admins.
    let legacy = format!("legacy-{}", uniq("g"));
    let record = json!({"id": legacy, "participants": [alice, bob], "created_by": alice,
        "created_ms": 1});
    let redis = cluster.redis();
    redis
        .cmd(&["SET", &format!("murmur:grp:{legacy}"), &record.to_string()])
        .await;
    for u in [&alice, &bob] {
        redis
            .cmd(&["SADD", &format!("murmur:ugrp:{u}"), &legacy])
            .await;
    }
    let listed = b.list().await;
    let info: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &legacy)).collect();
    assert!(info[0].get("owner").is_none(), "no roles yet: {listed:?}");
    // Every participant may still change it, as before...
    b.send(&modify_action("b-mod", &legacy, &[&alice, &bob]))
        .await;
    b.expect_info("b-mod").await;
    told(&mut a, &legacy, "modified").await;
    // ...until one of them sets roles: bob owns it, and alice is a member.
    b.send(&roles_action("b-roles", &legacy, None, Some(&[])))
        .await;
    let owned = b.expect_info("b-roles").await;
    assert_eq!(owned["owner"], bob.as_str(), "{owned}");
    told(&mut a, &legacy, "modified").await;
    refused(&mut a, delete_action("a-del", &legacy), NOT_ADMIN).await;
    b.send(&delete_action("b-del2", &legacy)).await;
    assert_eq!(b.expect_info("b-del2").await["status"], "deleted");
}
