//! `POST /api/v1/publish {channel, data, ~timing?}`: publish on a channel from the backend.

use actix_web::{web, HttpResponse};
use murmur_shared::api::ApiErrorCode;
use murmur_shared::channel;
use murmur_shared::envelope::Origin;
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
        return error(ApiErrorCode::BadRequest, &e);
    }
    if body.timing.as_ref().is_some_and(|t| !t.is_object()) {
        return error(ApiErrorCode::BadRequest, "`~timing` must be an object");
    }
    let origin = Origin {
        protocol: Some("api".into()),
        ..Origin::default()
    };
    let id = state
        .node
        .publish(&body.channel, body.data, body.timing, origin);
    HttpResponse::Ok().json(json!({"messageId": id, "channel": body.channel}))
}
