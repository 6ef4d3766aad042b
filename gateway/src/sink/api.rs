//! `/api/v1/sink/*`: queue events for a device, read its NACK list and status,
//! quarantine it. Bytes travel as base64 (standard alphabet, padded). Each handler
//! checks its input and calls the broker's `sink` functions, which read the store.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use murmur_broker::sink as service;
use murmur_broker::store::sink::{Quarantine, SinkEvent};
use murmur_shared::channel;
use murmur_shared::fault::Fault;
use murmur_shared::ids::now_ms;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error;
use crate::state::AppState;

/// A 400 decided before the broker is asked.
struct BadRequest(String);

impl From<BadRequest> for HttpResponse {
    fn from(b: BadRequest) -> HttpResponse {
        error(Fault::Invalid, &b.0)
    }
}

fn client_id(raw: &str) -> Result<String, BadRequest> {
    let valid = !raw.is_empty()
        && raw.len() <= 128
        && channel::validate(&service::event_channel(raw)).is_ok();
    if !valid {
        return Err(BadRequest("invalid client id".into()));
    }
    Ok(raw.to_string())
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, BadRequest> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| BadRequest(format!("{field} must be base64")))
}

#[derive(Deserialize)]
pub struct EventBody {
    event_type_id: u64,
    schema_version: u64,
    key: String,
    offset: Option<u64>,
    timestamp: Option<u64>,
    event_data: String,
    #[serde(rename = "~timing")]
    timing: Option<Value>,
}

/// `POST /api/v1/sink/clients/<id>/events`: queues an event in the device's outbox.
pub async fn queue_event(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<EventBody>,
) -> HttpResponse {
    let client = match client_id(&path) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    let body = body.into_inner();
    let (key, data) = match (b64("key", &body.key), b64("event_data", &body.event_data)) {
        (Ok(k), Ok(d)) => (k, d),
        (Err(r), _) | (_, Err(r)) => return r.into(),
    };
    if key.len() + data.len() > murmur_shared::sink::MAX_FRAME - 64 {
        return error(Fault::TooLarge, "the event does not fit one Sink frame");
    }
    let due = match crate::api::plan_timing(&state, body.timing.as_ref()) {
        Ok(due) => due,
        Err(resp) => return resp.into(),
    };
    let event = SinkEvent {
        event_type_id: body.event_type_id,
        schema_version: body.schema_version,
        key,
        offset: 0,
        timestamp: body.timestamp.unwrap_or(now_ms() / 1000),
        data,
    };
    match service::enqueue(&state.node, &client, event, body.offset, body.timing, due).await {
        Ok((seq, offset)) => {
            let mut out = json!({"client": client, "seq": seq, "offset": offset});
            if let Some(due) = due {
                out["deliverAt"] = json!(murmur_shared::timing::format(due));
            }
            HttpResponse::Accepted().json(out)
        }
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}

/// `GET /api/v1/sink/clients/<id>/nacks`: events the device refused, newest last.
pub async fn nacks(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let client = match client_id(&path) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    match service::nacks(&state.node, &client).await {
        Ok(list) => {
            let items: Vec<Value> = list
                .iter()
                .map(|n| {
                    let mut event = service::event_json(&n.entry.event);
                    event["seq"] = json!(n.entry.seq);
                    json!({
                        "event": event,
                        "machine_message": STANDARD.encode(&n.machine_message),
                        "human_message": n.human_message,
                        "nacked_ms": n.nacked_ms,
                    })
                })
                .collect();
            HttpResponse::Ok().json(json!({"client": client, "nacks": items}))
        }
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}

/// `GET /api/v1/sink/clients/<id>`: outbox depth and quarantine.
pub async fn client(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let client = match client_id(&path) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    match service::status(&state.node, &client).await {
        Ok(status) => HttpResponse::Ok().json(json!({
            "client": client,
            "outbox_depth": status.outbox_depth,
            "quarantined": status.quarantined,
        })),
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct QuarantineBody {
    machine_message: String,
    #[serde(default)]
    human_message: String,
}

/// `PUT /api/v1/sink/quarantine/<id>`: quarantines a device (connected: disconnected
/// at once; later connections refused with code 3 and these messages).
pub async fn quarantine(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<QuarantineBody>,
) -> HttpResponse {
    let client = match client_id(&path) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    let machine = match b64("machine_message", &body.machine_message) {
        Ok(m) => m,
        Err(r) => return r.into(),
    };
    if machine.len() + body.human_message.len() > 4096 {
        return error(Fault::TooLarge, "quarantine messages are limited to 4 KiB");
    }
    let q = Quarantine {
        machine_message: machine,
        human_message: body.human_message.clone(),
    };
    match service::set_quarantine(&state.node, &client, Some(q)).await {
        Ok(existed) => HttpResponse::Ok()
            .json(json!({"client": client, "quarantined": true, "replaced": existed})),
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}

/// `DELETE /api/v1/sink/quarantine/<id>`: lifts a quarantine (404 if there was none).
pub async fn lift(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let client = match client_id(&path) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    match service::set_quarantine(&state.node, &client, None).await {
        Ok(true) => HttpResponse::Ok().json(json!({"client": client, "quarantined": false})),
        Ok(false) => error(Fault::NotFound, "the client is not quarantined"),
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}
