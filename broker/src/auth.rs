//! Authentication: client JWT verification (HS256, or RS256/ES256 with a public key),
//! token minting for `murmur token`, and Helios-Starling recovery tokens.
//!
//! Keys are loaded once at start. `alg: none`, an algorithm other than the configured
//! one, a bad signature, a missing or past `exp`: all rejected.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use murmur_shared::ids::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    Missing,
    Malformed,
    Expired,
    BadSignature,
    WrongAlgorithm,
    NoVerifier,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub kind: AuthErrorKind,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            AuthErrorKind::Missing => "token missing",
            AuthErrorKind::Malformed => "token malformed",
            AuthErrorKind::Expired => "token expired",
            AuthErrorKind::BadSignature => "token signature invalid",
            AuthErrorKind::WrongAlgorithm => "token algorithm not accepted",
            AuthErrorKind::NoVerifier => "no token verification key is configured",
        })
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    /// Every token refusal is `Unauthorized`.
    pub fn fault(&self) -> murmur_shared::fault::Fault {
        murmur_shared::fault::Fault::Unauthorized
    }
}

fn classify(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    let kind = match e.kind() {
        K::ExpiredSignature => AuthErrorKind::Expired,
        K::InvalidSignature => AuthErrorKind::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthErrorKind::WrongAlgorithm,
        _ => AuthErrorKind::Malformed,
    };
    AuthError { kind }
}

/// The authenticated principal of a client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user / caller / client id (`sub`).
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientClaims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Verifies client tokens with the one configured key.
pub struct Verifier {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl Verifier {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(Some(DecodingKey::from_secret(secret)), Algorithm::HS256)
    }

    /// RS256 or ES256 with a PEM public key (the key type picks the algorithm).
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, crate::setup::SetupError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(Some(key), Algorithm::RS256));
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(Self::with(Some(key), Algorithm::ES256)),
            Err(e) => Err(crate::setup::SetupError::new(
                crate::setup::SetupErrorKind::Key,
                "public key is neither an RSA nor an EC PEM key",
                e,
            )),
        }
    }

    /// A verifier with no key: every token is refused (no secret configured).
    pub fn disabled() -> Self {
        Self::with(None, Algorithm::HS256)
    }

    fn with(key: Option<DecodingKey>, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        Verifier { key, validation }
    }

    /// Verifies a compact JWT and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.key.as_ref().ok_or(AuthError {
            kind: AuthErrorKind::NoVerifier,
        })?;
        if token.is_empty() {
            return Err(AuthError {
                kind: AuthErrorKind::Missing,
            });
        }
        let data =
            jsonwebtoken::decode::<ClientClaims>(token, key, &self.validation).map_err(classify)?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 256 {
            return Err(AuthError {
                kind: AuthErrorKind::Malformed,
            });
        }
        Ok(Principal {
            sub: data.claims.sub,
            exp: data.claims.exp,
        })
    }
}

