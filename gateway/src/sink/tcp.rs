//! The Sink TCP listener. With `MURMUR_SINK_TLS_CERT/_KEY/_CLIENT_CA` it speaks TLS and
//! requires a client certificate chaining to the client CA; the certificate's subject
//! CN is the client id. Without them it listens in plaintext only in development mode
//! (client id `dev-<client_instance_id>`); otherwise it does not listen at all.

use murmur_shared::close::CloseReason;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use murmur_shared::sink::{prefixed, FrameReader};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::conn::{serve, FrameIo, Identity};
use crate::state::AppState;

/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames over a byte stream with the 2-byte big-endian length prefix.
pub struct StreamFrames<S> {
    stream: S,
    reader: FrameReader,
    buf: Box<[u8]>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamFrames<S> {
    pub fn new(stream: S) -> Self {
        StreamFrames {
            stream,
            reader: FrameReader::new(),
            buf: vec![0; 16 * 1024].into(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameIo for StreamFrames<S> {
    async fn read_frame(&mut self) -> Option<Result<Vec<u8>, &'static str>> {
        loop {
            if let Some(frame) = self.reader.next_frame() {
                if frame.is_empty() {
                    return Some(Err("zero-length frame"));
                }
                return Some(Ok(frame));
            }
            let n = self.stream.read(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.reader.extend(&self.buf[..n]);
        }
    }

    async fn write_frame(&mut self, frame: &[u8]) -> Result<(), ()> {
        let bytes = prefixed(frame).ok_or(())?;
        let write = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        };
        // A device that stops reading does not hold the connection (and its idle,
        // quarantine and takeover handling) forever.
        match tokio::time::timeout(super::conn::WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn close(mut self, why: &CloseReason) -> CloseReason {
        let _ = self.stream.shutdown().await;
        why.clone()
    }
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
        None => serve(state, StreamFrames::new(stream), Identity::DevInstance).await,
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
                    serve(state, StreamFrames::new(tls), Identity::Fixed(client)).await
                }
                _ => debug!("sink client certificate without a subject CN"),
            }
        }
    }
}
