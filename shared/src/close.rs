//! The WebSocket close codes the gateway sends, in one catalogue (documented in
//! `docs/close-codes.md`). Standard codes follow RFC 6455 §7.4.1; 4000–4999 are ours.

/// Why the server closes a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure (the client asked, or the session ended).
    Normal,
    /// 1001: the node is draining or shutting down; reconnect (Helios: with the recovery token).
    GoingAway,
    /// 1003: a frame of a type the protocol does not accept (e.g. binary on a text protocol).
    UnsupportedData,
    /// 1007: a text frame that is not valid UTF-8.
    InvalidPayload,
    /// 1008: policy violation (e.g. not authenticated in time, not a JSON object).
    PolicyViolation,
    /// 1009: a message larger than the protocol allows.
    MessageTooBig,
    /// 1011: an internal error on the server.
    InternalError,
    /// 4001: the client did not read fast enough; its outbound queue overflowed.
    SlowConsumer,
    /// 4002: the same session was taken over by a newer connection (recovery elsewhere).
    Replaced,
    /// 4003: the credentials are no longer valid (session killed, recovery refused).
    Unauthorized,
    /// 4004: nothing was received from the client within the idle limit.
    IdleTimeout,
    /// 4005: the session was terminated by the operator or the broker (buffer overflow, expiry).
    Terminated,
}

impl CloseCode {
    /// The numeric code on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::SlowConsumer => 4001,
            CloseCode::Replaced => 4002,
            CloseCode::Unauthorized => 4003,
            CloseCode::IdleTimeout => 4004,
            CloseCode::Terminated => 4005,
        }
    }

    /// A short label, used in metrics (`reason` label) and logs.
    pub fn label(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going_away",
            CloseCode::UnsupportedData => "unsupported_data",
            CloseCode::InvalidPayload => "invalid_payload",
            CloseCode::PolicyViolation => "policy_violation",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::InternalError => "internal_error",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::Replaced => "replaced",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::IdleTimeout => "idle_timeout",
            CloseCode::Terminated => "terminated",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::SlowConsumer,
        CloseCode::Replaced,
        CloseCode::Unauthorized,
        CloseCode::IdleTimeout,
        CloseCode::Terminated,
    ];
}

/// A close code with the human reason sent in the close frame (≤ 123 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: CloseCode,
    pub reason: String,
}

impl CloseReason {
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        // RFC 6455 limits the close payload to 125 bytes, 2 of which are the code.
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        CloseReason { code, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_labels_are_unique() {
        let codes: HashSet<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        let labels: HashSet<&str> = CloseCode::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(codes.len(), CloseCode::ALL.len());
        assert_eq!(labels.len(), CloseCode::ALL.len());
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let r = CloseReason::new(CloseCode::Normal, "é".repeat(100));
        assert!(r.reason.len() <= 123);
        assert!(r.reason.chars().all(|c| c == 'é'));
    }
}
