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
//! over the limit is 413 before (declared) or while (streamed) they are read. The logic
//! lives in `murmur_broker::timestick`.

mod body;
mod handlers;
mod sse;

use actix_web::web;

/// Largest START body, in bytes.
pub const MAX_START_BODY: u64 = 16 * 1024;

/// Mounts the routes on the public port.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // Bodies are read by the handlers themselves, under their limits (`body`).
        web::scope("/timestick")
            .route("/session/{id}/stream", web::get().to(sse::stream))
            .route("/session/{id}", web::post().to(handlers::post))
            .route("/session/{id}", web::get().to(handlers::poll))
            .route("/{target:.*}", web::post().to(handlers::start)),
    );
}

pub use handlers::{admin_kill, admin_stop};
