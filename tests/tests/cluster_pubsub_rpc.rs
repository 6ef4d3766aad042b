//! Cluster mode (MURMUR_REDIS_URL set): three nodes on one Redis behave as one broker.
//!
//! * `GET /api/v1/nodes` on any node lists every live node with its session count.
//! * Helios-Starling pub/sub reaches subscribers on every node, in publication order.
//! * RPC `ns:action` reaches a provider on another node; its answer (success or error),
//!   a timeout, a cancellation and the provider's disconnect all reach the caller.
//! * The backend's `POST /api/v1/starlings/<id>/requests` works whichever node gets it.
//! * Once `broker:provide` is acknowledged, callers on every node reach the provider.
//!
//! CONTRACT §4, §8; ARCHITECTURE "any node can serve any request".

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    api_publish, assert_error_response, assert_success, call, call_ok, ping, provide,
    recovery_token, request_with_timeout, subscribe, uniq,
};
use murmur_tests::helios::is_response_to;
use murmur_tests::CROSS;
use murmur_tests::{api_get, api_post, eventually, Cluster, Node, Starling};
use serde_json::{json, Value};
use tokio::time::Instant;

/// `GET /api/v1/nodes` on `node`: node id → the entry's `sessions` (total).
async fn listed_nodes(node: &Node) -> BTreeMap<String, u64> {
    let (status, body) = api_get(node, "/api/v1/nodes").await;
    assert_eq!(status, 200, "GET /api/v1/nodes on {}: {body}", node.id());
    let entries = body["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("/api/v1/nodes must answer {{\"nodes\": [...]}}: {body}"));
    entries
        .iter()
        .map(|e| {
            let id = e["id"]
                .as_str()
                .unwrap_or_else(|| panic!("node entry without a string id: {e}"));
            let sessions = e["sessions"]
                .as_u64()
                .unwrap_or_else(|| panic!("node entry without a numeric session count: {e}"));
            (id.to_string(), sessions)
        })
        .collect()
}

/// The request a call from `caller` (`caller_id`) produced at `provider`, asserted to be
/// `method` with `payload`; its requestId there. If it never arrives, panics with what the
/// caller got instead.
async fn served_by(
    provider: &mut Starling,
    caller: &mut Starling,
    caller_id: &str,
    method: &str,
    payload: &Value,
) -> String {
    let served = provider
        .try_next_matching(CROSS, |m| m["type"] == "request")
        .await;
    let Some(req) = served else {
        let resp = caller.wait_response(caller_id, CROSS).await;
        panic!("{method} did not reach its provider; the caller got {resp}");
    };
    assert_eq!(req["method"], method, "{req}");
    assert_eq!(&req["payload"], payload, "{req}");
    req["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("server request without requestId: {req}"))
        .to_string()
}

/// Every node lists all three node ids; two Starlings on node 1 show up as node 1's
/// session count (seen from every node), the others count none.
#[actix_rt::test]
async fn nodes_endpoint_lists_every_node_with_session_counts() {
    let cluster = Cluster::start(3).await;
    let n1 = cluster.node(0).id().to_string();

    for node in cluster.nodes() {
        let want: Vec<String> = cluster.nodes().iter().map(|n| n.id().to_string()).collect();
        eventually(
            &format!("/api/v1/nodes on {} to list all three nodes", node.id()),
            CROSS,
            || async {
                let listed = listed_nodes(node).await;
                let ids: Vec<String> = listed.keys().cloned().collect();
                let mut want = want.clone();
                want.sort();
                (ids == want).then_some(())
            },
        )
        .await;
    }

    let _a = Starling::connect(cluster.node(0), "alice").await;
    let _b = Starling::connect(cluster.node(0), "bob").await;

    for node in cluster.nodes() {
        let listed = eventually(
            &format!("{} to report 2 sessions on node 1 ({n1})", node.id()),
            CROSS,
            || async {
                let listed = listed_nodes(node).await;
                (listed.get(&n1) == Some(&2)).then_some(listed)
            },
        )
        .await;
        assert_eq!(listed.len(), 3, "{listed:?}");
        for other in &cluster.nodes()[1..] {
            assert_eq!(
                listed.get(other.id()),
                Some(&0),
                "node {} has no sessions: {listed:?}",
                other.id()
            );
        }
    }
}

/// Subscribers on all three nodes get a Starling's `broker:publish` (node 2) and a
/// backend publish (node 3); 50 publications from one publisher arrive in order on
/// another node; unsubscribing on node 3 stops delivery there only.
#[actix_rt::test]
async fn pubsub_reaches_subscribers_on_every_node_in_order() {
    let cluster = Cluster::start(3).await;
    let channel = "c";
    let mut subs = Vec::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        let mut s = Starling::connect(node, &format!("sub{i}")).await;
        subscribe(&mut s, channel).await;
        subs.push(s);
    }
    let mut publisher = Starling::connect(cluster.node(1), "publisher").await;

    // A Starling's broker:publish on node 2.
    let data = call_ok(
        &mut publisher,
        "broker:publish",
        json!({ "channel": channel, "data": { "from": "starling" } }),
    )
    .await;
    assert_eq!(data["channel"], channel, "{data}");
    for s in &mut subs {
        let n = s.next_notification(CROSS).await;
        assert_eq!(n["notification"]["topic"], channel, "{n}");
        assert_eq!(
            n["notification"]["data"],
            json!({ "from": "starling" }),
            "{n}"
        );
    }

    // The backend's publish on node 3.
    api_publish(cluster.node(2), channel, json!({ "from": "api" })).await;
    for s in &mut subs {
        let n = s.next_notification(CROSS).await;
        assert_eq!(n["notification"]["topic"], channel, "{n}");
        assert_eq!(n["notification"]["data"], json!({ "from": "api" }), "{n}");
    }

    // 50 publications from one publisher (node 2), in order at node 1 (and everywhere).
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = publisher
            .send_request(
                "broker:publish",
                json!({ "channel": channel, "data": { "n": i } }),
            )
            .await;
        ids.push(id);
    }
    for id in &ids {
        let resp = publisher.wait_response(id, CROSS).await;
        assert_success(&resp, id);
    }
    for s in &mut subs {
        let got: Vec<Value> = {
            let mut got = Vec::new();
            for _ in 0..50 {
                let n = s.next_notification(CROSS).await;
                assert_eq!(n["notification"]["topic"], channel, "{n}");
                got.push(n["notification"]["data"]["n"].clone());
            }
            got
        };
        let want: Vec<Value> = (0..50).map(|i| json!(i)).collect();
        assert_eq!(got, want, "publications must arrive in publication order");
    }

    // Unsubscribe on node 3: nodes 1 and 2 still get publications, node 3 does not.
    let data = call_ok(
        &mut subs[2],
        "broker:unsubscribe",
        json!({ "channel": channel }),
    )
    .await;
    assert_eq!(data["subscribed"], false, "{data}");
    api_publish(cluster.node(0), channel, json!({ "after": "unsubscribe" })).await;
    for s in &mut subs[..2] {
        let n = s.next_notification(CROSS).await;
        assert_eq!(
            n["notification"]["data"],
            json!({ "after": "unsubscribe" }),
            "{n}"
        );
    }
    subs[2]
        .expect_no_notification("node 3 unsubscribed: nothing may arrive there")
        .await;
    ping(&mut subs[2]).await;
}

