//! The backend/admin API error catalogue: every non-2xx answer of `/api/v1/*` is
//! `{"error":{"code":"...","message":"..."}}` with one of these codes.

use serde_json::{json, Value};

/// A machine-readable API error code and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorCode {
    /// 400: the body is not valid JSON of the expected shape.
    BadRequest,
    /// 401: missing or wrong `Authorization: Bearer` API key.
    Unauthorized,
    /// 404: the addressed resource (starling, session, client) does not exist.
    NotFound,
    /// 410: the addressed session has ended (TimeStick STOP/KILL).
    Gone,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge,
    /// 422: the message's `~timing.expires_time` has already passed.
    Expired,
    /// 502: the addressed client answered but could not be reached reliably (it went away).
    RequestCancelled,
    /// 503: the node cannot serve this now (draining, bus down).
    Unavailable,
    /// 504: the addressed client did not answer in time.
    RequestTimeout,
    /// 500: a bug or an unexpected store failure.
    Internal,
}

impl ApiErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorCode::BadRequest => "BAD_REQUEST",
            ApiErrorCode::Unauthorized => "UNAUTHORIZED",
            ApiErrorCode::NotFound => "NOT_FOUND",
            ApiErrorCode::Gone => "GONE",
            ApiErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiErrorCode::Expired => "EXPIRED",
            ApiErrorCode::RequestCancelled => "REQUEST_CANCELLED",
            ApiErrorCode::Unavailable => "UNAVAILABLE",
            ApiErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ApiErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ApiErrorCode::BadRequest => 400,
            ApiErrorCode::Unauthorized => 401,
            ApiErrorCode::NotFound => 404,
            ApiErrorCode::Gone => 410,
            ApiErrorCode::PayloadTooLarge => 413,
            ApiErrorCode::Expired => 422,
            ApiErrorCode::RequestCancelled => 502,
            ApiErrorCode::Unavailable => 503,
            ApiErrorCode::RequestTimeout => 504,
            ApiErrorCode::Internal => 500,
        }
    }

    /// The JSON body for this error.
    pub fn body(self, message: &str) -> Value {
        json!({"error": {"code": self.as_str(), "message": message}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let b = ApiErrorCode::NotFound.body("no such starling");
        assert_eq!(b["error"]["code"], "NOT_FOUND");
        assert_eq!(b["error"]["message"], "no such starling");
        assert_eq!(ApiErrorCode::NotFound.status(), 404);
    }
}
