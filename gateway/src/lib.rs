//! # murmur-gateway
//!
//! The `murmur` binary: terminates client protocols and serves operators. Adapters
//! decode frames with `murmur-shared` codecs and talk to the broker only through
//! `SessionHandle`s and the `Node`.
//!
//! | module | what it does |
//! |---|---|
//! | [`config`] | flags ⇄ env ⇄ TOML ⇄ dev defaults → `Settings` |
//! | [`demo`] | development mode only: the chat demo page `/demo/` and its token endpoint |
//! | [`server`] | builds the node, runs the public and internal listeners, drains on SIGTERM |
//! | [`sink`] | Sink over TCP/TLS and WebSocket `/sink`, and its API |
//! | [`state`] | what every handler shares: node, verifiers, settings |
//! | [`telemetry`] | tracing subscriber (pretty or JSON) |
//! | [`health`] | `/healthz`, `/readyz`, `/metrics` on the internal port |
//! | [`api`] | the backend/admin API `/api/v1/*` (bearer API key) |
//! | [`edge`] | the connection engine: the `Adapter` shape, one loop and one exit path for every connection, the byte-bounded outbound buffer |
//! | [`chat`] | GradAgenda chat over WebSocket `/chat` |
//! | [`helios`] | Helios-Starling over WebSocket `/starling` |
//! | [`timestick`] | TimeStick over HTTP: START, messages, long-poll, SSE |
//! | [`timing`] | `~timing` expiry and staleness at delivery |
//! | [`ws`] | the WebSocket transport: upgrade and hand-over out of the HTTP/1 dispatcher, limit-checking reader |
#![forbid(unsafe_code)]

pub mod api;
pub mod chat;
pub mod config;
pub mod demo;
pub mod edge;
pub mod health;
pub mod helios;
pub mod server;
pub mod sink;
pub mod state;
pub mod telemetry;
pub mod timestick;
pub mod timing;
pub mod ws;
