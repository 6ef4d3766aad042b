//! A minimal Redis client (RESP2) for the raw PUBLISH→SUBSCRIBE latency probe.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Encodes a command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP value (the subset Redis sends to a publisher and a subscriber).
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

/// Parses one value from the front of `buf`; `Some((value, bytes used))` when complete.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..line_end]).map_err(|_| "bad RESP line")?;
    let after = line_end + 2;
    let int = || {
        line.parse::<i64>()
            .map_err(|_| format!("bad RESP integer {line:?}"))
    };
    match buf.first() {
        Some(b'+') => Ok(Some((Resp::Simple(line.into()), after))),
        Some(b'-') => Ok(Some((Resp::Error(line.into()), after))),
        Some(b':') => Ok(Some((Resp::Int(int()?), after))),
        Some(b'$') => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Bulk(Some(buf[after..after + n].to_vec())),
                after + n + 2,
            )))
        }
        Some(b'*') => {
            let n = int()?;
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..n.max(0) {
                match parse(&buf[at..])? {
                    Some((v, used)) => {
                        items.push(v);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), at)))
        }
        _ => Err("unknown RESP type".into()),
    }
}

/// A connection that reads whole values.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("redis {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("redis write: {e}"))
    }

    /// The next value (waits for more bytes as needed).
    pub async fn next(&mut self) -> Result<Resp, String> {
        loop {
            if let Some((v, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(v);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("redis read: {e}"))?;
            if n == 0 {
                return Err("redis closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether a complete value is already buffered.
    pub fn has_buffered(&self) -> bool {
        matches!(parse(&self.buf), Ok(Some(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_pushes() {
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:1\r\n";
        let (v, used) = parse(push).unwrap().unwrap();
        assert_eq!(
            v,
            Resp::Array(vec![
                Resp::Bulk(Some(b"message".to_vec())),
                Resp::Bulk(Some(b"ch".to_vec())),
                Resp::Bulk(Some(b"hello".to_vec())),
            ])
        );
        assert_eq!(parse(&push[used..]).unwrap().unwrap().0, Resp::Int(1));
        assert_eq!(parse(b"*3\r\n$7\r\nmess").unwrap(), None);
        assert_eq!(
            parse(b"+OK\r\n").unwrap().unwrap().0,
            Resp::Simple("OK".into())
        );
        assert!(parse(b"?x\r\n").is_err());
    }
}
