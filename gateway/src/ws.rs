//! WebSocket plumbing shared by the WebSocket protocols.
//!
//! Heartbeat: the server pings every [`PING_INTERVAL`]; a client from which nothing at
//! all (data, ping or pong) arrived for [`CLIENT_TIMEOUT`] is closed with 4004. The
//! timeout spans several ping intervals so one lost pong is not fatal.

use std::time::Duration;

use actix_ws::ProtocolError;
use murmur_shared::close::{CloseCode, CloseReason};

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

/// The close a WebSocket protocol error earns: 1009 for a message over the size limit
/// (one frame or reassembled fragments), 1007 for a text message that is not UTF-8,
/// 1002-like protocol faults as 1008.
pub fn protocol_error_close(err: &ProtocolError, limit: usize) -> CloseReason {
    match err {
        ProtocolError::Overflow => CloseReason::new(
            CloseCode::MessageTooBig,
            format!("message larger than {limit} bytes"),
        ),
        ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            CloseReason::new(CloseCode::InvalidPayload, "text message is not valid UTF-8")
        }
        // actix-ws reports reassembled fragments over the limit as an I/O error.
        ProtocolError::Io(e) if e.to_string().contains("continuation size") => CloseReason::new(
            CloseCode::MessageTooBig,
            format!("message larger than {limit} bytes"),
        ),
        _ => CloseReason::new(CloseCode::PolicyViolation, "WebSocket protocol error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_map_to_their_close_codes() {
        let too_big = protocol_error_close(&ProtocolError::Overflow, 10);
        assert_eq!(too_big.code, CloseCode::MessageTooBig);
        let utf8 = ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "x"));
        assert_eq!(
            protocol_error_close(&utf8, 10).code,
            CloseCode::InvalidPayload
        );
        let cont = ProtocolError::Io(std::io::Error::other("Exceeded maximum continuation size"));
        assert_eq!(
            protocol_error_close(&cont, 10).code,
            CloseCode::MessageTooBig
        );
        assert_eq!(
            protocol_error_close(&ProtocolError::UnmaskedFrame, 10).code,
            CloseCode::PolicyViolation
        );
    }
}
