//! # murmur-tests
//!
//! Test harness for black-box integration tests of the `murmur` broker: real processes, real
//! sockets, a real `redis-server`. Integration tests live in `tests/tests/*.rs` and run under
//! `#[actix_rt::test]`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`wait`] | [`eventually`] (poll a condition), [`within`] (bound a future): the only waits |
//! | [`ports`] | [`free_port`], never handing out the same port twice per process |
//! | [`proc`] | [`murmur_bin`], [`murmur_command`] (for CLI tests), log directory and tails |
//! | [`node`] | [`Node`] / [`NodeBuilder`]: a `murmur serve` child process, ready-checked |
//! | [`redis`] | [`RedisServer`]: throwaway `redis-server`, stop / start-again, freeze / thaw, RESP client |
//! | [`cluster`] | [`Cluster`]: one redis and n nodes sharing it |
//! | [`tokens`] | client JWTs: [`token`], [`token_with`], [`token_alg_none`], decoding helpers |
//! | [`mod@http`] | awc: [`http()`], [`get`], [`request`] / [`try_request`], [`api_get`] / [`api_post`] / [`api_post_many`] (API key), [`metrics`] / [`metric`] |
//! | [`ws`] | [`WsClient`] / [`WsEvent`]: a strict RFC 6455 client with raw-frame access |
//! | [`helios`] | Helios-Starling message builders and the [`Starling`] client |
//! | [`b64`] | base64url / base64 codecs (JWTs, handshake) |
//! | [`wsframe`] | WebSocket frame codec and opcodes (for raw-frame tests) |
//! | [`rss`] | `VmRSS` and open descriptors of a process from `/proc`; [`rss::RssSampler`] keeps the peak |
//! | [`webhook`] | [`webhook::Webhook`]: a real HTTP/1.1 server that records requests and answers a settable status (the chat push webhook) |
//! | [`stall`] | [`stall::Stalled`]: a WebSocket or TCP client with a small `SO_RCVBUF` that stops reading (slow consumers) |
//!
//! Process logs go to `std::env::temp_dir()/murmur-tests/` (`<node-id>.log`,
//! `redis-<port>-<id>.log`); their paths appear in every startup panic, and a [`Node`]
//! dropped during a panic prints its path and last lines.

pub mod b64;
pub mod cluster;
pub mod helios;
pub mod http;
pub mod node;
pub mod ports;
pub mod proc;
mod rawhttp;
pub mod redis;
pub mod rss;
pub mod stall;
#[cfg(test)]
mod testutil;
pub mod tokens;
pub mod wait;
pub mod webhook;
pub mod ws;
pub mod wsframe;

pub use cluster::Cluster;
pub use helios::Starling;
pub use http::{
    api_delete, api_get, api_post, api_post_many, api_request, get, http, metric, metric_value,
    metrics, request, try_request, HttpReply, Method,
};
pub use node::{Node, NodeBuilder};
pub use ports::free_port;
pub use proc::{murmur_bin, murmur_command};
pub use redis::{RedisServer, Resp};
pub use tokens::{
    claims_unverified, decode_hs256, token, token_alg_none, token_with, token_with_claims,
};
pub use wait::{eventually, poll_until, within, CROSS, QUIET, SOON};
pub use ws::{WsClient, WsEvent};

/// HS256 key for client JWTs (`MURMUR_JWT_SECRET` of every spawned node).
pub const JWT_SECRET: &str = "murmur-tests-jwt-secret-0123456789abcdef";
/// `MURMUR_RECOVERY_SECRET` of every spawned node.
pub const RECOVERY_SECRET: &str = "murmur-tests-recovery-secret-0123456789abcdef";
/// `MURMUR_API_KEY` of every spawned node (bearer for `/api/v1/*`).
pub const API_KEY: &str = "murmur-tests-api-key-0123456789abcdef";

/// A unique name with `prefix` (users, devices, channels, ids), so parallel tests never collide.
pub fn uniq(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
