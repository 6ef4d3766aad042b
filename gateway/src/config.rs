//! Configuration: flags, each with an environment variable, over an optional TOML file
//! (`--config`), over development defaults (`MURMUR_DEV=1`), over built-in defaults.
//! Explicitly set values always win.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use murmur_shared::duration;
use murmur_shared::ids::NodeId;
use serde::Deserialize;

/// Development secrets, used only with `MURMUR_DEV=1` for settings left unset.
pub const DEV_JWT_SECRET: &str = "murmur-dev-jwt-secret";
pub const DEV_RECOVERY_SECRET: &str = "murmur-dev-recovery-secret";
/// The push webhook's HMAC key in development mode.
pub const DEV_PUSH_SECRET: &str = "murmur-dev-push-secret";
pub const DEV_API_KEY: &str = "murmur-dev-api-key";

/// `murmur serve` flags. Every one has an environment variable; a TOML file given with
/// `--config` may set the same keys (snake_case names: `listen`, `jwt_secret`, ...).
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "MURMUR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Public address: every client protocol over HTTP/WebSocket [default: 127.0.0.1:8080].
    #[arg(long, env = "MURMUR_LISTEN")]
    pub listen: Option<String>,
    /// Internal address: /metrics, /healthz, /readyz, /api/v1/* [default: 127.0.0.1:9090].
    #[arg(long, env = "MURMUR_INTERNAL_LISTEN")]
    pub internal_listen: Option<String>,
    /// Sink over TCP [default: 127.0.0.1:2020].
    #[arg(long, env = "MURMUR_SINK_LISTEN")]
    pub sink_listen: Option<String>,
    /// PEM certificate of the Sink TLS listener.
    #[arg(long, env = "MURMUR_SINK_TLS_CERT")]
    pub sink_tls_cert: Option<PathBuf>,
    /// PEM private key of the Sink TLS listener.
    #[arg(long, env = "MURMUR_SINK_TLS_KEY")]
    pub sink_tls_key: Option<PathBuf>,
    /// PEM CA that Sink client certificates must chain to.
    #[arg(long, env = "MURMUR_SINK_TLS_CLIENT_CA")]
    pub sink_tls_client_ca: Option<PathBuf>,
    /// Redis URL; unset = embedded single-node mode with all state in memory.
    #[arg(long, env = "MURMUR_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so clusters can share a Redis [default: murmur:].
    #[arg(long, env = "MURMUR_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// This node's identity in the cluster [default: hostname + random suffix].
    #[arg(long, env = "MURMUR_NODE_ID")]
    pub node_id: Option<String>,
    /// HS256 key that client tokens are verified with.
    #[arg(long, env = "MURMUR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key: RS256/ES256 client-token verification instead of HS256.
    #[arg(long, env = "MURMUR_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// HS256 key for Helios-Starling recovery tokens; the same on every node.
    #[arg(long, env = "MURMUR_RECOVERY_SECRET", hide_env_values = true)]
    pub recovery_secret: Option<String>,
    /// Bearer key for /api/v1/*; unset = the API answers 401 to everyone.
    #[arg(long, env = "MURMUR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The app backend's webhook for pushes to offline chat participants (`http://…` or
    /// `https://…`); unset = no pushes.
    #[arg(long, env = "MURMUR_PUSH_WEBHOOK_URL")]
    pub push_webhook_url: Option<String>,
    /// HMAC-SHA256 key of the webhook's `X-Murmur-Signature` (needed with the URL).
    #[arg(long, env = "MURMUR_PUSH_WEBHOOK_SECRET", hide_env_values = true)]
    pub push_webhook_secret: Option<String>,
    /// Pushes queued at most, cluster-wide; past it they are dead-lettered [default: 100000].
    #[arg(long, env = "MURMUR_PUSH_QUEUE")]
    pub push_queue: Option<String>,
    /// `1`: development defaults for settings left unset (printed with a warning).
    #[arg(long, env = "MURMUR_DEV")]
    pub dev: Option<String>,
    /// After SIGTERM: readiness false, wait this long, then drain clients [default: 5s].
    #[arg(long, env = "MURMUR_DRAIN_DELAY")]
    pub drain_delay: Option<String>,
    /// After SIGTERM: exit by this deadline [default: 25s].
    #[arg(long, env = "MURMUR_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// Sink clients with a lower application version (semver) are refused (code 5).
    #[arg(long, env = "MURMUR_SINK_MIN_APP_VERSION")]
    pub sink_min_app_version: Option<String>,
    /// Idle TimeStick sessions are stopped by the receiver after this long [default: 5m].
    #[arg(long, env = "MURMUR_TIMESTICK_IDLE")]
    pub timestick_idle: Option<String>,
    /// How long TimeStick KILL level 3 keeps a caller from starting sessions [default: 5m].
    #[arg(long, env = "MURMUR_TIMESTICK_QUARANTINE")]
    pub timestick_quarantine: Option<String>,
    /// A Sink connection with nothing received for this long is closed [default: 90s].
    #[arg(long, env = "MURMUR_SINK_IDLE")]
    pub sink_idle: Option<String>,
    /// A node whose heartbeat is older than this is dead: its providers and sessions are
    /// cleaned up by the others [default: 10s; heartbeats every fifth of it].
    #[arg(long, env = "MURMUR_HEARTBEAT_TTL")]
    pub heartbeat_ttl: Option<String>,
    /// How long a disconnected Helios Starling can be recovered [default: 5m].
    #[arg(long, env = "MURMUR_RECOVERY_WINDOW")]
    pub recovery_window: Option<String>,
    /// Bytes buffered for one client socket before the client is a slow consumer and is
    /// closed with 4001 (`65536`, `512KiB`, `2MiB`) [default: 2MiB].
    #[arg(long, env = "MURMUR_OUTBOUND_MAX_BYTES")]
    pub outbound_max_bytes: Option<String>,
    /// Frames buffered for one client socket before it is closed with 4001 [default: 8192].
    #[arg(long, env = "MURMUR_OUTBOUND_MAX_FRAMES")]
    pub outbound_max_frames: Option<String>,
    /// How long a client socket's writer waits, once bytes are pending, before it
    /// writes, so that what comes meanwhile goes out in the same write (`0`, `1ms`, at
    /// most `50ms`): fewer writes per delivery at the cost of that much latency
    /// [default: 0, off].
    #[arg(long, env = "MURMUR_WRITE_DELAY")]
    pub write_delay: Option<String>,
    /// Bytes buffered for all client sockets of this node together; past it, clients
    /// with a backlog are closed with 4001 [default: 512MiB].
    #[arg(long, env = "MURMUR_OUTBOUND_NODE_MAX_BYTES")]
    pub outbound_node_max_bytes: Option<String>,
    /// Publications kept per channel for recovery replay and TimeStick reads; a Starling
    /// that missed more than this cannot be recovered exactly [default: 1000].
    #[arg(long, env = "MURMUR_CHANNEL_HISTORY")]
    pub channel_history: Option<String>,
    /// Tracing filter [default: info].
    #[arg(long, env = "MURMUR_LOG")]
    pub log: Option<String>,
    /// `pretty` or `json` [default: pretty].
    #[arg(long, env = "MURMUR_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How client tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    Hs256(String),
    PublicKeyPem(PathBuf),
}

