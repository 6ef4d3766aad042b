//! Command-line interface: one subcommand per scenario, plus `report`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::metrics::procstat::Watched;
use crate::token::DEV_JWT_SECRET;

fn duration(s: &str) -> Result<Duration, String> {
    murmur_shared::duration::parse(s)
}

/// Scenario load generator for Murmuration (and Socket.IO and NATS, for comparison).
///
/// Every scenario runs one step per `--rates` entry: a warm-up, then a measurement
/// window. Senders follow a fixed timetable (open loop) and embed each message's
/// intended send time; latency = receive time - intended send time, so a stalled
/// sender or server cannot hide its delay (no coordinated omission). A rate of 0 means
/// closed loop, as fast as the window allows (TimeStick, Sink).
#[derive(Debug, Parser)]
#[command(name = "murmur-load", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pub/sub fan-out: N subscribers on one channel (Helios), room (Socket.IO) or
    /// subject (NATS),
    /// publishers at an open-loop rate (publishes/s). Cross-node: --pub-url on one node,
    /// --sub-url on another.
    Fanout(FanoutArgs),
    /// Helios RPC: providers of namespace `bench`, callers at an open-loop rate (calls/s).
    Rpc(RpcArgs),
    /// Chat group fan-out: members in groups, senders (members too) at an open-loop
    /// rate (messages/s). Murmuration: GradAgenda chat groups of up to 256 participants;
    /// NATS: a subject per group; Socket.IO: a room per group.
    Chat(ChatArgs),
    /// TimeStick: sessions POSTing at a rate (POSTs/s, 0 = closed loop), optional
    /// long-polling receivers.
    Timestick(TimestickArgs),
    /// Sink devices over dev plaintext TCP, PUBLISH with ACKs (events/s, 0 = closed loop
    /// with a window per device).
    Sink(SinkArgs),
    /// Chat inbox: one user in `--sessions` groups (each with one unread message),
    /// `--connections` of their devices asking for the first inbox page (pages/s, 0 =
    /// closed loop).
    Inbox(InboxArgs),
    /// Connection ramp: open and hold idle authenticated connections, report connect
    /// rate and the server's RSS per connection.
    Idle(IdleArgs),
    /// The backplane's own limit: raw Redis PUBLISH→SUBSCRIBE latency at a rate.
    RedisProbe(RedisProbeArgs),
    /// Renders BENCHMARKS.md from a directory of results (used by scripts/bench.sh).
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A live bar on a terminal, a line every 5 s otherwise.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Murmuration: Helios-Starling over /starling (fanout, idle), GradAgenda chat over
    /// /chat (chat).
    #[value(alias = "murmuration")]
    Helios,
    /// Socket.IO 4 (the peer server in loadtest/peers/socketio).
    Socketio,
    /// NATS over WebSocket (nats-server with a `websocket { }` listener).
    Nats,
}

