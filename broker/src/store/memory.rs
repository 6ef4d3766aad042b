//! The in-memory store: maps with deadlines, expired lazily on read. One node only —
//! the embedded default — and the reference behaviour the Redis store must match.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use murmur_shared::envelope::{parse_position, Envelope};
use murmur_shared::ids::{NodeId, SessionId};

use crate::history::LocalHistory;

use super::{
    GroupChange, GroupRecord, GroupUpdate, InboxCursor, InboxItem, InboxPage, NodeInfo, Presence,
    ProviderEntry, ReadMark, RecoveryRecord, Store, StoreError, StoreResult, StoredMessage, Unread,
};

struct Expiring<T> {
    value: T,
    deadline: Instant,
}

impl<T> Expiring<T> {
    fn new(value: T, ttl: Duration) -> Self {
        Expiring {
            value,
            deadline: Instant::now() + ttl,
        }
    }

    fn live(&self) -> bool {
        Instant::now() < self.deadline
    }
}

/// An inbox session while sorting: its newest position (newest first), id and message.
type InboxEntry<'a> = (
    std::cmp::Reverse<(u64, u64)>,
    &'a String,
    Option<&'a StoredMessage>,
);

/// Adds (`add`) or removes `g` in its participants' group index.
fn index_group(s: &mut State, g: &GroupRecord, add: bool) {
    for user in &g.participants {
        if add {
            s.user_groups
                .entry(user.clone())
                .or_default()
                .insert(g.id.clone());
        } else if let Some(ids) = s.user_groups.get_mut(user) {
            ids.remove(&g.id);
            if ids.is_empty() {
                s.user_groups.remove(user);
            }
        }
    }
}

/// Removes `node` from `user`'s online nodes; true when that was the last one.
fn went_offline(s: &mut State, user: &str, node: &NodeId, now_ms: u64) -> bool {
    let Some(nodes) = s.online.get_mut(user) else {
        return false;
    };
    if !nodes.remove(node) || !nodes.is_empty() {
        return false;
    }
    s.online.remove(user);
    s.last_seen.insert(user.to_string(), now_ms);
    true
}

/// The position before every message id.
const EMPTY_POSITION: &str = "0-0";

#[derive(Default)]
struct State {
    recovery: HashMap<SessionId, Expiring<RecoveryRecord>>,
    owners: HashMap<SessionId, Expiring<NodeId>>,
    providers: HashMap<String, HashSet<ProviderEntry>>,
    nodes: HashMap<NodeId, Expiring<NodeInfo>>,
    groups: HashMap<String, GroupRecord>,
    /// The groups each user participates in (the index of `groups`).
    user_groups: HashMap<String, HashSet<String>>,
    messages: HashMap<String, Expiring<VecDeque<StoredMessage>>>,
    /// Chat read positions: session → user → message id.
    reads: HashMap<String, Expiring<HashMap<String, String>>>,
    /// The direct sessions with messages each user is in (for the inbox).
    directs: HashMap<String, HashSet<String>>,
    /// Presence: the nodes each online user has a device on, the users online per node,
    /// and when users went offline.
    online: HashMap<String, HashSet<NodeId>>,
    node_users: HashMap<NodeId, HashSet<String>>,
    last_seen: HashMap<String, u64>,
    /// Last message id handed out: `(ms, n)`, strictly increasing.
    last_message: (u64, u64),
}

/// See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// The embedded node's channel history (shared with its router), if any.
    history: Option<Arc<LocalHistory>>,
    ts: Mutex<super::memory_ts::TsState>,
    sink: Mutex<super::memory_sink::SinkState>,
    push: Mutex<super::memory_push::PushState>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that reads channel history from the embedded node's router.
    pub fn with_history(history: Arc<LocalHistory>) -> Self {
        MemoryStore {
            history: Some(history),
            ..MemoryStore::default()
        }
    }

    pub(crate) fn with_push<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::memory_push::PushState) -> T,
    ) -> BoxFuture<'_, StoreResult<T>> {
        // unwrap: closures do not panic while holding the lock.
        let out = f(&mut self.push.lock().unwrap());
        future::ready(Ok(out)).boxed()
    }

    pub(crate) fn with_sink<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::memory_sink::SinkState) -> T,
    ) -> BoxFuture<'_, StoreResult<T>> {
        // unwrap: closures do not panic while holding the lock.
        let out = f(&mut self.sink.lock().unwrap());
        future::ready(Ok(out)).boxed()
    }

    pub(crate) fn with_ts<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::memory_ts::TsState) -> T,
    ) -> BoxFuture<'_, StoreResult<T>> {
        // unwrap: closures do not panic while holding the lock.
        let out = f(&mut self.ts.lock().unwrap());
        future::ready(Ok(out)).boxed()
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> T,
    ) -> BoxFuture<'_, StoreResult<T>> {
        // unwrap: closures below do not panic while holding the lock.
        let out = f(&mut self.state.lock().unwrap());
        future::ready(Ok(out)).boxed()
    }
}

