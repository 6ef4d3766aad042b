//! The Sink handshake (CONTRACT §6, ORIGINS.md Sink): the six response codes over TCP,
//! the instance-id decision table row by row, the order of the checks (protocol version,
//! quarantine, application version, instance ids), the semver minimum, one server
//! instance id per deployment, and one connection per client id (takeover).

mod sink_common;

use murmur_tests::{Node, NodeBuilder};
use sink_common::*;

async fn min_app_node(min: &str) -> Node {
    dev(NodeBuilder::new())
        .env("MURMUR_SINK_MIN_APP_VERSION", min)
        .spawn()
        .await
}

/// Codes 0–5, each over development plaintext TCP.
#[actix_rt::test]
async fn all_six_response_codes_over_tcp() {
    let node = min_app_node("2.0.0").await;
    let addr = node.sink_addr();
    let app = "v2.1.0";

    // 1 hello_new_client with the server's instance id.
    let c = rand_u32();
    let mut d = Device::tcp(addr).await;
    let s = match d.hello(app, c, None).await {
        ConnectionResponse::HelloNewClient(s) => s,
        other => panic!("code 1 expected, got {other:?}"),
    };
    d.ping().await;
    d.close().await;

    // 0 connected.
    let mut d = Device::tcp(addr).await;
    assert_eq!(
        d.hello(app, c, Some(s)).await,
        ConnectionResponse::Connected
    );
    d.ping().await;

    // 2 instance_id_mismatch (a new client claiming a server id), then closed.
    let mut m = Device::tcp(addr).await;
    assert_eq!(
        m.hello(app, rand_u32(), Some(s)).await,
        ConnectionResponse::InstanceIdMismatch
    );
    m.expect_closed(SOON).await;

    // 3 quarantined with the stored machine and human messages, then closed.
    let q = rand_u32();
    quarantine(&node, &dev_id(q), &[0x04, 0x03], "firmware recalled").await;
    let mut qd = Device::tcp(addr).await;
    assert_eq!(
        qd.hello(app, q, None).await,
        ConnectionResponse::Quarantined {
            machine: vec![0x04, 0x03],
            human: "firmware recalled".into()
        }
    );
    qd.expect_closed(SOON).await;

    // 4 unsupported protocol version (low nibble 1), then closed.
    let mut v1 = Device::tcp(addr).await;
    let mut frame = encode(&request(app, rand_u32(), None));
    frame[0] = 0x01;
    v1.send_bytes(&frame).await;
    assert_eq!(
        v1.recv().await,
        Frame::ConnectionResponse(ConnectionResponse::UnsupportedProtocolVersion)
    );
    v1.expect_closed(SOON).await;

    // 5 unsupported application version, then closed.
    let mut old = Device::tcp(addr).await;
    assert_eq!(
        old.hello("v1.0.0", rand_u32(), None).await,
        ConnectionResponse::UnsupportedApplicationVersion
    );
    old.expect_closed(SOON).await;

    // The accepted device was not disturbed by any of it.
    d.ping().await;
}

/// Protocol versions 1–15 are all answered with code 4, whatever follows the first byte.
#[actix_rt::test]
async fn every_other_protocol_version_gets_code_4() {
    let node = dev_node().await;
    for version in 1u8..=15 {
        let mut d = Device::tcp(node.sink_addr()).await;
        d.send_bytes(&[version, 0xde, 0xad]).await;
        assert_eq!(
            to_hex(&d.recv_raw().await),
            "14",
            "protocol version {version}"
        );
        d.expect_closed(SOON).await;
    }
}

