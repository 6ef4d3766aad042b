//! Which groups a device follows, and the bookkeeping that makes joining one exact.
//!
//! A device follows every group its user is in: from authentication (the store's list)
//! and from then on from the `providing-session-info` changes its user's inbox carries.
//! Following means the device session is a member of the group's channel
//! (`@group/<id>`, [`murmur_shared::channel::group_channel`]), and group broadcasts of
//! groups the device does not follow are dropped by the connection.
//!
//! A device that starts following a group on a change may have missed messages its node
//! received before it subscribed to the group's channel: the change carries the group's
//! history mark, and once the subscription is confirmed the connection replays the
//! history after it ([`Following::caught_up`]). Messages written live meanwhile (or sent
//! by this connection) are noted, so the replay skips them; the replayed ids are kept for
//! two heartbeat periods, so a live copy arriving late is skipped too.
//!
//! Pure state: the connection does the subscriptions and the writes.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// What a session change means for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start following `group`; replay its history after `mark` if given.
    Follow { group: String, mark: Option<String> },
    /// Stop following `group`.
    Unfollow(String),
}

/// See the module docs.
#[derive(Default)]
pub struct Following {
    groups: HashSet<String>,
    /// Groups whose replay is pending: the ids written meanwhile.
    pending: HashMap<String, HashSet<String>>,
    /// Ids replayed recently (this heartbeat period and the one before).
    replayed: HashSet<String>,
    replayed_before: HashSet<String>,
}

impl Following {
    /// Following `groups` from authentication (nothing to replay).
    pub fn start(&mut self, groups: impl IntoIterator<Item = String>) {
        self.groups.extend(groups);
    }

    pub fn follows(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Applies a `providing-session-info` action for a device of `user`; returns what
    /// the connection must do (nothing if the device's state already matches).
    pub fn apply(&mut self, info: &Value, user: &str, mark: Option<&str>) -> Option<Change> {
        if info.get("session-type").and_then(Value::as_str) != Some("mutable") {
            return None;
        }
        let group = info.get("session-id").and_then(Value::as_str)?;
        let deleted = info.get("status").and_then(Value::as_str) == Some("deleted");
        let member = !deleted
            && info
                .get("user-id")
                .and_then(Value::as_array)
                .is_some_and(|ids| ids.iter().any(|u| u.as_str() == Some(user)));
        match (member, self.groups.contains(group)) {
            (true, false) => {
                self.groups.insert(group.to_string());
                if mark.is_some() {
                    self.pending.insert(group.to_string(), HashSet::new());
                }
                Some(Change::Follow {
                    group: group.to_string(),
                    mark: mark.map(str::to_string),
                })
            }
            (false, true) => {
                self.groups.remove(group);
                self.pending.remove(group);
                Some(Change::Unfollow(group.to_string()))
            }
            _ => None,
        }
    }

    /// Whether a live broadcast of `group` with `id` is written: the group is followed
    /// and the message was not replayed. A written one is noted for a pending replay.
    pub fn admit(&mut self, group: &str, id: &str) -> bool {
        if !self.groups.contains(group)
            || self.replayed.contains(id)
            || self.replayed_before.contains(id)
        {
            return false;
        }
        self.note(group, id);
        true
    }

    /// A message this device has (it sent it): a pending replay skips it.
    pub fn note(&mut self, group: &str, id: &str) {
        if let Some(seen) = self.pending.get_mut(group) {
            seen.insert(id.to_string());
        }
    }

    /// The replay of `group` is here: of `ids` (oldest first), those to write. Nothing
    /// if the group is no longer followed or no replay was pending.
    pub fn caught_up<'a>(&mut self, group: &str, ids: impl Iterator<Item = &'a str>) -> Vec<usize> {
        let Some(seen) = self.pending.remove(group) else {
            return Vec::new();
        };
        if !self.groups.contains(group) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, id) in ids.enumerate() {
            if !seen.contains(id) {
                self.replayed.insert(id.to_string());
                out.push(i);
            }
        }
        out
    }

    /// A heartbeat period passed: forget what was replayed two periods ago.
    pub fn tick(&mut self) {
        self.replayed_before = std::mem::take(&mut self.replayed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(id: &str, status: &str, users: &[&str]) -> Value {
        json!({"type": "providing-session-info", "session-id": id,
               "session-type": "mutable", "status": status, "user-id": users})
    }

    #[test]
    fn changes_follow_and_unfollow_once() {
        let mut f = Following::default();
        let added = info("g", "modified", &["a", "b"]);
        assert_eq!(
            f.apply(&added, "b", Some("5-0")),
            Some(Change::Follow {
                group: "g".into(),
                mark: Some("5-0".into())
            })
        );
        assert_eq!(f.apply(&added, "b", Some("5-0")), None);
        assert!(f.follows("g"));
        let removed = info("g", "modified", &["a"]);
        assert_eq!(
            f.apply(&removed, "b", None),
            Some(Change::Unfollow("g".into()))
        );
        assert!(!f.follows("g"));
        f.start(["g".to_string()]);
        assert_eq!(
            f.apply(&info("g", "deleted", &["a", "b"]), "b", None),
            Some(Change::Unfollow("g".into()))
        );
        let direct = json!({"session-type": "direct", "session-id": "a:b", "status": "unchanged", "user-id": ["a", "b"]});
        assert_eq!(f.apply(&direct, "b", None), None);
        assert_eq!(
            f.apply(&json!({"session-type": "mutable"}), "b", None),
            None
        );
    }

    #[test]
    fn broadcasts_of_groups_not_followed_are_dropped() {
        let mut f = Following::default();
        assert!(!f.admit("g", "1-0"));
        f.start(["g".to_string()]);
        assert!(f.admit("g", "1-0"));
    }

    #[test]
    fn a_replay_skips_what_was_written_live_and_live_copies_skip_the_replay() {
        let mut f = Following::default();
        f.apply(&info("g", "created", &["a", "b"]), "b", Some("0-0"));
        assert!(f.admit("g", "2-0")); // live, before the replay arrived
        f.note("g", "3-0"); // sent by this device
        let replay = ["1-0", "2-0", "3-0", "4-0"];
        assert_eq!(f.caught_up("g", replay.iter().copied()), vec![0, 3]);
        // The replay is done once.
        assert!(f.caught_up("g", replay.iter().copied()).is_empty());
        // A late live copy of a replayed message is dropped, for two periods.
        assert!(!f.admit("g", "4-0"));
        f.tick();
        assert!(!f.admit("g", "1-0"));
        f.tick();
        assert!(f.admit("g", "1-0"));
        assert!(f.admit("g", "5-0"));
    }

    #[test]
    fn a_replay_for_a_group_left_meanwhile_writes_nothing() {
        let mut f = Following::default();
        f.apply(&info("g", "created", &["a", "b"]), "b", Some("0-0"));
        f.apply(&info("g", "deleted", &["a", "b"]), "b", None);
        assert!(f.caught_up("g", ["1-0"].into_iter()).is_empty());
    }
}
