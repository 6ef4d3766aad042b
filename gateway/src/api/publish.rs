//! `POST /api/v1/publish {channel, data, ~timing?}`: publish on a channel from the backend.

use actix_web::{web, HttpResponse};
use murmur_shared::channel;
use murmur_shared::envelope::Origin;
use murmur_shared::fault::Fault;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct PublishBody {
    channel: String,
    #[serde(default)]
    data: Value,
    #[serde(rename = "~timing", default)]
    timing: Option<Value>,
}

pub async fn publish(state: web::Data<AppState>, body: web::Json<PublishBody>) -> HttpResponse {
    let body = body.into_inner();
    if let Err(e) = channel::validate(&body.channel) {
        return error(Fault::Invalid, &e);
    }
    let due = match super::plan_timing(&state, body.timing.as_ref()) {
        Ok(due) => due,
        Err(resp) => return resp.into(),
    };
    // The backend: no session, no user, no protocol.
    let origin = Origin::default();
    match state
        .node
        .publish_at(&body.channel, body.data, body.timing, origin, due)
        .await
    {
        Ok(id) => {
            let mut out = json!({"messageId": id, "channel": body.channel});
            if let Some(due) = due {
                out["deliverAt"] = json!(murmur_shared::timing::format(due));
            }
            HttpResponse::Ok().json(out)
        }
        Err(e) => error(Fault::Unavailable, &e.to_string()),
    }
}
