//! Sink over TLS (CONTRACT §1, §2, §6): with `MURMUR_SINK_TLS_CERT/_KEY/_CLIENT_CA` the
//! TCP listener speaks TLS only and requires a client certificate chaining to the client
//! CA; the certificate's subject CN is the client id. Plaintext TCP exists only in
//! development mode and never next to TLS. Certificates are made in the test (rcgen).

mod sink_common;

use std::time::Duration;

use murmur_tests::{eventually, Node, NodeBuilder};
use sink_common::*;

/// A node whose Sink listener is TLS, development mode explicitly off.
async fn tls_node(pki: &Pki) -> Node {
    pki.configure(NodeBuilder::new())
        .env_remove("MURMUR_DEV")
        .spawn()
        .await
}

async fn connect(node: &Node, pki: &Pki, leaf: &Leaf) -> Device {
    let config = pki.client_config(Some(leaf));
    Device::tls(node.sink_addr(), config)
        .await
        .unwrap_or_else(|e| panic!("TLS with a valid client certificate failed: {e}"))
}

/// A TLS attempt the server must refuse: the TLS handshake fails, or the connection ends
/// before any Sink frame is answered.
async fn expect_refused(
    node: &Node,
    config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    what: &str,
) {
    let mut d = match Device::tls(node.sink_addr(), config).await {
        Err(_) => return, // refused during the handshake
        Ok(d) => d,
    };
    // TLS 1.3: the client finishes first; the server's verdict comes as an alert.
    let _ = d
        .try_send_bytes(&encode(&request(APP, rand_u32(), None)))
        .await;
    match d.try_recv_raw(SOON).await {
        Some(Rx::Closed(_)) => {}
        Some(Rx::Frame(f)) => panic!(
            "{what}: the server answered {} ({:?})",
            to_hex(&f),
            decode(&f)
        ),
        None => panic!("{what}: the connection is still open after {SOON:?}"),
    }
}

#[actix_rt::test]
async fn a_valid_client_certificate_names_the_client() {
    let pki = Pki::new();
    let node = tls_node(&pki).await;
    let client = uniq("meter-");
    let leaf = pki.ca.client(Some(&client));
    let mut watcher = watch(&node, &client).await;

    let mut d = connect(&node, &pki, &leaf).await;
    let c = rand_u32();
    let s = d.hello_new(c).await;
    d.ping().await;

    // Device → broker: published on sink/<CN> with client = CN.
    let e = event(4, b"tls", 1, b"secure");
    d.send(&publish(77, &e)).await;
    d.expect_ack(77).await;
    assert_published(&next_event(&mut watcher, &client, SOON).await, &client, &e);

    // Broker → device: the outbox of the CN.
    queue(&node, &client, api_event(1, 1, b"cfg", b"v2")).await;
    let (id, got) = d.expect_publish().await;
    assert_eq!(got.data, b"v2");
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    assert_eq!(outbox_depth(&node, &client).await, 0);

    // A second connection with the same certificate replaces the first.
    let mut second = connect(&node, &pki, &leaf).await;
    second.hello_known(c, s).await;
    d.expect_closed(SOON).await;
    second.ping().await;

    // Quarantine by CN.
    quarantine(&node, &client, &[5], "revoked").await;
    assert_eq!(
        second.recv().await,
        Frame::ConnectionResponse(ConnectionResponse::Quarantined {
            machine: vec![5],
            human: "revoked".into()
        })
    );
    second.expect_closed(SOON).await;
    let mut third = connect(&node, &pki, &leaf).await;
    assert!(matches!(
        third.hello(APP, c, Some(s)).await,
        ConnectionResponse::Quarantined { .. }
    ));
    third.expect_closed(SOON).await;
}

#[actix_rt::test]
async fn the_decision_table_row_by_row_over_tls() {
    let pki = Pki::new();
    let node = tls_node(&pki).await;
    let leaf = pki.ca.client(Some(&uniq("meter-")));
    let s = handshake_table("tls", || connect(&node, &pki, &leaf)).await;
    // Another certificate, another client, the same server instance id.
    let other = pki.ca.client(Some(&uniq("meter-")));
    let mut d = connect(&node, &pki, &other).await;
    assert_eq!(d.hello_new(rand_u32()).await, s);
}

#[actix_rt::test]
async fn no_client_certificate_is_refused() {
    let pki = Pki::new();
    let node = tls_node(&pki).await;
    expect_refused(&node, pki.client_config(None), "no client certificate").await;
    assert_eq!(
        sink_events(&node, "handshake", "hello_new_client").await,
        0.0
    );
}

#[actix_rt::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let node = tls_node(&pki).await;
    let client = uniq("meter-");
    // Same CN as a legitimate device, wrong issuer.
    let rogue_ca = Ca::new("murmur test CA");
    let rogue = rogue_ca.client(Some(&client));
    expect_refused(&node, pki.client_config(Some(&rogue)), "another CA").await;
    // A self-signed client certificate too.
    let simple = rcgen::generate_simple_self_signed(vec![client.clone()]).unwrap();
    let leaf = Leaf {
        cert_pem: simple.cert.pem(),
        key_pem: simple.signing_key.serialize_pem(),
        cert_der: simple.cert.der().clone(),
        key_der: simple.signing_key.serialize_der(),
    };
    expect_refused(&node, pki.client_config(Some(&leaf)), "self-signed").await;

    // The legitimate certificate still works.
    let good = pki.ca.client(Some(&client));
    let mut d = connect(&node, &pki, &good).await;
    d.hello_new(rand_u32()).await;
    assert_eq!(
        sink_events(&node, "handshake", "hello_new_client").await,
        1.0
    );
}

