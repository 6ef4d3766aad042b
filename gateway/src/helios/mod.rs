//! Helios-Starling over WebSocket `/starling` (CONTRACT §4).
//!
//! * [`connect`]: authentication and recovery at the upgrade (`?token=`, `Authorization`,
//!   `?recover=`).
//! * [`conn`]: the connection loop: socket ⇄ session.
//! * [`dispatch`]: what each decoded frame does (built-in methods, RPC routing).
//! * [`encode`]: broker envelopes → Helios JSON.

pub mod conn;
pub mod connect;
pub mod dispatch;
pub mod encode;

pub use connect::starling;

/// Built-in namespaces served by the broker itself; they cannot be provided either.
pub const BUILTIN_NAMESPACES: [&str; 2] = ["broker", "starling"];
