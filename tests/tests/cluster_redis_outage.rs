//! Cluster mode through a Redis outage (redis-server SIGKILLed, later restarted empty):
//!
//! * nodes stay up and keep serving same-node traffic (pub/sub, RPC, new connections);
//! * `/readyz` turns non-200 within 5 s of losing the bus and is 200 again within 10 s of
//!   Redis coming back; bus errors are counted in `murmur_bus_errors_total`;
//! * subscriptions are replayed from the local registry after the reconnect;
//! * nothing is buffered without bound while Redis is away: publications refused during
//!   the outage are counted and never flood subscribers afterwards;
//! * the cluster's routing state (providers, session owners) is usable again after Redis
//!   returns.
//!
//! CONTRACT §9 (`/readyz`, bus metrics), ARCHITECTURE ("after a Redis reconnect every
//! subscription is replayed", "every queue is bounded"), the cluster-mode issue.

mod common;

use std::time::Duration;

use common::{
    api_publish, assert_success, call, call_ok, provide, recovery_token, request_with_timeout,
    subscribe,
};
use futures_util::future::join_all;
use murmur_tests::helios::is_response_to;
use murmur_tests::CROSS;
use murmur_tests::{
    api_post, eventually, get, metric_value, metrics, within, Cluster, Node, Starling,
};
use serde_json::{json, Value};
use tokio::time::Instant;

/// `/readyz` must turn non-200 within this long after Redis dies.
const DETECT_BOUND: Duration = Duration::from_secs(5);
/// `/readyz` must be 200 again within this long after Redis is back.
const RECONNECT_BOUND: Duration = Duration::from_secs(10);
/// Publications sent through the API while Redis is away.
const OUTAGE_PUBLISHES: usize = 5000;

/// Sum of every `murmur_bus_errors_total` series of `node` (0 when absent).
async fn bus_errors(node: &Node) -> f64 {
    metric_value(&metrics(node).await, "murmur_bus_errors_total", &[]).unwrap_or(0.0)
}

/// Stops redis and asserts every node's `/readyz` turns non-200 within [`DETECT_BOUND`]
/// of the stop.
async fn stop_redis_and_wait_unready(cluster: &mut Cluster) {
    let stopped_at = Instant::now();
    cluster.redis_mut().stop().await;
    for node in cluster.nodes() {
        eventually(
            &format!("/readyz of {} to turn non-200 after Redis died", node.id()),
            DETECT_BOUND.saturating_sub(stopped_at.elapsed()),
            || async { (node.readyz().await != 200).then_some(()) },
        )
        .await;
    }
    let took = stopped_at.elapsed();
    assert!(
        took <= DETECT_BOUND,
        "readiness turned false only {took:?} after Redis died"
    );
}

/// Restarts redis and asserts every node's `/readyz` is 200 within [`RECONNECT_BOUND`].
async fn start_redis_and_wait_ready(cluster: &mut Cluster) {
    let restarted_at = Instant::now();
    cluster.redis_mut().start_again().await;
    for node in cluster.nodes() {
        eventually(
            &format!("/readyz of {} to be 200 after Redis returned", node.id()),
            RECONNECT_BOUND.saturating_sub(restarted_at.elapsed()),
            || async { (node.readyz().await == 200).then_some(()) },
        )
        .await;
    }
    let took = restarted_at.elapsed();
    assert!(
        took <= RECONNECT_BOUND,
        "readiness came back only {took:?} after Redis returned"
    );
}

/// Asserts `GET /healthz` answers 200 and the process still runs.
async fn assert_alive(cluster: &mut Cluster) {
    for i in 0..cluster.nodes().len() {
        let node = cluster.node_mut(i);
        assert!(node.is_running(), "node {} must stay up", node.id());
        let (status, body) = get(&format!("{}/healthz", node.internal_url())).await;
        assert_eq!(status, 200, "healthz of {}: {body}", node.id());
    }
}