/// The resolved configuration of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub internal_listen: String,
    pub sink_listen: String,
    pub sink_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub node_id: NodeId,
    pub jwt: JwtKey,
    pub recovery_secret: String,
    pub api_key: Option<String>,
    /// Pushes for offline chat participants (`None`: off).
    pub push: Option<murmur_broker::PushSettings>,
    pub dev: bool,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub sink_min_app_version: Option<String>,
    pub timestick_idle: Duration,
    pub heartbeat_ttl: Duration,
    pub recovery_window: Duration,
    pub sink_idle: Duration,
    pub timestick_quarantine: Duration,
    /// Per-connection outbound bounds (bytes and frames).
    pub outbound: crate::edge::OutboundLimits,
    /// Node-wide ceiling of bytes buffered for client sockets.
    pub outbound_node_max_bytes: usize,
    /// Publications kept per channel.
    pub channel_history: usize,
    pub log: String,
    pub log_format: LogFormat,
    /// Warnings to print once logging is up (dev defaults in use, generated secrets).
    pub warnings: Vec<String>,
}

impl ServeArgs {
    /// Fills every unset field from `other`.
    fn or(self, other: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($f:ident),*) => { ServeArgs { config: self.config.or(other.config), $($f: self.$f.or(other.$f)),* } };
        }
        pick!(
            listen,
            internal_listen,
            sink_listen,
            sink_tls_cert,
            sink_tls_key,
            sink_tls_client_ca,
            redis_url,
            redis_prefix,
            node_id,
            jwt_secret,
            jwt_public_key,
            recovery_secret,
            api_key,
            push_webhook_url,
            push_webhook_secret,
            push_queue,
            dev,
            drain_delay,
            drain_timeout,
            sink_min_app_version,
            timestick_idle,
            heartbeat_ttl,
            recovery_window,
            sink_idle,
            timestick_quarantine,
            outbound_max_bytes,
            outbound_max_frames,
            write_delay,
            outbound_node_max_bytes,
            channel_history,
            log,
            log_format
        )
    }

    /// Resolves flags/env over the TOML file over defaults.
    pub fn resolve(self) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => ServeArgs::default(),
        };
        resolve_merged(self.or(file))
    }
}

