//! Operations (CONTRACT §1, §9): `/healthz`, `/readyz`, `/metrics` with `murmur_`
//! families and `protocol="helios"` labels, SIGTERM drain, and the `murmur` CLI
//! (`token`, `serve` without a secret, `--help`).

mod common;

use std::time::Duration;

use common::{api_publish, expect_notification, ping, subscribe, uniq, SOON};
use murmur_tests::{
    decode_hs256, eventually, get, metric_value, metrics, murmur_command, Node, NodeBuilder,
    Starling, JWT_SECRET,
};
use serde_json::json;
use tokio::time::Instant;

/// `/healthz` and `/readyz` answer 200 on a running node.
#[actix_rt::test]
async fn health_and_readiness_are_200() {
    let node = Node::start().await;
    let (status, body) = get(&format!("{}/healthz", node.internal_url())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&format!("{}/readyz", node.internal_url())).await;
    assert_eq!(status, 200, "{body}");
}

/// After Helios traffic, `/metrics` is Prometheus text where every family is prefixed
/// `murmur_`, with `protocol="helios"` series for connections, messages in/out and
/// deliveries; the connection gauge follows connects and disconnects.
#[actix_rt::test]
async fn metrics_count_helios_traffic() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let channel = uniq("m-");
    subscribe(&mut s, &channel).await;
    api_publish(&node, &channel, json!("hi")).await;
    expect_notification(&mut s, &channel).await;
    ping(&mut s).await;

    let text = metrics(&node).await;
    let helios = [("protocol", "helios")];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        assert!(
            name.starts_with("murmur_"),
            "family without murmur_ prefix: {line}"
        );
    }
    assert_eq!(
        metric_value(&text, "murmur_connections", &helios),
        Some(1.0),
        "{text}"
    );
    let messages_in = metric_value(&text, "murmur_messages_in_total", &helios);
    assert!(
        messages_in.is_some_and(|v| v >= 2.0),
        "messages in: {messages_in:?}"
    );
    let messages_out = metric_value(&text, "murmur_messages_out_total", &helios);
    assert!(
        messages_out.is_some_and(|v| v >= 3.0),
        "messages out: {messages_out:?}"
    );
    let delivered = metric_value(&text, "murmur_deliveries_total", &helios);
    assert!(
        delivered.is_some_and(|v| v >= 1.0),
        "deliveries: {delivered:?}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("# TYPE murmur_") && l.ends_with(" histogram")),
        "a delivery latency histogram is exported:\n{text}"
    );

    let mut other = Starling::connect(&node, "bob").await;
    ping(&mut other).await;
    let text = metrics(&node).await;
    assert_eq!(
        metric_value(&text, "murmur_connections", &helios),
        Some(2.0)
    );
    s.close().await;
    other.close().await;
    common::wait_connections(&node, 0.0).await;
}

/// SIGTERM with `MURMUR_DRAIN_DELAY=200ms`: `/readyz` turns 503, after the delay the
/// Starling is closed with 1001, and the process exits 0 within the drain timeout.
#[actix_rt::test]
async fn sigterm_drains_and_exits() {
    let mut node = NodeBuilder::new()
        .env("MURMUR_DRAIN_DELAY", "200ms")
        .env("MURMUR_DRAIN_TIMEOUT", "5s")
        .spawn()
        .await;
    let mut s = Starling::connect(&node, "alice").await;
    ping(&mut s).await;

    let start = Instant::now();
    node.terminate();
    eventually("/readyz to answer 503 while draining", SOON, || {
        let node = &node;
        async move { (node.readyz().await == 503).then_some(()) }
    })
    .await;
    let close = s.ws().expect_close_within(Duration::from_secs(5)).await;
    let closed_after = start.elapsed();
    assert_eq!(close.as_ref().map(|c| c.0), Some(1001), "{close:?}");
    assert!(
        closed_after >= Duration::from_millis(150),
        "clients must be told to leave only after the drain delay ({closed_after:?})"
    );
    let status = node
        .wait_exit(Duration::from_secs(6))
        .await
        .unwrap_or_else(|| panic!("still running 6 s after SIGTERM (drain timeout 5 s)"));
    assert!(status.success(), "exit status after drain: {status}");
    assert!(start.elapsed() < Duration::from_secs(6));
}