/// Mints an HS256 client token (for `murmur token` and development scripts).
pub fn mint_client_token(secret: &[u8], user: &str, ttl: Duration) -> String {
    let now = now_ms() / 1000;
    let claims = ClientClaims {
        sub: user.to_string(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap() // unwrap: HS256 signing of plain claims with a byte secret cannot fail.
}

/// The claims of a Helios-Starling recovery token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryClaims {
    #[serde(rename = "starlingId")]
    pub starling_id: String,
    /// The Starling's user; absent in tokens shaped like the reference implementation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Token creation time (Unix ms).
    pub timestamp: u64,
    /// Snapshot of the client state when the token was issued (the seed's `state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// The reference implementation's name for `state`; accepted, never emitted.
    #[serde(default, skip_serializing)]
    pub states: Option<Value>,
    pub iat: u64,
    pub exp: u64,
}

/// Signs and verifies recovery tokens with `MURMUR_RECOVERY_SECRET` (HS256), so a token
/// issued by any node is honoured by every other node.
pub struct RecoveryTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl RecoveryTokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        RecoveryTokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Seconds a freshly issued token is valid (the `expiresIn` of `starling:getToken`).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// Issues a token for a Starling.
    pub fn issue(&self, starling_id: &str, user: &str, state: Value) -> String {
        let now_ms = now_ms();
        let claims = RecoveryClaims {
            starling_id: starling_id.to_string(),
            sub: Some(user.to_string()),
            timestamp: now_ms,
            state: Some(state),
            states: None,
            iat: now_ms / 1000,
            exp: now_ms / 1000 + self.ttl.as_secs(),
        };
        // unwrap: HS256 signing of plain claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap()
    }

    /// Verifies a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Result<RecoveryClaims, AuthError> {
        if token.is_empty() {
            return Err(AuthError {
                kind: AuthErrorKind::Missing,
            });
        }
        jsonwebtoken::decode::<RecoveryClaims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";

    fn b64url(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn a_minted_token_verifies() {
        let t = mint_client_token(SECRET, "alice", Duration::from_secs(60));
        let p = Verifier::hs256(SECRET).verify(&t).unwrap();
        assert_eq!(p.sub, "alice");
    }

    #[test]
    fn wrong_secret_is_a_bad_signature() {
        let t = mint_client_token(b"other", "alice", Duration::from_secs(60));
        let e = Verifier::hs256(SECRET).verify(&t).unwrap_err();
        assert_eq!(e.kind, AuthErrorKind::BadSignature);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let now = now_ms() / 1000;
        let claims = ClientClaims {
            sub: "a".into(),
            exp: now - 3600,
            iat: None,
        };
        let t = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            Verifier::hs256(SECRET).verify(&t).unwrap_err().kind,
            AuthErrorKind::Expired
        );
    }

    #[test]
    fn tokens_without_exp_are_refused() {
        let t = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "a"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(Verifier::hs256(SECRET).verify(&t).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = now_ms() / 1000 + 600;
        let body = b64url(format!(r#"{{"sub":"a","exp":{exp}}}"#).as_bytes());
        let t = format!("{header}.{body}.");
        assert!(Verifier::hs256(SECRET).verify(&t).is_err());
    }

    #[test]
    fn another_algorithm_is_refused() {
        let claims = ClientClaims {
            sub: "a".into(),
            exp: now_ms() / 1000 + 60,
            iat: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            Verifier::hs256(SECRET).verify(&t).unwrap_err().kind,
            AuthErrorKind::WrongAlgorithm
        );
    }

    #[test]
    fn garbage_and_empty_are_refused_without_panic() {
        let v = Verifier::hs256(SECRET);
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "....",
            "\u{0}",
            &"x".repeat(100_000),
        ] {
            assert!(v.verify(t).is_err(), "{t:?}");
        }
        assert_eq!(
            Verifier::disabled().verify("x").unwrap_err().kind,
            AuthErrorKind::NoVerifier
        );
    }

    #[test]
    fn recovery_tokens_round_trip_and_accept_the_reference_shape() {
        let r = RecoveryTokens::new(SECRET, Duration::from_secs(3600));
        let t = r.issue("s-1", "alice", json!({"subscriptions": ["a"]}));
        let c = r.verify(&t).unwrap();
        assert_eq!(c.starling_id, "s-1");
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.state, Some(json!({"subscriptions": ["a"]})));

        let now = now_ms();
        let reference = json!({"starlingId": "s-2", "states": {}, "timestamp": now,
            "iat": now / 1000, "exp": now / 1000 + 60});
        let t = jsonwebtoken::encode(
            &Header::default(),
            &reference,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let c = r.verify(&t).unwrap();
        assert_eq!(c.starling_id, "s-2");
        assert_eq!(c.sub, None);
        assert_eq!(c.states, Some(json!({})));
    }

    #[test]
    fn client_tokens_are_not_recovery_tokens() {
        let r = RecoveryTokens::new(b"recovery", Duration::from_secs(60));
        let t = mint_client_token(SECRET, "alice", Duration::from_secs(60));
        assert!(r.verify(&t).is_err());
    }
}
