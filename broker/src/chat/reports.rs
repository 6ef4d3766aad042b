//! Aggregated delivery reports. A device that was handed a broadcast (its frame written
//! to the socket) is recorded here; once per window the node tells each sender's
//! devices, in one `message-delivered` per message, every device the message reached on
//! this node since the last window (more than one frame only when the devices do not
//! fit 4096 bytes). A busy group therefore costs its senders one report per message per
//! node per window, not one per recipient device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use murmur_shared::channel::user_inbox;
use murmur_shared::chat;
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use tokio::sync::Notify;
use tracing::debug;
use uuid::Uuid;

use crate::node::Node;

/// Devices waiting to be reported, all messages together. At this many the window is
/// cut short; past four times this many, further reports are dropped (and counted).
pub const PENDING_FLUSH: usize = 16_384;

/// A device as reports name it: its user and device ids, and their `delivered-to`
/// entry, serialized once per connection.
#[derive(Debug)]
pub struct Device {
    pub user: String,
    pub device: String,
    json: String,
}

impl Device {
    pub fn new(user: &str, device: &str) -> Arc<Device> {
        Arc::new(Device {
            user: user.to_string(),
            device: device.to_string(),
            json: chat::delivered_entry(user, device),
        })
    }
}

/// What a report says about its message, read once per message per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub sender: String,
    pub session: String,
    pub message: String,
}

struct Entry {
    about: About,
    devices: Vec<Arc<Device>>,
}

#[derive(Default)]
struct Pending {
    /// Keyed by the broadcast's envelope id (the same on every device of a node).
    by_message: HashMap<Uuid, Entry>,
    devices: usize,
}

/// See the module docs.
#[derive(Default)]
pub struct DeliveryReports {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl DeliveryReports {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // unwrap: nothing panics while the lock is held (map operations only).
        self.pending.lock().unwrap()
    }

    /// Records that `device` was handed broadcast `key`; `about` is asked only for the
    /// first device of a message in a window. False when the report was dropped (too
    /// many pending).
    pub fn delivered(
        &self,
        key: Uuid,
        about: impl FnOnce() -> About,
        device: &Arc<Device>,
    ) -> bool {
        let mut p = self.lock();
        if p.devices >= 4 * PENDING_FLUSH {
            return false;
        }
        p.by_message
            .entry(key)
            .or_insert_with(|| Entry {
                about: about(),
                devices: Vec::new(),
            })
            .devices
            .push(device.clone());
        p.devices += 1;
        let first = p.devices == 1;
        let full = p.devices == PENDING_FLUSH;
        drop(p);
        if first || full {
            self.wake.notify_one();
        }
        true
    }

    /// Devices recorded and not reported yet.
    pub fn pending(&self) -> usize {
        self.lock().devices
    }

    /// Takes everything recorded: per message, its sender and its frames' bodies.
    fn take(&self) -> Vec<(String, Vec<String>)> {
        let taken = std::mem::take(&mut *self.lock());
        taken
            .by_message
            .into_values()
            .map(|e| {
                let devices: Vec<(&str, &str, &str)> = e
                    .devices
                    .iter()
                    .map(|d| (d.user.as_str(), d.device.as_str(), d.json.as_str()))
                    .collect();
                let frames =
                    chat::message_delivered_frames(&e.about.session, &e.about.message, &devices);
                (e.about.sender, frames)
            })
            .collect()
    }
}

/// Runs the node's report flusher: wakes on the first report of a window, waits the
/// window (cut short when [`PENDING_FLUSH`] devices wait), then publishes.
pub fn spawn_flusher(node: &Arc<Node>, window: Duration) {
    super::window::spawn::<DeliveryReports>(node, window, PENDING_FLUSH, publish);
}

impl super::window::Windowed for DeliveryReports {
    type Batch = Vec<(String, Vec<String>)>;

    fn wake(&self) -> &Notify {
        &self.wake
    }

    fn pending(&self) -> usize {
        DeliveryReports::pending(self)
    }

    fn take(&self) -> Self::Batch {
        DeliveryReports::take(self)
    }
}

fn publish(node: &Node, reports: Vec<(String, Vec<String>)>) {
    let origin = Origin {
        session: None,
        user: None,
        protocol: Some(crate::session::Protocol::Chat),
    };
    // One envelope per sender per window, however many messages it reports: a sender of
    // many messages gets one queue entry per window, never a burst that fills its queue.
    let mut by_sender: HashMap<String, Vec<String>> = HashMap::new();
    for (sender, frames) in reports {
        by_sender.entry(sender).or_default().extend(frames);
    }
    for (sender, frames) in by_sender {
        let env = Envelope::new(
            node.id(),
            Kind::Message,
            Destination::Channel(user_inbox(&sender)),
            // Encoded once, here: every node and device passes the texts on.
            Body::Texts(frames),
        )
        .from(origin.clone())
        .subject(chat::ChatEvent::MessageDelivered.as_str());
        node.router.publish(env);
    }
    debug!("delivery reports published");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(m: &str) -> impl FnOnce() -> About + '_ {
        move || About {
            sender: "s".into(),
            session: "g".into(),
            message: m.into(),
        }
    }

    #[test]
    fn reports_are_grouped_per_message() {
        let r = DeliveryReports::default();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, b) = (Device::new("a", "d1"), Device::new("b", "d2"));
        assert!(r.delivered(one, about("1-0"), &a));
        assert!(r.delivered(one, || unreachable!("asked once per message"), &b));
        assert!(r.delivered(two, about("2-0"), &a));
        assert_eq!(r.pending(), 3);
        let mut taken: Vec<(String, Vec<serde_json::Value>)> = r
            .take()
            .into_iter()
            .map(|(s, frames)| {
                let frames = frames.iter().map(|t| serde_json::from_str(t).unwrap());
                (s, frames.collect())
            })
            .collect();
        taken.sort_by_key(|(_, f)| f[0]["message-id"].as_str().unwrap().to_string());
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].0, "s");
        assert_eq!(
            taken[0].1[0]["delivered-to"],
            serde_json::json!([
                {"user-id": "a", "device-id": "d1"},
                {"user-id": "b", "device-id": "d2"}
            ])
        );
        assert_eq!(taken[0].1[0]["session-id"], "g");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn pending_reports_are_bounded() {
        let r = DeliveryReports::default();
        let d = Device::new("u", "d");
        let key = Uuid::new_v4();
        for _ in 0..4 * PENDING_FLUSH {
            assert!(r.delivered(key, about("1-0"), &d));
        }
        assert!(!r.delivered(key, about("1-0"), &d));
        assert_eq!(r.pending(), 4 * PENDING_FLUSH);
    }
}
