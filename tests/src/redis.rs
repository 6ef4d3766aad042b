//! [`RedisServer`]: a throwaway `redis-server` on a free port, plus a tiny RESP client
//! ([`RedisServer::cmd`]) for inspecting or poking it from tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::proc::{log_dir, log_stdio, short_id, tail, which};
use crate::wait::{poll_until, within};

/// How long to wait for redis-server to answer PING after (re)start.
pub const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// `redis-server` on `$PATH`; panics with an install hint otherwise (never skips).
pub fn redis_server_bin() -> PathBuf {
    which("redis-server").unwrap_or_else(|| {
        panic!(
            "redis-server not found: install it with `apt-get install -y redis-server` \
             (make test does this)"
        )
    })
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` bulk string (`None` for the nil bulk `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` array (`None` for the nil array `*-1`).
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// Simple and bulk strings as text; `None` for anything else.
    pub fn as_str(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Integer replies.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` if incomplete.
fn parse_resp(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let after = line_end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| format!("bad RESP number {line:?}"))
    };
    match buf.first() {
        Some(b'+') => Ok(Some((Resp::Simple(line), after))),
        Some(b'-') => Ok(Some((Resp::Error(line), after))),
        Some(b':') => Ok(Some((Resp::Int(number()?), after))),
        Some(b'$') => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            let end = after + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Resp::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        Some(b'*') => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Resp::Array(None), after)));
            }
            let mut items = Vec::with_capacity(len as usize);
            let mut pos = after;
            for _ in 0..len {
                match parse_resp(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(Some(items)), pos)))
        }
        _ => Err(format!("unexpected RESP type byte in {line:?}")),
    }
}

fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Sends one command to `port` and reads one reply.
async fn command(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(&encode_command(args)).await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match parse_resp(&buf) {
            Ok(Some((reply, _))) => return Ok(reply),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// A `redis-server` child process (`--save "" --appendonly no`, bound to 127.0.0.1), killed
/// on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
}

impl RedisServer {
    /// Starts redis-server on a fresh free port and waits until it answers PING. A port
    /// another test process bound first (redis-server exits: address in use) is
    /// replaced by another fresh one, up to [`crate::node::PORT_RETRIES`] times.
    pub async fn start() -> RedisServer {
        let mut retries = 0;
        loop {
            let port = crate::free_port();
            let log_path = log_dir().join(format!("redis-{port}-{}.log", short_id()));
            let mut server = RedisServer {
                port,
                child: None,
                log_path,
            };
            let taken = retries < crate::node::PORT_RETRIES;
            if server.launch(taken).await {
                return server;
            }
            retries += 1;
        }
    }

    /// Starts the process on `self.port` and waits for PING. With `retry_if_taken`, a
    /// port in use answers false instead of panicking.
    async fn launch(&mut self, retry_if_taken: bool) -> bool {
        let (stdout, stderr) = log_stdio(&self.log_path);
        let port = self.port.to_string();
        let child = tokio::process::Command::new(redis_server_bin())
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn redis-server on port {port}: {e}"));
        let child = self.child.insert(child);
        let port = self.port;
        let outcome = poll_until(REDIS_START_TIMEOUT, || {
            let exited = child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                ping(port).await.then_some(Ok(()))
            }
        })
        .await;
        match outcome {
            Some(Ok(())) => true,
            Some(Err(_)) if retry_if_taken && tail(&self.log_path, 50).contains("in use") => false,
            Some(Err(status)) => panic!(
                "redis-server on port {port} exited during startup ({status}); log: {}\n{}",
                self.log_path.display(),
                tail(&self.log_path, 50)
            ),
            None => panic!(
                "redis-server on port {port} did not answer PING within \
                 {REDIS_START_TIMEOUT:?}; log: {}\n{}",
                self.log_path.display(),
                tail(&self.log_path, 50)
            ),
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port (stable across [`RedisServer::stop`] / [`RedisServer::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where redis-server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills redis-server (SIGKILL: an abrupt outage) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let what = format!("redis-server on port {} to die", self.port);
            let _ = within(&what, Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Starts redis-server again on the same port (empty: nothing was persisted) and waits
    /// until it answers PING. Panics if it is still running.
    pub async fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: redis-server on port {} still runs",
            self.port
        );
        self.launch(false).await;
    }

    /// Freezes redis-server with SIGSTOP: it keeps its data and its connections but
    /// answers nothing (a stalled or partitioned Redis); commands sent meanwhile wait in
    /// its socket buffers and may still run after [`RedisServer::thaw`]. Dropping a frozen
    /// server still kills it.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
    }

    /// Resumes a server frozen by [`RedisServer::freeze`] (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port));
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill {sig} {pid}`: {e}"));
        assert!(status.success(), "`kill {sig} {pid}` failed: {status}");
    }

    /// Whether redis answers PING right now.
    pub async fn ping(&self) -> bool {
        ping(self.port).await
    }

    /// Runs one command on a fresh connection (bounded to 5 s); panics on I/O failure.
    /// Example: `redis.cmd(&["KEYS", "*"]).await`.
    pub async fn cmd(&self, args: &[&str]) -> Resp {
        let what = format!("redis {args:?} on port {}", self.port);
        within(&what, Duration::from_secs(5), command(self.port, args))
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }
}

/// Raw RESP PING on a fresh connection, bounded to 1 s: `true` on `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut buf = BytesMut::with_capacity(64);
        while !buf.windows(2).any(|w| w == b"\r\n") {
            if stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
        Some(buf.starts_with(b"+PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_parser() {
        assert_eq!(
            parse_resp(b"+PONG\r\n").unwrap(),
            Some((Resp::Simple("PONG".into()), 7))
        );
        assert_eq!(parse_resp(b":12\r\n").unwrap(), Some((Resp::Int(12), 5)));
        assert_eq!(parse_resp(b"$3\r\nab").unwrap(), None);
        assert_eq!(parse_resp(b"$-1\r\n").unwrap(), Some((Resp::Bulk(None), 5)));
        let arr = parse_resp(b"*2\r\n$1\r\na\r\n-ERR x\r\n").unwrap().unwrap();
        assert_eq!(
            arr.0,
            Resp::Array(Some(vec![
                Resp::Bulk(Some(b"a".to_vec())),
                Resp::Error("ERR x".into())
            ]))
        );
        assert_eq!(parse_resp(b"*2\r\n$1\r\na\r\n").unwrap(), None);
    }

    #[actix_rt::test]
    async fn start_ping_stop_start_again() {
        let mut redis = RedisServer::start().await;
        assert!(redis.url().starts_with("redis://127.0.0.1:"));
        assert!(redis.ping().await);
        assert_eq!(
            redis.cmd(&["SET", "k", "v"]).await,
            Resp::Simple("OK".into())
        );
        assert_eq!(
            redis.cmd(&["GET", "k"]).await.as_str().as_deref(),
            Some("v")
        );

        redis.freeze();
        assert!(!redis.ping().await, "a frozen redis answers nothing");
        redis.thaw();
        assert!(redis.ping().await, "thawed, with its data");
        assert_eq!(
            redis.cmd(&["GET", "k"]).await.as_str().as_deref(),
            Some("v")
        );

        let port = redis.port();
        redis.stop().await;
        assert!(!redis.is_running());
        assert!(!redis.ping().await, "redis must be down after stop()");

        redis.start_again().await;
        assert_eq!(redis.port(), port);
        assert!(redis.is_running());
        assert!(redis.ping().await);
        assert_eq!(
            redis.cmd(&["GET", "k"]).await,
            Resp::Bulk(None),
            "nothing persisted"
        );
    }
}
