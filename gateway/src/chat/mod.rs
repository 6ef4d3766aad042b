//! GradAgenda chat over WebSocket `/chat` (CONTRACT §5).
//!
//! * [`connect`]: the route and the upgrade (authentication is the first action).
//! * [`session`]: one connection's state, the [`crate::edge::Adapter`]: decode, the
//!   10 s authentication deadline, delivery with outgoing batching and delivery reports.
//! * [`apply`]: what each decoded action does (authentication, sessions, messages,
//!   history, batches); answers go back on the same connection.
//! * [`groups`]: which groups a device follows, and the replay that makes starting to
//!   follow one exact.

pub mod apply;
pub mod connect;
pub mod groups;
pub mod session;

pub use connect::chat;