/// The instance-id table over development TCP: the rows a `dev-<c>` identity can reach
/// (another `c` is another client there). The full table runs over TLS and WebSocket.
#[actix_rt::test]
async fn the_decision_table_over_development_tcp() {
    let node = dev_node().await;
    let addr = node.sink_addr();
    let c = rand_u32();

    // C=nil, s given → mismatch, nothing recorded.
    let mut d = Device::tcp(addr).await;
    assert_eq!(
        d.hello(APP, c, Some(7)).await,
        ConnectionResponse::InstanceIdMismatch
    );
    d.expect_closed(SOON).await;
    // C=nil, s=nil → hello(S).
    let mut d = Device::tcp(addr).await;
    let s = d.hello_new(c).await;
    d.close().await;
    // C=c, s=nil → hello(S) again.
    let mut d = Device::tcp(addr).await;
    assert_eq!(d.hello_new(c).await, s);
    d.close().await;
    // C=c, s=S → connected.
    let mut d = Device::tcp(addr).await;
    d.hello_known(c, s).await;
    d.close().await;
    // C=c, s=S' → mismatch.
    let mut d = Device::tcp(addr).await;
    assert_eq!(
        d.hello(APP, c, Some(s ^ 0x8000_0000)).await,
        ConnectionResponse::InstanceIdMismatch
    );
    d.expect_closed(SOON).await;
}

/// The full table for a fixed identity (WebSocket token `sub`).
#[actix_rt::test]
async fn the_decision_table_row_by_row_over_websocket() {
    let node = dev_node().await;
    let client = uniq("meter-");
    let s = handshake_table("ws", || Device::ws(&node, &client)).await;
    // Another client id gets the same server id.
    let mut other = Device::ws(&node, &uniq("meter-")).await;
    assert_eq!(other.hello_new(rand_u32()).await, s);
}

