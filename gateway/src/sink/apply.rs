//! What each device frame does: the handshake (the first frame), then PUBLISH (stored
//! by the broker's [`Outbox::accept`], then ACK; NACK `02` when the store is away, `01`
//! when malformed), ACK/NACK of the outbox pump's PUBLISHes ([`Outbox::answered`]),
//! PING → PONG.

use murmur_broker::sink::{self as service, Answer, Hello, Outbox, SinkControl};
use murmur_shared::channel;
use murmur_shared::close::CloseCode;
use murmur_shared::sink::{ConnectionResponse, Event, Frame};
use serde_json::Value;

use murmur_shared::fault::Fault;

use super::session::{Identity, Inbound, Phase, SinkConn};
use super::LABEL;
use crate::edge::{Flow, Link, Stop};

fn close(code: CloseCode, reason: &str) -> Flow {
    Err(Stop::close(code, reason))
}

/// Applies one device frame.
pub async fn frame(conn: &mut SinkConn, inbound: Inbound) -> Flow {
    match std::mem::replace(&mut conn.phase, Phase::Closing) {
        Phase::Handshake(identity) => handshake(conn, identity, inbound).await,
        Phase::Closing => close(CloseCode::PolicyViolation, "connection is closing"),
        Phase::Open(open) => {
            conn.phase = Phase::Open(open);
            opened(conn, inbound).await
        }
    }
}

/// The first frame: the connection request, answered; an accepted device gets its
/// session, takes over from any older connection and has its outbox pumped.
async fn handshake(conn: &mut SinkConn, identity: Identity, inbound: Inbound) -> Flow {
    let state = conn.state.clone();
    let node = state.node.clone();
    let Inbound::Frame(Frame::ConnectionRequest {
        version,
        application_version,
        client_instance_id,
        server_instance_id,
    }) = inbound
    else {
        return close(
            CloseCode::PolicyViolation,
            "first frame is not a connection request",
        );
    };
    let client = match identity {
        Identity::Fixed(id) => id,
        Identity::DevInstance => format!("dev-{client_instance_id}"),
    };
    if channel::validate(&service::event_channel(&client)).is_err() {
        return close(CloseCode::PolicyViolation, "client id not usable");
    }
    let hello = Hello {
        version,
        application_version,
        client_instance_id,
        server_instance_id,
    };
    let min = state
        .settings
        .sink_min_app_version
        .as_ref()
        .and_then(|v| service::parse_app_version(v));
    let Ok(answer) = service::handshake(&node, &client, &hello, min.as_ref()).await else {
        return close(
            CloseCode::InternalError,
            "temporarily unavailable: store unreachable during the handshake",
        );
    };
    let label = match &answer {
        ConnectionResponse::Connected => "connected",
        ConnectionResponse::HelloNewClient(_) => "hello_new_client",
        ConnectionResponse::InstanceIdMismatch => "instance_id_mismatch",
        ConnectionResponse::Quarantined { .. } => "quarantined",
        ConnectionResponse::UnsupportedProtocolVersion => "unsupported_protocol_version",
        ConnectionResponse::UnsupportedApplicationVersion => "unsupported_application_version",
    };
    node.metrics
        .sink_events
        .with_label_values(&["handshake", label])
        .inc();
    let refused = match &answer {
        ConnectionResponse::Connected | ConnectionResponse::HelloNewClient(_) => None,
        ConnectionResponse::Quarantined { .. } => Some((CloseCode::Terminated, "quarantined")),
        _ => Some((CloseCode::PolicyViolation, "handshake refused")),
    };
    conn.write(&Frame::ConnectionResponse(answer))?;
    if let Some((code, reason)) = refused {
        return close(code, reason);
    }

    // The session: one per connection, subscribed to the device's control channel.
    let Ok((handle, attachment)) = node
        .open(&client, murmur_broker::Protocol::Sink, false)
        .await
    else {
        return close(
            CloseCode::GoingAway,
            "node draining; reconnect to another node",
        );
    };
    let (link, _) = Link::new(handle.clone(), attachment);
    if handle
        .subscribe(&service::control_channel(&client))
        .await
        .is_err()
    {
        handle.detach(link.epoch);
        return close(
            CloseCode::InternalError,
            "temporarily unavailable: control channel",
        );
    }
    // Any other connection of this client, on any node, now lets go.
    service::signal(
        &node,
        &client,
        SinkControl::Takeover,
        Some(handle.id()),
        Value::Null,
    );
    let outbox = Outbox::open(&node, &client, handle.id()).await;
    conn.opened(link, handle, outbox);
    conn.fill().await
}

/// A frame after the handshake.
async fn opened(conn: &mut SinkConn, inbound: Inbound) -> Flow {
    let frame = match inbound {
        Inbound::Frame(frame) => frame,
        // Only a PUBLISH can be refused with a NACK (its id is the device's); any other
        // malformed frame is a protocol violation and closes the connection.
        Inbound::Undecodable {
            publish_id: Some(id),
            reason,
        } => {
            let metrics = &conn.state.node.metrics;
            metrics.decode_errors.with_label_values(&[LABEL]).inc();
            metrics
                .sink_events
                .with_label_values(&["in", "malformed"])
                .inc();
            return conn.write(&Frame::Nack {
                id,
                machine: vec![Fault::Malformed.sink_nack()],
                human: reason,
            });
        }
        Inbound::Undecodable { .. } => {
            return close(CloseCode::PolicyViolation, "undecodable frame")
        }
    };
    match frame {
        Frame::Publish { id, event } => {
            let reply = publish(conn, id, event).await;
            conn.write(&reply)
        }
        Frame::Ack { id } => {
            answered(conn, id, Answer::Ack).await;
            conn.fill().await
        }
        Frame::Nack { id, machine, human } => {
            answered(conn, id, Answer::Nack { machine, human }).await;
            conn.fill().await
        }
        Frame::Ping => conn.write(&Frame::Pong),
        Frame::Pong => Ok(()),
        Frame::ConnectionRequest { .. } | Frame::ConnectionResponse(_) => close(
            CloseCode::PolicyViolation,
            "connection frames after the handshake",
        ),
    }
}

/// The device answered one of the pump's PUBLISHes (ACK, or NACK with its messages):
/// it leaves the outbox (a NACKed one is kept in the NACK list). A store that fails
/// here leaves the entry in the outbox, redelivered on the next connection.
async fn answered(conn: &mut SinkConn, id: u16, answer: Answer) {
    if let Phase::Open(open) = &mut conn.phase {
        let _ = open.outbox.answered(id, answer).await;
    }
}

/// A device PUBLISH: stored, then ACK; NACK `02` when the store is away (the broker
/// publishes the resend of a PUBLISH answered `02` even if its timed-out write had
/// landed).
async fn publish(conn: &mut SinkConn, id: u16, event: Event) -> Frame {
    let Phase::Open(open) = &mut conn.phase else {
        return Frame::Pong;
    };
    match open.outbox.accept(&event).await {
        Ok(_) => Frame::Ack { id },
        Err(_) => Frame::Nack {
            id,
            machine: vec![Fault::Unavailable.sink_nack()],
            human: "temporarily unavailable; send again later".into(),
        },
    }
}