impl System {
    /// The system's name in results and reports.
    pub fn name(self) -> &'static str {
        match self {
            System::Helios => "murmuration",
            System::Socketio => "socketio",
            System::Nats => "nats",
        }
    }
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct Common {
    /// Offered rates, one step each (comma-separated; unit per scenario; 0 = closed loop).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rates: Vec<f64>,
    /// Measurement window of each step.
    #[arg(long, default_value = "5s", value_parser = duration)]
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Warm-up before each window (sent, not measured).
    #[arg(long, default_value = "2s", value_parser = duration)]
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// Longest wait after a window for in-flight messages.
    #[arg(long, default_value = "3s", value_parser = duration)]
    #[serde(with = "secs")]
    pub drain: Duration,
    /// A server process to charge CPU to, `name=pid` (repeatable). CPU-seconds per
    /// million events are computed over each window.
    #[arg(long = "watch", value_name = "NAME=PID")]
    #[serde(skip)]
    pub watch: Vec<Watched>,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown summary here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write the latency-over-time plot (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// A name for this run in reports.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    #[serde(skip)]
    pub progress: Progress,
    /// Source addresses for outgoing connections: `127.0.0.1,127.0.0.2` or
    /// `127.0.0.1-127.0.0.4` (empty: the kernel's choice).
    #[arg(long, default_value = "")]
    pub source_ips: String,
    /// A step is sustained when it had no errors and no disconnects, its p99 is at most
    /// this…
    #[arg(long, default_value_t = 500.0)]
    pub max_p99_ms: f64,
    /// …and its loss at most this percentage.
    #[arg(long, default_value_t = 1.0)]
    pub max_loss_pct: f64,
    /// Stop after this many consecutive unsustained steps (0 = run every step).
    #[arg(long, default_value_t = 0)]
    pub stop_after_failures: usize,
    /// Tokio worker threads of the load tool.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// HS256 secret for client tokens.
    #[arg(long, env = "MURMUR_JWT_SECRET", default_value = DEV_JWT_SECRET, hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: String,
    /// NATS `auth_token` sent in CONNECT (empty: none).
    #[arg(
        long,
        env = "MURMUR_NATS_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    #[serde(skip)]
    pub nats_token: String,
    /// Padding bytes in each payload.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Exit with status 3 when fewer primary events than this were received in total.
    #[arg(long, default_value_t = 0)]
    pub min_events: u64,
    /// Connections opened at once during setup.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long, value_enum, default_value = "helios")]
    pub system: System,
    /// Public base URLs of the nodes (comma-separated or repeated).
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    /// Where publishers connect (default: --url).
    #[arg(long = "pub-url", value_delimiter = ',')]
    pub pub_urls: Vec<String>,
    /// Where subscribers connect (default: --url).
    #[arg(long = "sub-url", value_delimiter = ',')]
    pub sub_urls: Vec<String>,
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,
    /// Channel (room) name; default: a fresh one per run.
    #[arg(long)]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct RpcArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    /// Where callers connect (default: --url).
    #[arg(long = "caller-url", value_delimiter = ',')]
    pub caller_urls: Vec<String>,
    /// Where providers connect (default: --url).
    #[arg(long = "provider-url", value_delimiter = ',')]
    pub provider_urls: Vec<String>,
    #[arg(long, default_value_t = 4)]
    pub providers: usize,
    #[arg(long, default_value_t = 8)]
    pub callers: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ChatArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long, value_enum, default_value = "helios")]
    pub system: System,
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    /// Members, split into groups of at most --group-size.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Members per group (Murmuration: at most 256, the protocol's limit).
    #[arg(long, default_value_t = 256)]
    pub group_size: usize,
    /// Connections (devices) per member, each receiving every message of the member's
    /// groups (Murmuration only: the way to a group of more than 256 receivers).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Members that also send (spread over the groups).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct TimestickArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Posting sessions, each on its own target (at most 100 per caller; callers are
    /// added as needed). Keep rate/sessions under the broker's 100 messages/s/session.
    #[arg(long, default_value_t = 200)]
    pub sessions: usize,
    /// Keep-alive connections the POSTs are spread over.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Targets that also get a long-polling receiver session (secondary figure:
    /// delivery latency through long-poll).
    #[arg(long, default_value_t = 0)]
    pub pollers: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct InboxArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Groups the listing user is in.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Sessions per inbox page (1..=100).
    #[arg(long, default_value_t = 20)]
    pub page: usize,
    /// Devices of the user listing at once.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SinkArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    /// The Sink TCP listener (dev plaintext).
    #[arg(long, default_value = "127.0.0.1:2020")]
    pub addr: String,
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// PUBLISHes awaiting their ACK per device at most.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long, value_enum, default_value = "helios")]
    pub system: System,
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Murmuration: GradAgenda chat devices (`/chat`, each its own user, counted for
    /// presence) instead of Helios Starlings.
    #[arg(long)]
    pub chat: bool,
    /// How long to hold every connection open before measuring.
    #[arg(long, default_value = "5s", value_parser = duration)]
    #[serde(with = "secs")]
    pub hold: Duration,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct RedisProbeArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Directory with the run's JSON results and raw tool outputs.
    #[arg(long)]
    pub dir: PathBuf,
    /// The Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
}

impl Command {
    /// The common options of a scenario command.
    pub fn common(&self) -> Option<&Common> {
        match self {
            Command::Fanout(a) => Some(&a.common),
            Command::Rpc(a) => Some(&a.common),
            Command::Chat(a) => Some(&a.common),
            Command::Timestick(a) => Some(&a.common),
            Command::Inbox(a) => Some(&a.common),
            Command::Sink(a) => Some(&a.common),
            Command::Idle(a) => Some(&a.common),
            Command::RedisProbe(a) => Some(&a.common),
            Command::Report(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fanout_options_parse() {
        let cli = Cli::try_parse_from([
            "murmur-load",
            "fanout",
            "--system",
            "socketio",
            "--url",
            "http://a:1,http://b:2",
            "--rates",
            "100,200",
            "--duration",
            "3s",
            "--watch",
            "n1=12",
            "--subscribers",
            "10",
        ])
        .unwrap();
        let Command::Fanout(f) = cli.command else {
            panic!()
        };
        assert_eq!(f.system, System::Socketio);
        assert_eq!(f.urls.len(), 2);
        assert_eq!(f.common.rates, vec![100.0, 200.0]);
        assert_eq!(f.common.duration, Duration::from_secs(3));
        assert_eq!(f.common.watch[0].pid, 12);
    }
}
