//! The backend/admin API error body: every non-2xx answer of `/api/v1/*` is
//! `{"error":{"code":"...","message":"..."}}`, the code and the HTTP status those of a
//! [`Fault`] ([`Fault::api_code`], [`Fault::http_status`]).

use serde_json::{json, Value};

use crate::fault::Fault;

/// The JSON body of an API error.
pub fn body(fault: Fault, message: &str) -> Value {
    json!({"error": {"code": fault.api_code(), "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let b = body(Fault::NotFound, "no such starling");
        assert_eq!(b["error"]["code"], "NOT_FOUND");
        assert_eq!(b["error"]["message"], "no such starling");
        assert_eq!(Fault::NotFound.http_status(), 404);
    }
}