fn remove_node(s: &mut State, node: &NodeId) {
    s.nodes.remove(node);
    for set in s.providers.values_mut() {
        set.retain(|p| p.node != *node);
    }
    s.providers.retain(|_, set| !set.is_empty());
}

impl Store for MemoryStore {
    fn put_recovery(&self, rec: RecoveryRecord, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            s.recovery.insert(rec.session, Expiring::new(rec, ttl));
        })
    }

    fn get_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<RecoveryRecord>>> {
        self.with(|s| match s.recovery.get(&id) {
            Some(e) if e.live() => Some(e.value.clone()),
            Some(_) => {
                s.recovery.remove(&id);
                None
            }
            None => None,
        })
    }

    fn delete_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            s.recovery.remove(&id);
        })
    }

    fn set_owner(
        &self,
        id: SessionId,
        node: NodeId,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            s.owners.insert(id, Expiring::new(node, ttl));
        })
    }

    fn get_owner(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<NodeId>>> {
        self.with(|s| {
            s.owners
                .get(&id)
                .filter(|e| e.live())
                .map(|e| e.value.clone())
        })
    }

    fn delete_owner(&self, id: SessionId, node: NodeId) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            if s.owners.get(&id).is_some_and(|e| e.value == node) {
                s.owners.remove(&id);
            }
        })
    }

    fn add_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            s.providers.entry(ns.to_string()).or_default().insert(entry);
        })
    }

    fn remove_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            if let Some(set) = s.providers.get_mut(ns) {
                set.remove(&entry);
                if set.is_empty() {
                    s.providers.remove(ns);
                }
            }
        })
    }

    fn providers(&self, ns: &str) -> BoxFuture<'_, StoreResult<Vec<ProviderEntry>>> {
        self.with(|s| {
            let live: HashSet<&NodeId> = s
                .nodes
                .iter()
                .filter(|(_, e)| e.live())
                .map(|(id, _)| id)
                .collect();
            let mut out: Vec<ProviderEntry> = s
                .providers
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|p| live.contains(&p.node))
                .cloned()
                .collect();
            out.sort_by_key(|p| p.session);
            out
        })
    }

    fn heartbeat(&self, info: NodeInfo, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| {
            s.nodes.insert(info.id.clone(), Expiring::new(info, ttl));
        })
    }

    fn nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeInfo>>> {
        self.with(|s| {
            s.nodes.retain(|_, e| e.live());
            let mut out: Vec<NodeInfo> = s.nodes.values().map(|e| e.value.clone()).collect();
            out.sort_by(|a, b| a.id.cmp(&b.id)); // ids are Strings: no cheap key
            out
        })
    }

    fn remove_node(&self, node: NodeId) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|s| remove_node(s, &node))
    }

    fn prune_dead_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeId>>> {
        self.with(|s| {
            let dead: Vec<NodeId> = s
                .nodes
                .iter()
                .filter(|(_, e)| !e.live())
                .map(|(id, _)| id.clone())
                .collect();
            for id in &dead {
                remove_node(s, id);
            }
            dead
        })
    }

    fn create_group(&self, group: GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        let out = self.with(|s| {
            if s.groups.contains_key(&group.id) {
                return Err(StoreError::new(
                    super::StoreErrorKind::Conflict,
                    "group id already exists",
                ));
            }
            index_group(s, &group, true);
            s.groups.insert(group.id.clone(), group);
            Ok(())
        });
        async move { out.await? }.boxed()
    }

    fn group(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<GroupRecord>>> {
        self.with(|s| s.groups.get(id).cloned())
    }

    fn update_group(
        &self,
        id: &str,
        requester: &str,
        change: GroupChange,
    ) -> BoxFuture<'_, StoreResult<GroupUpdate>> {
        self.with(|s| {
            let Some(group) = s.groups.get_mut(id) else {
                return GroupUpdate::NotFound;
            };
            let before = group.clone();
            match before.apply(requester, &change) {
                Err(why) => GroupUpdate::Refused(why),
                Ok(Some(after)) => {
                    *group = after.clone();
                    index_group(s, &before, false);
                    index_group(s, &after, true);
                    GroupUpdate::Done {
                        before,
                        after: Some(after),
                    }
                }
                Ok(None) => {
                    s.groups.remove(id);
                    index_group(s, &before, false);
                    GroupUpdate::Done {
                        before,
                        after: None,
                    }
                }
            }
        })
    }

    fn groups_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>> {
        self.with(|s| {
            let mut out: Vec<GroupRecord> = s
                .user_groups
                .get(user)
                .into_iter()
                .flatten()
                .filter_map(|id| s.groups.get(id))
                .cloned()
                .collect();
            out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
            out
        })
    }

    fn append_message(
        &self,
        mut msg: StoredMessage,
        retention: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<String>> {
        self.with(|s| {
            let now = murmur_shared::ids::now_ms();
            let (ms, n) = s.last_message;
            s.last_message = if now > ms { (now, 0) } else { (ms, n + 1) };
            msg.id = format!("{}-{}", s.last_message.0, s.last_message.1);
            let id = msg.id.clone();
            if let Some((a, b)) = murmur_shared::chat::direct_participants(&msg.session) {
                for user in [a, b] {
                    s.directs
                        .entry(user)
                        .or_default()
                        .insert(msg.session.clone());
                }
            }
            let entry = s
                .messages
                .entry(msg.session.clone())
                .or_insert_with(|| Expiring::new(VecDeque::new(), ttl));
            if !entry.live() {
                entry.value.clear();
            }
            entry.deadline = Instant::now() + ttl;
            entry.value.push_back(msg);
            while entry.value.len() > retention.max(1) {
                entry.value.pop_front();
            }
            id
        })
    }

    fn messages(
        &self,
        session: &str,
        since: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let since = since.map(str::to_string);
        self.with(move |s| {
            let Some(e) = s.messages.get(session).filter(|e| e.live()) else {
                return Vec::new();
            };
            match since {
                Some(after) => e
                    .value
                    .iter()
                    .filter(|m| Envelope::seq_after(&m.id, &after))
                    .take(limit)
                    .cloned()
                    .collect(),
                None => {
                    let skip = e.value.len().saturating_sub(limit);
                    e.value.iter().skip(skip).cloned().collect()
                }
            }
        })
    }

    fn mark_read(
        &self,
        session: &str,
        user: &str,
        message_id: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<ReadMark>> {
        self.with(move |s| {
            let newest = s
                .messages
                .get(session)
                .filter(|e| e.live())
                .and_then(|e| e.value.back())
                .map(|m| m.id.clone());
            match newest {
                Some(n) if !Envelope::seq_after(message_id, &n) => {}
                _ => return ReadMark::Unknown,
            }
            let reads = s
                .reads
                .entry(session.to_string())
                .or_insert_with(|| Expiring::new(HashMap::new(), ttl));
            if !reads.live() {
                reads.value.clear();
            }
            reads.deadline = Instant::now() + ttl;
            match reads.value.get(user) {
                Some(at) if !Envelope::seq_after(message_id, at) => {
                    ReadMark::Unchanged { at: at.clone() }
                }
                _ => {
                    reads.value.insert(user.to_string(), message_id.to_string());
                    ReadMark::Advanced
                }
            }
        })
    }

    fn unread(&self, session: &str, user: &str, cap: usize) -> BoxFuture<'_, StoreResult<Unread>> {
        self.with(move |s| {
            let read = s
                .reads
                .get(session)
                .filter(|r| r.live())
                .and_then(|r| r.value.get(user).cloned());
            let Some(e) = s.messages.get(session).filter(|e| e.live()) else {
                return Unread {
                    read,
                    count: 0,
                    newest: None,
                };
            };
            let after = read.as_deref().unwrap_or(EMPTY_POSITION);
            let count = e
                .value
                .iter()
                .rev()
                .take_while(|m| Envelope::seq_after(&m.id, after))
                .filter(|m| m.sender != user)
                .take(cap)
                .count();
            Unread {
                read,
                count,
                newest: e.value.back().map(|m| m.id.clone()),
            }
        })
    }

    fn inbox(
        &self,
        user: &str,
        after: Option<InboxCursor>,
        limit: usize,
        unread_cap: usize,
    ) -> BoxFuture<'_, StoreResult<InboxPage>> {
        self.with(move |s| {
            let groups = s.user_groups.get(user).into_iter().flatten();
            let directs = s.directs.get(user).into_iter().flatten();
            let last_of = |session: &str| {
                s.messages
                    .get(session)
                    .filter(|e| e.live())
                    .and_then(|e| e.value.back())
            };
            // (position, session, newest message): sorted on the position, parsed once.
            let pos = |last: Option<&StoredMessage>| {
                std::cmp::Reverse(last.map_or((0, 0), |m| parse_position(&m.id)))
            };
            let mut items: Vec<InboxEntry<'_>> = groups
                .map(|g| {
                    let last = last_of(g);
                    (pos(last), g, last)
                })
                .chain(directs.filter_map(|d| last_of(d).map(|m| (pos(Some(m)), d, Some(m)))))
                .collect();
            items.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let start = after.map_or(0, |c| {
                let at = (std::cmp::Reverse(parse_position(&c.last)), &c.session);
                items.partition_point(|i| (i.0, i.1) <= at)
            });
            let page: Vec<InboxItem> = items
                .iter()
                .skip(start)
                .take(limit)
                .map(|&(_, session, last)| {
                    let read = s
                        .reads
                        .get(session)
                        .filter(|r| r.live())
                        .and_then(|r| r.value.get(user));
                    let after = read.map_or(EMPTY_POSITION, String::as_str);
                    let unread = s.messages.get(session).map_or(0, |e| {
                        e.value
                            .iter()
                            .rev()
                            .take_while(|m| Envelope::seq_after(&m.id, after))
                            .filter(|m| m.sender != user)
                            .take(unread_cap)
                            .count()
                    });
                    InboxItem {
                        session: session.clone(),
                        last: last.cloned(),
                        unread,
                    }
                })
                .collect();
            InboxPage {
                more: start + page.len() < items.len(),
                items: page,
            }
        })
    }

    fn directs_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.with(|s| {
            s.directs
                .get(user)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    fn presence_set(
        &self,
        user: &str,
        node: &NodeId,
        online: bool,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.with(|s| {
            if online {
                s.node_users
                    .entry(node.clone())
                    .or_default()
                    .insert(user.to_string());
                let nodes = s.online.entry(user.to_string()).or_default();
                nodes.insert(node.clone()) && nodes.len() == 1
            } else {
                if let Some(users) = s.node_users.get_mut(node) {
                    users.remove(user);
                }
                went_offline(s, user, node, now_ms)
            }
        })
    }

    fn presence_of(&self, users: &[String]) -> BoxFuture<'_, StoreResult<Vec<Presence>>> {
        self.with(|s| {
            users
                .iter()
                .map(|u| {
                    let online = s.online.get(u).is_some_and(|n| !n.is_empty());
                    Presence {
                        user: u.clone(),
                        online,
                        last_seen: s.last_seen.get(u).copied().filter(|_| !online),
                    }
                })
                .collect()
        })
    }

    fn presence_drop_node(
        &self,
        node: &NodeId,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.with(|s| {
            let users = s.node_users.remove(node).unwrap_or_default();
            users
                .into_iter()
                .filter(|u| went_offline(s, u, node, now_ms))
                .collect()
        })
    }

    fn history(
        &self,
        channel: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<Envelope>>> {
        let out = self
            .history
            .as_ref()
            .map(|h| h.after(channel, after, limit))
            .unwrap_or_default();
        future::ready(Ok(out)).boxed()
    }

    fn history_tail(&self, channel: &str) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let out = self.history.as_ref().and_then(|h| h.tail(channel));
        future::ready(Ok(out)).boxed()
    }
}
