//! A minimal HTTP/1.1 keep-alive client: one request at a time per connection,
//! `Content-Length` or chunked bodies. Enough for TimeStick and the internal API.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{resolve, Sources};

/// One keep-alive connection to `host:port`.
pub struct Conn {
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    pub fn new(host: &str) -> Conn {
        Conn {
            host: host.to_string(),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends a request (reconnecting if needed) and reads the response within `limit`.
    pub async fn request(
        &mut self,
        sources: &Sources,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        limit: Duration,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(limit, self.exchange(sources, method, path, headers, body)).await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(format!(
                    "{method} {}: no answer within {limit:?}",
                    short(path)
                ))
            }
        }
    }

    async fn exchange(
        &mut self,
        sources: &Sources,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        if self.stream.is_none() {
            let addr = resolve(&self.host).await?;
            let s = sources
                .connect(addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.host))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        // unwrap: the branch above connected when the stream was None.
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(&bytes)
            .await
            .map_err(|e| format!("{method} {}: write: {e}", short(path)))?;
        read_response(stream, &mut self.buf)
            .await
            .map_err(|e| format!("{method} {}: {e}", short(path)))
    }
}

fn short(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

enum Framing {
    Length(usize),
    Chunked,
}

async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Reply, String> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf).map_err(|e| format!("bad response: {e}"))? {
            httparse::Status::Partial => fill(stream, buf).await?,
            httparse::Status::Complete(head) => {
                let status = resp.code.unwrap_or(0);
                let mut framing = Framing::Length(0);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or("bad content-length")?;
                        framing = Framing::Length(n);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Framing::Chunked;
                    }
                }
                buf.drain(..head);
                let body = match framing {
                    Framing::Length(n) => {
                        while buf.len() < n {
                            fill(stream, buf).await?;
                        }
                        buf.drain(..n).collect()
                    }
                    Framing::Chunked => read_chunked(stream, buf).await?,
                };
                return Ok(Reply { status, body });
            }
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(stream, buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for _ in 0..2 {
                let mut got = Vec::new();
                let mut b = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&b[..n]);
                }
                s.write_all(reply).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn content_length_and_keep_alive() {
        let host = serve_once(b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhello").await;
        let mut c = Conn::new(&host);
        let src = Sources::default();
        for _ in 0..2 {
            let r = c
                .request(&src, "POST", "/x", &[], b"{}", Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!((r.status, r.text().as_str()), (202, "hello"));
        }
    }

    #[tokio::test]
    async fn chunked_bodies() {
        let host = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let mut c = Conn::new(&host);
        let r = c
            .request(
                &Sources::default(),
                "GET",
                "/",
                &[],
                b"",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.text(), "abcde");
    }
}
