//! Client tokens: HS256 JWTs with `sub` and `exp`, like `murmur token`.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The development-mode secret (`MURMUR_DEV=1`).
pub const DEV_JWT_SECRET: &str = "murmur-dev-jwt-secret";

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
}

/// A token for `sub`, valid for two hours.
pub fn mint(secret: &str, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        sub,
        exp: now + 7200,
        iat: now,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail") // unwrap: plain claims, byte secret.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_with_the_same_secret() {
        let t = mint("s3cret", "alice");
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["sub", "exp"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "alice");
    }
}
