//! Broker envelopes → Helios-Starling JSON text.

use bytes::Bytes;
use bytestring::ByteString;
use murmur_shared::envelope::{Body, Destination, Envelope, Kind};
use murmur_shared::helios::{self, WireError};
use murmur_shared::ids::now_ms;
use serde_json::Value;

/// The text frame for an envelope, ready for the socket. A channel publication is
/// encoded once per node and its bytes shared by every local subscriber (its
/// `timestamp` is the first encoding's).
pub fn frame(env: &Envelope) -> Option<ByteString> {
    let shared = env.kind == Kind::Notification
        && env.correlation.is_none()
        && matches!(env.to, Destination::Channel(_));
    if !shared {
        return encode(env).map(ByteString::from);
    }
    let bytes = env
        .wire
        .get_or_init(|| Bytes::from(encode(env).unwrap_or_default()));
    ByteString::try_from(bytes.clone()).ok()
}

/// The text frame for an envelope, or `None` for envelopes that have no Helios form.
pub fn encode(env: &Envelope) -> Option<String> {
    let now = now_ms();
    let data = match &env.body {
        Body::Json(v) => v.clone(),
        Body::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        Body::Texts(_) => env.body.value().map_or(Value::Null, |v| v.into_owned()),
        Body::Error(_) => Value::Null,
    };
    match env.kind {
        Kind::Notification
            if env.correlation.is_none() && matches!(env.to, Destination::Channel(_)) =>
        {
            let Destination::Channel(channel) = &env.to else {
                return None;
            };
            let seq = env.chan_seq.as_ref().map(|s| (s.seq, s.epoch.as_str()));
            Some(helios::encode_publication(
                channel,
                &data,
                env.timing.as_ref(),
                seq,
                now,
            ))
        }
        Kind::Notification | Kind::Message => {
            let topic = match &env.to {
                Destination::Channel(c) => Some(c.as_str()),
                _ => env.subject.as_deref(),
            };
            Some(helios::encode_notification(
                env.correlation.as_deref(),
                topic,
                &data,
                env.timing.as_ref(),
                now,
            ))
        }
        Kind::Request => Some(helios::encode_request(
            env.correlation.as_deref()?,
            env.subject.as_deref()?,
            Some(&data),
            env.timing.as_ref(),
            now,
        )),
        Kind::Response => {
            let id = env.correlation.as_deref()?;
            Some(match &env.body {
                Body::Error(e) => helios::encode_error_timed(
                    id,
                    &WireError {
                        code: e.code.clone(),
                        message: e.message.clone(),
                        details: e.details.clone(),
                    },
                    env.timing.as_ref(),
                    now,
                ),
                _ => helios::encode_success_timed(id, Some(&data), env.timing.as_ref(), now),
            })
        }
        Kind::Control => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_shared::envelope::ErrorBody;
    use murmur_shared::helios::{decode, Frame};
    use murmur_shared::ids::{NodeId, SessionId};
    use serde_json::json;

    fn env(kind: Kind, to: Destination, body: Body) -> Envelope {
        Envelope::new(&NodeId("n".into()), kind, to, body)
    }

    #[test]
    fn channel_publications_are_notifications_with_the_channel_as_topic() {
        let e = env(
            Kind::Notification,
            Destination::Channel("news".into()),
            Body::Json(json!(1)),
        );
        let Ok(Frame::Notification(n)) = decode(&encode(&e).unwrap()) else {
            panic!()
        };
        assert_eq!(n.topic.as_deref(), Some("news"));
        assert_eq!(n.data, json!(1));
        assert_eq!(n.request_id, None);
    }

    #[test]
    fn forwarded_requests_use_the_local_id() {
        let id = uuid::Uuid::new_v4().to_string();
        let e = env(
            Kind::Request,
            Destination::Session(SessionId::random()),
            Body::Json(json!({"a": 1})),
        )
        .correlation(id.clone())
        .subject("math:add");
        let Ok(Frame::Request(r)) = decode(&encode(&e).unwrap()) else {
            panic!()
        };
        assert_eq!(r.request_id, id);
        assert_eq!(r.method, "math:add");
        assert_eq!(r.payload, Some(json!({"a": 1})));
    }

    #[test]
    fn responses_keep_custom_error_codes() {
        let id = uuid::Uuid::new_v4().to_string();
        let e = env(
            Kind::Response,
            Destination::Session(SessionId::random()),
            Body::Error(ErrorBody {
                code: "E_CUSTOM".into(),
                message: "m".into(),
                details: None,
            }),
        )
        .correlation(id.clone());
        let Ok(Frame::Response(r)) = decode(&encode(&e).unwrap()) else {
            panic!()
        };
        assert_eq!(r.request_id, id);
        assert_eq!(r.outcome.unwrap_err().code, "E_CUSTOM");
    }

    #[test]
    fn control_envelopes_and_requests_without_ids_have_no_form() {
        let c = env(
            Kind::Control,
            Destination::Session(SessionId::random()),
            Body::Json(json!({})),
        );
        assert!(encode(&c).is_none());
        let r = env(
            Kind::Request,
            Destination::Session(SessionId::random()),
            Body::Json(json!({})),
        );
        assert!(encode(&r).is_none());
    }
}
