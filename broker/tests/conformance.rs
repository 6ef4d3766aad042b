//! One conformance suite for the `Store` and `Bus` seams. Every implementation runs the
//! same checks: the memory ones here; the Redis ones join the list in cluster mode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use murmur_broker::bus::memory::{MemoryBus, MemoryHub};
use murmur_broker::bus::{Bus, Topic};
use murmur_broker::store::memory::MemoryStore;
use murmur_broker::store::{NodeInfo, ProviderEntry, RecoveryRecord, Store};
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

/// Waits (bounded) until `f` holds; the store's TTLs are real time.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
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
    eventually("recovery record expires", async || {
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
    eventually("dead node leaves the list", async || {
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
    assert!(a.is_up() && a.is_clustered());

    // Directed: only the named node receives, exactly once.
    let env = envelope(Destination::Session(SessionId::random()));
    a.publish(Topic::Node(node("b")), env.clone()).unwrap();
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    assert!(nothing(&mut ra).await && nothing(&mut rc).await);

    // Channels: subscribers only; unsubscribed nodes stop receiving.
    b.subscribe("news");
    c.subscribe("news");
    c.subscribe("news");
    let env = envelope(Destination::Channel("news".into()));
    a.publish(Topic::Channel("news".into()), env.clone())
        .unwrap();
    assert_eq!(recv(&mut rb).await.unwrap().id, env.id);
    assert_eq!(recv(&mut rc).await.unwrap().id, env.id);
    assert!(nothing(&mut rc).await, "a double subscribe delivers once");
    assert!(nothing(&mut ra).await);
    c.unsubscribe("news");
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
}

#[actix_rt::test]
async fn memory_store_conforms() {
    store_conformance(Arc::new(MemoryStore::new())).await;
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
