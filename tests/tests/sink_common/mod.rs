//! Helpers shared by the Sink black-box test files (each test file is its own crate and
//! uses a subset, hence the `dead_code` and `unused_imports` allowance): a small device client over plain TCP,
//! TLS or WebSocket, frame builders on top of the product's codec, an in-test PKI (rcgen),
//! node builders, the Sink API, Helios watchers of `sink/<client>` and metrics.
//!
//! Every wait is bounded: reads take a timeout, "nothing arrives" is a short read followed
//! by a PING whose PONG must be the next frame.
#![allow(dead_code, unused_imports)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use murmur_tests::wsframe::OP_BINARY;
use murmur_tests::{
    api_get, api_post, api_request, token, Method, Node, NodeBuilder, Starling, WsClient, WsEvent,
};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

#[allow(unused_imports)]
pub use murmur_shared::sink::{
    decode, encode, prefixed, ConnectionResponse, Event, Frame, FrameReader,
};
/// The application version the tests' devices announce.
pub const APP: &str = "v1.0.0";

pub use murmur_tests::uniq;

/// A random client instance id (non-zero).
pub fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `"00 0a ff"` → bytes.
pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("bad hex {b:?}: {e}")))
        .collect()
}

/// Bytes → `"00 0a ff"`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(v: &Value) -> Vec<u8> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a base64 string, got {v}"));
    STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {s:?}"))
}

// ---------------------------------------------------------------------------------------
// Frames

/// A version-0 CONNECTION_REQUEST.
pub fn request(app: &str, client: u32, server: Option<u32>) -> Frame {
    Frame::ConnectionRequest {
        version: 0,
        application_version: app.to_string(),
        client_instance_id: client,
        server_instance_id: server,
    }
}

/// An event with schema 1 and the current time.
pub fn event(event_type_id: u64, key: &[u8], offset: u64, data: &[u8]) -> Event {
    Event {
        event_type_id,
        schema_version: 1,
        key: key.to_vec(),
        offset,
        timestamp: now_secs(),
        data: data.to_vec(),
    }
}

pub fn publish(id: u16, event: &Event) -> Frame {
    Frame::Publish {
        id,
        event: event.clone(),
    }
}

/// The JSON form the broker uses for an event (API, NACK list, channel publications).
pub fn event_json(e: &Event) -> Value {
    json!({
        "event_type_id": e.event_type_id,
        "schema_version": e.schema_version,
        "key": b64(&e.key),
        "offset": e.offset,
        "timestamp": e.timestamp,
        "event_data": b64(&e.data),
    })
}

// ---------------------------------------------------------------------------------------
// The device client

trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

enum Transport {
    /// Plain TCP or TLS: frames carry the 2-byte length prefix.
    Stream(Box<dyn ByteStream>),
    /// WebSocket: one binary message per frame.
    Ws(WsClient),
}

/// What the server did next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rx {
    /// One frame (without the TCP length prefix).
    Frame(Vec<u8>),
    /// The connection ended: EOF, reset, a TLS alert or a WebSocket close (described).
    Closed(String),
}

/// One device connection. Panics name `label`.
pub struct Device {
    pub label: String,
    transport: Transport,
    reader: FrameReader,
    buf: Vec<u8>,
    /// The WebSocket close frame, once received (`Some(None)`: a close without code).
    pub ws_close: Option<Option<(u16, String)>>,
}

impl Device {
    fn new(label: &str, transport: Transport) -> Device {
        Device {
            label: label.to_string(),
            transport,
            reader: FrameReader::new(),
            buf: vec![0; 64 * 1024],
            ws_close: None,
        }
    }

    /// Plain TCP to `addr`; panics if the connection is refused.
    pub async fn tcp(addr: SocketAddr) -> Device {
        match Self::try_tcp(addr).await {
            Ok(d) => d,
            Err(e) => panic!("TCP connect to the sink listener {addr} failed: {e}"),
        }
    }

