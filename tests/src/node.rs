//! [`Node`]: one running `murmur serve` child process, configured through [`NodeBuilder`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;

use crate::proc::{clean_command, log_dir, log_stdio, murmur_command, short_id, tail};
use crate::rawhttp::simple_get;
use crate::redis::RedisServer;
use crate::wait::{poll_until, within};
use crate::{API_KEY, JWT_SECRET, RECOVERY_SECRET};

/// How long [`NodeBuilder::spawn`] waits for `/readyz` by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Startups [`NodeBuilder::spawn`] retries on other fresh ports after an address in use.
pub const PORT_RETRIES: usize = 3;
/// What the node logs when a listener's port is taken.
const IN_USE: &str = "Address already in use";

/// Configuration of a node to spawn. Defaults: fresh free ports for the three listeners,
/// node id `test-<8 hex>`, the crate's secrets, `MURMUR_DRAIN_DELAY=0s`, `MURMUR_LOG=warn`,
/// in-memory mode (no redis). Variables set with [`NodeBuilder::env`] are applied last and
/// override everything.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node_id: String,
    public_port: u16,
    internal_port: u16,
    sink_port: u16,
    redis_url: Option<String>,
    log: String,
    log_format: Option<String>,
    env: Vec<(String, Option<String>)>,
    ready_timeout: Duration,
    program: Option<PathBuf>,
    /// The ports were given ([`NodeBuilder::ports`]): never replaced on a retry.
    fixed_ports: bool,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeBuilder {
    /// The defaults described on the type.
    pub fn new() -> Self {
        NodeBuilder {
            node_id: format!("test-{}", short_id()),
            public_port: crate::free_port(),
            internal_port: crate::free_port(),
            sink_port: crate::free_port(),
            redis_url: None,
            log: "warn".to_string(),
            log_format: None,
            env: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            program: None,
            fixed_ports: false,
        }
    }

    /// Sets `MURMUR_NODE_ID`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Uses explicit ports (public, internal, sink) instead of fresh ones.
    pub fn ports(mut self, public: u16, internal: u16, sink: u16) -> Self {
        (self.public_port, self.internal_port, self.sink_port) = (public, internal, sink);
        self.fixed_ports = true;
        self
    }

    /// Sets `MURMUR_REDIS_URL` (cluster mode).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Sets `MURMUR_REDIS_URL` to `redis`'s URL.
    pub fn redis(self, redis: &RedisServer) -> Self {
        self.redis_url(redis.url())
    }

    /// Sets `MURMUR_LOG` (tracing filter; default `warn`).
    pub fn log(mut self, filter: impl Into<String>) -> Self {
        self.log = filter.into();
        self
    }

    /// Sets `MURMUR_LOG_FORMAT` (`pretty` or `json`).
    pub fn log_format(mut self, format: impl Into<String>) -> Self {
        self.log_format = Some(format.into());
        self
    }

    /// Sets any environment variable (applied last, so it overrides the defaults).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable (e.g. `MURMUR_API_KEY`) from the child's environment.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// How long [`NodeBuilder::spawn`] waits for `/readyz` (default [`READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Runs `program serve` instead of [`crate::murmur_bin`] (e.g. another build).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// The node id this builder will use.
    pub fn id(&self) -> &str {
        &self.node_id
    }

    /// Starts the node and waits until `GET /readyz` answers 200. Panics (with the log path
    /// and its last 50 lines) if the process exits first or is not ready in time.
    ///
    /// Fresh ports are free when picked, but another test process may bind one before
    /// the node does: a node that exits at startup because an address is in use is
    /// started again on other fresh ports (up to [`PORT_RETRIES`] times), unless the
    /// ports were given.
    pub async fn spawn(self) -> Node {
        let timeout = self.ready_timeout;
        let mut builder = self;
        let mut node = builder.clone().spawn_unready();
        let mut retries = 0;
        loop {
            match node.ready_within(timeout).await {
                Ok(()) => return node,
                Err(Some(_))
                    if retries < PORT_RETRIES
                        && !builder.fixed_ports
                        && node.log_tail(50).contains(IN_USE) =>
                {
                    retries += 1;
                    builder = builder.fresh_ports();
                    node = builder.clone().spawn_unready();
                }
                Err(failure) => node.startup_failed(failure, timeout),
            }
        }
    }

    fn fresh_ports(mut self) -> Self {
        self.public_port = crate::free_port();
        self.internal_port = crate::free_port();
        self.sink_port = crate::free_port();
        self
    }

    /// Starts the node without waiting for readiness (for startup-failure tests; follow up
    /// with [`Node::wait_exit`] or [`Node::wait_ready`]).
    pub fn spawn_unready(self) -> Node {
        let log_path = log_dir().join(format!("{}.log", self.node_id));
        let mut cmd = match &self.program {
            Some(program) => clean_command(program),
            None => murmur_command(),
        };
        cmd.arg("serve")
            .env("MURMUR_LISTEN", format!("127.0.0.1:{}", self.public_port))
            .env(
                "MURMUR_INTERNAL_LISTEN",
                format!("127.0.0.1:{}", self.internal_port),
            )
            .env(
                "MURMUR_SINK_LISTEN",
                format!("127.0.0.1:{}", self.sink_port),
            )
            .env("MURMUR_NODE_ID", &self.node_id)
            .env("MURMUR_JWT_SECRET", JWT_SECRET)
            .env("MURMUR_RECOVERY_SECRET", RECOVERY_SECRET)
            .env("MURMUR_API_KEY", API_KEY)
            .env("MURMUR_DRAIN_DELAY", "0s")
            .env("MURMUR_LOG", &self.log);
        if let Some(url) = &self.redis_url {
            cmd.env("MURMUR_REDIS_URL", url);
        }
        if let Some(format) = &self.log_format {
            cmd.env("MURMUR_LOG_FORMAT", format);
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let banner = format!("=== murmur-tests: spawning {cmd:?}\n");
        append(&log_path, &banner);
        let (stdout, stderr) = log_stdio(&log_path);
        cmd.stdout(stdout).stderr(stderr);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot spawn murmur node {}: {e} (log: {})",
                self.node_id,
                log_path.display()
            )
        });
        let pid = child.id().unwrap_or_default();
        Node {
            config: self,
            child,
            pid,
            log_path,
        }
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = result {
        panic!("cannot write log file {}: {e}", path.display());
    }
}

