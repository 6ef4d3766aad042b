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
//! history after it ([`Following::caught_up`]). Live messages of the group that arrive
//! meanwhile are held (up to [`HOLD_MAX`]) and written with the replay, in message-id
//! order, each once; messages this connection sent are not replayed to it. The replayed
//! ids are kept for two heartbeat periods, so a live copy arriving late is skipped too.
//!
//! Pure state: the device ([`super::device`]) makes the subscriptions and reads the
//! replay, the connection writes.

use std::collections::{HashMap, HashSet};

use murmur_shared::envelope::Envelope;
use serde_json::Value;

/// Live messages held per group while its replay is pending; past this, they are
/// written as they come (and the replay skips them).
pub const HOLD_MAX: usize = 1024;

/// What to do with a live broadcast ([`Following::admit`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    Write(T),
    /// Kept until the group's replay is here.
    Held,
    /// Not for this device (group not followed, or already replayed).
    Drop,
}

/// One message to write when a replay is done, in message-id order.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The replay's message at this index.
    Replayed(usize),
    /// A live message held meanwhile.
    Held(T),
}

/// A pending replay: the ids this device already has, the live messages held.
struct Pending<T> {
    seen: HashSet<String>,
    held: Vec<(String, T)>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            seen: HashSet::new(),
            held: Vec::new(),
        }
    }
}

/// What a session change means for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start following `group`; replay its history after `mark` if given.
    Follow { group: String, mark: Option<String> },
    /// Stop following `group`.
    Unfollow(String),
}

/// See the module docs. `T` is what a held live message is kept as.
pub struct Following<T> {
    groups: HashSet<String>,
    /// Groups whose replay is pending.
    pending: HashMap<String, Pending<T>>,
    /// Ids replayed recently (this heartbeat period and the one before).
    replayed: HashSet<String>,
    replayed_before: HashSet<String>,
}

impl<T> Default for Following<T> {
    fn default() -> Self {
        Following {
            groups: HashSet::new(),
            pending: HashMap::new(),
            replayed: HashSet::new(),
            replayed_before: HashSet::new(),
        }
    }
}

impl<T> Following<T> {
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
                    self.pending.insert(group.to_string(), Pending::default());
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

    /// What to do with a live broadcast `item` of `group` with `id`: written if the
    /// group is followed and the message was not replayed, held while the group's
    /// replay is pending.
    pub fn admit(&mut self, group: &str, id: &str, item: T) -> Admit<T> {
        if !self.groups.contains(group)
            || self.replayed.contains(id)
            || self.replayed_before.contains(id)
        {
            return Admit::Drop;
        }
        match self.pending.get_mut(group) {
            Some(p) if p.held.len() < HOLD_MAX => {
                p.seen.insert(id.to_string());
                p.held.push((id.to_string(), item));
                Admit::Held
            }
            Some(p) => {
                p.seen.insert(id.to_string());
                Admit::Write(item)
            }
            None => Admit::Write(item),
        }
    }

    /// A message this device has (it sent it): a pending replay skips it.
    pub fn note(&mut self, group: &str, id: &str) {
        if let Some(p) = self.pending.get_mut(group) {
            p.seen.insert(id.to_string());
        }
    }

    /// The replay of `group` is here (`ids`, oldest first): what to write, in id order,
    /// each message once. Nothing if no replay was pending, or if the group is no
    /// longer followed (its messages are not for this device any more).
    pub fn caught_up<'a>(
        &mut self,
        group: &str,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<Next<T>> {
        let Some(p) = self.pending.remove(group) else {
            return Vec::new();
        };
        if !self.groups.contains(group) {
            return Vec::new();
        }
        let mut out: Vec<(String, Next<T>)> = Vec::new();
        for (i, id) in ids.enumerate() {
            if !p.seen.contains(id) {
                self.replayed.insert(id.to_string());
                out.push((id.to_string(), Next::Replayed(i)));
            }
        }
        out.extend(p.held.into_iter().map(|(id, t)| (id, Next::Held(t))));
        out.sort_by(|a, b| order(&a.0, &b.0));
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// A heartbeat period passed: forget what was replayed two periods ago.
    pub fn tick(&mut self) {
        self.replayed_before = std::mem::take(&mut self.replayed);
    }
}

/// Message ids (`<ms>-<n>`) in the order the group's history keeps them.
fn order(a: &str, b: &str) -> std::cmp::Ordering {
    if Envelope::seq_after(a, b) {
        std::cmp::Ordering::Greater
    } else if Envelope::seq_after(b, a) {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Equal
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
        let mut f = Following::<()>::default();
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
        assert_eq!(f.admit("g", "1-0", 'a'), Admit::Drop);
        f.start(["g".to_string()]);
        assert_eq!(f.admit("g", "1-0", 'a'), Admit::Write('a'));
    }

    #[test]
    fn a_replay_comes_in_order_with_what_arrived_live_meanwhile() {
        let mut f = Following::default();
        f.apply(&info("g", "created", &["a", "b"]), "b", Some("0-0"));
        assert_eq!(f.admit("g", "2-0", "live 2"), Admit::Held);
        assert_eq!(f.admit("g", "10-0", "live 10"), Admit::Held);
        f.note("g", "3-0"); // sent by this device
        let replay = ["1-0", "2-0", "3-0", "4-0"];
        assert_eq!(
            f.caught_up("g", replay.iter().copied()),
            vec![
                Next::Replayed(0),
                Next::Held("live 2"),
                Next::Replayed(3),
                Next::Held("live 10")
            ]
        );
        // The replay is done once; live messages are written again.
        assert!(f.caught_up("g", replay.iter().copied()).is_empty());
        assert_eq!(f.admit("g", "11-0", "live 11"), Admit::Write("live 11"));
        // A late live copy of a replayed message is dropped, for two periods.
        assert_eq!(f.admit("g", "4-0", "late"), Admit::Drop);
        f.tick();
        assert_eq!(f.admit("g", "1-0", "late"), Admit::Drop);
        f.tick();
        assert_eq!(f.admit("g", "1-0", "late"), Admit::Write("late"));
    }

    #[test]
    fn holding_is_bounded() {
        let mut f = Following::default();
        f.apply(&info("g", "created", &["a", "b"]), "b", Some("0-0"));
        for i in 0..HOLD_MAX {
            assert_eq!(f.admit("g", &format!("{i}-0"), i), Admit::Held);
        }
        assert_eq!(f.admit("g", "9999999-0", 0), Admit::Write(0));
        // The replay skips what was written past the bound.
        let next = f.caught_up("g", ["9999999-0"].into_iter());
        assert_eq!(next.len(), HOLD_MAX);
        assert!(next.iter().all(|n| matches!(n, Next::Held(_))));
    }

    #[test]
    fn a_replay_for_a_group_left_meanwhile_writes_nothing() {
        let mut f = Following::<()>::default();
        f.apply(&info("g", "created", &["a", "b"]), "b", Some("0-0"));
        f.apply(&info("g", "deleted", &["a", "b"]), "b", None);
        assert!(f.caught_up("g", ["1-0"].into_iter()).is_empty());
    }
}
