//! Cluster mode: a Helios-Starling recovery token issued on one node resumes the Starling
//! on another (state in Redis), and a node killed with SIGKILL leaves the cluster in
//! bounded time without losing what was published for its clients while they were away.
//!
//! CONTRACT §4 (recovery "on any node"), ARCHITECTURE invariants ("A recovery token
//! issued on one node is honoured on every other node"); the cluster-mode issue
//! ("a dead node's sessions and providers are cleaned up within a bounded time").

mod common;

use std::time::Duration;

use common::{
    api_publish, assert_base, assert_error_response, assert_success, ping, provide, recovery_token,
    request_with_timeout, subscribe, uniq, wait_connections,
};
use murmur_tests::CROSS;
use murmur_tests::{api_get, api_post, eventually, within, Cluster, Node, Starling};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long a SIGKILLed node may stay listed with `MURMUR_HEARTBEAT_TTL=2s`.
const DEAD_NODE_BOUND: Duration = Duration::from_secs(10);

/// Connects with `?recover=<token>` alone.
async fn recover_on(node: &Node, recovery: &str) -> Starling {
    Starling::connect_url(&node.ws_url(&format!("/starling?recover={recovery}"))).await
}

/// Reads messages in arrival order until `connection:recovered` and returns the
/// notifications that came before it (asserting nothing else is in between).
async fn read_until_recovered(s: &mut Starling) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let msg = s.ws().recv_json().await;
        assert_base(&msg);
        assert_eq!(
            msg["type"], "notification",
            "only notifications may precede connection:recovered: {msg}"
        );
        if msg["notification"]["topic"] == "connection:recovered" {
            return (before, msg["notification"]["data"].clone());
        }
        assert_ne!(
            msg["notification"]["topic"], "connection:recovery_failed",
            "recovery failed: {msg}"
        );
        before.push(msg);
    }
}

