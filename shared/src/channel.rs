//! Channel names, shared by every protocol (a Helios topic, a TimeStick target, a Sink
//! device's `sink/<id>` feed are all channels).

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 256;

/// Channels whose name starts with this are the broker's own (a chat user's inbox is
/// `@user/<id>`): clients can neither subscribe to nor publish on them.
pub const INTERNAL_PREFIX: char = '@';

/// The broker publishes a Sink device's events on `sink/<client id>`: anyone may
/// subscribe, only the broker publishes (see [`is_broker_owned`]).
pub const SINK_PREFIX: &str = "sink/";

/// Whether the broker itself publishes on `name` (CONTRACT §10, "broker-owned
/// channels"): its internal channels (`@…`) and the Sink device feeds (`sink/…`). Such
/// channels accept no publication from clients (Helios `broker:publish`) and cannot be
/// TimeStick targets (whose requests are publications on the target). The one rule,
/// used by every protocol; the backend API is trusted and not bound by it.
pub fn is_broker_owned(name: &str) -> bool {
    name.starts_with(INTERNAL_PREFIX) || name.starts_with(SINK_PREFIX)
}

/// The refusal of a client publication on a broker-owned channel, or `Ok`.
pub fn check_publishable(name: &str) -> Result<(), String> {
    if is_broker_owned(name) {
        return Err(format!(
            "channel {name:?} is owned by the broker: clients cannot publish on sink/… or @… channels"
        ));
    }
    Ok(())
}

/// The internal inbox channel of a chat user: every device of the user receives it.
pub fn user_inbox(user: &str) -> String {
    format!("{INTERNAL_PREFIX}user/{user}")
}

/// The internal channel of a mutable chat session (a group): one publication per
/// message, received by every node with a connected device of a participant.
pub fn group_channel(session_id: &str) -> String {
    format!("{GROUP_PREFIX}{session_id}")
}

/// The prefix of every group channel ([`group_channel`]).
pub const GROUP_PREFIX: &str = "@group/";

/// The broker channel a user's presence changes are published on.
pub fn presence_channel(user: &str) -> String {
    format!("@presence/{user}")
}

/// A channel name is 1..=256 bytes of printable text: no whitespace or control
/// characters (they would be ambiguous in logs, metrics and Redis channel names).
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("channel name is empty".into());
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(format!("channel name longer than {MAX_CHANNEL_LEN} bytes"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("channel name contains whitespace or control characters".into());
    }
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(format!(
            "channel names starting with {INTERNAL_PREFIX:?} are reserved"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["news", "room/123", "sink/dev-1", "a:b.c-d_e", "ünïcødé"] {
            assert!(validate(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_empty_long_and_hostile_names() {
        assert!(validate("").is_err());
        assert!(validate(&"a".repeat(MAX_CHANNEL_LEN + 1)).is_err());
        assert!(validate(&"a".repeat(MAX_CHANNEL_LEN)).is_ok());
        for n in [
            "a b",
            "a\nb",
            "a\u{0}b",
            "\t",
            "a\u{202e}b\u{85}",
            "@user/bob",
        ] {
            assert!(validate(n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn sink_feeds_and_internal_channels_are_broker_owned() {
        for n in ["sink/dev-1", "sink/", "sink/a/b", "@user/bob", "@ts/x", "@"] {
            assert!(is_broker_owned(n), "{n:?}");
            assert!(check_publishable(n).is_err(), "{n:?}");
        }
        for n in ["sink", "sinks/x", "Sink/x", "news", "a/sink/x", "x@y"] {
            assert!(!is_broker_owned(n), "{n:?}");
            assert!(check_publishable(n).is_ok(), "{n:?}");
        }
        // Subscribing to a device feed stays possible: the name itself is valid.
        assert!(validate("sink/dev-1").is_ok());
    }
}
