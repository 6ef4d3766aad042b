//! The chat demo, development mode only (`MURMUR_DEV=1`): a page at `/demo/` on the public
//! port that uses nothing but the TypeScript SDK (`clients/typescript`), and
//! `POST /demo/token {"user":"alice"}` → `{"token":"<client JWT>","user":"alice","expiresIn":3600}`,
//! a client token signed with the HS256 secret this node verifies with.
//!
//! The files are embedded in the binary: the page itself from `clients/typescript/demo/`
//! (its one home), the SDK it imports from `gateway/demo/sdk/`, the JavaScript that `tsc`
//! makes of `clients/typescript/src/` (written by `npm run demo` there and committed, so
//! that cargo needs no npm; the SDK tests fail when it is stale). Outside development mode
//! none of these routes exist: every `/demo/…` path is a plain 404.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use murmur_shared::fault::Fault;
use serde::Deserialize;

use crate::api::error;
use crate::config::JwtKey;
use crate::state::AppState;

/// Lifetime of a demo token.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Longest accepted demo user name (bytes).
pub const MAX_USER: usize = 64;

/// Largest accepted `POST /demo/token` body.
const MAX_TOKEN_BODY: usize = 1024;

/// `(path under /demo/, content type, bytes)` of every embedded file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "",
        HTML,
        include_bytes!("../../clients/typescript/demo/index.html"),
    ),
    (
        "index.html",
        HTML,
        include_bytes!("../../clients/typescript/demo/index.html"),
    ),
    (
        "demo.css",
        CSS,
        include_bytes!("../../clients/typescript/demo/demo.css"),
    ),
    (
        "demo.js",
        JS,
        include_bytes!("../../clients/typescript/demo/demo.js"),
    ),
    ("sdk/index.js", JS, include_bytes!("../demo/sdk/index.js")),
    ("sdk/errors.js", JS, include_bytes!("../demo/sdk/errors.js")),
    ("sdk/events.js", JS, include_bytes!("../demo/sdk/events.js")),
    ("sdk/util.js", JS, include_bytes!("../demo/sdk/util.js")),
    (
        "sdk/connection.js",
        JS,
        include_bytes!("../demo/sdk/connection.js"),
    ),
    ("sdk/helios.js", JS, include_bytes!("../demo/sdk/helios.js")),
    ("sdk/chat.js", JS, include_bytes!("../demo/sdk/chat.js")),
    (
        "sdk/timestick.js",
        JS,
        include_bytes!("../demo/sdk/timestick.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The demo's routes, registered only when `dev` is true.
pub fn routes(dev: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if !dev {
            return;
        }
        cfg.route(
            "/demo",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header((header::LOCATION, "/demo/"))
                    .finish()
            }),
        )
        .route("/demo/token", web::post().to(token))
        .route("/demo/{file:.*}", web::get().to(file));
    }
}

async fn file(path: web::Path<String>) -> HttpResponse {
    let wanted = path.into_inner();
    match FILES.iter().find(|(p, _, _)| *p == wanted) {
        Some((_, kind, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *kind))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: https:",
            ))
            .body(*body),
        None => error(Fault::NotFound, "no such demo file"),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
}

/// Is `user` a name the demo mints tokens for: 1–64 bytes of ASCII letters, digits, `.`,
/// `_` and `-`.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn token(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if body.len() > MAX_TOKEN_BODY {
        return error(Fault::TooLarge, "body too large");
    }
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                Fault::Invalid,
                &format!("expected {{\"user\": \"<name>\"}}: {e}"),
            )
        }
    };
    if !valid_user(&req.user) {
        return error(
            Fault::Invalid,
            "user must be 1-64 ASCII letters, digits, '.', '_' or '-'",
        );
    }
    let JwtKey::Hs256(secret) = &state.settings.jwt else {
        return error(
            Fault::Unavailable,
            "this node verifies RS256/ES256 tokens: the demo cannot mint one",
        );
    };
    let token = murmur_broker::auth::mint_client_token(secret.as_bytes(), &req.user, TOKEN_TTL);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "token": token,
            "user": req.user,
            "expiresIn": TOKEN_TTL.as_secs(),
        }))
}

#[cfg(test)]
mod tests {
    use super::valid_user;

    #[test]
    fn user_names() {
        assert!(valid_user("alice"));
        assert!(valid_user("bob-2.x_y"));
        assert!(!valid_user(""));
        assert!(!valid_user("a b"));
        assert!(!valid_user("émile"));
        assert!(!valid_user(&"a".repeat(65)));
        assert!(valid_user(&"a".repeat(64)));
    }
}
