//! A group chat (a mutable session) and the rules of changing it: who may replace its
//! participants, delete it, leave it or hand out roles. Pure: both stores apply a
//! change with [`GroupRecord::apply`] atomically (the Redis store by compare-and-set),
//! so the rules are the same on every node and backend.
//!
//! A group created by this version has an **owner** (its creator) and **admins**; only
//! they change its participants or delete it, only the owner hands out roles, anyone
//! leaves. A group stored before roles existed (no owner) keeps the earlier rule —
//! every participant may change or delete it — until one of its participants sets
//! roles (and becomes its owner unless they name another).

use serde::{Deserialize, Serialize};

/// A mutable chat session (group chat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: String,
    pub participants: Vec<String>,
    pub created_by: String,
    pub created_ms: u64,
    /// The owner (`None`: a group stored before roles existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Participants who may change the participants and delete the group (the owner is
    /// not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<String>,
}

/// A change to a group, asked by one of its participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Replace the participants (owner and admins).
    Participants(Vec<String>),
    /// Delete the group (owner and admins).
    Delete,
    /// The requester leaves; the last one out deletes the group. An owner who leaves
    /// hands the group to the first admin, else to the first remaining participant.
    Leave,
    /// Set the owner and/or the admins (the owner; in a group without roles, any
    /// participant).
    Roles {
        owner: Option<String>,
        admins: Option<Vec<String>>,
    },
}

/// Why a change was refused; the text is the chat `failed` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRefusal {
    NotParticipant,
    NotAdmin,
    NotOwner,
    /// A participant change that would drop the owner.
    OwnerStays,
    /// A role given to someone who is not a participant.
    NotMember(String),
    Empty,
}

impl std::fmt::Display for GroupRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupRefusal::NotParticipant => f.write_str("not a participant of this session"),
            GroupRefusal::NotAdmin => f.write_str(
                "only the session's owner and admins may change its participants or delete it",
            ),
            GroupRefusal::NotOwner => f.write_str("only the session's owner may change its roles"),
            GroupRefusal::OwnerStays => f.write_str(
                "the owner cannot be removed: the owner leaves or hands the session over",
            ),
            GroupRefusal::NotMember(u) => {
                let shown: String = u.chars().take(40).collect();
                write!(f, "{shown:?} is not a participant of this session")
            }
            GroupRefusal::Empty => f.write_str("a session needs at least one participant"),
        }
    }
}

impl GroupRecord {
    /// A new group: its creator owns it.
    pub fn new(id: String, participants: Vec<String>, creator: &str, created_ms: u64) -> Self {
        GroupRecord {
            id,
            participants,
            created_by: creator.to_string(),
            created_ms,
            owner: Some(creator.to_string()),
            admins: Vec::new(),
        }
    }

    pub fn is_participant(&self, user: &str) -> bool {
        self.participants.iter().any(|p| p == user)
    }

    /// May `user` change the participants or delete the group?
    pub fn is_admin(&self, user: &str) -> bool {
        match &self.owner {
            None => self.is_participant(user),
            Some(o) => o == user || self.admins.iter().any(|a| a == user),
        }
    }