    pub async fn try_tcp(addr: SocketAddr) -> io::Result<Device> {
        let s = tokio::time::timeout(SOON, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        s.set_nodelay(true)?;
        Ok(Self::new(
            &format!("tcp {addr}"),
            Transport::Stream(Box::new(s)),
        ))
    }

    /// TLS to `addr` (server name 127.0.0.1). `Err` if the TLS handshake fails on the
    /// client side (with TLS 1.3 a refused client certificate may only show on the first
    /// read, as [`Rx::Closed`]).
    pub async fn tls(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Device> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let name = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let tls = tokio::time::timeout(SOON, TlsConnector::from(config).connect(name, s))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Self::new(
            &format!("tls {addr}"),
            Transport::Stream(Box::new(tls)),
        ))
    }

    /// WebSocket `/sink?token=<token for client>` on `node`; panics if refused.
    pub async fn ws(node: &Node, client: &str) -> Device {
        let url = node.ws_url(&format!("/sink?token={}", token(client)));
        match Self::try_ws(&url).await {
            Ok(d) => d,
            Err((status, body)) => panic!("Sink WebSocket {url} refused: {status} {body}"),
        }
    }

    pub async fn try_ws(url: &str) -> Result<Device, (u16, String)> {
        let ws = WsClient::connect(url).await?;
        Ok(Self::from_ws(ws))
    }

    /// Wraps a connected WebSocket client (e.g. one made with extra headers).
    pub fn from_ws(ws: WsClient) -> Device {
        let label = format!("ws {}", ws.url());
        Self::new(&label, Transport::Ws(ws))
    }

    /// Sends bytes as they are: on a stream exactly these bytes (no prefix added), on a
    /// WebSocket one binary message.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.transport {
            Transport::Stream(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Transport::Ws(ws) => ws.try_send_frame(true, OP_BINARY, bytes).await,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send_raw(bytes).await {
            panic!("{}: write failed: {e}", self.label);
        }
    }

    /// Sends one frame's bytes: with the length prefix on a stream, as one binary message
    /// on a WebSocket.
    pub async fn try_send_bytes(&mut self, frame: &[u8]) -> io::Result<()> {
        if matches!(self.transport, Transport::Ws(_)) {
            return self.try_send_raw(frame).await;
        }
        let len = u16::try_from(frame.len()).expect("a frame fits the 2-byte length prefix");
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        self.try_send_raw(&out).await
    }

    pub async fn send_bytes(&mut self, frame: &[u8]) {
        if let Err(e) = self.try_send_bytes(frame).await {
            panic!("{}: write failed: {e}", self.label);
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(&encode(frame)).await;
    }

    async fn next(&mut self) -> Rx {
        match &mut self.transport {
            Transport::Stream(s) => loop {
                if let Some(f) = self.reader.next_frame() {
                    return Rx::Frame(f);
                }
                match s.read(&mut self.buf).await {
                    Ok(0) => {
                        let left = self.reader.buffered();
                        return Rx::Closed(format!("EOF ({left} bytes of a partial frame)"));
                    }
                    Ok(n) => self.reader.extend(&self.buf[..n]),
                    Err(e) => return Rx::Closed(format!("read error: {e}")),
                }
            },
            // The caller bounds the wait; give the client's own bound plenty of room.
            Transport::Ws(ws) => match ws.try_recv(Duration::from_secs(3600)).await {
                Some(WsEvent::Binary(b)) => Rx::Frame(b.to_vec()),
                Some(WsEvent::Text(t)) => {
                    panic!("{}: text message on the Sink WebSocket: {t:?}", self.label)
                }
                Some(WsEvent::Close(c)) => {
                    self.ws_close = Some(c.clone());
                    Rx::Closed(format!("WebSocket close {c:?}"))
                }
                Some(WsEvent::Closed) | None => Rx::Closed("WebSocket stream ended".into()),
            },
        }
    }

    /// The next frame or close within `timeout`; `None` if nothing came.
    pub async fn try_recv_raw(&mut self, timeout: Duration) -> Option<Rx> {
        tokio::time::timeout(timeout, self.next()).await.ok()
    }

    /// The next frame's bytes within [`SOON`]; panics on close or timeout.
    pub async fn recv_raw(&mut self) -> Vec<u8> {
        self.recv_raw_within(SOON).await
    }

    pub async fn recv_raw_within(&mut self, timeout: Duration) -> Vec<u8> {
        match self.try_recv_raw(timeout).await {
            Some(Rx::Frame(f)) => f,
            Some(Rx::Closed(why)) => panic!("{}: expected a frame, connection {why}", self.label),
            None => panic!("{}: no frame within {timeout:?}", self.label),
        }
    }

    /// The next frame, decoded (within [`SOON`]).
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(SOON).await
    }

