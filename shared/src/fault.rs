//! Why a request was refused, in one vocabulary for every protocol. The broker's errors
//! each name their [`Fault`]; each protocol spells it its own way at the edge: the
//! HTTP status ([`Fault::http_status`], the TimeStick and backend API answers), the
//! backend API code ([`Fault::api_code`]), the Helios-Starling error code
//! ([`Fault::helios_code`]) and the Sink NACK byte ([`Fault::sink_nack`]). Chat's
//! `failed` reasons are the errors' texts (a store or bus failure reads "temporarily
//! unavailable"). docs/errors.md has the table.

use std::fmt;

/// One reason a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The frame or body is not of the protocol's shape.
    Malformed,
    /// Well-formed, but not acceptable: a bad argument, a per-session limit.
    Invalid,
    /// Missing or wrong credentials.
    Unauthorized,
    /// The caller may not do this (another user's session, not a participant).
    Forbidden,
    /// Nothing by that name: no session, method provider or resource.
    NotFound,
    /// It existed and has ended.
    Gone,
    /// The same thing again: a duplicate message or request id.
    Conflict,
    /// Larger than the limit.
    TooLarge,
    /// Its `~timing.expires_time` has already passed.
    Expired,
    /// Over a rate or in-flight limit: later may succeed.
    RateLimited,
    /// No answer in time.
    Timeout,
    /// Cancelled, or its answerer went away.
    Cancelled,
    /// The node, the cluster's store or bus cannot take it now: nothing was done, the
    /// same request may succeed later.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl Fault {
    /// Every variant, in declaration order.
    pub const ALL: [Fault; 14] = [
        Fault::Malformed,
        Fault::Invalid,
        Fault::Unauthorized,
        Fault::Forbidden,
        Fault::NotFound,
        Fault::Gone,
        Fault::Conflict,
        Fault::TooLarge,
        Fault::Expired,
        Fault::RateLimited,
        Fault::Timeout,
        Fault::Cancelled,
        Fault::Unavailable,
        Fault::Internal,
    ];

    /// The HTTP status of an answer refused for this.
    pub fn http_status(self) -> u16 {
        match self {
            Fault::Malformed | Fault::Invalid => 400,
            Fault::Unauthorized => 401,
            Fault::Forbidden => 403,
            Fault::NotFound => 404,
            Fault::Conflict => 409,
            Fault::Gone => 410,
            Fault::TooLarge => 413,
            Fault::Expired => 422,
            Fault::RateLimited => 429,
            Fault::Internal => 500,
            Fault::Cancelled => 502,
            Fault::Unavailable => 503,
            Fault::Timeout => 504,
        }
    }

    /// The backend/admin API's `error.code`.
    pub fn api_code(self) -> &'static str {
        match self {
            Fault::Malformed | Fault::Invalid => "BAD_REQUEST",
            Fault::Unauthorized => "UNAUTHORIZED",
            Fault::Forbidden => "FORBIDDEN",
            Fault::NotFound => "NOT_FOUND",
            Fault::Conflict => "CONFLICT",
            Fault::Gone => "GONE",
            Fault::TooLarge => "PAYLOAD_TOO_LARGE",
            Fault::Expired => "EXPIRED",
            Fault::RateLimited => "RATE_LIMITED",
            Fault::Internal => "INTERNAL_ERROR",
            Fault::Cancelled => "REQUEST_CANCELLED",
            Fault::Unavailable => "UNAVAILABLE",
            Fault::Timeout => "REQUEST_TIMEOUT",
        }
    }

    /// The Helios-Starling error code: the seed's catalogue
    /// ([`crate::helios::ErrorCode`]) where it has one, else the broker's own
    /// ([`crate::helios::custom`]). A session that ended under a call is an
    /// `INTERNAL_ERROR` to it; a refusal the catalogue has no word for (a duplicate, a
    /// limit) a `VALIDATION_ERROR`.
    pub fn helios_code(self) -> &'static str {
        use crate::helios::{custom, ErrorCode};
        match self {
            Fault::Malformed => ErrorCode::InvalidMessageFormat.as_str(),
            Fault::Invalid
            | Fault::Unauthorized
            | Fault::Forbidden
            | Fault::Conflict
            | Fault::TooLarge => ErrorCode::ValidationError.as_str(),
            Fault::NotFound => ErrorCode::MethodNotFound.as_str(),
            Fault::Gone | Fault::Internal => ErrorCode::InternalError.as_str(),
            Fault::Expired => custom::EXPIRED,
            Fault::RateLimited => custom::TOO_MANY_REQUESTS,
            Fault::Timeout => ErrorCode::RequestTimeout.as_str(),
            Fault::Cancelled => ErrorCode::RequestCancelled.as_str(),
            Fault::Unavailable => custom::UNAVAILABLE,
        }
    }

    /// The machine-readable byte of a Sink NACK refusing a device's PUBLISH: `01` for a
    /// PUBLISH that cannot be taken as it is, `02` for one to send again later.
    pub fn sink_nack(self) -> u8 {
        match self {
            Fault::Unavailable | Fault::RateLimited | Fault::Timeout | Fault::Internal => {
                crate::sink::NACK_UNAVAILABLE
            }
            _ => crate::sink::NACK_MALFORMED,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_client_or_server_status() {
        for f in Fault::ALL {
            let s = f.http_status();
            assert!((400..600).contains(&s), "{f:?} → {s}");
            let server_side = matches!(
                f,
                Fault::Internal | Fault::Cancelled | Fault::Unavailable | Fault::Timeout
            );
            assert_eq!(s >= 500, server_side, "{f:?} → {s}");
        }
    }

    #[test]
    fn unavailable_is_the_retry_answer_of_every_protocol() {
        let f = Fault::Unavailable;
        assert_eq!(f.http_status(), 503);
        assert_eq!(f.api_code(), "UNAVAILABLE");
        assert_eq!(f.helios_code(), "UNAVAILABLE");
        assert_eq!(f.sink_nack(), 0x02);
    }

    #[test]
    fn the_helios_spellings_are_the_seed_catalogue_or_the_custom_codes() {
        use crate::helios::{custom, ErrorCode};
        let custom = [
            custom::EXPIRED,
            custom::TOO_MANY_REQUESTS,
            custom::UNAVAILABLE,
        ];
        for f in Fault::ALL {
            let code = f.helios_code();
            assert!(
                ErrorCode::parse(code).is_some() || custom.contains(&code),
                "{f:?} → {code}"
            );
        }
        assert_eq!(Fault::Malformed.helios_code(), "INVALID_MESSAGE_FORMAT");
        assert_eq!(Fault::NotFound.helios_code(), "METHOD_NOT_FOUND");
        assert_eq!(Fault::Invalid.helios_code(), "VALIDATION_ERROR");
    }

    #[test]
    fn api_codes_are_distinct_but_for_the_two_bad_requests() {
        let mut codes: Vec<&str> = Fault::ALL.iter().map(|f| f.api_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Fault::ALL.len() - 1);
    }
}
