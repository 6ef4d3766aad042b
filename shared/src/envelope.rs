//! The protocol-neutral envelope: what a session hands to the router and what crosses
//! between nodes. Each protocol adapter maps its own frames to and from it, so one
//! message can cross protocols (a TimeStick request reaching a Helios subscriber).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{now_ms, NodeId, SessionId};

/// What an envelope is, independent of the protocol that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An application message to a session, user or group.
    Message,
    /// A request that expects a response at `reply_to`.
    Request,
    /// The answer to a request; `correlation` names it.
    Response,
    /// A publication on a channel (or a one-way notice to a session).
    Notification,
    /// Broker-internal control between sessions (cancel, takeover, stop).
    Control,
}

/// Where an envelope is going.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Destination {
    /// One session, wherever it lives.
    Session(SessionId),
    /// Every subscriber of a channel on every node.
    Channel(String),
    /// A reply slot on the node named by the [`Address`] (backend API calls waiting for an answer).
    Reply(u64),
}

/// A reachable endpoint: the node that owns it and what on that node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    pub node: NodeId,
    pub to: Destination,
}

/// Who sent an envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The sending session, when a session sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// The authenticated principal (JWT `sub`) of the sender; `None` for the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The sender's protocol; `None` for the backend API.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::protocol::deserialize_lenient"
    )]
    pub protocol: Option<crate::protocol::Protocol>,
}

/// An error carried by a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// The payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Body {
    /// A JSON value (most protocols).
    Json(Value),
    /// Raw bytes (Sink event data).
    Bytes(Vec<u8>),
    /// A failed response.
    Error(ErrorBody),
    /// JSON values kept as their text, in order: server actions encoded once where they
    /// were made (a window's aggregated chat delivery reports for one sender) and written
    /// to clients as they are, never parsed on the way. Nodes before this variant cannot
    /// read it.
    Texts(Vec<String>),
}

impl Body {
    /// The body as a JSON value ([`Body::Texts`] parsed: the one value, or an array of
    /// them; bytes and errors: `None`).
    pub fn value(&self) -> Option<std::borrow::Cow<'_, Value>> {
        match self {
            Body::Json(v) => Some(std::borrow::Cow::Borrowed(v)),
            Body::Texts(ts) if ts.len() == 1 => serde_json::from_str(&ts[0])
                .ok()
                .map(std::borrow::Cow::Owned),
            Body::Texts(ts) => ts
                .iter()
                .map(|t| serde_json::from_str(t).ok())
                .collect::<Option<Vec<Value>>>()
                .map(|vs| std::borrow::Cow::Owned(Value::Array(vs))),
            Body::Bytes(_) | Body::Error(_) => None,
        }
    }
}

/// Broker-internal control operations carried by [`Kind::Control`] envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// The caller gave up on the request named by the envelope's `correlation`
    /// (timeout or `system:cancel`); the provider forgets it.
    Cancel,
    /// A newer connection took this session over on another node: stop serving it.
    Takeover,
}

/// The bytes before the first space, and those after it.
fn split_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// `<ms>-<n>` as numbers (garbage reads as 0).
pub fn parse_position(s: &str) -> (u64, u64) {
    let (ms, n) = s.split_once('-').unwrap_or((s, "0"));
    (ms.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

/// A channel publication's place in its channel, as clients see it: `seq` counts the
/// channel's publications from 1 within an `epoch`; the epoch changes when the channel's
/// history is lost (it expired while idle), and `seq` starts again at 1. The same on
/// every node. Clients drop a publication whose `(epoch, seq)` they already have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSeq {
    pub seq: u64,
    pub epoch: String,
}

impl ChannelSeq {
    /// Whether `next` follows `self` with nothing missing in between: the next number of
    /// the same epoch, or the first of a new epoch (the old history expired idle).
    pub fn continued_by(&self, next: &ChannelSeq) -> bool {
        if next.epoch == self.epoch {
            // `checked_add`: a `u64::MAX` read from the bus has no successor.
            self.seq.checked_add(1) == Some(next.seq)
        } else {
            next.seq == 1
        }
    }
}

/// One message in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per message; used for de-duplication and as the delivered `message-id`.
    pub id: Uuid,
    pub kind: Kind,
    pub to: Destination,
    #[serde(default)]
    pub from: Origin,
    /// Where a response to this request goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Address>,
    /// For responses: the id the requester used. For requests: the requester's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// For requests: the method (`ns:action`). For notifications: the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: Body,
    /// The raw `~timing` decorator, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Value>,
    /// When the broker accepted the message (Unix ms); delivery latency is measured from it.
    pub created_ms: u64,
    /// Chat: the newest message id of a group's history when its membership changed
    /// (`0-0` for a new group). A device that starts following the group replays the
    /// history after it, so nothing published before its node subscribed is missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_mark: Option<String>,
    /// The node that accepted the message. Read by no node of this version (every node,
    /// the origin too, delivers what the bus hands back); still written because nodes
    /// of earlier versions require it, so that a rolling upgrade's mixed cluster
    /// decodes every envelope. Remove once no such node can be in a cluster.
    pub origin_node: NodeId,
    /// Position of a channel publication in its channel's history (the Redis stream id),
    /// set on receipt in cluster mode; used to replay exactly what a recovering session
    /// missed and to skip what it already has. Never serialized.
    #[serde(skip)]
    pub seq: Option<String>,
    /// The publication's [`ChannelSeq`], set with `seq`. Never serialized.
    #[serde(skip)]
    pub chan_seq: Option<ChannelSeq>,
    /// The Helios-Starling wire form of a channel publication, encoded once per node and
    /// shared by every local subscriber (fan-out writes the same bytes to each socket).
    /// Never serialized.
    #[serde(skip)]
    pub wire: std::sync::OnceLock<bytes::Bytes>,
}

