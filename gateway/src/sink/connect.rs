//! The two ways a device connects; both are served by the same adapter on the edge
//! loop.
//!
//! * WebSocket `/sink?token=<jwt>` (or `Authorization: Bearer`): one binary message per
//!   frame, no length prefix; the client id is the token's `sub`.
//! * The Sink TCP listener: the reference wire format with its 2-byte length prefix.
//!   With `MURMUR_SINK_TLS_CERT/_KEY/_CLIENT_CA` it speaks TLS and requires a client
//!   certificate chaining to the client CA; the certificate's subject CN is the client
//!   id. Without them it listens in plaintext only in development mode (client id
//!   `dev-<client_instance_id>`); otherwise it does not listen at all.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use murmur_broker::session::Protocol;
use murmur_shared::fault::Fault;
use murmur_shared::sink::MAX_FRAME;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::session::{Identity, SinkConn};
use crate::api::error;
use crate::edge;
use crate::state::{client_token, refuse_if_draining, AppState};

/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct SinkQuery {
    token: Option<String>,
}

/// `GET /sink?token=` (WebSocket upgrade).
pub async fn sink(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<SinkQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    if let Some(refused) = refuse_if_draining(&state) {
        return Ok(refused);
    }
    let token = client_token(query.token.as_deref(), &req);
    let Some(token) = token else {
        return Ok(error(Fault::Unauthorized, "token required (?token=)"));
    };
    let client = match state.verifier.verify(token) {
        Ok(p) => p.sub,
        Err(e) => return Ok(error(Fault::Unauthorized, &e.to_string())),
    };
    let (resp, out, stream) = state.ws_upgrade(&req, body, MAX_FRAME, Protocol::Sink)?;
    let state = state.into_inner();
    let metrics = state.node.metrics.clone();
    let conn = SinkConn::new(state, out, Identity::Fixed(client));
    actix_web::rt::spawn(edge::conn::serve(metrics, conn, stream));
    Ok(resp)
}

/// Builds the TLS acceptor from PEM files: server certificate chain and key, and the CA
/// client certificates must chain to.
pub fn tls_acceptor(cert: &Path, key: &Path, client_ca: &Path) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("MURMUR_SINK_TLS_CERT {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("MURMUR_SINK_TLS_KEY {}: {e}", key.display()))?;
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(client_ca)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("MURMUR_SINK_TLS_CLIENT_CA {}: {e}", client_ca.display()))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("MURMUR_SINK_TLS_CLIENT_CA: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate/key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject CN of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Serves one accepted TCP connection.
pub async fn accept(state: Arc<AppState>, tls: Option<TlsAcceptor>, stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_stream(state, stream, Identity::DevInstance).await,
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(error = %e, "sink TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            match cn {
                Some(client) if !client.is_empty() => {
                    serve_stream(state, tls, Identity::Fixed(client)).await
                }
                _ => debug!("sink client certificate without a subject CN"),
            }
        }
    }
}

/// A length-prefixed stream on the edge loop.
async fn serve_stream<S>(state: Arc<AppState>, stream: S, identity: Identity)
where
    S: AsyncRead + AsyncWrite + 'static,
{
    let (input, buf) = edge::stream::split(stream, state.settings.outbound, &state.outbound_budget);
    let out = state.out(buf, Protocol::Sink);
    let metrics = state.node.metrics.clone();
    edge::conn::serve(metrics, SinkConn::new(state, out, identity), input).await
}
