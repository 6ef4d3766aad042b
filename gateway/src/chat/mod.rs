//! GradAgenda chat over WebSocket `/chat` (CONTRACT §5).
//!
//! * [`connect`]: the route and the upgrade (authentication is the first action).
//! * [`session`]: one connection's state, the [`crate::edge::Adapter`]: decode, the
//!   10 s authentication deadline, delivery with outgoing batching and delivery reports.
//! * [`apply`]: what each decoded action does (authentication, sessions, messages,
//!   history, batches); answers go back on the same connection.
//! * [`extensions`]: what the extension actions do (read state, presence, typing, the
//!   inbox).
//!
//! The device's session, its subscriptions and which groups it follows are the
//! broker's ([`murmur_broker::chat::device`], [`murmur_broker::chat::following`]):
//! this folder decodes, applies and writes.

pub mod apply;
pub mod connect;
pub mod extensions;
pub mod session;

pub use connect::chat;
