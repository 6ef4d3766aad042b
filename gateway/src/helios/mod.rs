//! Helios-Starling over WebSocket `/starling` (CONTRACT §4).
//!
//! * [`connect`]: the route, authentication and recovery at the upgrade (`?token=`,
//!   `Authorization`, `?recover=`).
//! * [`session`]: one connection's state, the [`crate::edge::Adapter`]: decode, deliver,
//!   the replay and greeting of a recovery.
//! * [`apply`]: what each decoded frame does (built-in methods, RPC routing).
//! * [`encode`]: broker envelopes → Helios JSON.

pub mod apply;
pub mod connect;
pub mod encode;
pub mod session;

pub use connect::starling;

/// Built-in namespaces served by the broker itself; they cannot be provided either.
pub const BUILTIN_NAMESPACES: [&str; 2] = ["broker", "starling"];
