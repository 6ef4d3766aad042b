//! A minimal HTTP/1.1 exchange over a raw tokio `TcpStream`.
//!
//! Used where awc is unsuitable: readiness probes (runtime-agnostic, no connection pool) and
//! the WebSocket handshake (awc discards the body of a refused upgrade).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;

/// `(host:port, path-and-query)` of an `http://` or `ws://` URL.
pub(crate) fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (rest[..i].to_string(), rest[i..].to_string()),
        Some(i) => (rest[..i].to_string(), format!("/{}", &rest[i..])),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// A parsed response head.
pub(crate) struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-response",
    )
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<()> {
    if stream.read_buf(buf).await? == 0 {
        return Err(eof());
    }
    Ok(())
}

/// Reads and parses a response head; bytes after it stay in `buf`.
pub(crate) async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Head> {
    let end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        read_more(stream, buf).await?;
    };
    let head = buf.split_to(end + 4);
    let text = String::from_utf8_lossy(&head[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Head { status, headers })
}

async fn read_line(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<String> {
    loop {
        if let Some(pos) = find(buf, b"\r\n") {
            let line = buf.split_to(pos + 2);
            return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        read_more(stream, buf).await?;
    }
}

async fn read_n(stream: &mut TcpStream, buf: &mut BytesMut, n: usize) -> io::Result<BytesMut> {
    while buf.len() < n {
        read_more(stream, buf).await?;
    }
    Ok(buf.split_to(n))
}

/// Reads the body that follows `head` (content-length, chunked, or until EOF).
pub(crate) async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
) -> io::Result<Vec<u8>> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let line = read_line(stream, buf).await?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                while !read_line(stream, buf).await?.is_empty() {}
                return Ok(body);
            }
            body.extend_from_slice(&read_n(stream, buf, size).await?);
            read_n(stream, buf, 2).await?;
        }
    }
    if let Some(len) = head.header("content-length") {
        let len: usize = len.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad content-length {len:?}"),
            )
        })?;
        return Ok(read_n(stream, buf, len).await?.to_vec());
    }
    if head.status == 204 || head.status == 304 || head.status / 100 == 1 {
        return Ok(Vec::new());
    }
    loop {
        match stream.read_buf(buf).await {
            Ok(0) => return Ok(buf.split().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A one-shot `GET` (`Connection: close`), bounded by `timeout`: `(status, body)`.
pub(crate) async fn simple_get(url: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let fut = async {
        let (host, path) = split_url(url);
        let mut stream = TcpStream::connect(&host).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(4096);
        let head = read_head(&mut stream, &mut buf).await?;
        let body = read_body(&mut stream, &mut buf, &head).await?;
        Ok((head.status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "GET timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn split_url_variants() {
        let s = |u: &str| split_url(u);
        assert_eq!(
            s("http://127.0.0.1:80/readyz"),
            ("127.0.0.1:80".into(), "/readyz".into())
        );
        assert_eq!(s("ws://h:1/a?b=c"), ("h:1".into(), "/a?b=c".into()));
        assert_eq!(s("ws://h:1?b=c"), ("h:1".into(), "/?b=c".into()));
        assert_eq!(s("http://h:1"), ("h:1".into(), "/".into()));
    }

    async fn serve_once(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            while find(&buf, b"\r\n\r\n").is_none() {
                sock.read_buf(&mut buf).await.unwrap();
            }
            sock.write_all(response).await.unwrap();
        });
        format!("http://{addr}/x")
    }

    #[actix_rt::test]
    async fn reads_content_length_and_chunked_bodies() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let got = simple_get(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, (200, "hello".to_string()));

        let url = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n",
        )
        .await;
        let got = simple_get(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, (503, "not ready".to_string()));

        let url = serve_once(b"HTTP/1.1 404 Not Found\r\n\r\nuntil eof").await;
        let got = simple_get(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, (404, "until eof".to_string()));
    }
}
