//! Redis key and channel names, in one place (`docs/cluster.md` documents them).
//! Everything lives under one prefix (`MURMUR_REDIS_PREFIX`, default `murmur:`), so
//! several clusters — or parallel tests — can share one Redis.

use murmur_shared::ids::{NodeId, SessionId};

/// Builds every key of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// Pub/sub channel of one node: directed deliveries to its sessions and reply slots.
    pub fn node_inbox(&self, node: &NodeId) -> String {
        format!("{}node:{}", self.prefix, node)
    }

    /// Prefix of every broker-channel pub/sub channel.
    pub fn channel_prefix(&self) -> String {
        format!("{}ch:", self.prefix)
    }

    /// Pub/sub channel of one broker channel.
    pub fn channel(&self, channel: &str) -> String {
        format!("{}ch:{}", self.prefix, channel)
    }

    /// Stream with the recent history of one broker channel (recovery replay).
    pub fn history(&self, channel: &str) -> String {
        format!("{}hist:{}", self.prefix, channel)
    }

    /// Recovery record of one session (JSON, with a TTL).
    pub fn recovery(&self, id: SessionId) -> String {
        format!("{}recovery:{}", self.prefix, id)
    }

    /// Owner node of one session (string, with a TTL).
    pub fn owner(&self, id: SessionId) -> String {
        format!("{}owner:{}", self.prefix, id)
    }

    /// Set of `node|session` members providing one namespace.
    pub fn providers(&self, ns: &str) -> String {
        format!("{}providers:{}", self.prefix, ns)
    }

    /// Set of namespaces a node has providers for (to clean up after it).
    pub fn node_namespaces(&self, node: &NodeId) -> String {
        format!("{}node-ns:{}", self.prefix, node)
    }

    /// A group chat (JSON `GroupRecord`).
    pub fn group(&self, id: &str) -> String {
        format!("{}grp:{}", self.prefix, id)
    }

    /// Prefix of the per-user set of group ids (`<prefix>ugrp:<user>`).
    pub fn user_groups_prefix(&self) -> String {
        format!("{}ugrp:", self.prefix)
    }

    /// The set of group ids a user participates in.
    pub fn user_groups(&self, user: &str) -> String {
        format!("{}ugrp:{}", self.prefix, user)
    }

    /// Stream of one chat session's message history.
    pub fn chat_history(&self, session: &str) -> String {
        format!("{}chist:{}", self.prefix, session)
    }

    /// A node's heartbeat (JSON `NodeInfo`, with a TTL).
    pub fn node(&self, node: &NodeId) -> String {
        format!("{}nodeinfo:{}", self.prefix, node)
    }

    /// Set of node ids that have announced themselves (pruned when their heartbeat dies).
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_prefix() {
        let k = Keys::new("t1:");
        let n = NodeId("a".into());
        let s = SessionId::random();
        for key in [
            k.node_inbox(&n),
            k.channel("x"),
            k.history("x"),
            k.recovery(s),
            k.owner(s),
            k.providers("math"),
            k.node_namespaces(&n),
            k.node(&n),
            k.nodes(),
            k.group("g"),
            k.user_groups("u"),
            k.chat_history("s"),
        ] {
            assert!(key.starts_with("t1:"), "{key}");
        }
        assert!(k.channel("x").starts_with(&k.channel_prefix()));
    }
}
