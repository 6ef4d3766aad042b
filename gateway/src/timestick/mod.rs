//! TimeStick over HTTP (CONTRACT §3), served by any node for any session.
//!
//! | route | what |
//! |---|---|
//! | `POST /timestick/start` | START, target from `requested_uri` |
//! | `POST /timestick/<target…>` | START for that target |
//! | `POST /timestick/session/<id>` | one message (202) |
//! | `GET /timestick/session/<id>?wait=&after=` | long-poll |
//! | `GET /timestick/session/<id>/stream` | Server-Sent Events, resumable with `Last-Event-ID` |
//!
//! Every request carries `Authorization: Bearer <jwt>`; a session only answers the
//! principal that started it. Bodies are read explicitly under their limits (`body`):
//! over the limit is 413 before (declared) or while (streamed) they are read. Bodies are
//! decoded and statuses chosen here (`handlers`); the logic lives in
//! `murmur_broker::timestick`. The routes are told apart by hand ([`route`]), not by
//! actix patterns (which match with regular expressions, on every request).

mod body;
mod handlers;
mod sse;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::state::AppState;

/// Largest START body, in bytes.
pub const MAX_START_BODY: u64 = 16 * 1024;

/// Mounts the routes on the public port.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Bodies are read by the handlers themselves, under their limits (`body`).
    cfg.service(web::scope("/timestick").default_service(web::to(route)));
}

/// Which handler a request under `/timestick` goes to.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Post(&'a str),
    Poll(&'a str),
    Stream(&'a str),
    Start,
    NotFound,
}

/// Picks the route from the method and the path after `/timestick` (as actix matches
/// it: percent-escapes decoded except `%2F`, `%25` and `%2B`). The same answers as the
/// patterns `/session/{id}/stream` (GET), `/session/{id}` (POST, GET) and
/// `/{target:.*}` (POST), tried in that order, where `{id}` is one non-empty segment.
fn pick<'a>(method: &Method, rest: &'a str) -> Route<'a> {
    if let Some(tail) = rest.strip_prefix("/session/") {
        match tail.split_once('/') {
            None if !tail.is_empty() => {
                if method == Method::POST {
                    return Route::Post(tail);
                }
                if method == Method::GET {
                    return Route::Poll(tail);
                }
            }
            Some((id, "stream")) if !id.is_empty() && method == Method::GET => {
                return Route::Stream(id)
            }
            _ => {}
        }
    }
    if method == Method::POST && rest.starts_with('/') {
        Route::Start
    } else {
        Route::NotFound
    }
}

async fn route(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let path = req.match_info().unprocessed().to_string();
    match pick(req.method(), &path) {
        Route::Post(id) => handlers::post(req.clone(), state, id, payload).await,
        Route::Poll(id) => match web::Query::from_query(req.query_string()) {
            Ok(q) => handlers::poll(req.clone(), state, id, q).await,
            Err(e) => HttpResponse::from_error(e),
        },
        Route::Stream(id) => match web::Query::from_query(req.query_string()) {
            Ok(q) => sse::stream(req.clone(), state, id, q).await,
            Err(e) => HttpResponse::from_error(e),
        },
        Route::Start => handlers::start(req, state, payload).await,
        Route::NotFound => HttpResponse::NotFound().finish(),
    }
}

pub use handlers::{admin_kill, admin_stop};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart_like_the_patterns_were() {
        let id = "0b7e6c1e-5d2a-4f61-9a43-3c2f1f0e9d11";
        let post = Method::POST;
        let get = Method::GET;
        let cases = [
            (&post, format!("/session/{id}"), Route::Post(id)),
            (&get, format!("/session/{id}"), Route::Poll(id)),
            (&get, format!("/session/{id}/stream"), Route::Stream(id)),
            (&post, format!("/session/{id}/stream"), Route::Start),
            (&post, "/session/".to_string(), Route::Start),
            (&post, "/session/a/b".to_string(), Route::Start),
            (&get, "/session/a/b".to_string(), Route::NotFound),
            (&get, "/session/".to_string(), Route::NotFound),
            (&get, "/session//stream".to_string(), Route::NotFound),
            (&post, "/session//stream".to_string(), Route::Start),
            (&post, "/start".to_string(), Route::Start),
            (&post, "/".to_string(), Route::Start),
            (&post, String::new(), Route::NotFound),
            (&get, "/start".to_string(), Route::NotFound),
            (&Method::PUT, format!("/session/{id}"), Route::NotFound),
            (&Method::HEAD, format!("/session/{id}"), Route::NotFound),
            (&Method::DELETE, "/room".to_string(), Route::NotFound),
        ];
        for (method, path, want) in &cases {
            assert_eq!(&pick(method, path), want, "{method} {path}");
        }
    }
}
