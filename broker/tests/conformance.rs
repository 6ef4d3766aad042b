//! One conformance suite for the `Store` and `Bus` seams. Every implementation runs the
//! same checks: the memory ones here; the Redis ones join the list in cluster mode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use murmur_broker::bus::memory::{MemoryBus, MemoryHub};
use murmur_broker::bus::redis::RedisBus;
use murmur_broker::bus::{Bus, Topic};
use murmur_broker::keys::Keys;
use murmur_broker::metrics::Metrics;
use murmur_broker::scheduler::memory::MemoryScheduler;
use murmur_broker::scheduler::redis::RedisScheduler;
use murmur_broker::scheduler::{Held, Job, Scheduler};
use murmur_broker::store::memory::MemoryStore;
use murmur_broker::store::redis::RedisStore;
use murmur_broker::store::sink::{OutboxEntry, Quarantine, SinkEvent};
use murmur_broker::store::PushJob;
use murmur_broker::store::TsStore;
use murmur_broker::store::{
    ChannelPublication, GroupChange, GroupRecord, GroupRefusal, GroupUpdate, NodeInfo, PostCheck,
    PostRecord, Presence, ProviderEntry, ReadMark, Recorded, RecoveryRecord, Store, StoredMessage,
    TsSession, TsState, Unread,
};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind};
use murmur_shared::ids::{now_ms, NodeId, SessionId};
use serde_json::json;
use tokio::sync::mpsc;

fn node(n: &str) -> NodeId {
    NodeId(n.to_string())
}

fn info(id: &str) -> NodeInfo {
    NodeInfo {
        id: node(id),
        sessions: BTreeMap::from([("helios".to_string(), 2)]),
        started_ms: now_ms(),
        heartbeat_ms: now_ms(),
        draining: false,
    }
}

/// Waits (bounded, [`SOON`]) until `cond` holds: the store's TTLs are real time.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    murmur_tests::eventually(what, murmur_tests::SOON, || {
        let holds = cond();
        async move { holds.await.then_some(()) }
    })
    .await
}

async fn store_conformance(store: Arc<dyn Store>) {
    // Recovery records: put, get, expire, delete.
    let id = SessionId::random();
    let rec = RecoveryRecord {
        session: id,
        user: "alice".into(),
        node: node("a"),
        subscriptions: vec!["news".into()],
        provides: vec!["math".into()],
        detached_ms: 42,
        positions: BTreeMap::from([("news".to_string(), "5-0".to_string())]),
        seqs: BTreeMap::from([(
            "news".to_string(),
            murmur_shared::envelope::ChannelSeq {
                seq: 9,
                epoch: "e1".into(),
            },
        )]),
    };
    store
        .put_recovery(rec.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.get_recovery(id).await.unwrap(), Some(rec.clone()));
    store.delete_recovery(id).await.unwrap();
    assert_eq!(store.get_recovery(id).await.unwrap(), None);
    store
        .put_recovery(rec.clone(), Duration::from_millis(150))
        .await
        .unwrap();
    eventually("recovery record expires", || async {
        store.get_recovery(id).await.unwrap().is_none()
    })
    .await;

    // Owners: only the current owner may delete its record.
    store
        .set_owner(id, node("a"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.get_owner(id).await.unwrap(), Some(node("a")));
    store
        .set_owner(id, node("b"), Duration::from_secs(60))
        .await
        .unwrap();
    store.delete_owner(id, node("a")).await.unwrap();
    assert_eq!(
        store.get_owner(id).await.unwrap(),
        Some(node("b")),
        "a stale owner cannot delete"
    );
    store.delete_owner(id, node("b")).await.unwrap();
    assert_eq!(store.get_owner(id).await.unwrap(), None);

    // Nodes: heartbeat, list, expire.
    store
        .heartbeat(info("a"), Duration::from_secs(60))
        .await
        .unwrap();
    store
        .heartbeat(info("short"), Duration::from_millis(150))
        .await
        .unwrap();
    let ids: Vec<_> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id.0)
        .collect();
    assert!(
        ids.contains(&"a".to_string()) && ids.contains(&"short".to_string()),
        "{ids:?}"
    );
    eventually("dead node leaves the list", || async {
        !store
            .nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.id == node("short"))
    })
    .await;
    assert_eq!(
        store
            .nodes()
            .await
            .unwrap()
            .iter()
            .find(|n| n.id == node("a"))
            .unwrap()
            .sessions["helios"],
        2
    );

    // Providers: only those on live nodes are listed; removal and node removal work.
    let p1 = ProviderEntry {
        session: SessionId::random(),
        node: node("a"),
    };
    let p2 = ProviderEntry {
        session: SessionId::random(),
        node: node("ghost"),
    };
    store.add_provider("math", p1.clone()).await.unwrap();
    store.add_provider("math", p2.clone()).await.unwrap();
    store.add_provider("math", p1.clone()).await.unwrap();
    assert_eq!(
        store.providers("math").await.unwrap(),
        vec![p1.clone()],
        "ghost node is not live"
    );
    assert!(store.providers("other").await.unwrap().is_empty());
    store.remove_provider("math", p1.clone()).await.unwrap();
    assert!(store.providers("math").await.unwrap().is_empty());
    store.add_provider("math", p1.clone()).await.unwrap();
    store.remove_node(node("a")).await.unwrap();
    assert!(store.providers("math").await.unwrap().is_empty());
    assert!(!store
        .nodes()
        .await
        .unwrap()
        .iter()
        .any(|n| n.id == node("a")));
}