    /// The group after `requester`'s `change` (`None`: deleted), or why not.
    pub fn apply(
        &self,
        requester: &str,
        change: &GroupChange,
    ) -> Result<Option<GroupRecord>, GroupRefusal> {
        if !self.is_participant(requester) {
            return Err(GroupRefusal::NotParticipant);
        }
        let mut g = self.clone();
        match change {
            GroupChange::Participants(users) => {
                if !self.is_admin(requester) {
                    return Err(GroupRefusal::NotAdmin);
                }
                if users.is_empty() {
                    return Err(GroupRefusal::Empty);
                }
                if let Some(o) = &g.owner {
                    if !users.contains(o) {
                        return Err(GroupRefusal::OwnerStays);
                    }
                }
                g.participants = users.clone();
            }
            GroupChange::Delete => {
                if !self.is_admin(requester) {
                    return Err(GroupRefusal::NotAdmin);
                }
                return Ok(None);
            }
            GroupChange::Leave => {
                g.participants.retain(|p| p != requester);
                if g.participants.is_empty() {
                    return Ok(None);
                }
                if g.owner.as_deref() == Some(requester) {
                    g.admins.retain(|a| g.participants.contains(a));
                    let heir = g.admins.first().unwrap_or(&g.participants[0]).clone();
                    g.owner = Some(heir);
                }
            }
            GroupChange::Roles { owner, admins } => {
                match &g.owner {
                    Some(o) if o != requester => return Err(GroupRefusal::NotOwner),
                    _ => {}
                }
                let owner = owner.clone().unwrap_or_else(|| requester.to_string());
                if !g.is_participant(&owner) {
                    return Err(GroupRefusal::NotMember(owner));
                }
                if let Some(a) = admins {
                    if let Some(stranger) = a.iter().find(|u| !g.is_participant(u)) {
                        return Err(GroupRefusal::NotMember(stranger.clone()));
                    }
                    g.admins = a.clone();
                }
                g.owner = Some(owner);
            }
        }
        // Roles only name participants, and the owner is not an admin too.
        let owner = g.owner.clone();
        let participants = g.participants.clone();
        g.admins
            .retain(|a| participants.contains(a) && Some(a) != owner.as_ref());
        g.admins.dedup();
        Ok(Some(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    fn group() -> GroupRecord {
        let mut g = GroupRecord::new("g".into(), users(&["own", "adm", "mem"]), "own", 1);
        g.admins = users(&["adm"]);
        g
    }

    fn legacy() -> GroupRecord {
        GroupRecord {
            owner: None,
            admins: Vec::new(),
            ..GroupRecord::new("g".into(), users(&["a", "b"]), "a", 1)
        }
    }

    #[test]
    fn only_the_owner_and_admins_change_participants_or_delete() {
        let g = group();
        let add = GroupChange::Participants(users(&["own", "adm", "mem", "new"]));
        for who in ["own", "adm"] {
            let after = g.apply(who, &add).unwrap().unwrap();
            assert_eq!(after.participants, users(&["own", "adm", "mem", "new"]));
            assert_eq!(g.apply(who, &GroupChange::Delete).unwrap(), None);
        }
        assert_eq!(g.apply("mem", &add), Err(GroupRefusal::NotAdmin));
        assert_eq!(
            g.apply("mem", &GroupChange::Delete),
            Err(GroupRefusal::NotAdmin)
        );
        assert_eq!(g.apply("out", &add), Err(GroupRefusal::NotParticipant));
        assert_eq!(
            g.apply("adm", &GroupChange::Participants(users(&["adm"]))),
            Err(GroupRefusal::OwnerStays)
        );
        assert_eq!(
            g.apply("own", &GroupChange::Participants(Vec::new())),
            Err(GroupRefusal::Empty)
        );
        let removed = g
            .apply("own", &GroupChange::Participants(users(&["own", "mem"])))
            .unwrap()
            .unwrap();
        assert!(removed.admins.is_empty(), "a removed admin is no admin");
    }

    #[test]
    fn leaving_hands_the_group_on_and_the_last_one_deletes_it() {
        let g = group();
        let after = g.apply("mem", &GroupChange::Leave).unwrap().unwrap();
        assert_eq!(after.participants, users(&["own", "adm"]));
        let after = g.apply("own", &GroupChange::Leave).unwrap().unwrap();
        assert_eq!(
            after.owner.as_deref(),
            Some("adm"),
            "the first admin inherits"
        );
        assert!(after.admins.is_empty());
        let solo = GroupRecord::new("g".into(), users(&["own", "mem"]), "own", 1);
        let after = solo.apply("own", &GroupChange::Leave).unwrap().unwrap();
        assert_eq!(
            after.owner.as_deref(),
            Some("mem"),
            "else the first participant"
        );
        let last = GroupRecord::new("g".into(), users(&["own"]), "own", 1);
        assert_eq!(last.apply("own", &GroupChange::Leave).unwrap(), None);
        assert_eq!(
            g.apply("out", &GroupChange::Leave),
            Err(GroupRefusal::NotParticipant)
        );
    }

    #[test]
    fn only_the_owner_hands_out_roles_to_participants() {
        let g = group();
        let roles = |owner: Option<&str>, admins: Option<&[&str]>| GroupChange::Roles {
            owner: owner.map(str::to_string),
            admins: admins.map(users),
        };
        let after = g
            .apply("own", &roles(None, Some(&["mem"])))
            .unwrap()
            .unwrap();
        assert_eq!(
            (after.owner.as_deref(), after.admins.clone()),
            (Some("own"), users(&["mem"]))
        );
        let handed = g.apply("own", &roles(Some("mem"), None)).unwrap().unwrap();
        assert_eq!(handed.owner.as_deref(), Some("mem"));
        assert_eq!(handed.admins, users(&["adm"]));
        assert_eq!(
            g.apply("adm", &roles(None, Some(&[]))),
            Err(GroupRefusal::NotOwner)
        );
        assert_eq!(
            g.apply("own", &roles(Some("out"), None)),
            Err(GroupRefusal::NotMember("out".into()))
        );
        assert_eq!(
            g.apply("own", &roles(None, Some(&["mem", "out"]))),
            Err(GroupRefusal::NotMember("out".into()))
        );
        let listed = g
            .apply("own", &roles(None, Some(&["own", "adm"])))
            .unwrap()
            .unwrap();
        assert_eq!(
            listed.admins,
            users(&["adm"]),
            "the owner is not listed as an admin"
        );
    }

    #[test]
    fn a_group_without_roles_keeps_the_earlier_rule_until_roles_are_set() {
        let g = legacy();
        assert!(g
            .apply("b", &GroupChange::Participants(users(&["b"])))
            .is_ok());
        assert_eq!(g.apply("b", &GroupChange::Delete).unwrap(), None);
        let after = g
            .apply(
                "b",
                &GroupChange::Roles {
                    owner: None,
                    admins: None,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            after.owner.as_deref(),
            Some("b"),
            "the first to set roles owns it"
        );
        assert_eq!(
            after.apply("a", &GroupChange::Delete),
            Err(GroupRefusal::NotAdmin)
        );
        // Records written before roles existed decode without them.
        let old: GroupRecord = serde_json::from_str(
            r#"{"id":"g","participants":["a"],"created_by":"a","created_ms":1}"#,
        )
        .unwrap();
        assert_eq!((old.owner, old.admins), (None, Vec::new()));
    }
}