/// The next notification on `s`, asserted to be on `topic` with `data`.
async fn expect_published(s: &mut Starling, topic: &str, data: &Value) {
    let n = s.next_notification(CROSS).await;
    assert_eq!(n["notification"]["topic"], topic, "{n}");
    assert_eq!(&n["notification"]["data"], data, "{n}");
}

/// Calls `method` on `caller` and serves it on `provider`; asserts the answer arrives.
async fn rpc_round_trip(caller: &mut Starling, provider: &mut Starling, method: &str, n: u64) {
    let caller_id = caller.send_request(method, json!({ "n": n })).await;
    let served = provider
        .try_next_matching(CROSS, |m| m["type"] == "request")
        .await;
    let Some(req) = served else {
        let resp = caller.wait_response(&caller_id, CROSS).await;
        panic!("{method} did not reach its provider; the caller got {resp}");
    };
    assert_eq!(req["method"], method, "{req}");
    assert_eq!(req["payload"], json!({ "n": n }), "{req}");
    let id = req["requestId"].as_str().unwrap().to_string();
    provider.respond_ok(&id, json!({ "twice": n * 2 })).await;
    let resp = caller.wait_response(&caller_id, CROSS).await;
    assert_eq!(assert_success(&resp, &caller_id), json!({ "twice": n * 2 }));
}

/// Two nodes; Redis dies: both turn unready within 5 s and stay up; on node 1 pub/sub and
/// RPC between two Starlings keep working, and a Starling connecting during the outage
/// can subscribe and receive; bus errors are counted. Redis returns: both are ready
/// within 10 s and a subscription made on node 2 before the outage receives node 1's
/// publications again.
#[actix_rt::test]
async fn redis_outage_keeps_same_node_traffic_and_replays_subscriptions() {
    let mut cluster = Cluster::start(2).await;
    let mut remote = Starling::connect(cluster.node(1), "remote").await;
    subscribe(&mut remote, "pre").await;
    let mut a = Starling::connect(cluster.node(0), "a").await;
    let mut b = Starling::connect(cluster.node(0), "b").await;
    subscribe(&mut a, "local").await;
    api_publish(cluster.node(0), "pre", json!({ "n": 0 })).await;
    expect_published(&mut remote, "pre", &json!({ "n": 0 })).await;

    stop_redis_and_wait_unready(&mut cluster).await;

    // Same-node pub/sub through the outage.
    call_ok(
        &mut b,
        "broker:publish",
        json!({ "channel": "local", "data": { "during": 1 } }),
    )
    .await;
    expect_published(&mut a, "local", &json!({ "during": 1 })).await;

    // Same-node RPC through the outage (provided while Redis is away).
    provide(&mut a, "calc").await;
    rpc_round_trip(&mut b, &mut a, "calc:double", 21).await;

    // A held publication needs the store: with Redis away it is refused as
    // UNAVAILABLE (nothing held), not as a validation error or a rate limit.
    let (id, mut held) = murmur_tests::helios::request(
        "broker:publish",
        json!({ "channel": "local", "data": { "held": 1 } }),
    );
    held["~timing"] = json!({ "delay_milli": 500 });
    b.ws().send_json(&held).await;
    let resp = b.wait_response(&id, CROSS).await;
    assert_eq!(resp["type"], "response", "{resp}");
    assert_eq!(resp["success"], false, "{resp}");
    assert_eq!(resp["error"]["code"], "UNAVAILABLE", "{resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("temporarily unavailable: store "),
        "{resp}"
    );

    // A Starling connecting during the outage subscribes and receives.
    let mut late = Starling::connect(cluster.node(0), "late").await;
    let id = late
        .send_request("broker:subscribe", json!({ "channel": "fresh" }))
        .await;
    let resp = late.wait_response(&id, CROSS).await;
    assert_success(&resp, &id);
    call_ok(
        &mut a,
        "broker:publish",
        json!({ "channel": "fresh", "data": { "during": 2 } }),
    )
    .await;
    expect_published(&mut late, "fresh", &json!({ "during": 2 })).await;

    assert_alive(&mut cluster).await;
    for node in cluster.nodes() {
        let errors = bus_errors(node).await;
        assert!(
            errors > 0.0,
            "murmur_bus_errors_total of {} must count the outage (got {errors})",
            node.id()
        );
    }

    start_redis_and_wait_ready(&mut cluster).await;

    // The subscription made on node 2 before the outage was replayed.
    api_publish(cluster.node(0), "pre", json!({ "n": 1 })).await;
    expect_published(&mut remote, "pre", &json!({ "n": 1 })).await;
    call_ok(
        &mut b,
        "broker:publish",
        json!({ "channel": "pre", "data": { "n": 2 } }),
    )
    .await;
    expect_published(&mut remote, "pre", &json!({ "n": 2 })).await;

    // Node 1's own channels work through the bus again.
    call_ok(
        &mut b,
        "broker:publish",
        json!({ "channel": "local", "data": { "after": 1 } }),
    )
    .await;
    expect_published(&mut a, "local", &json!({ "after": 1 })).await;
    api_publish(cluster.node(1), "fresh", json!({ "after": 2 })).await;
    expect_published(&mut late, "fresh", &json!({ "after": 2 })).await;
    assert_alive(&mut cluster).await;
}