async fn chat_store_conformance(store: Arc<dyn Store>) {
    // Groups: create, read, updates by the rules of roles, per-user listing.
    let g = GroupRecord::new(
        uuid::Uuid::new_v4().to_string(),
        vec!["ann".into(), "ben".into()],
        "ann",
        1,
    );
    store.create_group(g.clone()).await.unwrap();
    assert!(
        store.create_group(g.clone()).await.is_err(),
        "ids are unique"
    );
    assert_eq!(store.group(&g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(store.groups_of("ben").await.unwrap(), vec![g.clone()]);
    assert!(store.groups_of("cat").await.unwrap().is_empty());
    let replace =
        |users: &[&str]| GroupChange::Participants(users.iter().map(|u| u.to_string()).collect());
    assert_eq!(
        store
            .update_group(&g.id, "cat", replace(&["cat"]))
            .await
            .unwrap(),
        GroupUpdate::Refused(GroupRefusal::NotParticipant)
    );
    assert_eq!(
        store
            .update_group(&g.id, "ben", replace(&["ben"]))
            .await
            .unwrap(),
        GroupUpdate::Refused(GroupRefusal::NotAdmin),
        "ben is a member, not an admin"
    );
    assert_eq!(
        store.group(&g.id).await.unwrap(),
        Some(g.clone()),
        "refused: unchanged"
    );
    let roles = GroupChange::Roles {
        owner: None,
        admins: Some(vec!["ben".into()]),
    };
    let Ok(GroupUpdate::Done {
        after: Some(with_admin),
        ..
    }) = store.update_group(&g.id, "ann", roles).await
    else {
        panic!("the owner names an admin");
    };
    assert_eq!(with_admin.admins, vec!["ben".to_string()]);
    let new = vec!["ann".to_string(), "cat".to_string()];
    let done = store
        .update_group(&g.id, "ben", replace(&["ann", "cat"]))
        .await
        .unwrap();
    let GroupUpdate::Done {
        before,
        after: Some(after),
    } = done
    else {
        panic!("an admin replaces the participants: {done:?}");
    };
    assert_eq!(before, with_admin);
    assert_eq!(
        (after.participants.clone(), after.admins.clone()),
        (new.clone(), Vec::new())
    );
    assert_eq!(store.group(&g.id).await.unwrap(), Some(after));
    assert!(
        store.groups_of("ben").await.unwrap().is_empty(),
        "removed from the index"
    );
    assert_eq!(store.groups_of("cat").await.unwrap().len(), 1);
    assert_eq!(
        store
            .update_group(&g.id, "ben", GroupChange::Delete)
            .await
            .unwrap(),
        GroupUpdate::Refused(GroupRefusal::NotParticipant),
        "ben is no longer a participant"
    );
    // The owner leaves: cat inherits; cat leaves last: the group is gone.
    let Ok(GroupUpdate::Done {
        after: Some(left), ..
    }) = store.update_group(&g.id, "ann", GroupChange::Leave).await
    else {
        panic!("the owner may leave");
    };
    assert_eq!(
        (left.participants, left.owner),
        (vec!["cat".to_string()], Some("cat".to_string()))
    );
    assert!(store.groups_of("ann").await.unwrap().is_empty());
    assert!(matches!(
        store
            .update_group(&g.id, "cat", GroupChange::Leave)
            .await
            .unwrap(),
        GroupUpdate::Done { after: None, .. }
    ));
    assert_eq!(store.group(&g.id).await.unwrap(), None);
    assert!(store.groups_of("cat").await.unwrap().is_empty());
    assert_eq!(
        store
            .update_group(&g.id, "ann", GroupChange::Delete)
            .await
            .unwrap(),
        GroupUpdate::NotFound
    );

    // Message history: increasing ids, last N, since an id, bounded retention.
    let session = format!("s-{}", uuid::Uuid::new_v4());
    let mut ids = Vec::new();
    for i in 0..30 {
        let m = StoredMessage {
            id: String::new(),
            session: session.clone(),
            sender: "ann".into(),
            message: json!({"type": "text", "body": i}),
            sender_timestamp: json!(i),
            server_timestamp: now_ms(),
            timing: None,
        };
        ids.push(
            store
                .append_message(m, 20, Duration::from_secs(60))
                .await
                .unwrap(),
        );
    }
    for w in ids.windows(2) {
        assert!(Envelope::seq_after(&w[1], &w[0]), "ids increase: {ids:?}");
    }
    let last = store.messages(&session, None, 5).await.unwrap();
    let bodies: Vec<i64> = last
        .iter()
        .map(|m| m.message["body"].as_i64().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![25, 26, 27, 28, 29],
        "the last five, oldest first"
    );
    assert_eq!(last[4].id, ids[29]);
    let after = store.messages(&session, Some(&ids[26]), 10).await.unwrap();
    let bodies: Vec<i64> = after
        .iter()
        .map(|m| m.message["body"].as_i64().unwrap())
        .collect();
    assert_eq!(bodies, vec![27, 28, 29]);
    let all = store.messages(&session, None, 100).await.unwrap();
    assert_eq!(all.len(), 20, "retention bounds history");
    assert_eq!(all[0].id, ids[10]);
    assert!(store.messages("nobody", None, 10).await.unwrap().is_empty());
    read_state_conformance(&*store).await;
    inbox_conformance(&*store).await;
    presence_conformance(&*store).await;
    push_conformance(&*store).await;
}

/// The push queue: bounded, claimed with a lease (due again once it ends), retried,
/// dead-lettered; known devices per user, newest first, bounded.
async fn push_conformance(store: &dyn Store) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let job = |n: u32| PushJob {
        id: format!("{tag}-{n}"),
        user: format!("u-{tag}"),
        devices: vec!["phone".into()],
        session: "s".into(),
        session_type: "direct".into(),
        sender: "bob".into(),
        message_id: format!("1-{n}"),
        preview: "hi".into(),
        message_type: "text".into(),
        server_timestamp: 5,
        attempts: 0,
    };
    let start = store.push_counts().await.unwrap();
    assert_eq!(
        store
            .push_enqueue(vec![job(1), job(2), job(1)], start.queued + 10)
            .await
            .unwrap(),
        2,
        "an id once"
    );
    assert_eq!(
        store
            .push_enqueue(vec![job(3), job(4)], start.queued + 3)
            .await
            .unwrap(),
        1,
        "bounded"
    );
    let counts = store.push_counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.dead),
        (start.queued + 3, start.dead + 1)
    );

    let now = now_ms() + 1;
    let mut claimed = store.push_claim(now, 1000, 100).await.unwrap();
    claimed.retain(|j| j.id.starts_with(&tag));
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(claimed, vec![job(1), job(2), job(3)]);
    assert!(
        store
            .push_claim(now + 500, 1000, 100)
            .await
            .unwrap()
            .iter()
            .all(|j| !j.id.starts_with(&tag)),
        "leased"
    );
    let mut retried = job(2);
    retried.attempts = 1;
    store
        .push_settle(
            vec![job(1).id],
            vec![(retried.clone(), now + 5000)],
            vec![job(3).id],
        )
        .await
        .unwrap();
    let counts = store.push_counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.dead),
        (start.queued + 1, start.dead + 2)
    );
    let mine = |v: Vec<PushJob>| {
        v.into_iter()
            .filter(|j| j.id.starts_with(&tag))
            .collect::<Vec<_>>()
    };
    assert!(
        mine(store.push_claim(now + 4000, 1000, 100).await.unwrap()).is_empty(),
        "due later"
    );
    assert_eq!(
        mine(store.push_claim(now + 5000, 1000, 100).await.unwrap()),
        vec![retried.clone()]
    );
    // A lease that ran out: due again (its node died).
    assert_eq!(
        mine(store.push_claim(now + 6001, 1000, 100).await.unwrap()),
        vec![retried.clone()]
    );
    store
        .push_settle(vec![retried.id.clone()], Vec::new(), Vec::new())
        .await
        .unwrap();
    assert!(mine(store.push_claim(now + 99_999, 1000, 100).await.unwrap()).is_empty());

    let user = format!("u-{tag}");
    for (i, d) in ["a", "b", "a", "c"].iter().enumerate() {
        store.note_device(&user, d, 100 + i as u64).await.unwrap();
    }
    assert_eq!(store.devices_of(&user).await.unwrap(), vec!["c", "a", "b"]);
    for i in 0..20 {
        store
            .note_device(&user, &format!("d{i}"), 200 + i)
            .await
            .unwrap();
    }
    let devices = store.devices_of(&user).await.unwrap();
    assert_eq!((devices.len(), devices[0].as_str()), (16, "d19"));
}