    pub async fn recv_within(&mut self, timeout: Duration) -> Frame {
        let bytes = self.recv_raw_within(timeout).await;
        decode(&bytes).unwrap_or_else(|e| {
            panic!(
                "{}: the server sent an undecodable frame ({e}): {}",
                self.label,
                to_hex(&bytes)
            )
        })
    }

    /// Asserts the server ends the connection within `timeout` without sending any frame.
    pub async fn expect_closed(&mut self, timeout: Duration) -> String {
        match self.try_recv_raw(timeout).await {
            Some(Rx::Closed(why)) => why,
            Some(Rx::Frame(f)) => panic!(
                "{}: expected the connection to close, got frame {} ({:?})",
                self.label,
                to_hex(&f),
                decode(&f)
            ),
            None => panic!(
                "{}: the connection is still open after {timeout:?}",
                self.label
            ),
        }
    }

    /// PING; the next frame must be the PONG `60 00`.
    pub async fn ping(&mut self) {
        self.send(&Frame::Ping).await;
        let f = self.recv_raw().await;
        assert_eq!(
            to_hex(&f),
            "60 00",
            "{}: expected PONG as the next frame, got {:?}",
            self.label,
            decode(&f)
        );
    }

    /// Asserts nothing arrives: a read of [`QUIET`] gets nothing, then a PING is
    /// answered by a PONG before anything else.
    pub async fn expect_silence(&mut self) {
        if let Some(rx) = self.try_recv_raw(QUIET).await {
            let shown = match &rx {
                Rx::Frame(f) => format!("{} ({:?})", to_hex(f), decode(f)),
                Rx::Closed(why) => why.clone(),
            };
            panic!("{}: expected nothing, got {shown}", self.label);
        }
        self.ping().await;
    }

    /// Sends a connection request and returns the decoded response.
    pub async fn hello(
        &mut self,
        app: &str,
        client: u32,
        server: Option<u32>,
    ) -> ConnectionResponse {
        self.send(&request(app, client, server)).await;
        match self.recv().await {
            Frame::ConnectionResponse(r) => r,
            other => panic!(
                "{}: expected a CONNECTION_RESPONSE, got {other:?}",
                self.label
            ),
        }
    }

    /// A new client's first handshake: must be hello_new_client; returns the server id.
    pub async fn hello_new(&mut self, client: u32) -> u32 {
        match self.hello(APP, client, None).await {
            ConnectionResponse::HelloNewClient(s) => s,
            other => panic!("{}: expected hello_new_client, got {other:?}", self.label),
        }
    }

    /// A known client's handshake with both ids: must be connected.
    pub async fn hello_known(&mut self, client: u32, server: u32) {
        let r = self.hello(APP, client, Some(server)).await;
        assert_eq!(r, ConnectionResponse::Connected, "{}", self.label);
    }

    /// The next frame must be a PUBLISH: `(message id, event)`.
    pub async fn expect_publish(&mut self) -> (u16, Event) {
        self.expect_publish_within(SOON).await
    }

