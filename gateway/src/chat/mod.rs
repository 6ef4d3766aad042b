//! GradAgenda chat over WebSocket `/chat` (CONTRACT §5).
//!
//! * [`conn`]: the connection loop: frame limits and close codes, the 10 s
//!   authentication deadline, heartbeat, outgoing batching.
//! * [`actions`]: what each decoded action does (authentication, sessions, messages,
//!   history, batches); answers go back on the same connection.

pub mod actions;
pub mod conn;

pub use conn::chat;