#[actix_rt::test]
async fn a_client_certificate_without_a_common_name_is_refused() {
    let pki = Pki::new();
    let node = tls_node(&pki).await;
    let leaf = pki.ca.client(None);
    expect_refused(&node, pki.client_config(Some(&leaf)), "no CN").await;
}

#[actix_rt::test]
async fn plaintext_is_refused_on_a_tls_listener_even_in_development_mode() {
    let pki = Pki::new();
    for dev_mode in [false, true] {
        let mut builder = pki.configure(NodeBuilder::new());
        builder = if dev_mode {
            builder.env("MURMUR_DEV", "1")
        } else {
            builder.env_remove("MURMUR_DEV")
        };
        let node = builder.spawn().await;
        let mut d = Device::tcp(node.sink_addr()).await;
        let _ = d.try_send_bytes(&encode(&request(APP, 1, None))).await;
        match d.try_recv_raw(SOON).await {
            Some(Rx::Closed(_)) => {}
            Some(Rx::Frame(f)) => {
                let sink = decode(&f);
                assert!(
                    sink.is_err() || !matches!(sink, Ok(Frame::ConnectionResponse(_))),
                    "dev={dev_mode}: plaintext was answered with {sink:?}"
                );
                // Whatever it was (a TLS alert), the connection must end.
                d.expect_closed(SOON).await;
            }
            None => panic!("dev={dev_mode}: plaintext connection still open after {SOON:?}"),
        }
        // And TLS works on the same port.
        let leaf = pki.ca.client(Some(&uniq("meter-")));
        let mut t = connect(&node, &pki, &leaf).await;
        t.hello_new(rand_u32()).await;
        assert_eq!(
            sink_events(&node, "handshake", "hello_new_client").await,
            1.0
        );
    }
}

#[actix_rt::test]
async fn without_tls_settings_or_development_mode_the_sink_port_is_closed() {
    let node = NodeBuilder::new().env_remove("MURMUR_DEV").spawn().await;
    let r = Device::try_tcp(node.sink_addr()).await;
    assert!(r.is_err(), "the Sink TCP port must not listen");
    // The WebSocket transport is still there.
    let mut d = Device::ws(&node, &uniq("meter-")).await;
    d.hello_new(rand_u32()).await;
}

#[actix_rt::test]
async fn the_three_tls_settings_go_together() {
    let pki = Pki::new();
    let mut node = NodeBuilder::new()
        .env("MURMUR_SINK_TLS_CERT", pki.cert_path.to_string_lossy())
        .env("MURMUR_SINK_TLS_KEY", pki.key_path.to_string_lossy())
        .spawn_unready();
    let status = node
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("a node with half the TLS settings must not start");
    assert!(!status.success());
    eventually("the reason in the log", SOON, || async {
        node.log_contents()
            .contains("MURMUR_SINK_TLS_CERT, _KEY and _CLIENT_CA must be set together")
            .then_some(())
    })
    .await;
}

/// `scripts/dev-certs.sh` (what docs/sink.md tells operators to use) makes a CA, a server
/// certificate and client certificates that a node and a device accept.
#[actix_rt::test]
async fn the_dev_certs_script_makes_certificates_that_work() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    let dir = TempDir::new("murmur-dev-certs");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-certs.sh");
    let client = uniq("meter-");
    let out = murmur_tests::within(
        "scripts/dev-certs.sh",
        Duration::from_secs(30),
        tokio::process::Command::new(&script)
            .arg(&client)
            .env("CERTS_DIR", &dir.0)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "dev-certs.sh failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let file = |name: &str| dir.0.join(name);
    let node = NodeBuilder::new()
        .env("MURMUR_SINK_TLS_CERT", file("server.pem").to_string_lossy())
        .env("MURMUR_SINK_TLS_KEY", file("server.key").to_string_lossy())
        .env(
            "MURMUR_SINK_TLS_CLIENT_CA",
            file("ca.pem").to_string_lossy(),
        )
        .spawn()
        .await;

    let config_for = |id: &str| {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(file("ca.pem")).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(file(&format!("clients/{id}.pem")))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(file(&format!("clients/{id}.key"))).unwrap();
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        std::sync::Arc::new(config)
    };

    let mut watcher = watch(&node, &client).await;
    let mut d = Device::tls(node.sink_addr(), config_for(&client))
        .await
        .unwrap_or_else(|e| panic!("TLS with the script's certificates failed: {e}"));
    d.hello_new(rand_u32()).await;
    let e = event(1, b"k", 1, b"from the script");
    d.send(&publish(1, &e)).await;
    d.expect_ack(1).await;
    assert_published(&next_event(&mut watcher, &client, SOON).await, &client, &e);

    // Running it again keeps the CA and the server certificate and adds a client.
    let before = (
        std::fs::read(file("ca.pem")).unwrap(),
        std::fs::read(file("server.pem")).unwrap(),
    );
    let second = uniq("meter-");
    let out = tokio::process::Command::new(&script)
        .arg(&second)
        .env("CERTS_DIR", &dir.0)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = (
        std::fs::read(file("ca.pem")).unwrap(),
        std::fs::read(file("server.pem")).unwrap(),
    );
    assert!(before == after, "the CA and server certificate are kept");
    let mut d2 = Device::tls(node.sink_addr(), config_for(&second))
        .await
        .unwrap_or_else(|e| panic!("TLS with the second client's certificate failed: {e}"));
    d2.hello_new(rand_u32()).await;
    d.ping().await;
}