/// `murmur token --user bob` (with `MURMUR_JWT_SECRET`) prints an HS256 token for `bob`
/// that a node with the same secret accepts; `--ttl` sets its lifetime.
#[actix_rt::test]
async fn cli_token_is_accepted_by_the_node() {
    let out = murmur_command()
        .args(["token", "--user", "bob"])
        .env("MURMUR_JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let claims = decode_hs256(&token, JWT_SECRET).unwrap_or_else(|e| panic!("{e}: {token}"));
    assert_eq!(claims["sub"], "bob");
    let now = murmur_tests::tokens::now_secs();
    let exp = claims["exp"].as_i64().unwrap();
    assert!((exp - now - 3600).abs() <= 10, "default ttl 1h: {claims}");

    let node = Node::start().await;
    let url = node.ws_url(&format!("/starling?token={token}"));
    let mut s = Starling::connect_url(&url).await;
    ping(&mut s).await;

    let out = murmur_command()
        .args(["token", "--user", "carol", "--ttl", "2m"])
        .env("MURMUR_JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let claims = decode_hs256(&token, JWT_SECRET).unwrap();
    assert_eq!(claims["sub"], "carol");
    let exp = claims["exp"].as_i64().unwrap();
    assert!((exp - now - 120).abs() <= 10, "ttl 2m: {claims}");
}

/// `murmur token` without a secret and without `MURMUR_DEV` fails (non-zero, no token).
#[actix_rt::test]
async fn cli_token_without_secret_fails() {
    let out = murmur_command()
        .args(["token", "--user", "bob"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "no token may be printed: {out:?}"
    );
}

/// `MURMUR_DEV=1`: `murmur token` and `murmur serve` both use the development secret,
/// so a dev token opens a Starling on a dev node.
#[actix_rt::test]
async fn cli_dev_mode_tokens_work_on_a_dev_node() {
    let out = murmur_command()
        .args(["token", "--user", "dev-user"])
        .env("MURMUR_DEV", "1")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let node = NodeBuilder::new()
        .env_remove("MURMUR_JWT_SECRET")
        .env("MURMUR_DEV", "1")
        .spawn()
        .await;
    let mut s = Starling::connect_url(&node.ws_url(&format!("/starling?token={token}"))).await;
    ping(&mut s).await;
    // The test suite's secret is not the dev secret.
    let foreign = murmur_tests::token("dev-user");
    let refused =
        murmur_tests::WsClient::connect(&node.ws_url(&format!("/starling?token={foreign}")))
            .await
            .err()
            .map(|e| e.0);
    assert_eq!(refused, Some(401));
}

/// `murmur serve` without a JWT secret (and without dev mode) exits non-zero with a
/// message naming `MURMUR_JWT_SECRET`.
#[actix_rt::test]
async fn serve_without_jwt_secret_fails() {
    let mut node = NodeBuilder::new()
        .env_remove("MURMUR_JWT_SECRET")
        .spawn_unready();
    let status = node
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("murmur serve without a secret keeps running"));
    assert!(!status.success(), "{status}");
    let log = node.log_contents();
    assert!(log.contains("MURMUR_JWT_SECRET"), "{log}");
}

/// `murmur --help` lists the `serve` and `token` commands; `murmur serve --help`
/// documents every configuration variable of the contract.
#[actix_rt::test]
async fn help_documents_commands_and_variables() {
    let out = murmur_command().arg("--help").output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve"), "{help}");
    assert!(help.contains("token"), "{help}");

    let out = murmur_command()
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "MURMUR_LISTEN",
        "MURMUR_INTERNAL_LISTEN",
        "MURMUR_SINK_LISTEN",
        "MURMUR_SINK_TLS_CERT",
        "MURMUR_SINK_TLS_KEY",
        "MURMUR_SINK_TLS_CLIENT_CA",
        "MURMUR_REDIS_URL",
        "MURMUR_NODE_ID",
        "MURMUR_JWT_SECRET",
        "MURMUR_JWT_PUBLIC_KEY",
        "MURMUR_RECOVERY_SECRET",
        "MURMUR_API_KEY",
        "MURMUR_DEV",
        "MURMUR_DRAIN_DELAY",
        "MURMUR_DRAIN_TIMEOUT",
        "MURMUR_SINK_MIN_APP_VERSION",
        "MURMUR_TIMESTICK_IDLE",
        "MURMUR_LOG",
        "MURMUR_LOG_FORMAT",
    ] {
        assert!(
            help.contains(var),
            "serve --help must document {var}:\n{help}"
        );
    }
}