/// The ids listed by `GET /api/v1/nodes` on `node`.
async fn listed_ids(node: &Node) -> Vec<String> {
    let (status, body) = api_get(node, "/api/v1/nodes").await;
    assert_eq!(status, 200, "GET /api/v1/nodes on {}: {body}", node.id());
    body["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("/api/v1/nodes must answer {{\"nodes\": [...]}}: {body}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The request a call from `caller` (`caller_id`) produced at `provider`, asserted to be
/// `method`; its requestId there. If it never arrives, panics with what the caller got.
async fn served_by(
    provider: &mut Starling,
    caller: &mut Starling,
    caller_id: &str,
    method: &str,
) -> String {
    let served = provider
        .try_next_matching(CROSS, |m| m["type"] == "request")
        .await;
    let Some(req) = served else {
        let resp = caller.wait_response(caller_id, CROSS).await;
        panic!("{method} did not reach its provider; the caller got {resp}");
    };
    assert_eq!(req["method"], method, "{req}");
    req["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("server request without requestId: {req}"))
        .to_string()
}

/// The next server request on `s`, asserted to be `method`; its requestId.
async fn expect_request(s: &mut Starling, method: &str) -> String {
    let req = s.next_request().await;
    assert_eq!(req["method"], method, "{req}");
    req["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("server request without requestId: {req}"))
        .to_string()
}

/// A Starling on node 1 subscribes, provides and gets a token, then closes its socket;
/// three messages are published on node 2's API while it is away; it recovers on node 2
/// and gets the three in order, then `connection:recovered`, keeps its starlingId, gets a
/// new publication exactly once, and serves its namespace to a caller on node 3.
#[actix_rt::test]
async fn recovery_token_from_node_1_resumes_on_node_2() {
    let cluster = Cluster::start(3).await;
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let channel = "r";
    let ns = "svc";

    let mut s = Starling::connect(n1, "roamer").await;
    subscribe(&mut s, channel).await;
    provide(&mut s, ns).await;
    let (token, starling_id) = recovery_token(&mut s).await;
    s.close().await;
    wait_connections(n1, 0.0).await;

    for i in 1..=3 {
        api_publish(n2, channel, json!({ "seq": i })).await;
    }

    let mut s = recover_on(n2, &token).await;
    let (before, recovered) = read_until_recovered(&mut s).await;
    let got: Vec<(Value, Value)> = before
        .iter()
        .map(|m| {
            (
                m["notification"]["topic"].clone(),
                m["notification"]["data"].clone(),
            )
        })
        .collect();
    let want: Vec<(Value, Value)> = (1..=3)
        .map(|i| (json!(channel), json!({ "seq": i })))
        .collect();
    assert_eq!(
        got, want,
        "the three messages published while away, in order, then connection:recovered"
    );
    if let Some(id) = recovered.get("starlingId") {
        assert_eq!(id, &json!(starling_id), "{recovered}");
    }

    let (_, again) = recovery_token(&mut s).await;
    assert_eq!(again, starling_id, "recovery must keep the starlingId");

    // The subscription lives on node 2 now: a new publication (from node 3) arrives once.
    api_publish(n3, channel, json!({ "seq": 4 })).await;
    let n = s.next_notification(CROSS).await;
    assert_eq!(n["notification"]["topic"], channel, "{n}");
    assert_eq!(n["notification"]["data"], json!({ "seq": 4 }), "{n}");
    s.expect_no_notification("no duplicate delivery after recovery")
        .await;

    // The provided namespace was restored: a caller on node 3 reaches it.
    let mut c = Starling::connect(n3, "caller").await;
    let caller_id = c.send_request("svc:echo", json!({ "x": 1 })).await;
    let provider_id = served_by(&mut s, &mut c, &caller_id, "svc:echo").await;
    s.respond_ok(&provider_id, json!({ "echo": 1 })).await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    assert_eq!(assert_success(&resp, &caller_id), json!({ "echo": 1 }));

    // The backend reaches the recovered Starling through any node.
    for api_node in [n1, n3] {
        let path = format!("/api/v1/starlings/{starling_id}/requests");
        let http = api_post(
            api_node,
            &path,
            json!({ "method": "client:where", "payload": {}, "timeoutMs": 8000 }),
        );
        let answer = async {
            let id = expect_request(&mut s, "client:where").await;
            s.respond_ok(&id, json!("node 2")).await;
        };
        let ((status, body), ()) = tokio::join!(http, answer);
        assert_eq!(status, 200, "via {}: {body}", api_node.id());
        assert_eq!(body["data"], "node 2", "{body}");
    }
}

/// SIGKILL of node 1 (`MURMUR_HEARTBEAT_TTL=2s` everywhere): node 1 leaves
/// `/api/v1/nodes` in bounded time, its provider's namespace becomes METHOD_NOT_FOUND and
/// its Starling unknown to the backend; the Starling recovers on node 3 and gets every
/// message published after the kill, in order, then `connection:recovered`. A Starling
/// that had already disconnected from node 1 before the kill recovers on node 2 with
/// everything published since it left (what only node 1 had buffered included).
#[actix_rt::test]
async fn sigkill_node_leaves_cluster_and_its_starlings_recover_elsewhere() {
    let mut cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_HEARTBEAT_TTL", "2s")).await;
    let channel = "k";
    let ns = uniq("doomed");
    let method = format!("{ns}:work");
    let n1_id = cluster.node(0).id().to_string();

    let mut s = Starling::connect(cluster.node(0), "survivor").await;
    subscribe(&mut s, channel).await;
    let (token, starling_id) = recovery_token(&mut s).await;
    let mut p = Starling::connect(cluster.node(0), "provider").await;
    provide(&mut p, &ns).await;
    // A second Starling of node 1 that is already away when the node dies.
    let mut away = Starling::connect(cluster.node(0), "away").await;
    subscribe(&mut away, channel).await;
    let (away_token, away_id) = recovery_token(&mut away).await;

    // Works before the kill: a publication and a call from node 2.
    api_publish(cluster.node(1), channel, json!({ "pre": 0 })).await;
    let n = s.next_notification(CROSS).await;
    assert_eq!(n["notification"]["data"], json!({ "pre": 0 }), "{n}");
    let mut c = Starling::connect(cluster.node(1), "caller").await;
    let caller_id = c.send_request(&method, json!({})).await;
    let provider_id = served_by(&mut p, &mut c, &caller_id, &method).await;
    p.respond_ok(&provider_id, json!("alive")).await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("alive"));
    away.close().await;
    wait_connections(cluster.node(0), 2.0).await;
    // Published while `away` is disconnected, before the kill: only node 1 buffered it.
    api_publish(cluster.node(1), channel, json!({ "gap": 1 })).await;
    let n = s.next_notification(CROSS).await;
    assert_eq!(n["notification"]["data"], json!({ "gap": 1 }), "{n}");

    let killed_at = Instant::now();
    cluster.node_mut(0).kill().await;
    let (n2, n3) = (cluster.node(1), cluster.node(2));

    eventually(
        &format!("node 1 ({n1_id}) to leave /api/v1/nodes of node 2"),
        DEAD_NODE_BOUND,
        || async { (!listed_ids(n2).await.contains(&n1_id)).then_some(()) },
    )
    .await;
    let listed = listed_ids(n3).await;
    assert!(
        !listed.contains(&n1_id) && listed.len() == 2,
        "node 3 must list the two survivors only: {listed:?}"
    );

    // The killed node's provider is gone: METHOD_NOT_FOUND within the bound (until then a
    // call may only time out, as nobody answers on the dead node).
    let remaining = DEAD_NODE_BOUND.saturating_sub(killed_at.elapsed());
    within(
        "calls to the killed node's namespace to be METHOD_NOT_FOUND",
        remaining.max(Duration::from_secs(2)),
        async {
            loop {
                let (id, msg) = request_with_timeout(&method, json!({}), 500);
                c.ws().send_json(&msg).await;
                let resp = c.wait_response(&id, CROSS).await;
                match resp["error"]["code"].as_str() {
                    Some("METHOD_NOT_FOUND") => break,
                    Some("REQUEST_TIMEOUT") => continue,
                    _ => panic!("a call to a dead provider: unexpected answer {resp}"),
                }
            }
        },
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        took < DEAD_NODE_BOUND,
        "the killed node's provider was still routed to {took:?} after the kill"
    );

    // Its Starling is unknown to the backend until it recovers somewhere.
    let path = format!("/api/v1/starlings/{starling_id}/requests");
    let start = Instant::now();
    let (status, body) = api_post(
        n2,
        &path,
        json!({ "method": "client:hello", "payload": {}, "timeoutMs": 5000 }),
    )
    .await;
    assert_eq!(status, 404, "a Starling of a dead node: {body}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "404 must come at once, not after the timeout ({:?})",
        start.elapsed()
    );

    // Published after the kill, while the Starling has no node.
    for i in 1..=3 {
        api_publish(n2, channel, json!({ "seq": i })).await;
    }

    let mut s = recover_on(n3, &token).await;
    let (before, _) = read_until_recovered(&mut s).await;
    let mut after_kill = Vec::new();
    for m in &before {
        assert_eq!(m["notification"]["topic"], channel, "{m}");
        let data = &m["notification"]["data"];
        if data.get("pre").is_some() || data.get("gap").is_some() {
            // Delivered before the kill; a repeat is allowed.
            continue;
        }
        after_kill.push(data.clone());
    }
    let want: Vec<Value> = (1..=3).map(|i| json!({ "seq": i })).collect();
    assert_eq!(
        after_kill, want,
        "every message published after the kill, in order, exactly once (got {before:?})"
    );

    let (_, again) = recovery_token(&mut s).await;
    assert_eq!(again, starling_id, "recovery must keep the starlingId");
    api_publish(n2, channel, json!({ "seq": 4 })).await;
    let n = s.next_notification(CROSS).await;
    assert_eq!(n["notification"]["data"], json!({ "seq": 4 }), "{n}");

    // The backend finds it again, on node 3, through node 2.
    let http = api_post(
        n2,
        &path,
        json!({ "method": "client:hello", "payload": {}, "timeoutMs": 8000 }),
    );
    let answer = async {
        let id = expect_request(&mut s, "client:hello").await;
        s.respond_ok(&id, json!("back")).await;
    };
    let ((status, body), ()) = tokio::join!(http, answer);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], "back", "{body}");

    // The Starling that was already away when its node died recovers on node 2 with
    // everything published since it left: the one its dead node had buffered, then the
    // four published after the kill.
    let mut away = recover_on(n2, &away_token).await;
    let (before, _) = read_until_recovered(&mut away).await;
    let got: Vec<Value> = before
        .iter()
        .map(|m| {
            assert_eq!(m["notification"]["topic"], channel, "{m}");
            m["notification"]["data"].clone()
        })
        .filter(|d| d.get("pre").is_none())
        .collect();
    let mut want = vec![json!({ "gap": 1 })];
    want.extend((1..=4).map(|i| json!({ "seq": i })));
    assert_eq!(
        got, want,
        "a Starling away when its node died must lose nothing published since it left"
    );
    let (_, again) = recovery_token(&mut away).await;
    assert_eq!(again, away_id);

    // The provider of the dead node is still unreachable (it did not recover).
    let (id, msg) = request_with_timeout(&method, json!({}), 2000);
    c.ws().send_json(&msg).await;
    let resp = c.wait_response(&id, CROSS).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    ping(&mut c).await;
}
