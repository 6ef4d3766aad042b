//! Channel history on the embedded node: the in-memory counterpart of the Redis history
//! streams. Every channel publication gets a position (`<ms>-<n>`, increasing per
//! channel) and a [`ChannelSeq`] (1, 2, 3 … within an epoch that changes when an idle
//! channel's history expires), and the last [`HISTORY_LEN`] stay readable for the
//! history TTL. TimeStick sessions read their target channel from here; recovering
//! Helios sessions replay from here; positions also let sessions skip duplicates.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use murmur_shared::envelope::{ChannelSeq, Envelope};
use murmur_shared::ids::now_ms;

/// How much channel history is kept, on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Kept this long after the channel's last publication.
    pub ttl: Duration,
    /// Publications kept per channel (approximately, in Redis: `MAXLEN ~`).
    pub len: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            ttl: Duration::from_secs(600),
            len: 1000,
        }
    }
}

struct ChannelHistory {
    last: (u64, u64),
    /// Publications numbered so far in this epoch.
    count: u64,
    epoch: String,
    entries: VecDeque<Arc<Envelope>>,
    touched: Instant,
}

/// See the module docs.
pub struct LocalHistory {
    ttl: Duration,
    len: usize,
    channels: Mutex<Channels>,
}

/// The channels and when idle ones were last swept out.
struct Channels {
    map: HashMap<String, ChannelHistory>,
    swept: Instant,
}

/// Idle channels are swept out at most this often (never per publication).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A fresh epoch name: unique per channel reset.
fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn parse(seq: &str) -> (u64, u64) {
    let (ms, n) = seq.split_once('-').unwrap_or((seq, "0"));
    (ms.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

impl LocalHistory {
    pub fn new(limits: HistoryLimits) -> Arc<Self> {
        Arc::new(LocalHistory {
            ttl: limits.ttl,
            len: limits.len.max(1),
            channels: Mutex::new(Channels {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        // unwrap: nothing panics while the lock is held (plain collection operations).
        self.channels.lock().unwrap()
    }

    /// Gives `env` its position and keeps it; returns the positioned envelope.
    pub fn append(&self, channel: &str, mut env: Envelope) -> Arc<Envelope> {
        let mut guard = self.lock();
        let now = Instant::now();
        if now.duration_since(guard.swept) >= SWEEP_EVERY {
            guard.swept = now;
            let ttl = self.ttl;
            guard.map.retain(|_, h| now.duration_since(h.touched) < ttl);
        }
        let h = guard
            .map
            .entry(channel.to_string())
            .or_insert_with(|| ChannelHistory {
                last: (0, 0),
                count: 0,
                epoch: new_epoch(),
                entries: VecDeque::new(),
                touched: now,
            });
        if now.duration_since(h.touched) >= self.ttl {
            h.entries.clear();
            h.count = 0;
            h.epoch = new_epoch();
        }
        h.touched = now;
        let ms = now_ms();
        h.last = if ms > h.last.0 {
            (ms, 0)
        } else {
            (h.last.0, h.last.1 + 1)
        };
        env.seq = Some(format!("{}-{}", h.last.0, h.last.1));
        h.count += 1;
        env.chan_seq = Some(ChannelSeq {
            seq: h.count,
            epoch: h.epoch.clone(),
        });
        let env = Arc::new(env);
        h.entries.push_back(env.clone());
        while h.entries.len() > self.len {
            h.entries.pop_front();
        }
        env
    }

    /// Publications after `after` (exclusive), oldest first, at most `limit`.
    pub fn after(&self, channel: &str, after: &str, limit: usize) -> Vec<Envelope> {
        let after = parse(after);
        let channels = self.lock();
        let Some(h) = channels
            .map
            .get(channel)
            .filter(|h| h.touched.elapsed() < self.ttl)
        else {
            return Vec::new();
        };
        h.entries
            .iter()
            .filter(|e| e.seq.as_deref().map(parse).is_some_and(|p| p > after))
            .take(limit)
            .map(|e| (**e).clone())
            .collect()
    }

    /// The position of the newest publication, if any.
    pub fn tail(&self, channel: &str) -> Option<String> {
        let channels = self.lock();
        let h = channels
            .map
            .get(channel)
            .filter(|h| h.touched.elapsed() < self.ttl)?;
        h.entries.back().and_then(|e| e.seq.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_shared::envelope::{Body, Destination, Kind};
    use murmur_shared::ids::NodeId;
    use serde_json::json;

    fn env(i: i64) -> Envelope {
        Envelope::new(
            &NodeId("n".into()),
            Kind::Notification,
            Destination::Channel("c".into()),
            Body::Json(json!(i)),
        )
    }

    #[test]
    fn positions_increase_and_reads_start_after_a_position() {
        let h = LocalHistory::new(HistoryLimits::default());
        assert_eq!(h.tail("c"), None);
        let seqs: Vec<String> = (0..5)
            .map(|i| h.append("c", env(i)).seq.clone().unwrap())
            .collect();
        for w in seqs.windows(2) {
            assert!(Envelope::seq_after(&w[1], &w[0]));
        }
        assert_eq!(h.tail("c"), Some(seqs[4].clone()));
        let numbers: Vec<u64> = h
            .after("c", "0-0", 10)
            .iter()
            .map(|e| e.chan_seq.as_ref().unwrap().seq)
            .collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
        let got: Vec<_> = h
            .after("c", &seqs[1], 10)
            .iter()
            .map(|e| e.json().clone())
            .collect();
        assert_eq!(got, vec![json!(2), json!(3), json!(4)]);
        assert_eq!(h.after("c", &seqs[1], 1).len(), 1);
        assert_eq!(h.after("c", "0-0", 100).len(), 5);
        assert!(h.after("other", "0-0", 100).is_empty());
    }

    #[test]
    fn history_is_bounded() {
        let h = LocalHistory::new(HistoryLimits {
            ttl: Duration::from_secs(60),
            len: 100,
        });
        for i in 0..110 {
            h.append("c", env(i));
        }
        let all = h.after("c", "0-0", usize::MAX);
        assert_eq!(all.len(), 100);
        assert_eq!(all[0].json(), &json!(10));
    }
}