/// Quarantine is decided before the application version and the instance ids; the
/// protocol version before everything (a request of another version cannot be parsed).
#[actix_rt::test]
async fn quarantine_is_checked_before_the_application_version_and_the_ids() {
    let node = min_app_node("2.0.0").await;
    let client = uniq("meter-");
    let c = rand_u32();
    let mut d = Device::ws(&node, &client).await;
    let s = match d.hello("v3.0.0", c, None).await {
        ConnectionResponse::HelloNewClient(s) => s,
        other => panic!("hello expected, got {other:?}"),
    };
    d.close().await;

    let reply = quarantine(&node, &client, &[0xde, 0xad], "stolen device").await;
    assert_eq!(reply["quarantined"], true, "{reply}");
    assert_eq!(reply["replaced"], false, "{reply}");
    let quarantined = ConnectionResponse::Quarantined {
        machine: vec![0xde, 0xad],
        human: "stolen device".into(),
    };
    // Old application and wrong ids: still code 3, with the messages.
    for (app, cid, sid) in [
        ("v1.0.0", c, Some(s)),
        ("v3.0.0", c.wrapping_add(1), Some(s)),
        ("v1.0.0", c.wrapping_add(1), Some(s.wrapping_add(1))),
        ("v3.0.0", c, Some(s)),
    ] {
        let mut d = Device::ws(&node, &client).await;
        assert_eq!(
            d.hello(app, cid, sid).await,
            quarantined,
            "{app} {cid} {sid:?}"
        );
        d.expect_closed(SOON).await;
    }
    // Protocol version 1 is answered 4 even for a quarantined client.
    let mut d = Device::ws(&node, &client).await;
    d.send_bytes(&[0x01]).await;
    assert_eq!(to_hex(&d.recv_raw().await), "14");
    d.expect_closed(SOON).await;

    // PUT again replaces the messages.
    let reply = quarantine(&node, &client, &[], "").await;
    assert_eq!(reply["replaced"], true, "{reply}");
    let mut d = Device::ws(&node, &client).await;
    assert_eq!(
        d.hello(APP, c, Some(s)).await,
        ConnectionResponse::Quarantined {
            machine: vec![],
            human: String::new()
        }
    );
    d.expect_closed(SOON).await;

    // Lifted: the application version is checked again, then the ids.
    let (status, body) = lift(&node, &client).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quarantined"], false, "{body}");
    let (status, body) = lift(&node, &client).await;
    assert_eq!(status, 404, "lifting twice: {body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    let mut d = Device::ws(&node, &client).await;
    assert_eq!(
        d.hello("v1.0.0", c, Some(s)).await,
        ConnectionResponse::UnsupportedApplicationVersion
    );
    d.expect_closed(SOON).await;
    let mut d = Device::ws(&node, &client).await;
    assert_eq!(
        d.hello("v3.0.0", c, Some(s)).await,
        ConnectionResponse::Connected
    );
    d.ping().await;
}

/// `MURMUR_SINK_MIN_APP_VERSION` compares semver (leading `v` and missing parts allowed).
#[actix_rt::test]
async fn the_minimum_application_version_is_semver() {
    let node = min_app_node("2.0.0").await;
    let cases = [
        ("v1.0.0", false),
        ("1.9.9", false),
        ("2.0.0-beta.1", false),
        ("banana", false),
        ("", false),
        ("v2.1.0", true),
        ("2.0.0", true),
        ("V2.0.1", true),
        ("2", true),
        ("2.1", true),
        ("10.0.0", true),
    ];
    for (app, ok) in cases {
        let mut d = Device::tcp(node.sink_addr()).await;
        let r = d.hello(app, rand_u32(), None).await;
        if ok {
            assert!(
                matches!(r, ConnectionResponse::HelloNewClient(_)),
                "{app:?} must be accepted: {r:?}"
            );
            d.ping().await;
        } else {
            assert_eq!(
                r,
                ConnectionResponse::UnsupportedApplicationVersion,
                "{app:?}"
            );
            d.expect_closed(SOON).await;
        }
    }

    // A refused version records nothing: the same client with a good version is new.
    let c = rand_u32();
    let mut d = Device::tcp(node.sink_addr()).await;
    assert_eq!(
        d.hello("1.0.0", c, None).await,
        ConnectionResponse::UnsupportedApplicationVersion
    );
    let mut d = Device::tcp(node.sink_addr()).await;
    assert!(matches!(
        d.hello("2.0.0", c, None).await,
        ConnectionResponse::HelloNewClient(_)
    ));

    // Without a minimum, any application version string is accepted.
    let open = dev_node().await;
    let mut d = Device::tcp(open.sink_addr()).await;
    assert!(matches!(
        d.hello("banana", rand_u32(), None).await,
        ConnectionResponse::HelloNewClient(_)
    ));
}

#[actix_rt::test]
async fn one_server_instance_id_for_every_client_of_a_node() {
    let node = dev_node().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, _, s) = dev_device(&node).await;
        ids.push(s);
    }
    let mut ws = Device::ws(&node, &uniq("meter-")).await;
    ids.push(ws.hello_new(rand_u32()).await);
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

/// A second accepted connection of a client replaces the first, whatever the transport;
/// a refused one does not.
#[actix_rt::test]
async fn a_new_connection_of_the_same_client_replaces_the_old_one() {
    let node = dev_node().await;
    let (mut first, c, s) = dev_device(&node).await;
    first.ping().await;

    // A refused attempt for the same client id leaves the first alone.
    let mut refused = Device::tcp(node.sink_addr()).await;
    assert_eq!(
        refused.hello(APP, c, Some(s ^ 1)).await,
        ConnectionResponse::InstanceIdMismatch
    );
    refused.expect_closed(SOON).await;
    first.ping().await;

    // An accepted one replaces it.
    let mut second = Device::tcp(node.sink_addr()).await;
    second.hello_known(c, s).await;
    first.expect_closed(SOON).await;
    second.ping().await;

    // Also across transports: a WebSocket whose token names the same client id.
    let mut third = Device::ws(&node, &dev_id(c)).await;
    third.hello_known(c, s).await;
    second.expect_closed(SOON).await;
    third.ping().await;
    murmur_tests::eventually("one sink connection left", SOON, || async {
        (sink_connections(&node).await == 1.0).then_some(())
    })
    .await;
}