impl Envelope {
    /// A new envelope accepted now on `node`.
    pub fn new(node: &NodeId, kind: Kind, to: Destination, body: Body) -> Self {
        Envelope {
            id: crate::ids::random_uuid(),
            kind,
            to,
            from: Origin::default(),
            reply_to: None,
            correlation: None,
            subject: None,
            body,
            timing: None,
            history_mark: None,
            created_ms: now_ms(),
            origin_node: node.clone(),
            seq: None,
            chan_seq: None,
            wire: std::sync::OnceLock::new(),
        }
    }

    /// Builder: set the sender.
    pub fn from(mut self, from: Origin) -> Self {
        self.from = from;
        self
    }

    /// Builder: set the reply address.
    pub fn reply_to(mut self, addr: Address) -> Self {
        self.reply_to = Some(addr);
        self
    }

    /// Builder: set the correlation id.
    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation = Some(id.into());
        self
    }

    /// Builder: set the subject (method or topic).
    pub fn subject(mut self, s: impl Into<String>) -> Self {
        self.subject = Some(s.into());
        self
    }

    /// Builder: set the `~timing` decorator.
    pub fn timing(mut self, t: Option<Value>) -> Self {
        self.timing = t;
        self
    }

    /// Encodes for the bus.
    pub fn to_bytes(&self) -> Vec<u8> {
        // unwrap: serializing plain data (no maps with non-string keys) cannot fail.
        serde_json::to_vec(self).unwrap()
    }

    /// Decodes from the bus. Garbage is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Decodes a channel publication as the bus carries it:
    /// `<stream id> <seq> <epoch> <envelope JSON>` for a publication kept in the channel's
    /// history, `- <envelope JSON>` for one that is not. Garbage is `None`, never a panic.
    pub fn from_channel_payload(payload: &[u8]) -> Option<Self> {
        let (head, rest) = split_word(payload)?;
        if head == b"-" {
            return Self::from_bytes(rest).ok();
        }
        let (seq, rest) = split_word(rest)?;
        let (epoch, rest) = split_word(rest)?;
        let id = std::str::from_utf8(head).ok()?;
        let seq: u64 = std::str::from_utf8(seq).ok()?.parse().ok()?;
        let epoch = std::str::from_utf8(epoch).ok()?;
        if id.is_empty() || epoch.is_empty() || seq == 0 {
            return None;
        }
        let mut env = Self::from_bytes(rest).ok()?;
        env.seq = Some(id.to_string());
        env.chan_seq = Some(ChannelSeq {
            seq,
            epoch: epoch.to_string(),
        });
        Some(env)
    }

    /// Compares two history positions (`<ms>-<n>` stream ids): true when `a` is after `b`.
    pub fn seq_after(a: &str, b: &str) -> bool {
        parse_position(a) > parse_position(b)
    }

    /// The greatest history position before `pos`: reading "after" it starts at `pos`.
    pub fn seq_before(pos: &str) -> String {
        match parse_position(pos) {
            (0, 0) => "0-0".into(),
            (ms, 0) => format!("{}-{}", ms - 1, u64::MAX),
            (ms, n) => format!("{ms}-{}", n - 1),
        }
    }

    /// The JSON body, or `Null` for other bodies.
    pub fn json(&self) -> &Value {
        match &self.body {
            Body::Json(v) => v,
            _ => &Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeId {
        NodeId("n1".into())
    }

    #[test]
    fn round_trips_through_bytes() {
        let env = Envelope::new(
            &node(),
            Kind::Request,
            Destination::Session(SessionId::random()),
            Body::Json(json!({"a": [1, 2, 3]})),
        )
        .reply_to(Address {
            node: node(),
            to: Destination::Reply(7),
        })
        .correlation("c-1")
        .subject("chat:send")
        .timing(Some(json!({"delay_milli": 5})));
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn byte_bodies_and_errors_round_trip() {
        for body in [
            Body::Bytes(vec![0, 255, 7]),
            Body::Error(ErrorBody {
                code: "X".into(),
                message: "m".into(),
                details: None,
            }),
        ] {
            let env = Envelope::new(&node(), Kind::Response, Destination::Reply(1), body);
            assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Envelope::from_bytes(b"").is_err());
        assert!(Envelope::from_bytes(b"{\"id\":1}").is_err());
        assert!(Envelope::from_bytes(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn history_positions_compare_numerically() {
        assert!(Envelope::seq_after("10-0", "9-5"));
        assert!(Envelope::seq_after("10-10", "10-9"));
        assert!(!Envelope::seq_after("10-9", "10-10"));
        assert!(!Envelope::seq_after("10-0", "10-0"));
        assert!(Envelope::seq_after("1", "0-0"));
    }

    #[test]
    fn control_ops_serialize_with_a_tag() {
        let v = serde_json::to_value(Control::Cancel).unwrap();
        assert_eq!(v, json!({"op": "cancel"}));
    }

    #[test]
    fn positions_have_predecessors_and_sequences_know_their_successors() {
        assert_eq!(Envelope::seq_before("5-3"), "5-2");
        assert_eq!(Envelope::seq_before("5-0"), format!("4-{}", u64::MAX));
        assert_eq!(Envelope::seq_before("0-0"), "0-0");
        assert!(Envelope::seq_after("5-0", &Envelope::seq_before("5-0")));
        assert!(!Envelope::seq_after("4-9", &Envelope::seq_before("5-0")));
        let a = ChannelSeq {
            seq: 7,
            epoch: "e1".into(),
        };
        assert!(a.continued_by(&ChannelSeq {
            seq: 8,
            epoch: "e1".into()
        }));
        assert!(!a.continued_by(&ChannelSeq {
            seq: 9,
            epoch: "e1".into()
        }));
        assert!(a.continued_by(&ChannelSeq {
            seq: 1,
            epoch: "e2".into()
        }));
        assert!(!a.continued_by(&ChannelSeq {
            seq: 2,
            epoch: "e2".into()
        }));
    }

    #[test]
    fn channel_payloads_carry_position_and_sequence() {
        let env = Envelope::new(
            &NodeId("n".into()),
            Kind::Notification,
            Destination::Channel("c".into()),
            Body::Json(serde_json::json!(1)),
        );
        let json = env.to_bytes();
        let mut framed = b"17-2 42 ep1 ".to_vec();
        framed.extend_from_slice(&json);
        let got = Envelope::from_channel_payload(&framed).unwrap();
        assert_eq!(got.seq.as_deref(), Some("17-2"));
        assert_eq!(
            got.chan_seq,
            Some(ChannelSeq {
                seq: 42,
                epoch: "ep1".into()
            })
        );
        let mut bare = b"- ".to_vec();
        bare.extend_from_slice(&json);
        let got = Envelope::from_channel_payload(&bare).unwrap();
        assert_eq!((got.seq, got.chan_seq), (None, None));
        for bad in [
            &b""[..],
            b"-",
            b"17-2 x ep {}",
            b"17-2 0 ep {}",
            b"17-2 1  {}",
            b"1 2 3 {",
        ] {
            assert!(Envelope::from_channel_payload(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fuzz_regression_floats_cross_the_bus_unchanged() {
        // fuzz/envelope: serde_json's default float parser can be one ULP off, so a float
        // changed each time an envelope crossed the bus.
        let env = Envelope::new(
            &node(),
            Kind::Notification,
            Destination::Channel("news".into()),
            Body::Json(json!([
                3.777_777_777_777_777_7e65,
                7.777_777_777_777_777e52
            ])),
        );
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        let raw = br#"{"id":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","kind":"message","to":{"t":"reply","v":1},"body":{"t":"json","v":377777777777777777777777777777777777777777777777777777777777777777},"created_ms":1,"origin_node":"n1"}"#;
        let env = Envelope::from_bytes(raw).unwrap();
        assert_eq!(env.json().as_f64(), Some(3.777_777_777_777_777_7e65));
    }

    #[test]
    fn fuzz_regression_the_last_seq_has_no_successor() {
        // fuzz/envelope: `seq + 1` overflowed (a panic in debug builds) on a channel
        // payload carrying seq 18446744073709551615.
        let json = Envelope::new(
            &node(),
            Kind::Notification,
            Destination::Reply(1),
            Body::Json(Value::Null),
        )
        .to_bytes();
        let payload = [&b"1-0 18446744073709551615 e1 "[..], &json].concat();
        let env = Envelope::from_channel_payload(&payload).unwrap();
        let last = env.chan_seq.unwrap();
        assert_eq!(last.seq, u64::MAX);
        assert!(!last.continued_by(&last));
        let wrapped = ChannelSeq {
            seq: 0,
            epoch: last.epoch.clone(),
        };
        assert!(!last.continued_by(&wrapped));
        let new_epoch = ChannelSeq {
            seq: 1,
            epoch: "e2".into(),
        };
        assert!(last.continued_by(&new_epoch));
    }
}
