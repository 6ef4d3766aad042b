//! TCP connections from a rotating set of source addresses. One source address gives
//! about 28k ephemeral ports towards one destination; with several 127.0.0.x sources
//! (all of 127.0.0.0/8 is local on Linux) a ramp can open more connections than that.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};

/// Source addresses handed out round-robin. Empty = let the kernel choose.
#[derive(Debug, Default)]
pub struct Sources {
    ips: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    pub fn new(ips: Vec<IpAddr>) -> Arc<Sources> {
        Arc::new(Sources {
            ips,
            next: AtomicUsize::new(0),
        })
    }

    /// Parses `127.0.0.1,127.0.0.2` or a range `127.0.0.1-127.0.0.4`.
    pub fn parse(spec: &str) -> Result<Vec<IpAddr>, String> {
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((a, b)) = part.split_once('-') {
                let a: std::net::Ipv4Addr = a.parse().map_err(|e| format!("{part}: {e}"))?;
                let b: std::net::Ipv4Addr = b.parse().map_err(|e| format!("{part}: {e}"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 255 {
                    return Err(format!("{part}: bad range"));
                }
                out.extend((a..=b).map(|n| IpAddr::V4(n.into())));
            } else {
                out.push(part.parse().map_err(|e| format!("{part}: {e}"))?);
            }
        }
        Ok(out)
    }

    /// Connects to `addr`, from the next source address if any; sets TCP_NODELAY.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let stream = if self.ips.is_empty() {
            TcpStream::connect(addr).await?
        } else {
            let ip = self.ips[self.next.fetch_add(1, Ordering::Relaxed) % self.ips.len()];
            let socket = match ip {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Resolves `host:port` (the first address).
pub async fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(host_port)
        .await
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port}: no address"))
}

/// Splits `ws://host:port/path?q` or `http://…` into (`host:port`, `/path?q`).
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{url}: expected scheme://host:port/path"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs() {
        let v = Sources::parse("127.0.0.1-127.0.0.3,127.0.0.9").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2].to_string(), "127.0.0.3");
        assert!(Sources::parse("127.0.0.5-127.0.0.1").is_err());
        assert!(Sources::parse("nope").is_err());
        assert!(Sources::parse("").unwrap().is_empty());
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("ws://127.0.0.1:8081/starling?token=x").unwrap(),
            ("127.0.0.1:8081".into(), "/starling?token=x".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into())
        );
        assert!(split_url("localhost:80").is_err());
    }

    #[tokio::test]
    async fn connects_from_a_chosen_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sources = Sources::new(Sources::parse("127.0.0.2").unwrap());
        let (client, accepted) = tokio::join!(sources.connect(addr), listener.accept());
        let (_, peer) = accepted.unwrap();
        client.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
    }
}
