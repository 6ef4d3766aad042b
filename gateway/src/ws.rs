//! WebSocket plumbing shared by the WebSocket protocols.
//!
//! Heartbeat: the server pings every [`PING_INTERVAL`]; a client from which nothing at
//! all (data, ping or pong) arrived for [`CLIENT_TIMEOUT`] is closed with 4004. The
//! timeout spans several ping intervals so one lost pong is not fatal.

use std::time::Duration;

use murmur_shared::close::CloseReason;

/// How often the server pings an idle connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Silence after which a client is considered gone (3 ping intervals).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Converts a catalogue close reason into actix-ws's.
pub fn close_frame(reason: &CloseReason) -> actix_ws::CloseReason {
    actix_ws::CloseReason {
        code: actix_ws::CloseCode::from(reason.code.code()),
        description: Some(reason.reason.clone()),
    }
}
