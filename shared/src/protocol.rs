//! The one vocabulary for protocols: which protocol a session speaks, a message came from,
//! a held job belongs to; the `protocol` label of metrics.

use serde::{Deserialize, Deserializer, Serialize};

/// A client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Helios,
    Chat,
    TimeStick,
    Sink,
}

impl Protocol {
    /// Every protocol, in catalogue order.
    pub const ALL: [Protocol; 4] = [
        Protocol::Helios,
        Protocol::Chat,
        Protocol::TimeStick,
        Protocol::Sink,
    ];

    /// Its name on the wire and in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Helios => "helios",
            Protocol::Chat => "chat",
            Protocol::TimeStick => "timestick",
            Protocol::Sink => "sink",
        }
    }
}

/// The metric label of a message's origin: its protocol, or `api` for the backend.
pub fn origin_label(protocol: Option<Protocol>) -> &'static str {
    protocol.map_or("api", Protocol::label)
}

/// Reads an origin's protocol leniently: a name this version does not know (a newer
/// node's protocol, or `"api"` as older nodes wrote for the backend) is no protocol.
pub fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Protocol>, D::Error> {
    let name: Option<String> = Option::deserialize(d)?;
    Ok(name.and_then(|n| Protocol::ALL.into_iter().find(|p| p.label() == n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct O {
        #[serde(default, deserialize_with = "deserialize_lenient")]
        p: Option<Protocol>,
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_no_protocol() {
        for p in Protocol::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.label());
            let o: O = serde_json::from_str(&format!("{{\"p\":\"{}\"}}", p.label())).unwrap();
            assert_eq!(o.p, Some(p));
        }
        for other in [r#"{"p":"api"}"#, r#"{"p":"mqtt"}"#, r#"{"p":null}"#, "{}"] {
            assert_eq!(serde_json::from_str::<O>(other).unwrap().p, None, "{other}");
        }
        assert!(serde_json::from_str::<O>(r#"{"p":7}"#).is_err());
        assert_eq!(origin_label(None), "api");
        assert_eq!(origin_label(Some(Protocol::Sink)), "sink");
    }
}
