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

    /// A channel's publication sequence: hash `n` (last seq) and `p` (epoch); expires
    /// with the history stream.
    pub fn channel_seq(&self, channel: &str) -> String {
        format!("{}chseq:{}", self.prefix, channel)
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

    /// The set of direct session ids with messages a user is in (for the inbox).
    pub fn user_directs(&self, user: &str) -> String {
        format!("{}udirect:{}", self.prefix, user)
    }

    /// Set: the nodes a user has a chat device connected on (presence).
    pub fn presence(&self, user: &str) -> String {
        format!("{}presence:{}", self.prefix, user)
    }

    /// Set: the users a node has online (forgotten when the node dies).
    pub fn presence_node(&self, node: &NodeId) -> String {
        format!("{}presence-node:{}", self.prefix, node)
    }

    /// When a user was last online (ms), with a TTL.
    pub fn last_seen(&self, user: &str) -> String {
        format!("{}lastseen:{}", self.prefix, user)
    }

    /// Sorted set: queued push id → due ms.
    pub fn push_due(&self) -> String {
        format!("{}push:due", self.prefix)
    }

    /// Hash: queued push id → JSON.
    pub fn push_jobs(&self) -> String {
        format!("{}push:jobs", self.prefix)
    }

    /// Counter: pushes dead-lettered (queue full, or attempts exhausted).
    pub fn push_dead(&self) -> String {
        format!("{}push:dead", self.prefix)
    }

    /// Sorted set: a user's chat devices → last sign-in ms (the most recent kept).
    pub fn user_devices(&self, user: &str) -> String {
        format!("{}udevices:{}", self.prefix, user)
    }

    /// Stream of one chat session's message history.
    pub fn chat_history(&self, session: &str) -> String {
        format!("{}chist:{}", self.prefix, session)
    }

    /// Hash: a chat session's read positions (user → the newest message id they read).
    pub fn chat_reads(&self, session: &str) -> String {
        format!("{}chread:{}", self.prefix, session)
    }

    /// A TimeStick session record (JSON `TsSession`).
    pub fn ts_session(&self, id: SessionId) -> String {
        format!("{}ts:s:{}", self.prefix, id)
    }

    /// Prefix of TimeStick session records (scripts build keys from it).
    pub fn ts_session_prefix(&self) -> String {
        format!("{}ts:s:", self.prefix)
    }

    /// Set of a caller's live TimeStick session ids.
    pub fn ts_caller(&self, caller: &str) -> String {
        format!("{}ts:caller:{}", self.prefix, caller)
    }

    /// Sorted set: TimeStick session id → last activity (ms).
    pub fn ts_activity(&self) -> String {
        format!("{}ts:activity", self.prefix)
    }

    /// Set of `message_id`s a TimeStick session has received (replay protection).
    pub fn ts_seen(&self, id: SessionId) -> String {
        format!("{}ts:seen:{}", self.prefix, id)
    }

    /// Hash: the recorded `message_id`s of a TimeStick session whose effect is not yet
    /// durable (field deleted once it is).
    pub fn ts_unsettled(&self, id: SessionId) -> String {
        format!("{}ts:unsettled:{}", self.prefix, id)
    }

    /// Stream: a TimeStick session's queue (entry ids `<position>-1`).
    pub fn ts_queue(&self, id: SessionId) -> String {
        format!("{}ts:q:{}", self.prefix, id)
    }

    /// Counter: the last queue position handed out.
    pub fn ts_seq(&self, id: SessionId) -> String {
        format!("{}ts:seq:{}", self.prefix, id)
    }

    /// The channel position a TimeStick session's polls confirmed.
    pub fn ts_confirmed(&self, id: SessionId) -> String {
        format!("{}ts:conf:{}", self.prefix, id)
    }

    /// A quarantined TimeStick caller (with a TTL).
    pub fn ts_quarantine(&self, caller: &str) -> String {
        format!("{}ts:quar:{}", self.prefix, caller)
    }

    /// Messages of one TimeStick session in one second.
    pub fn ts_rate(&self, id: SessionId, second: u64) -> String {
        format!("{}ts:rate:{}:{}", self.prefix, id, second)
    }

    /// The deployment's Sink server instance id.
    pub fn sink_server(&self) -> String {
        format!("{}sink:server", self.prefix)
    }

    /// A Sink client's last instance id.
    pub fn sink_instance(&self, client: &str) -> String {
        format!("{}sink:inst:{}", self.prefix, client)
    }

    /// A Sink client's quarantine order (JSON).
    pub fn sink_quarantine(&self, client: &str) -> String {
        format!("{}sink:quar:{}", self.prefix, client)
    }

    /// Set of accepted event identities of a Sink client (de-duplication).
    pub fn sink_seen(&self, client: &str) -> String {
        format!("{}sink:seen:{}", self.prefix, client)
    }

    /// Stream of accepted device events of a Sink client (the durable inbound log).
    pub fn sink_inbound(&self, client: &str) -> String {
        format!("{}sink:in:{}", self.prefix, client)
    }

    /// Hash: outbox key → last assigned offset.
    pub fn sink_offsets(&self, client: &str) -> String {
        format!("{}sink:off:{}", self.prefix, client)
    }

    /// Counter of a Sink client's outbox positions.
    pub fn sink_outbox_seq(&self, client: &str) -> String {
        format!("{}sink:oseq:{}", self.prefix, client)
    }

    /// Stream: a Sink client's outbox (entry ids `<position>-1`).
    pub fn sink_outbox(&self, client: &str) -> String {
        format!("{}sink:out:{}", self.prefix, client)
    }

    /// The highest outbox position ever sent to a Sink client.
    pub fn sink_sent_mark(&self, client: &str) -> String {
        format!("{}sink:sent:{}", self.prefix, client)
    }

    /// List of a Sink client's NACKed outbox entries (JSON).
    pub fn sink_nacks(&self, client: &str) -> String {
        format!("{}sink:nack:{}", self.prefix, client)
    }

    /// Sorted set of held (~timing) job ids by due time.
    pub fn scheduled(&self) -> String {
        format!("{}sched", self.prefix)
    }

    /// Hash of held job id → job JSON.
    pub fn scheduled_jobs(&self) -> String {
        format!("{}sched:jobs", self.prefix)
    }

    /// Sorted set of claimed job ids by lease deadline.
    pub fn scheduled_leases(&self) -> String {
        format!("{}sched:lease", self.prefix)
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
            k.chat_reads("s"),
            k.user_directs("u"),
            k.presence("u"),
            k.presence_node(&n),
            k.last_seen("u"),
            k.push_due(),
            k.push_jobs(),
            k.push_dead(),
            k.user_devices("u"),
        ] {
            assert!(key.starts_with("t1:"), "{key}");
        }
        assert!(k.channel("x").starts_with(&k.channel_prefix()));
    }
}