/// Presence: online while a device is on any node; the last one out (or its node's
/// loss) sets last seen; contacts are the users a user shares a session with.
async fn presence_conformance(store: &dyn Store) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let [ann, ben] = ["ann", "ben"].map(|u| format!("{u}-{tag}"));
    let (n1, n2) = (node(&format!("p1-{tag}")), node(&format!("p2-{tag}")));
    let of = |u: &String| {
        let u = u.clone();
        async move {
            store
                .presence_of(std::slice::from_ref(&u))
                .await
                .unwrap()
                .remove(0)
        }
    };
    assert_eq!(
        of(&ann).await,
        Presence {
            user: ann.clone(),
            online: false,
            last_seen: None
        }
    );
    assert!(
        store.presence_set(&ann, &n1, true, 100).await.unwrap(),
        "first device anywhere"
    );
    assert!(
        !store.presence_set(&ann, &n2, true, 101).await.unwrap(),
        "already online"
    );
    assert!(!store.presence_set(&ann, &n1, true, 102).await.unwrap());
    assert!(of(&ann).await.online);
    assert!(
        !store.presence_set(&ann, &n1, false, 200).await.unwrap(),
        "still on n2"
    );
    assert!(
        store.presence_set(&ann, &n2, false, 300).await.unwrap(),
        "the last one"
    );
    assert_eq!(
        of(&ann).await,
        Presence {
            user: ann.clone(),
            online: false,
            last_seen: Some(300)
        }
    );
    assert!(
        !store.presence_set(&ann, &n2, false, 301).await.unwrap(),
        "offline twice"
    );

    // A node's loss takes its users offline, unless they are on another node too.
    store.presence_set(&ann, &n1, true, 400).await.unwrap();
    store.presence_set(&ben, &n1, true, 400).await.unwrap();
    store.presence_set(&ben, &n2, true, 400).await.unwrap();
    assert_eq!(
        store.presence_drop_node(&n1, 500).await.unwrap(),
        vec![ann.clone()]
    );
    let both = store
        .presence_of(&[ann.clone(), ben.clone()])
        .await
        .unwrap();
    assert_eq!(
        (both[0].online, both[0].last_seen, both[1].online),
        (false, Some(500), true)
    );
    assert!(
        store.presence_drop_node(&n1, 600).await.unwrap().is_empty(),
        "already forgotten"
    );

    // Contacts: group participants and direct partners with messages.
    let cat = format!("cat-{tag}");
    store
        .create_group(GroupRecord::new(
            format!("pg-{tag}"),
            vec![ann.clone(), ben.clone()],
            &ann,
            1,
        ))
        .await
        .unwrap();
    let direct = murmur_shared::chat::direct_session_id(&ann, &cat);
    let m = StoredMessage {
        id: String::new(),
        session: direct.clone(),
        sender: ann.clone(),
        message: json!({"type": "text", "body": "hi"}),
        sender_timestamp: json!(1),
        server_timestamp: now_ms(),
        timing: None,
    };
    store
        .append_message(m, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.directs_of(&cat).await.unwrap(), vec![direct]);
    let mut contacts: Vec<String> = store.contacts(&ann).await.unwrap().into_iter().collect();
    contacts.sort();
    assert_eq!(contacts, vec![ben.clone(), cat.clone()]);
    assert_eq!(
        store
            .contacts(&cat)
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![ann]
    );
}

/// The inbox: a user's groups and direct sessions with messages, newest message first
/// (groups without messages last), paged by cursor, with unread counts.
async fn inbox_conformance(store: &dyn Store) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let [ann, ben, cat] = ["ann", "ben", "cat"].map(|u| format!("{u}-{tag}"));
    let ttl = Duration::from_secs(60);
    let group = |id: &str, users: &[&String]| {
        let users = users.iter().map(|u| u.to_string()).collect();
        GroupRecord::new(format!("{id}-{tag}"), users, &ann, 1)
    };
    let (g1, g2, quiet) = (
        group("g1", &[&ann, &ben]),
        group("g2", &[&ann, &cat]),
        group("q", &[&ann]),
    );
    for g in [&g1, &g2, &quiet] {
        store.create_group(g.clone()).await.unwrap();
    }
    let direct = murmur_shared::chat::direct_session_id(&ann, &ben);
    let say = |session: String, sender: &String, body: &str| {
        let m = StoredMessage {
            id: String::new(),
            session,
            sender: sender.clone(),
            message: json!({"type": "text", "body": body}),
            sender_timestamp: json!(1),
            server_timestamp: now_ms(),
            timing: None,
        };
        async move { store.append_message(m, 100, ttl).await.unwrap() }
    };
    say(g1.id.clone(), &ben, "g1 first").await;
    say(direct.clone(), &ben, "direct first").await;
    say(g2.id.clone(), &cat, "g2 first").await;
    let g1_last = say(g1.id.clone(), &ann, "g1 own").await;
    let d_last = say(direct.clone(), &ben, "direct second").await;

    let page = store.inbox(&ann, None, 10, 100).await.unwrap();
    let order: Vec<&str> = page.items.iter().map(|i| i.session.as_str()).collect();
    assert_eq!(
        order,
        vec![direct.as_str(), &g1.id, &g2.id, &quiet.id],
        "newest first"
    );
    assert!(!page.more);
    let unread: Vec<usize> = page.items.iter().map(|i| i.unread).collect();
    assert_eq!(unread, vec![2, 1, 1, 0], "others' messages only");
    let last = page.items[0].last.as_ref().unwrap();
    assert_eq!(
        (last.id.as_str(), &last.sender, &last.message["body"]),
        (d_last.as_str(), &ben, &json!("direct second"))
    );
    assert_eq!(page.items[1].last.as_ref().unwrap().id, g1_last);
    assert_eq!(page.items[3].last, None, "a group without messages");

    // Paged: two, then the rest after the cursor of the second.
    let first = store.inbox(&ann, None, 2, 100).await.unwrap();
    assert!(first.more);
    let rest = store
        .inbox(&ann, Some(first.items[1].cursor()), 10, 100)
        .await
        .unwrap();
    let rest: Vec<&str> = rest.items.iter().map(|i| i.session.as_str()).collect();
    assert_eq!(rest, vec![g2.id.as_str(), &quiet.id]);

    // Reading moves the count; the cap bounds it.
    assert_eq!(
        store.mark_read(&direct, &ann, &d_last, ttl).await.unwrap(),
        ReadMark::Advanced
    );
    let page = store.inbox(&ann, None, 1, 100).await.unwrap();
    assert_eq!(
        (page.items[0].session.as_str(), page.items[0].unread),
        (direct.as_str(), 0)
    );
    assert_eq!(
        store.inbox(&ben, None, 10, 100).await.unwrap().items.len(),
        2,
        "g1 and direct"
    );
    // In a later millisecond than the direct message: Redis numbers each stream on its
    // own, so messages of one millisecond in two sessions tie (then session ids decide).
    let d_ms: u64 = d_last.split('-').next().unwrap().parse().unwrap();
    eventually("the next millisecond", || async { now_ms() > d_ms }).await;
    for i in 0..5 {
        say(g2.id.clone(), &cat, &format!("more {i}")).await;
    }
    let page = store.inbox(&ann, None, 1, 3).await.unwrap();
    assert_eq!(
        (page.items[0].session.as_str(), page.items[0].unread),
        (g2.id.as_str(), 3)
    );
    assert!(store
        .inbox(&format!("nobody-{tag}"), None, 10, 100)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// Chat read positions: forward only, never past the newest message; unread counts
/// skip the reader's own messages and stop at the cap.
async fn read_state_conformance(store: &dyn Store) {
    let session = uuid::Uuid::new_v4().to_string();
    let ttl = Duration::from_secs(60);
    let unread = |user: &'static str, cap: usize| {
        let session = session.clone();
        async move { store.unread(&session, user, cap).await.unwrap() }
    };
    assert_eq!(
        store.mark_read(&session, "ben", "1-0", ttl).await.unwrap(),
        ReadMark::Unknown,
        "a session without messages has nothing to read"
    );
    assert_eq!(
        unread("ben", 100).await,
        Unread {
            read: None,
            count: 0,
            newest: None
        }
    );
    let mut ids = Vec::new();
    for (i, sender) in ["ann", "ann", "ben", "ann", "cat"].iter().enumerate() {
        let m = StoredMessage {
            id: String::new(),
            session: session.clone(),
            sender: sender.to_string(),
            message: json!({"type": "text", "body": i}),
            sender_timestamp: json!(i),
            server_timestamp: now_ms(),
            timing: None,
        };
        ids.push(store.append_message(m, 100, ttl).await.unwrap());
    }
    let newest = Some(ids[4].clone());
    assert_eq!(
        unread("ben", 100).await,
        Unread {
            read: None,
            count: 4,
            newest: newest.clone()
        },
        "everything of the others (not ben's own) is unread"
    );
    assert_eq!(unread("ben", 2).await.count, 2, "counted up to the cap");
    assert_eq!(
        store
            .mark_read(&session, "ben", &ids[1], ttl)
            .await
            .unwrap(),
        ReadMark::Advanced
    );
    assert_eq!(
        unread("ben", 100).await,
        Unread {
            read: Some(ids[1].clone()),
            count: 2,
            newest: newest.clone()
        }
    );
    assert_eq!(
        store
            .mark_read(&session, "ben", &ids[0], ttl)
            .await
            .unwrap(),
        ReadMark::Unchanged { at: ids[1].clone() },
        "a position never goes back"
    );
    assert_eq!(
        store
            .mark_read(&session, "ben", &ids[1], ttl)
            .await
            .unwrap(),
        ReadMark::Unchanged { at: ids[1].clone() }
    );
    let future = Envelope::seq_before("99999999999999-0");
    assert_eq!(
        store
            .mark_read(&session, "ben", &future, ttl)
            .await
            .unwrap(),
        ReadMark::Unknown,
        "nobody reads a message that does not exist yet"
    );
    assert_eq!(
        store
            .mark_read(&session, "ben", &ids[4], ttl)
            .await
            .unwrap(),
        ReadMark::Advanced
    );
    assert_eq!(
        unread("ben", 100).await,
        Unread {
            read: Some(ids[4].clone()),
            count: 0,
            newest: newest.clone()
        }
    );
    // Positions are per user.
    assert_eq!(unread("ann", 100).await.count, 2, "ben's and cat's");
    assert_eq!(unread("ann", 100).await.read, None);
}