    pub async fn expect_publish_within(&mut self, timeout: Duration) -> (u16, Event) {
        match self.recv_within(timeout).await {
            Frame::Publish { id, event } => (id, event),
            other => panic!("{}: expected a PUBLISH, got {other:?}", self.label),
        }
    }

    /// The next frame must be the ACK of `id`.
    pub async fn expect_ack(&mut self, id: u16) {
        let f = self.recv().await;
        assert_eq!(f, Frame::Ack { id }, "{}: expected ACK {id}", self.label);
    }

    /// The WebSocket client (panics on a stream transport).
    pub fn ws_client(&mut self) -> &mut WsClient {
        match &mut self.transport {
            Transport::Ws(ws) => ws,
            Transport::Stream(_) => panic!("{}: not a WebSocket device", self.label),
        }
    }

    /// Closes our side (TCP FIN / WebSocket close) and drops the connection.
    pub async fn close(mut self) {
        match &mut self.transport {
            Transport::Stream(s) => {
                let _ = s.shutdown().await;
            }
            Transport::Ws(ws) => ws.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// PKI (rcgen) and TLS

/// A throwaway directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A certificate authority made in the test.
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn dn(cn: Option<&str>, org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(Some(name), "murmur tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name = dn(Some("murmur sink"), "murmur tests");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        self.leaf(params)
    }

    /// A client certificate with subject CN `cn` (none if `None`).
    pub fn client(&self, cn: Option<&str>) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn, "murmur test devices");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        self.leaf(params)
    }
}

/// A client CA, a server certificate from it, and the PEM files a node reads.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub dir: TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("murmur test CA");
        let server = ca.server();
        let dir = TempDir::new("murmur-sink-pki");
        let cert_path = dir.write("server.pem", &server.cert_pem);
        let key_path = dir.write("server.key", &server.key_pem);
        let ca_path = dir.write("ca.pem", &ca.cert_pem);
        Pki {
            ca,
            server,
            dir,
            cert_path,
            key_path,
            ca_path,
        }
    }

    /// A client configuration trusting this CA for the server, presenting `client`.
    pub fn client_config(&self, client: Option<&Leaf>) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert_der.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(leaf) => builder
                .with_client_auth_cert(vec![leaf.cert_der.clone()], leaf.key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// `builder` with the three TLS variables pointing at this PKI's files.
    pub fn configure(&self, builder: NodeBuilder) -> NodeBuilder {
        builder
            .env("MURMUR_SINK_TLS_CERT", path(&self.cert_path))
            .env("MURMUR_SINK_TLS_KEY", path(&self.key_path))
            .env("MURMUR_SINK_TLS_CLIENT_CA", path(&self.ca_path))
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------
// Nodes

/// Development mode: the Sink TCP listener is plaintext, client id `dev-<instance id>`.
pub fn dev(builder: NodeBuilder) -> NodeBuilder {
    builder.env("MURMUR_DEV", "1")
}

/// A single in-memory node in development mode.
pub async fn dev_node() -> Node {
    dev(NodeBuilder::new()).spawn().await
}

/// The client id of a plaintext (development) device.
pub fn dev_id(instance: u32) -> String {
    format!("dev-{instance}")
}

/// A fresh plaintext device that completed a new-client handshake on `node`:
/// `(device, client instance id, server instance id)`.
pub async fn dev_device(node: &Node) -> (Device, u32, u32) {
    let c = rand_u32();
    let mut d = Device::tcp(node.sink_addr()).await;
    let s = d.hello_new(c).await;
    (d, c, s)
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------
// The Sink API

/// A body for `POST /api/v1/sink/clients/<id>/events` (no offset, no timestamp).
pub fn api_event(event_type_id: u64, schema_version: u64, key: &[u8], data: &[u8]) -> Value {
    json!({
        "event_type_id": event_type_id,
        "schema_version": schema_version,
        "key": b64(key),
        "event_data": b64(data),
    })
}

/// Queues an event for `client`; asserts 202 and returns the answer
/// (`{client, seq, offset}`).
pub async fn queue(node: &Node, client: &str, body: Value) -> Value {
    let (status, reply) =
        api_post(node, &format!("/api/v1/sink/clients/{client}/events"), body).await;
    assert_eq!(status, 202, "queue event for {client}: {reply}");
    reply
}

/// `GET /api/v1/sink/clients/<id>/nacks` → the `nacks` array.
pub async fn nacks(node: &Node, client: &str) -> Vec<Value> {
    let (status, reply) = api_get(node, &format!("/api/v1/sink/clients/{client}/nacks")).await;
    assert_eq!(status, 200, "nacks of {client}: {reply}");
    assert_eq!(reply["client"], client, "{reply}");
    reply["nacks"]
        .as_array()
        .unwrap_or_else(|| panic!("nacks is not an array: {reply}"))
        .clone()
}

/// `GET /api/v1/sink/clients/<id>`.
pub async fn client_info(node: &Node, client: &str) -> Value {
    let (status, reply) = api_get(node, &format!("/api/v1/sink/clients/{client}")).await;
    assert_eq!(status, 200, "client info of {client}: {reply}");
    reply
}

/// Outbox depth of `client`.
pub async fn outbox_depth(node: &Node, client: &str) -> u64 {
    let info = client_info(node, client).await;
    info["outbox_depth"]
        .as_u64()
        .unwrap_or_else(|| panic!("outbox_depth: {info}"))
}

/// `PUT /api/v1/sink/quarantine/<id>`; asserts 200.
pub async fn quarantine(node: &Node, client: &str, machine: &[u8], human: &str) -> Value {
    let body = json!({"machine_message": b64(machine), "human_message": human});
    let (status, reply) = api_request(
        node,
        Method::PUT,
        &format!("/api/v1/sink/quarantine/{client}"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "quarantine {client}: {reply}");
    reply
}

/// `DELETE /api/v1/sink/quarantine/<id>` → (status, body).
pub async fn lift(node: &Node, client: &str) -> (u16, Value) {
    api_request(
        node,
        Method::DELETE,
        &format!("/api/v1/sink/quarantine/{client}"),
        None,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Helios watchers of sink/<client>

/// A Helios-Starling subscribed to `sink/<client>` on `node`.
pub async fn watch(node: &Node, client: &str) -> Starling {
    let mut s = Starling::connect(node, &uniq("watcher")).await;
    let channel = format!("sink/{client}");
    let data = s
        .call_ok("broker:subscribe", json!({ "channel": channel }))
        .await;
    assert_eq!(data["subscribed"], true, "{data}");
    s
}

/// The next publication on `sink/<client>` (its `data`), within `timeout`.
pub async fn next_event(s: &mut Starling, client: &str, timeout: Duration) -> Value {
    let n = s.next_notification(timeout).await;
    assert_eq!(
        n["notification"]["topic"],
        format!("sink/{client}"),
        "notification on the wrong channel: {n}"
    );
    n["notification"]["data"].clone()
}

/// Asserts `data` is the channel publication of `e` by `client`.
pub fn assert_published(data: &Value, client: &str, e: &Event) {
    let mut expected = event_json(e);
    expected["client"] = json!(client);
    assert_eq!(data, &expected, "publication on sink/{client}");
}

/// Asserts no further publication arrives within [`QUIET`].
pub async fn expect_no_event(s: &mut Starling) {
    if let Some(n) = s.try_next_notification(QUIET).await {
        panic!("expected no further publication, got {n}");
    }
}

// ---------------------------------------------------------------------------------------
// Metrics

/// A metric's value (summed over matching series); 0 if absent.
pub use murmur_tests::metric;

/// `murmur_sink_events_total{direction, outcome}`.
pub async fn sink_events(node: &Node, direction: &str, outcome: &str) -> f64 {
    metric(
        node,
        "murmur_sink_events_total",
        &[("direction", direction), ("outcome", outcome)],
    )
    .await
}

/// `murmur_connections{protocol="sink"}`.
pub async fn sink_connections(node: &Node) -> f64 {
    metric(node, "murmur_connections", &[("protocol", "sink")]).await
}

// ---------------------------------------------------------------------------------------
// Raw byte-level TCP (to compare the server's bytes, length prefix included)

/// A plain TCP connection read and written byte for byte.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = murmur_tests::within("raw TCP connect", SOON, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("TCP connect to {addr} failed: {e}"));
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    /// Writes `hex` bytes exactly.
    pub async fn send_hex(&mut self, hex_bytes: &str) {
        self.send(&hex(hex_bytes)).await;
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("raw write failed: {e}"));
    }

    /// Reads exactly `n` bytes within [`SOON`].
    pub async fn read(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        murmur_tests::within(
            &format!("{n} bytes from the server"),
            SOON,
            self.stream.read_exact(&mut out),
        )
        .await
        .unwrap_or_else(|e| panic!("reading {n} bytes failed: {e}"));
        out
    }

    /// The next bytes must be exactly `hex`.
    pub async fn expect_hex(&mut self, hex_bytes: &str) {
        let want = hex(hex_bytes);
        let got = self.read(want.len()).await;
        assert_eq!(to_hex(&got), to_hex(&want), "bytes from the server");
    }

    /// The server must close the stream (EOF or reset) within [`SOON`], sending nothing.
    pub async fn expect_eof(&mut self) {
        let mut buf = [0u8; 256];
        let r = murmur_tests::within("the server to close", SOON, self.stream.read(&mut buf)).await;
        match r {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("expected EOF, got {}", to_hex(&buf[..n])),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The handshake decision table, for transports with a fixed client identity

/// Runs the instance-id table of ORIGINS.md row by row for one client id, each row on a
/// fresh connection from `connect` (TLS with one certificate, or WebSocket with one token).
/// Refused connections must close. Returns the server instance id.
pub async fn handshake_table<F, Fut>(label: &str, mut connect: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Device>,
{
    let c = rand_u32();
    let other = c.wrapping_add(1).max(1);
    let mismatch = ConnectionResponse::InstanceIdMismatch;

    // A client never seen, claiming a server id: it was connected elsewhere → mismatch,
    // and nothing is recorded.
    let mut d = connect().await;
    assert_eq!(
        d.hello(APP, c, Some(12345)).await,
        mismatch,
        "{label}: C=nil, s given"
    );
    d.expect_closed(SOON).await;

    // C=nil, s=nil → hello_new_client(S); c is recorded.
    let mut d = connect().await;
    let s = d.hello_new(c).await;
    d.ping().await;
    d.close().await;
    let wrong_s = s.wrapping_add(1);

    // C=c, s=S → connected.
    let mut d = connect().await;
    d.hello_known(c, s).await;
    d.ping().await;
    d.close().await;

    // C=c, s=nil → hello_new_client(S) again (the client missed the previous answer).
    let mut d = connect().await;
    let again = d.hello_new(c).await;
    assert_eq!(again, s, "{label}: the same server id");
    d.ping().await;
    d.close().await;

    // A different client instance id (wiped device), with or without s → mismatch.
    let mut d = connect().await;
    assert_eq!(
        d.hello(APP, other, Some(s)).await,
        mismatch,
        "{label}: c' != C, s=S"
    );
    d.expect_closed(SOON).await;
    let mut d = connect().await;
    assert_eq!(
        d.hello(APP, other, None).await,
        mismatch,
        "{label}: c' != C, s=nil"
    );
    d.expect_closed(SOON).await;

    // The right client id but another server's id → mismatch.
    let mut d = connect().await;
    assert_eq!(
        d.hello(APP, c, Some(wrong_s)).await,
        mismatch,
        "{label}: s != S"
    );
    d.expect_closed(SOON).await;

    // Refusals changed nothing: the recorded ids still connect.
    let mut d = connect().await;
    d.hello_known(c, s).await;
    d.ping().await;
    d.close().await;
    s
}
