//! Graceful drain on a 3-node cluster under traffic: SIGTERM one node while a backend
//! publishes a numbered stream. The node turns unready, tells its clients to leave
//! (Helios close 1001), ends open long-polls early, flushes and exits cleanly; its
//! Starling resumes on another node with its recovery token and has every message,
//! exactly once and in order; a TimeStick caller continues through another node.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use murmur_tests::{api_post, eventually, request, token, Cluster, Method, Starling};
use serde_json::{json, Value};

const TOTAL: u64 = 300;

async fn start_timestick(node: &murmur_tests::Node, user: &str) -> String {
    let auth = format!("Bearer {}", token(user));
    let body = json!({"action": "START", "protocol": "TimeStick", "version": "0.1",
        "caller_id": user, "requested_uri": "timestick://x/drain-room"});
    let reply = request(
        Method::POST,
        &format!("{}/timestick/start", node.public_url()),
        &[("Authorization", &auth)],
        Some(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["session_id"].as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn sigterm_under_traffic_loses_nothing_and_clients_move_on() {
    let mut cluster = Cluster::start_with(3, |i, b| {
        let b = b.env("MURMUR_HEARTBEAT_TTL", "2s");
        if i == 0 {
            b.env("MURMUR_DRAIN_DELAY", "500ms")
                .env("MURMUR_DRAIN_TIMEOUT", "8s")
        } else {
            b
        }
    })
    .await;

    // A Starling on the node that will drain, subscribed, holding a recovery token.
    let mut s = Starling::connect(cluster.node(0), "drainee").await;
    s.call_ok("broker:subscribe", json!({"channel": "stream"}))
        .await;
    let recovery = s.call_ok("starling:getToken", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // A TimeStick caller whose long-poll is open on the draining node.
    let caller = start_timestick(cluster.node(1), "ts-caller").await;
    let sender = start_timestick(cluster.node(1), "ts-sender").await;
    let poll_url = format!(
        "{}/timestick/session/{caller}?wait=30",
        cluster.node(0).public_url()
    );
    let caller_auth = format!("Bearer {}", token("ts-caller"));
    let open_poll = {
        let auth = caller_auth.clone();
        actix_rt::spawn(async move {
            let started = Instant::now();
            let r = request(Method::GET, &poll_url, &[("Authorization", &auth)], None).await;
            (r.status, started.elapsed())
        })
    };

    // The backend publishes 1..=TOTAL through node 1; node 0 is terminated mid-stream.
    let publisher = cluster.node(1).internal_url();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
    let publishing = actix_rt::spawn(async move {
        for seq in 1..=TOTAL {
            let reply = request(
                Method::POST,
                &format!("{publisher}/api/v1/publish"),
                &[(
                    "Authorization",
                    &format!("Bearer {}", murmur_tests::API_KEY),
                )],
                Some(&json!({"channel": "stream", "data": {"seq": seq}})),
            )
            .await;
            assert_eq!(reply.status, 200, "publish {seq}: {}", reply.text());
            if seq == 50 {
                let _ = tx.send(seq).await;
            }
        }
    });
    rx.recv().await.expect("the publisher reached 50");

    let terminated = Instant::now();
    cluster.node_mut(0).terminate();
    let node0 = cluster.node(0);
    eventually(
        "the draining node turns unready",
        Duration::from_secs(3),
        || async { (node0.readyz().await != 200).then_some(()) },
    )
    .await;

    // The long-poll on the draining node ends early (not after its 30 s wait).
    let (status, took) = open_poll.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(10),
        "the open long-poll ended after {took:?}"
    );

    // The Starling is told to leave with 1001 and keeps what it already received.
    let mut seen: Vec<u64> = Vec::new();
    let close = loop {
        match s.ws().recv().await {
            murmur_tests::WsEvent::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if let Some(seq) = v["notification"]["data"]["seq"].as_u64() {
                    seen.push(seq);
                }
            }
            murmur_tests::WsEvent::Close(c) => break c,
            murmur_tests::WsEvent::Closed => break None,
            murmur_tests::WsEvent::Binary(_) => {}
        }
    };
    assert_eq!(close.map(|c| c.0), Some(1001), "drain closes with 1001");

    // The node exits cleanly within the drain timeout.
    let status = cluster.node_mut(0).wait_exit(Duration::from_secs(12)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    assert!(terminated.elapsed() < Duration::from_secs(12));

    // The Starling resumes on node 2 and gets everything it missed, then the rest.
    let mut s = Starling::connect_recover(cluster.node(2), "drainee", &recovery).await;
    publishing.await.unwrap();
    let mut recovered = false;
    while seen.last() != Some(&TOTAL) || !recovered {
        let n = s.next_notification(Duration::from_secs(10)).await;
        match n["notification"]["topic"].as_str() {
            Some("connection:recovered") => recovered = true,
            Some("connection:recovery_failed") => panic!("recovery failed: {n}"),
            _ => {
                if let Some(seq) = n["notification"]["data"]["seq"].as_u64() {
                    seen.push(seq);
                }
            }
        }
    }
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates: {seen:?}");
    assert_eq!(unique, (1..=TOTAL).collect(), "nothing lost");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");

    // The TimeStick caller carries on through another node.
    let auth_sender = format!("Bearer {}", token("ts-sender"));
    let msg = json!({"type": "request", "session_id": sender, "message_id": "after-drain",
        "payload": {"hello": 1}});
    let r = request(
        Method::POST,
        &format!(
            "{}/timestick/session/{sender}",
            cluster.node(2).public_url()
        ),
        &[("Authorization", &auth_sender)],
        Some(&msg),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let polled = request(
        Method::GET,
        &format!(
            "{}/timestick/session/{caller}?wait=5",
            cluster.node(1).public_url()
        ),
        &[("Authorization", &caller_auth)],
        None,
    )
    .await;
    assert_eq!(polled.status, 200);
    let messages = polled.json()["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        messages.iter().any(|m| m["payload"]["hello"] == 1),
        "the request posted after the drain reaches the caller: {messages:?}"
    );

    // The survivors still see two live nodes.
    let (_, nodes) = api_post(cluster.node(1), "/api/v1/publish", json!({"channel": "x"})).await;
    assert!(nodes.get("messageId").is_some());
    eventually(
        "the drained node leaves the cluster",
        Duration::from_secs(10),
        || async {
            let (_, body) = murmur_tests::api_get(cluster.node(1), "/api/v1/nodes").await;
            (body["nodes"].as_array().map(Vec::len) == Some(2)).then_some(())
        },
    )
    .await;
}
