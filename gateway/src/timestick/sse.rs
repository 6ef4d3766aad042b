//! `GET /timestick/session/<id>/stream`: Server-Sent Events. One event per message,
//! `id:` = its cursor; a reconnect with `Last-Event-ID` (or `?after=`) resumes after it
//! and confirms what came before. The stream ends after the session's final control
//! message.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use murmur_broker::timestick;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::handlers::{caller_and_session, count, poll_args, refused};
use crate::state::AppState;

/// Each internal wait of the stream loop; a keep-alive comment follows an empty one.
const STREAM_WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct StreamQuery {
    after: Option<String>,
}

fn event(id: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: message\ndata: {data}\n\n"))
}

pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    raw_id: &str,
    query: web::Query<StreamQuery>,
) -> HttpResponse {
    let (sub, id) = match caller_and_session(&state, &req, raw_id) {
        Ok(v) => v,
        Err(resp) => return resp.into(),
    };
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.after.clone());
    let (_, after) = match poll_args(Some("0"), last.as_deref()) {
        Ok(a) => a,
        Err(resp) => return resp.into(),
    };
    let node = state.node.clone();
    // First read: validates the session and confirms what the client already has.
    let first = match timestick::poll(&node, &sub, id, after, Duration::ZERO, true).await {
        Ok(p) => p,
        Err(e) => return refused(&node, "poll", id, &e),
    };
    count(&node, "poll", 200);
    node.metrics
        .connections
        .with_label_values(&["timestick"])
        .inc();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    actix_web::rt::spawn(async move {
        let mut polled = first;
        loop {
            for (cursor, msg) in &polled.messages {
                if tx.send(event(cursor, &msg.to_string())).await.is_err() {
                    node.metrics
                        .connections
                        .with_label_values(&["timestick"])
                        .dec();
                    return;
                }
            }
            if polled.finished || node.hands_over() {
                // Draining: the client resumes on another node with Last-Event-ID.
                break;
            }
            if polled.messages.is_empty()
                && tx
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
            {
                break;
            }
            let after = murmur_shared::timestick::Cursor::parse(&polled.cursor);
            polled = match timestick::poll(&node, &sub, id, after, STREAM_WAIT, false).await {
                Ok(p) => {
                    count(&node, "poll", 200);
                    p
                }
                Err(e) => {
                    count(&node, "poll", super::handlers::refusal(id, &e).0);
                    break;
                }
            };
        }
        node.metrics
            .connections
            .with_label_values(&["timestick"])
            .dec();
    });
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
