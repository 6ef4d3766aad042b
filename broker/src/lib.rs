//! # murmur-broker
//!
//! The node core of Murmuration: everything between a decoded frame and an encoded
//! one. Protocol adapters (in the gateway) talk to it only through [`SessionHandle`]s
//! and the [`Node`]; actor types and actor messages never leave this crate.
//!
//! | module | what it does |
//! |---|---|
//! | [`node`] | the node core: registry, router, bus, store, scheduler, metrics; sessions, drain, backend calls |
//! | [`wiring`] | builds an embedded or clustered node with the protocol services plugged in (the only core-to-service meeting point) |
//! | [`session`] | one actix actor per logical session, its handle and its transport queue |
//! | [`registry`] | the local truth: sessions, channel members and RPC providers on this node |
//! | [`router`] | delivers an envelope locally or hands it to the bus for another node |
//! | [`replies`] | one-shot reply slots for backend API calls awaiting a client's answer |
//! | [`chat`] | GradAgenda chat: sessions, participant checks, history, one publication per group message, aggregated delivery reports |
//! | [`scheduler`] | the `~timing` scheduler seam: held envelopes and protocol jobs, claimed by one node (at least once) |
//! | [`bus`] | the inter-node delivery seam (`Bus` trait; memory hub; Redis in cluster mode) |
//! | [`store`] | the state-that-outlives-a-node seam (`Store` trait; memory; Redis) |
//! | [`auth`] | client JWT verification, token minting, Helios recovery tokens |
//! | [`metrics`] | the per-node Prometheus registry and every `murmur_` family |
//! | [`history`] | channel history of the embedded node (positions, replay) |
//! | [`sink`] | Sink devices: handshake decision, durable acceptance, outboxes, quarantine |
//! | [`timestick`] | TimeStick sessions: START, messages, long-poll/stream reads, STOP/KILL, idle sweep |
//! | [`watch`] | channel watches for long-polls (no session needed) |
//! | [`config`] | broker limits and timings |
//! | [`setup`] | why a node could not be set up (typed, with a kind) |
//! | [`keys`] | Redis key and channel names (cluster mode) |
#![forbid(unsafe_code)]

pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod history;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replies;
pub mod router;
pub mod scheduler;
pub mod session;
pub mod setup;
pub mod sink;
pub mod store;
pub mod timestick;
pub mod watch;
pub mod wiring;

pub use config::{BrokerConfig, PushSettings};
pub use node::Node;
pub use session::{Attachment, CallError, OpenError, Protocol, SessionHandle};
pub use setup::{SetupError, SetupErrorKind};