/// A provider on node 1, a caller on node 3: success and error answers return under the
/// caller's requestId; `timeoutMs` gives REQUEST_TIMEOUT; `system:cancel` gives
/// REQUEST_CANCELLED (a late answer is not delivered); the provider disconnecting with a
/// call in flight gives REQUEST_CANCELLED at once.
#[actix_rt::test]
async fn rpc_reaches_a_provider_on_another_node() {
    let cluster = Cluster::start(3).await;
    let mut p = Starling::connect(cluster.node(0), "provider").await;
    let mut c = Starling::connect(cluster.node(2), "caller").await;
    provide(&mut p, "math").await;

    // Success.
    let caller_id = c.send_request("math:add", json!({ "a": 2, "b": 3 })).await;
    let provider_id = served_by(
        &mut p,
        &mut c,
        &caller_id,
        "math:add",
        &json!({ "a": 2, "b": 3 }),
    )
    .await;
    p.respond_ok(&provider_id, json!({ "sum": 5 })).await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    assert_eq!(assert_success(&resp, &caller_id), json!({ "sum": 5 }));

    // The provider's error answer propagates with its code and message.
    let caller_id = c.send_request("math:div", json!({ "a": 1, "b": 0 })).await;
    let provider_id = served_by(
        &mut p,
        &mut c,
        &caller_id,
        "math:div",
        &json!({ "a": 1, "b": 0 }),
    )
    .await;
    p.respond_err(&provider_id, "DIVISION_BY_ZERO", "cannot divide by zero")
        .await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    let error = assert_error_response(&resp, &caller_id, "DIVISION_BY_ZERO");
    assert_eq!(error["message"], "cannot divide by zero", "{resp}");

    // timeoutMs across nodes: REQUEST_TIMEOUT after ~400 ms; the late answer is dropped.
    let (caller_id, msg) = request_with_timeout("math:slow", json!({}), 400);
    let start = Instant::now();
    c.ws().send_json(&msg).await;
    let provider_id = served_by(&mut p, &mut c, &caller_id, "math:slow", &json!({})).await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    let elapsed = start.elapsed();
    assert_error_response(&resp, &caller_id, "REQUEST_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(350),
        "REQUEST_TIMEOUT after {elapsed:?}, before the 400 ms timeoutMs"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "REQUEST_TIMEOUT only after {elapsed:?} for timeoutMs 400"
    );
    p.respond_ok(&provider_id, json!("too late")).await;
    ping(&mut p).await;

    // system:cancel across nodes.
    let (caller_id, msg) = request_with_timeout("math:long", json!({}), 20_000);
    c.ws().send_json(&msg).await;
    let provider_id = served_by(&mut p, &mut c, &caller_id, "math:long", &json!({})).await;
    let cancel_id = c
        .send_request("system:cancel", json!({ "requestId": caller_id }))
        .await;
    let cancel = c.wait_response(&cancel_id, CROSS).await;
    assert_eq!(
        assert_success(&cancel, &cancel_id)["cancelled"],
        true,
        "{cancel}"
    );
    let resp = c.wait_response(&caller_id, CROSS).await;
    assert_error_response(&resp, &caller_id, "REQUEST_CANCELLED");
    p.respond_ok(&provider_id, json!("after cancel")).await;
    ping(&mut p).await;

    // Late answers (timed out, cancelled) never reach the caller.
    c.expect_none("late answers must not be delivered", |m| {
        m["type"] == "response"
    })
    .await;

    // The provider disconnects with a call in flight: REQUEST_CANCELLED at once.
    let (caller_id, msg) = request_with_timeout("math:work", json!({ "job": 1 }), 20_000);
    c.ws().send_json(&msg).await;
    served_by(
        &mut p,
        &mut c,
        &caller_id,
        "math:work",
        &json!({ "job": 1 }),
    )
    .await;
    let start = Instant::now();
    p.close().await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    let elapsed = start.elapsed();
    assert_error_response(&resp, &caller_id, "REQUEST_CANCELLED");
    assert!(
        elapsed < Duration::from_secs(3),
        "REQUEST_CANCELLED only after {elapsed:?}"
    );
    c.expect_none("exactly one answer per request", |m| {
        is_response_to(m, &caller_id)
    })
    .await;
}

