//! # murmur-shared
//!
//! Wire types and pure codecs shared by every part of Murmuration. Nothing in this
//! crate does I/O or knows about actors: every decoder is a pure function that can be
//! unit-tested with vectors and fuzzed.
//!
//! | module | what it holds |
//! |---|---|
//! | [`ids`] | session ids, node ids, the clock helper |
//! | [`protocol`] | the `Protocol` enum: the one name of each client protocol |
//! | [`envelope`] | the protocol-neutral message that travels between sessions and nodes |
//! | [`helios`] | the Helios-Starling JSON codec (decode, validate, encode) |
//! | [`close`] | the catalogue of WebSocket close codes the gateway uses |
//! | [`chat`] | the GradAgenda chat codec (actions, direct session ids, batching) |
//! | [`channel`] | channel-name rules shared by every protocol |
//! | [`fault`] | why a request was refused: the one catalogue, spelled per protocol at the edge |
//! | [`api`] | the backend/admin API error body |
//! | [`sink`] | the Sink binary codec (frames, LEB128, length prefix), reference vectors |
//! | [`timestick`] | the TimeStick codec (START, messages, URI mapping, cursors) |
//! | [`timing`] | the Aries `~timing` decorator and RFC 0074 timestamps |
//! | [`duration`] | parsing of `250ms` / `5s` / `5m` durations used in config |
//! | [`wsframe`] | WebSocket frames: the limit-checking incremental decoder, server frame encoding |
#![forbid(unsafe_code)]

pub mod api;
pub mod channel;
pub mod chat;
pub mod close;
pub mod duration;
pub mod envelope;
pub mod fault;
pub mod helios;
pub mod ids;
pub mod protocol;
pub mod sink;
pub mod timestick;
pub mod timing;
pub mod wsframe;
