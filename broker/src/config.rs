//! Broker limits and timings. The gateway fills these from flags, env and TOML.

use std::time::Duration;

use murmur_shared::ids::NodeId;

/// Everything the node core needs to know that is not a secret.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This node's identity in the cluster.
    pub node_id: NodeId,
    /// How long a disconnected Helios session waits for recovery (contract: 5 minutes).
    pub recovery_ttl: Duration,
    /// Lifetime of a recovery token handed out by `starling:getToken`.
    pub recovery_token_ttl: Duration,
    /// Frames queued for one connection's socket writer. When full, the client is a slow
    /// consumer and is disconnected with close code 4001.
    pub outbound_queue: usize,
    /// Actor mailbox bound for one session; fan-out uses `try_send` against it.
    pub mailbox: usize,
    /// Direct messages (RPC traffic, notices) kept for a disconnected session awaiting
    /// recovery; channel publications are replayed from history instead. Overflow makes
    /// the recovery fail with the reason, it never drops silently.
    pub recovery_buffer: usize,
    /// Channel publications one recovery may replay from history (all channels
    /// together); a recovery that would need more fails with the reason.
    pub recovery_replay_max: usize,
    /// How far behind the store a recoverable session's positions may be (a crash
    /// replays at most about this much again; clients drop the duplicates).
    pub position_save_interval: Duration,
    /// Requests one session may have in flight as a caller, and as a provider.
    pub max_inflight_calls: usize,
    /// RPC timeout when the request does not ask for a shorter one.
    pub call_timeout: Duration,
    /// Channels one session may subscribe to.
    pub max_subscriptions: usize,
    /// Namespaces one session may provide.
    pub max_provides: usize,
    /// Channel history (recovery replay, TimeStick reads): how long after a channel's
    /// last publication and how many publications per channel.
    pub channel_history: crate::history::HistoryLimits,
    /// Chat messages kept per chat session for history, and for how long after the last.
    pub chat_history_len: usize,
    pub chat_history_ttl: Duration,
    /// Chat delivery reports are gathered this long and then sent aggregated: one
    /// `message-delivered` per message per node per window.
    pub chat_report_window: Duration,
    /// TimeStick: sessions idle this long are stopped by the receiver (`idle-timeout`).
    pub timestick_idle: Duration,
    /// TimeStick: live sessions per caller (429 beyond).
    pub timestick_sessions_per_caller: usize,
    /// TimeStick: messages per second per session (429 beyond).
    pub timestick_rate: u64,
    /// TimeStick: unconfirmed queued responses/control messages per session.
    pub timestick_queue: usize,
    /// TimeStick: how long KILL level 3 keeps a caller from starting sessions.
    pub timestick_quarantine: Duration,
    /// How often a session refreshes its owner record (which lives three periods) and,
    /// if recoverable and attached, its recovery record.
    pub record_refresh: Duration,
    /// How often this node heartbeats into the store, and how long a heartbeat lives.
    pub heartbeat_interval: Duration,
    pub heartbeat_ttl: Duration,
    /// Chat push for offline participants (`None`: off).
    pub push: Option<PushSettings>,
}

/// Where and how pushes for offline chat participants are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// The app backend's webhook (`http://` or `https://`).
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Murmur-Signature` header.
    pub secret: String,
    /// Pushes queued at most (cluster-wide); past it they are dead-lettered.
    pub queue_max: usize,
}

impl BrokerConfig {
    /// Defaults from the contract for a node called `node_id`.
    pub fn new(node_id: NodeId) -> Self {
        BrokerConfig {
            node_id,
            recovery_ttl: Duration::from_secs(300),
            recovery_token_ttl: Duration::from_secs(3600),
            outbound_queue: 8192,
            mailbox: 16_384,
            recovery_buffer: 1000,
            recovery_replay_max: 10_000,
            position_save_interval: Duration::from_secs(1),
            max_inflight_calls: 1024,
            call_timeout: Duration::from_secs(30),
            max_subscriptions: 1024,
            max_provides: 64,
            record_refresh: Duration::from_secs(30),
            channel_history: crate::history::HistoryLimits::default(),
            timestick_idle: Duration::from_secs(300),
            timestick_sessions_per_caller: 100,
            timestick_rate: 100,
            timestick_queue: 1000,
            timestick_quarantine: Duration::from_secs(300),
            chat_history_len: 1000,
            chat_history_ttl: Duration::from_secs(7 * 24 * 3600),
            chat_report_window: Duration::from_millis(50),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(10),
            push: None,
        }
    }
}