fn ts_session(caller: &str) -> TsSession {
    TsSession {
        id: SessionId::random(),
        caller: caller.to_string(),
        target: "room".into(),
        max_message_size: 1000,
        created_ms: now_ms(),
        state: TsState::Active,
        channel_floor: "0-0".into(),
        channel_confirmed: "0-0".into(),
        channel_ceiling: None,
        final_seq: None,
    }
}

async fn timestick_store_conformance(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(60);
    let caller = format!("c-{}", uuid::Uuid::new_v4());
    // Per-caller limit, records, listing.
    let a = ts_session(&caller);
    let b = ts_session(&caller);
    assert!(store.ts_create(a.clone(), 2, ttl).await.unwrap());
    assert!(store.ts_create(b.clone(), 2, ttl).await.unwrap());
    assert!(
        !store.ts_create(ts_session(&caller), 2, ttl).await.unwrap(),
        "limit reached"
    );
    assert_eq!(store.ts_get(a.id).await.unwrap(), Some(a.clone()));
    let mut both = vec![a.id, b.id];
    both.sort();
    assert_eq!(store.ts_sessions_of(&caller).await.unwrap(), both);
    store.ts_end(b.id, &caller).await.unwrap();
    assert_eq!(store.ts_sessions_of(&caller).await.unwrap(), vec![a.id]);
    assert!(
        store.ts_get(b.id).await.unwrap().is_some(),
        "an ended session stays as a tombstone"
    );
    assert!(
        store.ts_create(ts_session(&caller), 2, ttl).await.unwrap(),
        "room again"
    );
    // Expired records no longer count.
    let other = format!("o-{}", uuid::Uuid::new_v4());
    assert!(store
        .ts_create(ts_session(&other), 1, Duration::from_millis(100))
        .await
        .unwrap());
    eventually("an expired session frees its slot", || async {
        store.ts_create(ts_session(&other), 1, ttl).await.unwrap()
    })
    .await;
    // State changes.
    let mut stopped = a.clone();
    stopped.state = TsState::Stopped {
        reason: "r".into(),
        details: None,
    };
    store.ts_put(stopped.clone(), ttl).await.unwrap();
    assert_eq!(
        store.ts_get(a.id).await.unwrap().unwrap().state,
        stopped.state
    );

    // Queue: positions, reads after a position, confirm, cap, clear.
    let q = a.id;
    for i in 1..=5u64 {
        assert_eq!(
            store.ts_push(q, json!({"i": i}), 100, ttl).await.unwrap(),
            i
        );
    }
    let got = store.ts_read(q, 2, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(got[0].1, json!({"i": 3}));
    store.ts_confirm(q, 3).await.unwrap();
    assert_eq!(store.ts_read(q, 0, 10).await.unwrap().len(), 2);
    for _ in 0..10 {
        store.ts_push(q, json!({}), 4, ttl).await.unwrap();
    }
    let kept = store.ts_read(q, 0, 100).await.unwrap();
    assert_eq!(kept.len(), 4, "the cap keeps the newest");
    assert_eq!(kept[3].0, 15);
    store.ts_clear(q).await.unwrap();
    assert!(store.ts_read(q, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        store.ts_push(q, json!({}), 4, ttl).await.unwrap(),
        16,
        "positions never go back"
    );

    // The POST hot path: record + rate in one step, replay check + activity in another.
    let (got, ok) = store.ts_get_counted(b.id, 1000).await.unwrap();
    assert_eq!(got.map(|s| s.id), Some(b.id));
    assert!(ok);
    let (none, ok) = store.ts_get_counted(SessionId::random(), 1).await.unwrap();
    assert!(none.is_none() && ok, "no record: nothing counted");
    let hot = SessionId::random();
    let mut hot_session = ts_session(&format!("h-{}", uuid::Uuid::new_v4()));
    hot_session.id = hot;
    assert!(store.ts_create(hot_session, 10, ttl).await.unwrap());
    let mut allowed = 0;
    for _ in 0..10 {
        if store.ts_get_counted(hot, 3).await.unwrap().1 {
            allowed += 1;
        }
    }
    assert!((3..10).contains(&allowed), "the rate bites: {allowed}");
    let t0 = now_ms();
    let accept = |m: &'static str, t: u64| store.ts_accept_message(hot, m, t, ttl);
    assert_eq!(accept("x1", t0).await.unwrap(), Recorded::New);
    assert_eq!(
        accept("x1", t0 + 5).await.unwrap(),
        Recorded::Unsettled { since_ms: t0 },
        "a copy before the first was settled: unsettled since it was recorded"
    );
    // The take-over: one winner, naming the time it found.
    let take = |since: u64, now: u64| store.ts_take_over(hot, "x1", since, now);
    assert!(!take(t0 + 1, t0 + 10).await.unwrap(), "not the time found");
    assert!(take(t0, t0 + 10).await.unwrap());
    assert!(!take(t0, t0 + 11).await.unwrap(), "taken already");
    assert_eq!(
        store.ts_message(hot, "x1").await.unwrap(),
        Some(Recorded::Unsettled { since_ms: t0 + 10 })
    );
    store.ts_settle(hot, "x1").await.unwrap();
    assert_eq!(
        store.ts_message(hot, "x1").await.unwrap(),
        Some(Recorded::Settled)
    );
    assert_eq!(
        accept("x1", t0 + 20).await.unwrap(),
        Recorded::Settled,
        "replay"
    );
    assert!(
        !take(t0 + 10, t0 + 30).await.unwrap(),
        "a settled one is not taken"
    );
    assert_eq!(store.ts_message(hot, "never").await.unwrap(), None);

    // The whole POST in one round trip: the record, the rate and, when every check
    // passes, the message id (and the activity).
    let owner = format!("p-{}", uuid::Uuid::new_v4());
    let mut p_session = ts_session(&owner);
    p_session.max_message_size = 100;
    let p = p_session.id;
    assert!(store.ts_create(p_session.clone(), 10, ttl).await.unwrap());
    let t1 = now_ms();
    let check = |caller: &str, len: u64, message_id: Option<&str>| PostCheck {
        caller: caller.to_string(),
        per_second: Some(1000),
        len,
        message_id: message_id.map(str::to_string),
        now_ms: t1,
        ttl,
    };
    let post = |c: PostCheck| store.ts_post(p, c);
    let first = |r: PostRecord| (r.session.map(|s| s.id), r.rate_ok, r.recorded);
    assert_eq!(
        first(post(check(&owner, 10, Some("p1"))).await.unwrap()),
        (Some(p), true, Some(Recorded::New))
    );
    assert_eq!(
        first(post(check(&owner, 10, Some("p1"))).await.unwrap()),
        (Some(p), true, Some(Recorded::Unsettled { since_ms: t1 })),
        "not settled yet"
    );
    store.ts_settle(p, "p1").await.unwrap();
    assert_eq!(
        first(post(check(&owner, 10, Some("p1"))).await.unwrap()),
        (Some(p), true, Some(Recorded::Settled)),
        "replay"
    );
    // Settling what was never recorded, or twice, changes nothing.
    store.ts_settle(p, "never-posted").await.unwrap();
    store.ts_settle(p, "p1").await.unwrap();
    assert_eq!(
        first(post(check(&owner, 10, Some("p1"))).await.unwrap()),
        (Some(p), true, Some(Recorded::Settled))
    );
    // Refused before recording: another caller, too long, no message; nothing recorded.
    for refused in [
        check("someone-else", 10, Some("p2")),
        check(&owner, 101, Some("p2")),
        check(&owner, 10, None),
    ] {
        assert_eq!(first(post(refused).await.unwrap()), (Some(p), true, None));
    }
    assert_eq!(
        first(post(check(&owner, 100, Some("p2"))).await.unwrap()),
        (Some(p), true, Some(Recorded::New)),
        "p2 was new"
    );
    let missing = store
        .ts_post(SessionId::random(), check(&owner, 10, Some("p3")))
        .await
        .unwrap();
    assert_eq!(
        (missing.session, missing.rate_ok, missing.recorded),
        (None, true, None)
    );
    // The one-step POST of a request: a store that publishes says so (the Redis store;
    // what it published is checked with a bus in `redis_store_posts_and_publishes_in_one_step`),
    // one that does not only records.
    let publication = || ChannelPublication {
        channel: p_session.target.clone(),
        envelope: b"{}".to_vec(),
        history: murmur_broker::history::HistoryLimits::default(),
    };
    let r = store
        .ts_post_publish(p, check(&owner, 10, Some("pp1")), publication())
        .await
        .unwrap();
    assert_eq!(r.recorded, Some(Recorded::New));
    assert_eq!(
        r.session.is_none(),
        r.published,
        "a published POST returns no record"
    );
    let second = store
        .ts_post_publish(p, check(&owner, 10, Some("pp1")), publication())
        .await
        .unwrap();
    assert!(!second.published, "a second copy is never published");
    let known = if r.published {
        Recorded::Settled
    } else {
        Recorded::Unsettled { since_ms: t1 }
    };
    assert_eq!(second.recorded, Some(known));
    // Already counted (`per_second: None`): no count, the same checks.
    let counted = PostCheck {
        per_second: None,
        ..check(&owner, 10, Some("p4"))
    };
    assert_eq!(
        first(post(counted).await.unwrap()),
        (Some(p), true, Some(Recorded::New))
    );
    // Over the rate: refused, nothing recorded.
    let hot_check = PostCheck {
        per_second: Some(0),
        ..check(&owner, 10, Some("p5"))
    };
    assert_eq!(
        first(post(hot_check).await.unwrap()),
        (Some(p), false, None)
    );
    // An ended session records nothing.
    let mut ended = p_session.clone();
    ended.state = TsState::Stopped {
        reason: "r".into(),
        details: None,
    };
    store.ts_put(ended, ttl).await.unwrap();
    let r = post(check(&owner, 10, Some("p6"))).await.unwrap();
    assert!(matches!(
        r.session.map(|s| s.state),
        Some(TsState::Stopped { .. })
    ));
    assert_eq!(r.recorded, None);

    // Replay protection.
    let record = |id: SessionId| store.ts_record_message(id, "m1", t1, ttl);
    assert_eq!(record(q).await.unwrap(), Recorded::New);
    store.ts_settle(q, "m1").await.unwrap();
    assert_eq!(record(q).await.unwrap(), Recorded::Settled);
    assert_eq!(
        record(b.id).await.unwrap(),
        Recorded::New,
        "ids are per session"
    );

    // Idleness: only one claimant wins; touched sessions are not idle.
    let idle = ts_session(&format!("i-{}", uuid::Uuid::new_v4()));
    let mut old = idle.clone();
    old.created_ms = 1000;
    assert!(store.ts_create(old.clone(), 10, ttl).await.unwrap());
    assert!(store.ts_idle(5000, 1000).await.unwrap().contains(&old.id));
    store.ts_touch(old.id, now_ms(), ttl).await.unwrap();
    assert!(!store.ts_idle(5000, 1000).await.unwrap().contains(&old.id));
    assert!(store
        .ts_idle(now_ms() + 1, 1000)
        .await
        .unwrap()
        .contains(&old.id));
    assert!(store.ts_claim_idle(old.id).await.unwrap());
    assert!(!store.ts_claim_idle(old.id).await.unwrap(), "claimed once");

    // Quarantine and rate.
    let q_caller = format!("q-{}", uuid::Uuid::new_v4());
    assert!(!store.ts_quarantined(&q_caller).await.unwrap());
    store
        .ts_quarantine(&q_caller, Duration::from_millis(150))
        .await
        .unwrap();
    assert!(store.ts_quarantined(&q_caller).await.unwrap());
    eventually("quarantine ends", || async {
        !store.ts_quarantined(&q_caller).await.unwrap()
    })
    .await;
    let r = SessionId::random();
    let mut allowed = 0;
    for _ in 0..10 {
        if store.ts_rate(r, 5).await.unwrap() {
            allowed += 1;
        }
    }
    assert!((5..=10).contains(&allowed), "{allowed}");
    assert!(
        allowed < 10 || now_ms() % 1000 < 50,
        "the limit bites within one second"
    );
}

fn sink_event(offset: u64) -> SinkEvent {
    SinkEvent {
        event_type_id: 1,
        schema_version: 6,
        key: vec![2, 3],
        offset,
        timestamp: 1_618_150_125,
        data: vec![5, 0, 255],
    }
}

async fn sink_store_conformance(store: Arc<dyn Store>) {
    let client = format!("dev-{}", uuid::Uuid::new_v4());
    // The deployment's instance id is decided once.
    let first = store.sink_server_instance(7).await.unwrap();
    assert_eq!(store.sink_server_instance(8).await.unwrap(), first);
    // Client instance ids.
    assert_eq!(store.sink_client_instance(&client).await.unwrap(), None);
    store.sink_set_client_instance(&client, 42).await.unwrap();
    assert_eq!(store.sink_client_instance(&client).await.unwrap(), Some(42));
    // Quarantine.
    let q = Quarantine {
        machine_message: vec![1, 2],
        human_message: "maintenance".into(),
    };
    assert!(!store
        .sink_set_quarantine(&client, Some(q.clone()))
        .await
        .unwrap());
    assert_eq!(store.sink_quarantine(&client).await.unwrap(), Some(q));
    assert!(store.sink_set_quarantine(&client, None).await.unwrap());
    assert_eq!(store.sink_quarantine(&client).await.unwrap(), None);
    // Accepted events are de-duplicated on (type, key, offset).
    assert!(store.sink_accept(&client, &sink_event(4)).await.unwrap());
    assert!(!store.sink_accept(&client, &sink_event(4)).await.unwrap());
    assert!(store.sink_accept(&client, &sink_event(5)).await.unwrap());
    let mut other_key = sink_event(4);
    other_key.key = vec![9];
    assert!(store.sink_accept(&client, &other_key).await.unwrap());
    // Offsets per key.
    assert_eq!(store.sink_next_offset(&client, b"k").await.unwrap(), 1);
    assert_eq!(store.sink_next_offset(&client, b"k").await.unwrap(), 2);
    assert_eq!(store.sink_next_offset(&client, b"j").await.unwrap(), 1);
    // Outbox: push, read after, remove, NACK, depth; 64-bit values survive.
    let mut big = sink_event(u64::MAX);
    big.event_type_id = u64::MAX - 1;
    let entry = |e: SinkEvent| OutboxEntry {
        seq: 0,
        event: e,
        timing: None,
        queued_ms: 1,
    };
    let s1 = store
        .sink_outbox_push(&client, entry(sink_event(1)))
        .await
        .unwrap();
    let s2 = store
        .sink_outbox_push(&client, entry(big.clone()))
        .await
        .unwrap();
    let s3 = store
        .sink_outbox_push(&client, entry(sink_event(3)))
        .await
        .unwrap();
    assert!(s1 < s2 && s2 < s3);
    assert_eq!(store.sink_outbox_depth(&client).await.unwrap(), 3);
    let all = store.sink_outbox_read(&client, 0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![s1, s2, s3]
    );
    assert_eq!(all[1].event, big, "64-bit integers and bytes round-trip");
    assert_eq!(
        store.sink_outbox_read(&client, s1, 1).await.unwrap()[0].seq,
        s2
    );
    assert!(store.sink_outbox_remove(&client, s1).await.unwrap());
    assert!(!store.sink_outbox_remove(&client, s1).await.unwrap());
    assert!(store
        .sink_outbox_nack(&client, s2, vec![1, 0xf4], "bad".into())
        .await
        .unwrap());
    assert!(!store
        .sink_outbox_nack(&client, s2, vec![], String::new())
        .await
        .unwrap());
    assert_eq!(store.sink_outbox_depth(&client).await.unwrap(), 1);
    let nacks = store.sink_nacks(&client, 10).await.unwrap();
    assert_eq!(nacks.len(), 1);
    assert_eq!(nacks[0].entry.seq, s2);
    assert_eq!(nacks[0].entry.event, big);
    assert_eq!(nacks[0].machine_message, vec![1, 0xf4]);
    assert_eq!(nacks[0].human_message, "bad");
    assert!(store.sink_nacks("nobody", 10).await.unwrap().is_empty());
}

async fn scheduler_conformance(a: Arc<dyn Scheduler>, b: Arc<dyn Scheduler>, shared: bool) {
    let now = now_ms() as i64;
    let job = |i: i64| Job::Publish {
        env: (*envelope(Destination::Channel(format!("c{i}")))).clone(),
    };
    for i in 0..100 {
        a.hold(Held::new(now - 1000 + i, job(i))).await.unwrap();
    }
    a.hold(Held::new(now + 60_000, job(999))).await.unwrap();
    assert_eq!(a.depth().await.unwrap(), 101);
    assert_eq!(a.next_due().await.unwrap(), Some(now - 1000));
    // Two claimers racing: every due job is handed out exactly once, in due order.
    let (x, y) = futures_util::future::join(a.claim_due(now, 60), b.claim_due(now, 60)).await;
    let (x, y) = (x.unwrap().jobs, y.unwrap().jobs);
    let mut ids: Vec<String> = x.iter().chain(&y).map(|h| h.id.clone()).collect();
    let claimed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "no job handed out twice");
    let rest = a.claim_due(now, 1000).await.unwrap().jobs;
    assert_eq!(claimed + rest.len(), 100, "every due job, once");
    assert!(
        x.windows(2).all(|w| w[0].due_ms <= w[1].due_ms),
        "due order"
    );
    assert!(
        a.claim_due(now, 1000).await.unwrap().jobs.is_empty(),
        "the future job is not due"
    );
    assert_eq!(a.depth().await.unwrap(), 1);
    // Acknowledged jobs are gone for good.
    a.ack(
        x.iter()
            .chain(&y)
            .chain(&rest)
            .map(|h| h.id.clone())
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(a.reap(now + 3_600_000).await.unwrap(), 0);
    // A claimed but never acknowledged job returns when its lease runs out.
    let later = a.claim_due(now + 60_000, 10).await.unwrap().jobs;
    assert_eq!(later.len(), 1);
    let Job::Publish { env } = &later[0].job else {
        panic!("not the held publication")
    };
    assert_eq!(env.to, Destination::Channel("c999".into()));
    if shared {
        assert_eq!(
            a.reap(now + 60_000).await.unwrap(),
            0,
            "lease still running"
        );
        assert_eq!(b.reap(now + 3_600_000).await.unwrap(), 1, "lease ran out");
        let again = b.claim_due(now + 3_600_000, 10).await.unwrap().jobs;
        assert_eq!(again.len(), 1, "taken over by another node");
        assert_eq!(again[0].id, later[0].id);
        b.ack(vec![again[0].id.clone()]).await.unwrap();
    }
    assert_eq!(a.depth().await.unwrap(), 0);
}

#[actix_rt::test]
async fn memory_scheduler_conforms() {
    let s: Arc<dyn Scheduler> = Arc::new(MemoryScheduler::default());
    scheduler_conformance(s.clone(), s, false).await;
}

#[actix_rt::test]
async fn redis_scheduler_conforms() {
    let redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let a: Arc<dyn Scheduler> = Arc::new(RedisScheduler::new(&redis.url(), keys.clone()).unwrap());
    let b: Arc<dyn Scheduler> = Arc::new(RedisScheduler::new(&redis.url(), keys).unwrap());
    scheduler_conformance(a, b, true).await;
}

/// A held job that does not decode is reported by the claim (counted by the runner in
/// `murmur_store_corrupt_total`), never silently skipped; the others still come out.
#[actix_rt::test]
async fn an_undecodable_held_job_is_reported_not_skipped() {
    let redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let s = RedisScheduler::new(&redis.url(), keys.clone()).unwrap();
    let now = now_ms() as i64;
    let job = Job::Publish {
        env: (*envelope(Destination::Channel("c".into()))).clone(),
    };
    s.hold(Held::new(now - 10, job)).await.unwrap();
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::pipe()
        .hset(keys.scheduled_jobs(), "bad", "{not json")
        .zadd(keys.scheduled(), "bad", now - 5)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    let claimed = s.claim_due(now, 10).await.unwrap();
    assert_eq!(claimed.jobs.len(), 1);
    assert_eq!(claimed.corrupt, 1);
}

fn envelope(to: Destination) -> Arc<Envelope> {
    Arc::new(Envelope::new(
        &node("origin"),
        Kind::Notification,
        to,
        Body::Json(json!({"n": 1})),
    ))
}

async fn recv(rx: &mut mpsc::Receiver<Arc<Envelope>>) -> Option<Arc<Envelope>> {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn nothing(rx: &mut mpsc::Receiver<Arc<Envelope>>) -> bool {
    tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_err()
}

/// Three buses on one backplane, as three nodes.
/// A bus and what its node receives.
type BusUnderTest = (Arc<dyn Bus>, mpsc::Receiver<Arc<Envelope>>);

async fn bus_conformance(buses: Vec<BusUnderTest>) {
    let mut it = buses.into_iter();
    let (a, mut ra) = it.next().unwrap();
    let (b, mut rb) = it.next().unwrap();
    let (c, mut rc) = it.next().unwrap();
    for bus in [&a, &b, &c] {
        eventually("bus connects", || async { bus.is_up() }).await;
    }
    assert!(a.is_clustered());

    // Directed: only the named node receives, exactly once.
    let env = envelope(Destination::Session(SessionId::random()));
    a.publish(Topic::Node(node("b")), env.clone()).unwrap();
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    assert!(nothing(&mut ra).await && nothing(&mut rc).await);

    // Channels: subscribers only; unsubscribed nodes stop receiving.
    b.subscribe("news");
    c.subscribe("news");
    c.subscribe("news");
    assert!(b.wait_subscribed("news", Duration::from_secs(5)).await);
    assert!(c.wait_subscribed("news", Duration::from_secs(5)).await);
    assert!(
        !a.wait_subscribed("news", Duration::from_millis(100)).await,
        "a never subscribed"
    );
    let env = envelope(Destination::Channel("news".into()));
    a.publish(Topic::Channel("news".into()), env.clone())
        .unwrap();
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    assert_eq!(recv(&mut rc).await.unwrap().id, env.id);
    assert!(nothing(&mut rc).await, "a double subscribe delivers once");
    assert!(nothing(&mut ra).await);
    c.unsubscribe("news");
    // An unsubscribe takes effect asynchronously; a marker on another channel that c
    // does receive proves c's subscriber has processed it (one connection, in order).
    c.subscribe("marker");
    assert!(c.wait_subscribed("marker", Duration::from_secs(5)).await);
    let env = envelope(Destination::Channel("news".into()));
    a.publish(Topic::Channel("news".into()), env.clone())
        .unwrap();
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    assert!(nothing(&mut rc).await);

    // Envelopes arrive intact and in order.
    for i in 0..50 {
        let mut e = (*envelope(Destination::Channel("news".into()))).clone();
        e.body = Body::Json(json!({"i": i}));
        a.publish(Topic::Channel("news".into()), Arc::new(e))
            .unwrap();
    }
    for i in 0..50 {
        assert_eq!(recv(&mut rb).await.unwrap().json()["i"], i);
    }

    // A confirmed publication is delivered like any other once it resolves, in order
    // after what was queued before it; a directed one is queued without confirmation.
    a.publish(
        Topic::Channel("news".into()),
        envelope(Destination::Channel("news".into())),
    )
    .unwrap();
    let env = envelope(Destination::Channel("news".into()));
    let settled = a
        .publish_confirmed(Topic::Channel("news".into()), env.clone(), None)
        .await;
    assert_eq!(settled, Ok(false), "nothing to settle");
    assert_ne!(
        recv(&mut rb).await.unwrap().id,
        env.id,
        "the earlier one first"
    );
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    let direct = envelope(Destination::Session(SessionId::random()));
    let settled = a
        .publish_confirmed(Topic::Node(node("c")), direct.clone(), None)
        .await;
    assert_eq!(settled, Ok(false));
    assert_eq!(recv(&mut rc).await.unwrap().id, direct.id);
}

#[actix_rt::test]
async fn memory_store_conforms() {
    store_conformance(Arc::new(MemoryStore::new())).await;
    chat_store_conformance(Arc::new(MemoryStore::new())).await;
    timestick_store_conformance(Arc::new(MemoryStore::new())).await;
    sink_store_conformance(Arc::new(MemoryStore::new())).await;
}

#[actix_rt::test]
async fn memory_bus_conforms() {
    let hub = MemoryHub::new();
    let mut buses = Vec::new();
    for n in ["a", "b", "c"] {
        let (tx, rx) = mpsc::channel(1024);
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::join(hub.clone(), node(n), tx, true));
        buses.push((bus, rx));
    }
    bus_conformance(buses).await;
}

#[actix_rt::test]
async fn a_full_inbound_queue_is_reported_not_waited_for() {
    let hub = MemoryHub::new();
    let (tx, _rx) = mpsc::channel(1);
    let _b = MemoryBus::join(hub.clone(), node("b"), tx, true);
    let (ta, _ra) = mpsc::channel(1);
    let a = MemoryBus::join(hub, node("a"), ta, true);
    let env = envelope(Destination::Session(SessionId::random()));
    assert!(a.publish(Topic::Node(node("b")), env.clone()).is_ok());
    assert_eq!(
        a.publish(Topic::Node(node("b")), env),
        Err(murmur_broker::bus::BusError::Full)
    );
}

fn unique_prefix() -> String {
    format!("conf-{}:", uuid::Uuid::new_v4().simple())
}

#[actix_rt::test]
async fn redis_store_conforms() {
    let redis = murmur_tests::RedisServer::start().await;
    let store = Arc::new(RedisStore::new(&redis.url(), Keys::new(unique_prefix())).unwrap());
    store_conformance(store.clone()).await;
    chat_store_conformance(store.clone()).await;
    timestick_store_conformance(store.clone()).await;
    sink_store_conformance(store).await;
}

#[actix_rt::test]
async fn redis_bus_conforms() {
    let redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let mut buses = Vec::new();
    for n in ["a", "b", "c"] {
        let (tx, rx) = mpsc::channel(1024);
        let bus = RedisBus::start(
            &redis.url(),
            keys.clone(),
            node(n),
            tx,
            Arc::new(Metrics::new()),
            murmur_broker::history::HistoryLimits::default(),
        )
        .unwrap();
        buses.push((Arc::new(bus) as Arc<dyn Bus>, rx));
    }
    bus_conformance(buses).await;
}

/// A Redis server, a store and a connected bus on it (one key prefix), and what the
/// bus's node receives.
async fn redis_store_and_bus() -> (
    murmur_tests::RedisServer,
    RedisStore,
    RedisBus,
    mpsc::Receiver<Arc<Envelope>>,
) {
    let redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let store = RedisStore::new(&redis.url(), keys.clone()).unwrap();
    let (tx, rx) = mpsc::channel(16);
    let bus = RedisBus::start(
        &redis.url(),
        keys,
        node("a"),
        tx,
        Arc::new(Metrics::new()),
        murmur_broker::history::HistoryLimits::default(),
    )
    .unwrap();
    eventually("bus connects", || async { bus.is_up() }).await;
    (redis, store, bus, rx)
}

/// A TimeStick message recorded by the store stays unsettled until the Redis bus has
/// written its publication, and the bus settles it in the same pipeline.
#[actix_rt::test]
async fn redis_bus_settles_the_message_it_writes() {
    let (redis, store, bus, mut rx) = redis_store_and_bus().await;
    bus.subscribe("room");
    assert!(bus.wait_subscribed("room", Duration::from_secs(5)).await);
    let (id, ttl) = (SessionId::random(), Duration::from_secs(60));
    let record = |m: &'static str| store.ts_record_message(id, m, now_ms(), ttl);
    assert_eq!(record("m1").await.unwrap(), Recorded::New);
    let mark = store.ts_settle_mark(id, "m1");
    assert!(mark.is_some(), "the Redis store settles through the bus");
    let env = envelope(Destination::Channel("room".into()));
    let settled = bus
        .publish_confirmed(Topic::Channel("room".into()), env.clone(), mark)
        .await;
    assert_eq!(settled, Ok(true));
    assert_eq!(
        record("m1").await.unwrap(),
        Recorded::Settled,
        "settled once the publication was written"
    );
    assert_eq!(recv(&mut rx).await.unwrap().id, env.id);
    // Redis gone: refused at once, nothing settled.
    assert_eq!(record("m2").await.unwrap(), Recorded::New);
    drop(redis);
    eventually("bus notices", || async { !bus.is_up() }).await;
    let settled = bus
        .publish_confirmed(
            Topic::Channel("room".into()),
            envelope(Destination::Channel("room".into())),
            store.ts_settle_mark(id, "m2"),
        )
        .await;
    assert_eq!(settled, Err(murmur_broker::bus::BusError::Down));
}

/// The Redis store's one-step POST of a request: the checks, the record (settled) and
/// the channel publication, numbered and framed as the bus's own; a refused POST
/// publishes nothing, nor one naming another channel than the session's target.
#[actix_rt::test]
async fn redis_store_posts_and_publishes_in_one_step() {
    let (_redis, store, bus, mut rx) = redis_store_and_bus().await;
    let ttl = Duration::from_secs(60);
    let owner = format!("o-{}", uuid::Uuid::new_v4());
    let s = ts_session(&owner);
    assert!(store.ts_create(s.clone(), 10, ttl).await.unwrap());
    bus.subscribe(&s.target);
    assert!(bus.wait_subscribed(&s.target, Duration::from_secs(5)).await);
    let check = |caller: &str, message_id: &str| PostCheck {
        caller: caller.to_string(),
        per_second: Some(1000),
        len: 10,
        message_id: Some(message_id.to_string()),
        now_ms: now_ms(),
        ttl,
    };
    let publication = |channel: &str, n: u64| {
        let mut env = (*envelope(Destination::Channel(channel.to_string()))).clone();
        env.body = Body::Json(json!({ "n": n }));
        ChannelPublication {
            channel: channel.to_string(),
            envelope: env.to_bytes(),
            history: murmur_broker::history::HistoryLimits::default(),
        }
    };
    let post = |c: PostCheck, p: ChannelPublication| store.ts_post_publish(s.id, c, p);

    let r = post(check(&owner, "m1"), publication(&s.target, 1))
        .await
        .unwrap();
    assert!(r.published && r.session.is_none(), "{r:?}");
    let got = recv(&mut rx).await.expect("the publication");
    assert_eq!(got.json()["n"], 1);
    assert!(
        got.chan_seq.is_some(),
        "numbered in the channel like the bus's own"
    );
    assert_eq!(
        store.ts_message(s.id, "m1").await.unwrap(),
        Some(Recorded::Settled),
        "recorded settled"
    );
    // Refused: a duplicate, another caller, another channel; nothing published.
    let dup = post(check(&owner, "m1"), publication(&s.target, 2))
        .await
        .unwrap();
    assert_eq!(
        (dup.published, dup.recorded),
        (false, Some(Recorded::Settled))
    );
    let thief = post(check("mallory", "m2"), publication(&s.target, 3))
        .await
        .unwrap();
    assert_eq!((thief.published, thief.recorded), (false, None));
    let elsewhere = post(check(&owner, "m3"), publication("other", 4))
        .await
        .unwrap();
    assert_eq!((elsewhere.published, elsewhere.recorded), (false, None));
    assert_eq!(store.ts_message(s.id, "m3").await.unwrap(), None);
    // The barrier: a publication after the refusals is the next one received.
    let r = post(check(&owner, "m4"), publication(&s.target, 5))
        .await
        .unwrap();
    assert!(r.published);
    assert_eq!(recv(&mut rx).await.unwrap().json()["n"], 5);
}

/// Channel publications on the Redis bus carry their history position, and the store
/// replays exactly what came after a position.
#[actix_rt::test]
async fn redis_history_replays_after_a_position() {
    let redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let (tx, mut rx) = mpsc::channel(1024);
    let bus = RedisBus::start(
        &redis.url(),
        keys.clone(),
        node("a"),
        tx,
        Arc::new(Metrics::new()),
        murmur_broker::history::HistoryLimits::default(),
    )
    .unwrap();
    eventually("bus connects", || async { bus.is_up() }).await;
    bus.subscribe("h");
    assert!(bus.wait_subscribed("h", Duration::from_secs(5)).await);
    let mut seqs = Vec::new();
    let mut epochs = Vec::new();
    for i in 0..5 {
        let mut e = (*envelope(Destination::Channel("h".into()))).clone();
        e.body = Body::Json(json!({"i": i}));
        bus.publish(Topic::Channel("h".into()), Arc::new(e))
            .unwrap();
        let got = recv(&mut rx).await.expect("publication");
        assert_eq!(got.json()["i"], i);
        let cs = got.chan_seq.clone().expect("a channel sequence");
        assert_eq!(cs.seq, i as u64 + 1, "sequences count from 1 per channel");
        epochs.push(cs.epoch);
        seqs.push(got.seq.clone().expect("a history position"));
    }
    assert!(
        epochs.windows(2).all(|w| w[0] == w[1]),
        "one epoch: {epochs:?}"
    );
    for w in seqs.windows(2) {
        assert!(
            Envelope::seq_after(&w[1], &w[0]),
            "positions increase: {seqs:?}"
        );
    }
    let store = RedisStore::new(&redis.url(), keys).unwrap();
    let replay = store.history("h", &seqs[1], 100).await.unwrap();
    let got: Vec<_> = replay
        .iter()
        .map(|e| e.json()["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![2, 3, 4]);
    assert_eq!(replay[0].seq.as_deref(), Some(seqs[2].as_str()));
    let numbers: Vec<u64> = replay
        .iter()
        .map(|e| e.chan_seq.as_ref().unwrap().seq)
        .collect();
    assert_eq!(
        numbers,
        vec![3, 4, 5],
        "replayed entries keep their sequence"
    );
    let last = store
        .history_last("h")
        .await
        .unwrap()
        .expect("a newest entry");
    assert_eq!(last.json()["i"], 4);
    assert_eq!(last.chan_seq.as_ref().map(|c| c.seq), Some(5));
    assert_eq!(store.history_last("none").await.unwrap(), None);
    assert_eq!(
        store.history("h", &seqs[1], 2).await.unwrap().len(),
        2,
        "limit applies"
    );
    assert!(store.history("none", "0-0", 10).await.unwrap().is_empty());
    // A memory store without a node's channel history has none to give.
    assert!(MemoryStore::new()
        .history("h", "0-0", 10)
        .await
        .unwrap()
        .is_empty());
}

/// While Redis is away the bus says so at once (no buffering); when it returns the bus
/// reconnects and replays its subscriptions.
#[actix_rt::test]
async fn redis_bus_survives_an_outage() {
    let mut redis = murmur_tests::RedisServer::start().await;
    let keys = Keys::new(unique_prefix());
    let (tx, mut rx) = mpsc::channel(1024);
    let metrics = Arc::new(Metrics::new());
    let bus = RedisBus::start(
        &redis.url(),
        keys,
        node("a"),
        tx,
        metrics.clone(),
        murmur_broker::history::HistoryLimits::default(),
    )
    .unwrap();
    eventually("bus connects", || async { bus.is_up() }).await;
    bus.subscribe("x");
    assert!(bus.wait_subscribed("x", Duration::from_secs(5)).await);
    redis.stop().await;
    eventually("bus notices the outage", || async { !bus.is_up() }).await;
    let env = envelope(Destination::Channel("x".into()));
    assert_eq!(
        bus.publish(Topic::Channel("x".into()), env),
        Err(murmur_broker::bus::BusError::Down)
    );
    redis.start_again().await;
    eventually("bus reconnects", || async { bus.is_up() }).await;
    assert!(
        bus.wait_subscribed("x", Duration::from_secs(5)).await,
        "subscription replayed"
    );
    let env = envelope(Destination::Channel("x".into()));
    bus.publish(Topic::Channel("x".into()), env.clone())
        .unwrap();
    let got = recv(&mut rx).await;
    assert!(
        got.is_some(),
        "delivery after reconnect: {}",
        metrics.render()
    );
    assert_eq!(got.unwrap().id, env.id);
}
