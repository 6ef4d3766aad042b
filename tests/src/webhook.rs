//! [`Webhook`]: a real HTTP/1.1 server on a free port that records every request it is
//! sent (method, path, headers, body) and answers each with the status set at that
//! moment ([`Webhook::answer`]); keep-alive connections are served request by request.
//! For the push webhook of the chat protocol.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ports::free_port;

/// One request the webhook received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered.
    pub status: u16,
}

/// See the module docs. The server stops when this is dropped.
pub struct Webhook {
    pub port: u16,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Largest request head or body accepted.
const MAX_REQUEST: usize = 4 << 20;

impl Webhook {
    /// Starts answering `status` to everything.
    pub async fn start(status: u16) -> Webhook {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("webhook cannot bind 127.0.0.1:{port}: {e}"));
        let status = Arc::new(AtomicU16::new(status));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (status.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone(), r.clone()));
            }
        });
        Webhook {
            port,
            status,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/push`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/push", self.port)
    }

    /// The status later requests are answered.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        // unwrap: nothing panics while the lock is held.
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, status: Arc<AtomicU16>, received: Arc<Mutex<Vec<Received>>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_REQUEST || !read_more(&mut conn, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if len > MAX_REQUEST {
            return;
        }
        while buf.len() < head_end + len {
            if !read_more(&mut conn, &mut buf).await {
                return;
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let code = status.load(Ordering::SeqCst);
        // unwrap: nothing panics while the lock is held.
        received.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body,
            status: code,
        });
        let reply = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
        if conn.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(60), conn.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}