fn load_file(path: &Path) -> Result<ServeArgs, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

fn flag(value: Option<&str>) -> bool {
    matches!(value.map(str::trim), Some("1" | "true" | "yes" | "on"))
}

/// The longest accepted `MURMUR_WRITE_DELAY`.
const MAX_WRITE_DELAY: Duration = Duration::from_millis(50);

fn at_most(d: Duration, max: Duration, name: &str) -> Result<Duration, String> {
    if d > max {
        return Err(format!("{name}: at most {} ms", max.as_millis()));
    }
    Ok(d)
}

fn dur(value: Option<String>, name: &str, default: Duration) -> Result<Duration, String> {
    match value {
        Some(v) => duration::parse(&v).map_err(|e| format!("{name}: {e}")),
        None => Ok(default),
    }
}

/// A byte size: a plain count or a number with `B`, `KiB`, `MiB` or `GiB`.
fn bytes(value: Option<String>, name: &str, default: usize) -> Result<usize, String> {
    let Some(v) = value else {
        return Ok(default);
    };
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("{name}: unknown unit {other:?} (B, KiB, MiB, GiB)")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{name}: expected a byte size like 65536 or 2MiB, got {v:?}"))?;
    match n.checked_mul(scale) {
        Some(b) if b >= 1024 => Ok(b),
        _ => Err(format!(
            "{name}: must be between 1KiB and the address space"
        )),
    }
}

fn count(value: Option<String>, name: &str, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{name}: expected a positive whole number, got {v:?}"
            )),
        },
    }
}

fn positive(d: Duration, name: &str) -> Result<Duration, String> {
    if d < Duration::from_millis(100) {
        return Err(format!("{name} must be at least 100ms"));
    }
    Ok(d)
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "murmur".into());
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!(
        "{}-{suffix}",
        if host.is_empty() { "murmur" } else { &host }
    )
}