/// While Redis is away, 5000 publications through node 1's API: the API keeps answering,
/// node 1 stays healthy, every refused publication is counted as a bus error; after Redis
/// returns, a subscriber on node 2 gets none of them (nothing was buffered) and a fresh
/// publication arrives normally.
#[actix_rt::test]
async fn no_unbounded_buffering_while_redis_is_away() {
    let mut cluster = Cluster::start(2).await;
    let channel = "flood";
    let mut sub = Starling::connect(cluster.node(1), "sub").await;
    subscribe(&mut sub, channel).await;
    api_publish(cluster.node(0), channel, json!({ "n": "before" })).await;
    expect_published(&mut sub, channel, &json!({ "n": "before" })).await;

    stop_redis_and_wait_unready(&mut cluster).await;
    let errors_before = bus_errors(cluster.node(0)).await;

    let node = cluster.node(0);
    let mut answered = 0usize;
    for batch in 0..OUTAGE_PUBLISHES / 50 {
        let replies = join_all((0..50).map(|i| {
            api_post(
                node,
                "/api/v1/publish",
                json!({ "channel": channel, "data": { "stale": batch * 50 + i } }),
            )
        }))
        .await;
        for (status, body) in replies {
            assert!(
                status == 200 || status == 503,
                "publish during the outage: the API must answer (accepted locally or \
                 refused), got {status}: {body}"
            );
            answered += 1;
        }
    }
    assert_eq!(answered, OUTAGE_PUBLISHES);
    assert_alive(&mut cluster).await;
    let errors_after = bus_errors(cluster.node(0)).await;
    assert!(
        errors_after - errors_before >= OUTAGE_PUBLISHES as f64,
        "every publication refused by the bus must be counted: murmur_bus_errors_total \
         grew by {} for {OUTAGE_PUBLISHES} publications",
        errors_after - errors_before
    );

    start_redis_and_wait_ready(&mut cluster).await;

    api_publish(cluster.node(0), channel, json!({ "n": "fresh" })).await;
    let n = sub.next_notification(CROSS).await;
    assert_eq!(
        n["notification"]["data"],
        json!({ "n": "fresh" }),
        "the first publication after the outage must be the fresh one, not a stale one \
         buffered while Redis was away: {n}"
    );
    sub.expect_no_notification("nothing from the outage may arrive later")
        .await;
    assert_alive(&mut cluster).await;
}

