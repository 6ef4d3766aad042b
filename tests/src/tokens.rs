//! Client JWTs (HS256 with [`crate::JWT_SECRET`]) and deliberately bad ones.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::b64::{base64url_decode, base64url_encode};
use crate::JWT_SECRET;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_secs() as i64
}

/// A valid client token for `user`: HS256 with [`JWT_SECRET`], `sub`, `iat`, `exp = now+1h`.
pub fn token(user: &str) -> String {
    token_with(JWT_SECRET, user, 3600)
}

/// HS256 with `secret`, `sub = user`, `iat = now`, `exp = now + exp_offset_secs` (negative
/// for an expired token).
pub fn token_with(secret: &str, user: &str, exp_offset_secs: i64) -> String {
    let now = now_secs();
    token_with_claims(
        secret,
        &json!({ "sub": user, "iat": now, "exp": now + exp_offset_secs }),
    )
}

/// HS256 with `secret` over arbitrary claims (e.g. missing `sub`, extra fields).
pub fn token_with_claims(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .unwrap_or_else(|e| panic!("cannot encode JWT: {e}"))
}

/// An unsigned token (`{"alg":"none","typ":"JWT"}`, empty signature) that a correct server
/// must reject.
pub fn token_alg_none(user: &str) -> String {
    let header = base64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let now = now_secs();
    let claims = json!({ "sub": user, "iat": now, "exp": now + 3600 });
    format!(
        "{header}.{}.",
        base64url_encode(claims.to_string().as_bytes())
    )
}

/// Verifies an HS256 token with `secret` (exp checked) and returns its claims.
pub fn decode_hs256(token: &str, secret: &str) -> Result<Value, String> {
    let key = DecodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::decode::<Value>(token, &key, &Validation::new(Algorithm::HS256))
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// The claims of any JWT-shaped token, without verifying anything (e.g. to peek into a
/// recovery token). Panics if it is not `header.claims.signature` with JSON claims.
pub fn claims_unverified(token: &str) -> Value {
    let part = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT (no claims part): {token:?}"));
    let bytes = base64url_decode(part).unwrap_or_else(|| panic!("claims not base64url: {part:?}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("claims are not JSON ({e}): {token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_through_jsonwebtoken() {
        let t = token("alice");
        let claims = decode_hs256(&t, JWT_SECRET).expect("valid token");
        assert_eq!(claims["sub"], "alice");
        let exp = claims["exp"].as_i64().unwrap();
        let iat = claims["iat"].as_i64().unwrap();
        assert_eq!(exp - iat, 3600);
        assert!((iat - now_secs()).abs() <= 5);
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().alg,
            Algorithm::HS256
        );
        assert_eq!(claims_unverified(&t), claims);
    }

    #[test]
    fn wrong_secret_and_expired_tokens_fail_verification() {
        let other = token_with("some-other-secret-some-other-secret", "bob", 3600);
        assert!(decode_hs256(&other, JWT_SECRET).is_err());
        assert!(decode_hs256(&other, "some-other-secret-some-other-secret").is_ok());
        let expired = token_with(JWT_SECRET, "bob", -3600);
        let err = decode_hs256(&expired, JWT_SECRET).unwrap_err();
        assert!(err.to_lowercase().contains("expired"), "{err}");
    }

    #[test]
    fn alg_none_token_is_unsigned_and_rejected() {
        let t = token_alg_none("mallory");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "");
        assert!(!t.contains('='));
        let header: Value = serde_json::from_slice(&base64url_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({ "alg": "none", "typ": "JWT" }));
        assert_eq!(claims_unverified(&t)["sub"], "mallory");
        assert!(decode_hs256(&t, JWT_SECRET).is_err());
    }
}
