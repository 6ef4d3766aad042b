//! Watching a channel without being a session: long-polls wait on a [`Watch`] for the
//! next publication delivered to this node. The node keeps (or starts) its bus
//! subscription while a watch lives; dropping the watch ends it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::node::Node;

/// See the module docs.
pub struct Watch {
    node: Arc<Node>,
    channel: String,
    notify: Arc<Notify>,
}

impl Watch {
    /// Starts watching `channel` on `node`.
    pub fn new(node: &Arc<Node>, channel: &str) -> Watch {
        let (notify, first) = node.registry.watch(channel);
        if first {
            node.router.bus().subscribe(channel);
        }
        Watch {
            node: node.clone(),
            channel: channel.to_string(),
            notify,
        }
    }

    /// Resolves once the bus delivers the channel here (or after `timeout`).
    pub async fn ready(&self, timeout: Duration) -> bool {
        self.node
            .router
            .bus()
            .wait_subscribed(&self.channel, timeout)
            .await
    }

    /// The wake-up for the next publication. Create it *before* checking for data, then
    /// await it, so a publication in between is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.node.registry.unwatch(&self.channel) {
            self.node.router.bus().unsubscribe(&self.channel);
        }
    }
}