/// Calls `method` from `caller` until `provider` serves it (then asserts the answer
/// reaches the caller), within [`RECONNECT_BOUND`]; until then the call may only be
/// METHOD_NOT_FOUND (a node may need a heartbeat to re-announce what it serves).
async fn wait_route_restored(caller: &mut Starling, provider: &mut Starling, method: &str) {
    within(
        &format!("{method} (provider on node 1) to be reachable from node 2 again"),
        RECONNECT_BOUND,
        async {
            loop {
                let (id, msg) = request_with_timeout(method, json!({ "n": 5 }), 3000);
                caller.ws().send_json(&msg).await;
                let served = provider
                    .try_next_matching(Duration::from_millis(500), |m| m["type"] == "request")
                    .await;
                let Some(req) = served else {
                    let resp = caller.wait_response(&id, CROSS).await;
                    assert_eq!(
                        resp["error"]["code"], "METHOD_NOT_FOUND",
                        "unexpected answer while the route is being restored: {resp}"
                    );
                    continue;
                };
                assert_eq!(req["method"], method, "{req}");
                let req_id = req["requestId"].as_str().unwrap().to_string();
                provider.respond_ok(&req_id, json!({ "twice": 10 })).await;
                let resp = caller.wait_response(&id, CROSS).await;
                assert_eq!(assert_success(&resp, &id), json!({ "twice": 10 }));
                return;
            }
        },
    )
    .await;
}

/// Providers on node 1 serve callers on node 2 again once Redis is back (restarted
/// empty), within 10 s of both nodes reporting ready: one registered during the outage,
/// and one registered before it (which worked across nodes before the outage).
#[actix_rt::test]
async fn providers_are_reachable_across_nodes_after_redis_returns() {
    let mut cluster = Cluster::start(2).await;
    let mut before = Starling::connect(cluster.node(0), "provider-before").await;
    let mut during = Starling::connect(cluster.node(0), "provider-during").await;
    let mut caller = Starling::connect(cluster.node(1), "caller").await;
    provide(&mut before, "pre").await;
    rpc_round_trip(&mut caller, &mut before, "pre:double", 1).await;

    stop_redis_and_wait_unready(&mut cluster).await;
    provide(&mut during, "mid").await;
    start_redis_and_wait_ready(&mut cluster).await;

    wait_route_restored(&mut caller, &mut during, "mid:double").await;
    wait_route_restored(&mut caller, &mut before, "pre:double").await;
}

/// The backend on node 2 reaches a Starling of node 1 again once Redis is back
/// (restarted empty), within 10 s of both nodes reporting ready, as it did before the
/// outage.
#[actix_rt::test]
async fn backend_reaches_starlings_across_nodes_after_redis_returns() {
    let mut cluster = Cluster::start(2).await;
    let mut target = Starling::connect(cluster.node(0), "target").await;
    let (_, target_id) = recovery_token(&mut target).await;
    let path = format!("/api/v1/starlings/{target_id}/requests");
    let body = json!({ "method": "client:hello", "payload": {}, "timeoutMs": 3000 });

    let http = api_post(cluster.node(1), &path, body.clone());
    let answer = async {
        let req = target.next_request().await;
        let id = req["requestId"].as_str().unwrap().to_string();
        target.respond_ok(&id, json!("before")).await;
    };
    let ((status, reply), ()) = tokio::join!(http, answer);
    assert_eq!(status, 200, "before the outage: {reply}");
    assert_eq!(reply["data"], "before", "{reply}");

    stop_redis_and_wait_unready(&mut cluster).await;
    start_redis_and_wait_ready(&mut cluster).await;

    within(
        "the backend on node 2 to reach the Starling of node 1 again",
        RECONNECT_BOUND,
        async {
            loop {
                let http = api_post(cluster.node(1), &path, body.clone());
                let answer = async {
                    let req = target
                        .try_next_matching(Duration::from_millis(500), |m| m["type"] == "request")
                        .await;
                    if let Some(req) = req {
                        let id = req["requestId"].as_str().unwrap().to_string();
                        target.respond_ok(&id, json!("after")).await;
                    }
                };
                let ((status, reply), ()) = tokio::join!(http, answer);
                if status == 200 {
                    assert_eq!(reply["data"], "after", "{reply}");
                    return;
                }
                assert_eq!(status, 404, "while the route is being restored: {reply}");
            }
        },
    )
    .await;
    let (id, resp) = call(&mut target, "system:ping", json!({})).await;
    assert!(is_response_to(&resp, &id), "{resp}");
}
