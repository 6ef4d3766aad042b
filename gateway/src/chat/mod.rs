//! GradAgenda chat over WebSocket `/chat` (CONTRACT §5).
//!
//! * [`conn`]: the connection loop: frame limits and close codes, the 10 s
//!   authentication deadline, heartbeat, outgoing batching.
//! * [`actions`]: what each decoded action does (authentication, sessions, messages,
//!   history, batches); answers go back on the same connection.
//! * [`groups`]: which groups a device follows, and the replay that makes starting to
//!   follow one exact.

pub mod actions;
pub mod conn;
pub mod groups;

pub use conn::chat;