fn resolve_merged(a: ServeArgs) -> Result<Settings, String> {
    let dev = flag(a.dev.as_deref());
    let mut warnings = Vec::new();
    let node_id = a.node_id.unwrap_or_else(default_node_id);
    NodeId::validate(&node_id).map_err(|e| format!("MURMUR_NODE_ID: {e}"))?;

    let jwt = match (a.jwt_public_key, a.jwt_secret) {
        (Some(path), _) => JwtKey::PublicKeyPem(path),
        (None, Some(secret)) if !secret.is_empty() => JwtKey::Hs256(secret),
        _ if dev => {
            warnings.push(format!(
                "development mode: client tokens use the fixed secret {DEV_JWT_SECRET:?}"
            ));
            JwtKey::Hs256(DEV_JWT_SECRET.into())
        }
        _ => {
            return Err(
                "set MURMUR_JWT_SECRET or MURMUR_JWT_PUBLIC_KEY (or MURMUR_DEV=1 for \
                        development defaults)"
                    .into(),
            )
        }
    };
    let recovery_secret = match a.recovery_secret {
        Some(s) if !s.is_empty() => s,
        _ if dev => {
            warnings.push(format!(
                "development mode: recovery tokens use the fixed secret {DEV_RECOVERY_SECRET:?}"
            ));
            DEV_RECOVERY_SECRET.into()
        }
        _ if a.redis_url.is_some() => {
            return Err("cluster mode needs MURMUR_RECOVERY_SECRET, the same on every node".into())
        }
        _ => {
            warnings.push(
                "MURMUR_RECOVERY_SECRET unset: using a random one; recovery tokens die with \
                 this process"
                    .into(),
            );
            uuid::Uuid::new_v4().simple().to_string()
        }
    };
    let api_key = match a.api_key {
        Some(k) if !k.is_empty() => Some(k),
        _ if dev => {
            warnings.push(format!("development mode: the API key is {DEV_API_KEY:?}"));
            Some(DEV_API_KEY.into())
        }
        _ => {
            warnings.push("MURMUR_API_KEY unset: /api/v1 answers 401 to everyone".into());
            None
        }
    };
    let push = match a.push_webhook_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(format!(
                    "MURMUR_PUSH_WEBHOOK_URL: expected an http:// or https:// URL, got {url:?}"
                ));
            }
            let secret = match a.push_webhook_secret.filter(|s| !s.is_empty()) {
                Some(s) => s,
                None if dev => {
                    warnings.push(format!(
                        "development mode: pushes are signed with the fixed secret {DEV_PUSH_SECRET:?}"
                    ));
                    DEV_PUSH_SECRET.into()
                }
                None => {
                    return Err(
                        "MURMUR_PUSH_WEBHOOK_URL needs MURMUR_PUSH_WEBHOOK_SECRET (the webhook's HMAC key)"
                            .into(),
                    )
                }
            };
            Some(murmur_broker::PushSettings {
                url,
                secret,
                queue_max: count(a.push_queue, "MURMUR_PUSH_QUEUE", 100_000)?,
            })
        }
    };
    let sink_tls = match (a.sink_tls_cert, a.sink_tls_key, a.sink_tls_client_ca) {
        (Some(c), Some(k), Some(ca)) => Some((c, k, ca)),
        (None, None, None) => None,
        _ => return Err("MURMUR_SINK_TLS_CERT, _KEY and _CLIENT_CA must be set together".into()),
    };
    let log_format = match a.log_format.as_deref().unwrap_or("pretty") {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            return Err(format!(
                "MURMUR_LOG_FORMAT: expected pretty or json, got {other:?}"
            ))
        }
    };
    Ok(Settings {
        listen: a.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
        internal_listen: a.internal_listen.unwrap_or_else(|| "127.0.0.1:9090".into()),
        sink_listen: a.sink_listen.unwrap_or_else(|| "127.0.0.1:2020".into()),
        sink_tls,
        redis_url: a.redis_url.filter(|u| !u.is_empty()),
        redis_prefix: a.redis_prefix.unwrap_or_else(|| "murmur:".into()),
        node_id: NodeId(node_id),
        jwt,
        recovery_secret,
        api_key,
        push,
        dev,
        drain_delay: dur(a.drain_delay, "MURMUR_DRAIN_DELAY", Duration::from_secs(5))?,
        drain_timeout: dur(
            a.drain_timeout,
            "MURMUR_DRAIN_TIMEOUT",
            Duration::from_secs(25),
        )?,
        sink_min_app_version: a.sink_min_app_version.filter(|v| !v.is_empty()),
        timestick_idle: dur(
            a.timestick_idle,
            "MURMUR_TIMESTICK_IDLE",
            Duration::from_secs(300),
        )?,
        heartbeat_ttl: positive(
            dur(
                a.heartbeat_ttl,
                "MURMUR_HEARTBEAT_TTL",
                Duration::from_secs(10),
            )?,
            "MURMUR_HEARTBEAT_TTL",
        )?,
        recovery_window: positive(
            dur(
                a.recovery_window,
                "MURMUR_RECOVERY_WINDOW",
                Duration::from_secs(300),
            )?,
            "MURMUR_RECOVERY_WINDOW",
        )?,
        sink_idle: positive(
            dur(a.sink_idle, "MURMUR_SINK_IDLE", Duration::from_secs(90))?,
            "MURMUR_SINK_IDLE",
        )?,
        timestick_quarantine: dur(
            a.timestick_quarantine,
            "MURMUR_TIMESTICK_QUARANTINE",
            Duration::from_secs(300),
        )?,
        outbound: crate::edge::OutboundLimits {
            max_bytes: bytes(a.outbound_max_bytes, "MURMUR_OUTBOUND_MAX_BYTES", 2 << 20)?,
            max_frames: count(a.outbound_max_frames, "MURMUR_OUTBOUND_MAX_FRAMES", 8192)?,
            write_delay: at_most(
                dur(a.write_delay, "MURMUR_WRITE_DELAY", Duration::ZERO)?,
                MAX_WRITE_DELAY,
                "MURMUR_WRITE_DELAY",
            )?,
        },
        outbound_node_max_bytes: bytes(
            a.outbound_node_max_bytes,
            "MURMUR_OUTBOUND_NODE_MAX_BYTES",
            512 << 20,
        )?,
        channel_history: count(a.channel_history, "MURMUR_CHANNEL_HISTORY", 1000)?,
        log: a.log.unwrap_or_else(|| "info".into()),
        log_format,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            jwt_secret: Some("s".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = args().resolve().unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.internal_listen, "127.0.0.1:9090");
        assert_eq!(s.sink_listen, "127.0.0.1:2020");
        assert_eq!(s.drain_delay, Duration::from_secs(5));
        assert_eq!(s.drain_timeout, Duration::from_secs(25));
        assert_eq!(s.timestick_idle, Duration::from_secs(300));
        assert_eq!(s.api_key, None);
        assert_eq!(s.outbound.max_bytes, 2 << 20);
        assert_eq!(s.outbound.max_frames, 8192);
        assert_eq!(s.outbound.write_delay, Duration::ZERO);
        assert_eq!(s.outbound_node_max_bytes, 512 << 20);
        assert!(NodeId::validate(&s.node_id.0).is_ok());
    }

    #[test]
    fn the_write_delay_is_bounded() {
        let with = |v: &str| {
            ServeArgs {
                write_delay: Some(v.into()),
                ..args()
            }
            .resolve()
        };
        assert_eq!(
            with("2ms").unwrap().outbound.write_delay,
            Duration::from_millis(2)
        );
        assert_eq!(
            with("51ms").unwrap_err(),
            "MURMUR_WRITE_DELAY: at most 50 ms"
        );
    }

    #[test]
    fn pushes_need_an_http_url_and_a_key() {
        let with = |url: &str, secret: Option<&str>, dev: bool| {
            ServeArgs {
                push_webhook_url: Some(url.into()),
                push_webhook_secret: secret.map(str::to_string),
                push_queue: Some("50".into()),
                dev: dev.then(|| "1".into()),
                ..args()
            }
            .resolve()
        };
        let on = with("https://b.example/push", Some("k"), false).unwrap();
        assert_eq!(
            on.push,
            Some(murmur_broker::PushSettings {
                url: "https://b.example/push".into(),
                secret: "k".into(),
                queue_max: 50,
            })
        );
        assert_eq!(
            with("https://b.example/push", None, false).unwrap_err(),
            "MURMUR_PUSH_WEBHOOK_URL needs MURMUR_PUSH_WEBHOOK_SECRET (the webhook's HMAC key)"
        );
        let dev = with("http://b/p", None, true).unwrap();
        assert_eq!(dev.push.unwrap().secret, DEV_PUSH_SECRET);
        assert_eq!(
            with("ftp://b/p", Some("k"), false).unwrap_err(),
            "MURMUR_PUSH_WEBHOOK_URL: expected an http:// or https:// URL, got \"ftp://b/p\""
        );
        assert_eq!(args().resolve().unwrap().push, None, "off by default");
    }

    #[test]
    fn without_a_key_and_without_dev_it_refuses_to_start() {
        assert!(ServeArgs::default().resolve().is_err());
    }

    #[test]
    fn dev_mode_fills_only_what_is_unset() {
        let s = ServeArgs {
            dev: Some("1".into()),
            api_key: Some("mine".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.jwt, JwtKey::Hs256(DEV_JWT_SECRET.into()));
        assert_eq!(s.recovery_secret, DEV_RECOVERY_SECRET);
        assert_eq!(s.api_key.as_deref(), Some("mine"));
        assert!(!s.warnings.is_empty());
    }

    #[test]
    fn cluster_mode_needs_a_shared_recovery_secret() {
        let a = ServeArgs {
            redis_url: Some("redis://x".into()),
            ..args()
        };
        assert!(a.resolve().unwrap_err().contains("MURMUR_RECOVERY_SECRET"));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("murmur-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("murmur.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:1\"\ndrain_delay = \"1s\"\njwt_secret = \"f\"\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:2".into()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:2");
        assert_eq!(s.drain_delay, Duration::from_secs(1));
        assert_eq!(s.jwt, JwtKey::Hs256("f".into()));
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let bad = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve();
        assert!(bad.unwrap_err().contains("invalid config file"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = ServeArgs {
            drain_delay: Some("soon".into()),
            ..args()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("MURMUR_DRAIN_DELAY"));
        let e = ServeArgs {
            node_id: Some("a b".into()),
            ..args()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("MURMUR_NODE_ID"));
        let e = ServeArgs {
            log_format: Some("xml".into()),
            ..args()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("MURMUR_LOG_FORMAT"));
    }

    #[test]
    fn byte_sizes_take_plain_counts_and_binary_units() {
        let size = |v: &str| bytes(Some(v.into()), "X", 0);
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("512KiB"), Ok(512 << 10));
        assert_eq!(size("2MiB"), Ok(2 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert!(size("2MB").unwrap_err().contains("unknown unit"));
        assert!(size("10").unwrap_err().contains("between"));
        assert!(size("lots").is_err());
        assert!(size("99999999999999999999GiB").is_err());
        assert_eq!(
            count(Some("0".into()), "Y", 1).unwrap_err(),
            "Y: expected a positive whole number, got \"0\""
        );
    }
}