/// A running `murmur serve` process. Dropping it kills the process (SIGKILL); if the test is
/// panicking, the log path and tail are printed to stderr first.
pub struct Node {
    config: NodeBuilder,
    child: Child,
    pid: u32,
    log_path: PathBuf,
}

impl Node {
    /// `NodeBuilder::new().spawn()`.
    pub async fn start() -> Node {
        NodeBuilder::new().spawn().await
    }

    /// `MURMUR_NODE_ID`.
    pub fn id(&self) -> &str {
        &self.config.node_id
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://127.0.0.1:<public port>`.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.config.public_port)
    }

    /// `ws://127.0.0.1:<public port><path>` (`path` starts with `/`).
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.config.public_port)
    }

    /// `http://127.0.0.1:<internal port>` (healthz, readyz, metrics, `/api/v1`).
    pub fn internal_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.config.internal_port)
    }

    /// The public listener address.
    pub fn public_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.public_port))
    }

    /// The internal listener address.
    pub fn internal_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.internal_port))
    }

    /// The TCP sink listener address.
    pub fn sink_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.sink_port))
    }

    /// `MURMUR_REDIS_URL`, if the node runs in cluster mode.
    pub fn redis_url(&self) -> Option<&str> {
        self.config.redis_url.as_deref()
    }

    /// The same configuration (id, ports, env) for starting a replacement process after this
    /// one was killed.
    pub fn respawn_builder(&self) -> NodeBuilder {
        self.config.clone()
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log_contents(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    /// The status of `GET /readyz` right now; 0 if the listener does not answer.
    pub async fn readyz(&self) -> u16 {
        let url = format!("{}/readyz", self.internal_url());
        simple_get(&url, Duration::from_secs(5))
            .await
            .map_or(0, |(status, _)| status)
    }

    /// Waits until `GET /readyz` answers 200: `Err(Some(status))` if the process exits
    /// first, `Err(None)` if `timeout` elapses.
    async fn ready_within(&mut self, timeout: Duration) -> Result<(), Option<ExitStatus>> {
        let url = format!("{}/readyz", self.internal_url());
        let child = &mut self.child;
        let outcome = poll_until(timeout, || {
            let exited = child.try_wait().ok().flatten();
            let url = url.clone();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                match simple_get(&url, Duration::from_secs(2)).await {
                    Ok((200, _)) => Some(Ok(())),
                    _ => None,
                }
            }
        })
        .await;
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(status)) => Err(Some(status)),
            None => Err(None),
        }
    }

    /// Waits until `GET /readyz` answers 200; panics with the log tail if the process exits
    /// or `timeout` elapses.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        if let Err(failure) = self.ready_within(timeout).await {
            self.startup_failed(failure, timeout);
        }
    }

    /// Panics with the log tail: the node exited during startup (`Some`) or was not
    /// ready after `timeout`.
    fn startup_failed(&self, exited: Option<ExitStatus>, timeout: Duration) -> ! {
        match exited {
            Some(status) => panic!(
                "murmur node {} exited during startup ({status}); log: {}\n\
                 --- last 50 lines ---\n{}",
                self.id(),
                self.log_path.display(),
                self.log_tail(50)
            ),
            None => panic!(
                "murmur node {} not ready ({}/readyz != 200) after {timeout:?}; log: {}\n\
                 --- last 50 lines ---\n{}",
                self.id(),
                self.internal_url(),
                self.log_path.display(),
                self.log_tail(50)
            ),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, then waits (up to 10 s) until the process is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let what = format!("murmur node {} to die after SIGKILL", self.id());
        let _ = within(&what, Duration::from_secs(10), self.child.wait()).await;
    }

    /// SIGTERM (graceful shutdown / drain) via the `kill` command; does not wait. No-op if
    /// the process already exited.
    pub fn terminate(&mut self) {
        if !self.is_running() {
            return;
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -TERM {}`: {e}", self.pid));
        assert!(
            status.success(),
            "`kill -TERM {}` failed: {status}",
            self.pid
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => panic!("waiting for murmur node {} failed: {e}", self.id()),
            Err(_) => None,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- murmur node {} (pid {}) log: {} ---\n{}",
                self.id(),
                self.pid,
                self.log_path.display(),
                self.log_tail(20)
            );
        }
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const FAKE_ENV: &str = "MURMUR_TESTS_FAKE_NODE";
    const FAKE_BANNER: &str = "fake murmur node up";

    /// Not a real test: when this test binary is spawned as `<test-exe> serve` with
    /// `MURMUR_TESTS_FAKE_NODE=1` (libtest then runs only tests whose name contains "serve"),
    /// it impersonates `murmur serve`: answers 200 to everything on MURMUR_INTERNAL_LISTEN
    /// until killed. Otherwise it returns at once.
    #[test]
    fn fake_murmur_serve_entrypoint() {
        if std::env::var_os(FAKE_ENV).is_none() {
            return;
        }
        let addr = std::env::var("MURMUR_INTERNAL_LISTEN").unwrap();
        let listener = std::net::TcpListener::bind(&addr).unwrap();
        let id = std::env::var("MURMUR_NODE_ID").unwrap();
        // Straight to the fd, bypassing libtest's output capture.
        let _ = writeln!(std::io::stderr(), "{FAKE_BANNER}: {id} on {addr}");
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    }

    fn fake_node() -> NodeBuilder {
        NodeBuilder::new()
            .program(std::env::current_exe().unwrap())
            .env(FAKE_ENV, "1")
    }

    #[actix_rt::test]
    async fn node_lifecycle_against_a_fake_binary() {
        let mut node = fake_node().log("debug").spawn().await;
        assert!(
            node.id().starts_with("test-") && node.id().len() == 13,
            "{}",
            node.id()
        );
        assert!(node.is_running());
        assert_eq!(node.readyz().await, 200);
        let log = node.log_contents();
        assert!(
            log.contains(&format!("{FAKE_BANNER}: {}", node.id())),
            "{log}"
        );
        assert!(log.contains("MURMUR_LOG") && log.contains("debug"), "{log}");
        assert!(node.log_path().starts_with(std::env::temp_dir()));
        assert_eq!(
            node.public_url(),
            format!("http://127.0.0.1:{}", node.public_addr().port())
        );
        assert!(node.ws_url("/starling").starts_with("ws://127.0.0.1:"));
        assert!(node
            .internal_url()
            .ends_with(&node.internal_addr().port().to_string()));

        node.terminate();
        let status = node
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits on SIGTERM");
        assert!(!status.success());
        assert!(!node.is_running());
        node.terminate(); // no-op once exited

        let mut again = node.respawn_builder().spawn().await;
        assert_eq!(again.id(), node.id());
        assert_eq!(again.internal_addr(), node.internal_addr());
        again.kill().await;
        assert!(!again.is_running());
        assert_eq!(again.readyz().await, 0);
    }

    #[actix_rt::test]
    #[should_panic(expected = "exited during startup")]
    async fn early_exit_panics_with_the_log() {
        // `sh serve` fails: there is no script called "serve".
        NodeBuilder::new().program("/bin/sh").spawn().await;
    }
}