/// No provider anywhere is METHOD_NOT_FOUND; a provider appearing on node 2 serves a
/// caller on node 3; `broker:unprovide` there removes the route for the caller.
#[actix_rt::test]
async fn rpc_provider_lookup_spans_the_cluster() {
    let cluster = Cluster::start(3).await;
    let ns = uniq("svc");
    let mut c = Starling::connect(cluster.node(2), "caller").await;
    let (id, resp) = call(&mut c, &format!("{ns}:x"), json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");

    let mut p = Starling::connect(cluster.node(1), "provider").await;
    provide(&mut p, &ns).await;
    let method = format!("{ns}:echo");
    let caller_id = c.send_request(&method, json!("hi")).await;
    let provider_id = served_by(&mut p, &mut c, &caller_id, &method, &json!("hi")).await;
    p.respond_ok(&provider_id, json!("hi back")).await;
    let resp = c.wait_response(&caller_id, CROSS).await;
    assert_eq!(assert_success(&resp, &caller_id), json!("hi back"));

    let data = call_ok(&mut p, "broker:unprovide", json!({ "namespace": ns })).await;
    assert_eq!(data["providing"], false, "{data}");
    let (id, resp) = call(&mut c, &method, json!({})).await;
    assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
}

/// A Starling on node 2 answers backend requests sent to node 1's and node 3's API; an
/// unknown starling id is 404.
#[actix_rt::test]
async fn backend_requests_reach_a_starling_on_another_node() {
    let cluster = Cluster::start(3).await;
    let mut s = Starling::connect(cluster.node(1), "target").await;
    let (_, starling_id) = recovery_token(&mut s).await;
    let path = format!("/api/v1/starlings/{starling_id}/requests");

    for (i, api_node) in [cluster.node(0), cluster.node(2)].into_iter().enumerate() {
        let body = json!({
            "method": "client:hello",
            "payload": { "via": api_node.id(), "i": i },
            "timeoutMs": 8000,
        });
        let http = api_post(api_node, &path, body);
        let answer = async {
            let req = s.next_request().await;
            assert_eq!(req["method"], "client:hello", "{req}");
            assert_eq!(
                req["payload"],
                json!({ "via": api_node.id(), "i": i }),
                "{req}"
            );
            let id = req["requestId"].as_str().unwrap().to_string();
            s.respond_ok(&id, json!({ "hello": i })).await;
        };
        let ((status, body), ()) = tokio::join!(http, answer);
        assert_eq!(status, 200, "request via {}: {body}", api_node.id());
        assert_eq!(body["success"], true, "{body}");
        assert_eq!(body["data"], json!({ "hello": i }), "{body}");
    }

    let unknown = uuid::Uuid::new_v4();
    for node in cluster.nodes() {
        let (status, body) = api_post(
            node,
            &format!("/api/v1/starlings/{unknown}/requests"),
            json!({ "method": "client:hello", "payload": {}, "timeoutMs": 2000 }),
        )
        .await;
        assert_eq!(status, 404, "unknown starling via {}: {body}", node.id());
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    ping(&mut s).await;
    s.expect_none("requests for an unknown id must not reach anybody", |m| {
        m["type"] == "request"
    })
    .await;
}

/// Once `broker:provide` has answered, the namespace is routable from every node: a call
/// from node 3 sent right after the acknowledgement reaches the provider on node 1, not
/// METHOD_NOT_FOUND. Checked with Redis answering promptly, and with Redis slow to accept
/// writes (`CLIENT PAUSE 1000 WRITE`: the registration takes a second to land, so the
/// acknowledgement must wait for it).
#[actix_rt::test]
async fn provide_is_routable_cluster_wide_once_acknowledged() {
    let cluster = Cluster::start(3).await;
    let mut p = Starling::connect(cluster.node(0), "provider").await;
    let mut c = Starling::connect(cluster.node(2), "caller").await;
    for round in 0..6 {
        let slow_redis = round % 2 == 1;
        if slow_redis {
            let paused = cluster
                .redis()
                .cmd(&["CLIENT", "PAUSE", "1000", "WRITE"])
                .await;
            assert_eq!(paused.as_str().as_deref(), Some("OK"), "{paused:?}");
        }
        let ns = uniq("fresh");
        let id = p
            .send_request("broker:provide", json!({ "namespace": ns }))
            .await;
        let ack = p.wait_response(&id, CROSS).await;
        assert_success(&ack, &id);
        let method = format!("{ns}:now");
        let caller_id = c.send_request(&method, json!({ "round": round })).await;
        let served = p.try_next_matching(CROSS, |m| m["type"] == "request").await;
        let Some(req) = served else {
            let resp = c.wait_response(&caller_id, CROSS).await;
            panic!(
                "round {round} (slow Redis writes: {slow_redis}): a call from node 3 sent \
                 after broker:provide on node 1 was acknowledged did not reach the provider; \
                 the caller got {resp}"
            );
        };
        assert_eq!(req["method"], method.as_str(), "{req}");
        let req_id = req["requestId"].as_str().unwrap().to_string();
        p.respond_ok(&req_id, json!(round)).await;
        let resp = c.wait_response(&caller_id, CROSS).await;
        assert_eq!(assert_success(&resp, &caller_id), json!(round));
    }
}
