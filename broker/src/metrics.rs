//! Every `murmur_` metric family, registered in one per-node [`prometheus::Registry`]
//! (no global state, so several nodes can live in one test process). `docs/metrics.md`
//! lists them with their meaning.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Delivery outcomes, the `outcome` label of `murmur_deliveries_total`.
pub mod outcome {
    pub const DELIVERED: &str = "delivered";
    pub const BUFFERED: &str = "buffered";
    pub const RECOVERED: &str = "recovered";
    pub const DROPPED_SLOW: &str = "dropped_slow";
    pub const DROPPED_OVERFLOW: &str = "dropped_overflow";
    pub const ACKED: &str = "acked";
    pub const NACKED: &str = "nacked";
    pub const EXPIRED: &str = "expired";
    pub const STALE: &str = "stale";
    pub const UNDELIVERABLE: &str = "undeliverable";
    pub const REPORT_DROPPED: &str = "report_dropped";
}

/// The node's metric families.
pub struct Metrics {
    registry: Registry,
    /// Open client connections (sockets).
    pub connections: IntGaugeVec,
    /// Connections accepted since start.
    pub connections_total: IntCounterVec,
    /// Live sessions, attached or waiting for recovery.
    pub sessions: IntGaugeVec,
    /// Frames received from clients.
    pub messages_in: IntCounterVec,
    /// Frames sent to clients.
    pub messages_out: IntCounterVec,
    /// Per-recipient delivery outcomes.
    pub deliveries: IntCounterVec,
    /// Seconds from acceptance by the broker to hand-off to the client's socket writer.
    pub delivery_latency: HistogramVec,
    /// RPC requests by outcome (`ok`, `error`, `timeout`, `cancelled`, `not_found`, `rejected`).
    pub rpc_requests: IntCounterVec,
    /// Input rejected by a decoder.
    pub decode_errors: IntCounterVec,
    /// Server-initiated closes by reason label.
    pub disconnects: IntCounterVec,
    /// Envelopes handed to / received from the bus.
    pub bus_published: IntCounterVec,
    pub bus_received: IntCounterVec,
    /// Bus failures by kind (`publish`, `decode`, `connection`, `dropped`).
    pub bus_errors: IntCounterVec,
    /// 1 while the bus is connected.
    pub bus_up: IntGauge,
    /// Store operation failures by operation.
    pub store_errors: IntCounterVec,
    /// Stored records that did not decode, by kind of record (`scheduled_job`, …).
    pub store_corrupt: IntCounterVec,
    /// Messages held by the ~timing scheduler.
    pub scheduled: IntGauge,
    /// Bytes buffered for client sockets on this node (every connection's outbound
    /// buffer; bounded by the node-wide ceiling).
    pub outbound_bytes: IntGauge,
    /// Backend API requests by route and status.
    pub api_requests: IntCounterVec,
    /// Chat actions handled, by action type and result (`ok`, `failed`).
    pub chat_actions: IntCounterVec,
    /// Participants (inboxes) one chat broadcast or session change was sent to.
    pub chat_fanout: Histogram,
    /// Outgoing frames that carried a server `batch-mode-action` (several actions).
    pub chat_batched_frames: IntCounter,
    /// Chat read marks that moved a position, by outcome: `queued` (to be told),
    /// `dropped` (too many pending: stored, not told), `published` (told).
    pub chat_read_reports: IntCounterVec,
    /// Users with a chat device connected on this node.
    pub presence_online: IntGauge,
    /// Cluster-wide presence changes this node published, by `state`.
    pub presence_changes: IntCounterVec,
    /// Typing indicators, by outcome: `sent`, `limited` (over the per-device rate).
    pub chat_typing: IntCounterVec,
    /// Pushes for offline chat participants, by outcome: `queued`, `sent`, `skipped`
    /// (back online), `failed` (a delivery attempt failed), `dead` (dead-lettered).
    pub push: IntCounterVec,
    /// Pushes queued in the store (cluster-wide), as this node last read it.
    pub push_queue: IntGauge,
    /// TimeStick session lifecycle events (`started`, `stopped_by_caller`, …).
    pub timestick_sessions: IntCounterVec,
    /// TimeStick HTTP requests by kind (`start`, `post`, `poll`, `stream`) and status.
    pub timestick_requests: IntCounterVec,
    /// `~timing` events by protocol: `held`, `released`, `expired` (dropped while
    /// waiting), `stale` (delivered late), `rejected` (refused on arrival).
    pub timing: IntCounterVec,
    /// Sink events by direction (`in`, `out`, `handshake`) and outcome.
    pub sink_events: IntCounterVec,
    /// Outbox entries waiting for a device when it connects.
    pub sink_outbox_depth: Histogram,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let p = ["protocol"];
        Metrics {
            connections: gauge_vec(
                &registry,
                "murmur_connections",
                "Open client connections",
                &p,
            ),
            connections_total: counter_vec(
                &registry,
                "murmur_connections_total",
                "Client connections accepted",
                &p,
            ),
            sessions: gauge_vec(
                &registry,
                "murmur_sessions",
                "Live sessions on this node",
                &p,
            ),
            messages_in: counter_vec(
                &registry,
                "murmur_messages_in_total",
                "Messages received from clients",
                &p,
            ),
            messages_out: counter_vec(
                &registry,
                "murmur_messages_out_total",
                "Messages sent to clients",
                &p,
            ),
            deliveries: counter_vec(
                &registry,
                "murmur_deliveries_total",
                "Per-recipient delivery outcomes",
                &["protocol", "outcome"],
            ),
            delivery_latency: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "murmur_delivery_latency_seconds",
                        "Seconds from broker acceptance to the recipient's socket writer",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ]),
                    &p,
                )
                .unwrap(); // unwrap: static, valid metric options.
                registry.register(Box::new(h.clone())).unwrap(); // unwrap: unique name.
                h
            },
            rpc_requests: counter_vec(
                &registry,
                "murmur_rpc_requests_total",
                "RPC requests routed to providers, by outcome",
                &["protocol", "outcome"],
            ),
            decode_errors: counter_vec(
                &registry,
                "murmur_decode_errors_total",
                "Client input rejected by a decoder",
                &p,
            ),
            disconnects: counter_vec(
                &registry,
                "murmur_disconnects_total",
                "Server-initiated disconnects by reason",
                &["protocol", "reason"],
            ),
            bus_published: counter_vec(
                &registry,
                "murmur_bus_published_total",
                "Envelopes published on the bus",
                &["kind"],
            ),
            bus_received: counter_vec(
                &registry,
                "murmur_bus_received_total",
                "Envelopes received from the bus",
                &["kind"],
            ),
            bus_errors: counter_vec(
                &registry,
                "murmur_bus_errors_total",
                "Bus errors",
                &["kind"],
            ),
            bus_up: {
                let g =
                    IntGauge::new("murmur_bus_up", "1 while the cluster bus is connected").unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(g.clone())).unwrap(); // unwrap: unique name.
                g
            },
            store_errors: counter_vec(
                &registry,
                "murmur_store_errors_total",
                "Store operation failures",
                &["op"],
            ),
            store_corrupt: counter_vec(
                &registry,
                "murmur_store_corrupt_total",
                "Stored records that did not decode (counted and logged, never skipped silently)",
                &["kind"],
            ),
            scheduled: {
                let g = IntGauge::new(
                    "murmur_scheduled_messages",
                    "Messages held by the ~timing scheduler",
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(g.clone())).unwrap(); // unwrap: unique name.
                g
            },
            outbound_bytes: {
                let g = IntGauge::new(
                    "murmur_outbound_bytes",
                    "Bytes buffered for client sockets on this node",
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(g.clone())).unwrap(); // unwrap: unique name.
                g
            },
            api_requests: counter_vec(
                &registry,
                "murmur_api_requests_total",
                "Backend API requests by route and status",
                &["route", "status"],
            ),
            timestick_sessions: counter_vec(
                &registry,
                "murmur_timestick_sessions_total",
                "TimeStick session lifecycle events",
                &["event"],
            ),
            timestick_requests: counter_vec(
                &registry,
                "murmur_timestick_requests_total",
                "TimeStick requests by kind and HTTP status",
                &["kind", "status"],
            ),
            timing: counter_vec(
                &registry,
                "murmur_timing_total",
                "~timing events by protocol",
                &["protocol", "event"],
            ),
            sink_events: counter_vec(
                &registry,
                "murmur_sink_events_total",
                "Sink events by direction and outcome",
                &["direction", "outcome"],
            ),
            sink_outbox_depth: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "murmur_sink_outbox_depth",
                        "Outbox entries waiting for a device when it connects",
                    )
                    .buckets(vec![0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0]),
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(h.clone())).unwrap(); // unwrap: unique name.
                h
            },
            chat_actions: counter_vec(
                &registry,
                "murmur_chat_actions_total",
                "Chat actions by type and result",
                &["action", "result"],
            ),
            chat_fanout: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "murmur_chat_fanout",
                        "Participants one chat broadcast or session change went to",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(h.clone())).unwrap(); // unwrap: unique name.
                h
            },
            presence_online: {
                let g = IntGauge::new(
                    "murmur_presence_online",
                    "Users with a chat device connected on this node",
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(g.clone())).unwrap(); // unwrap: unique name.
                g
            },
            presence_changes: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "murmur_presence_changes_total",
                        "Cluster-wide presence changes published by this node, by state",
                    ),
                    &["state"],
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(c.clone())).unwrap(); // unwrap: unique name.
                c
            },
            push: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "murmur_push_total",
                        "Pushes for offline chat participants, by outcome",
                    ),
                    &["outcome"],
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(c.clone())).unwrap(); // unwrap: unique name.
                c
            },
            push_queue: {
                let g = IntGauge::new(
                    "murmur_push_queue",
                    "Pushes queued in the store (cluster-wide), as last read by this node",
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(g.clone())).unwrap(); // unwrap: unique name.
                g
            },
            chat_typing: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "murmur_chat_typing_total",
                        "Chat typing indicators, by outcome (sent, limited)",
                    ),
                    &["outcome"],
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(c.clone())).unwrap(); // unwrap: unique name.
                c
            },
            chat_read_reports: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "murmur_chat_read_reports_total",
                        "Chat read marks that moved a read position, by outcome",
                    ),
                    &["outcome"],
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(c.clone())).unwrap(); // unwrap: unique name.
                c
            },
            chat_batched_frames: {
                let c = IntCounter::new(
                    "murmur_chat_batched_frames_total",
                    "Outgoing chat frames that packed several actions into one batch",
                )
                .unwrap(); // unwrap: static, valid options.
                registry.register(Box::new(c.clone())).unwrap(); // unwrap: unique name.
                c
            },
            registry,
        }
    }

    /// Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .unwrap(); // unwrap: encoding into a Vec cannot fail for well-formed families.
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records one delivery outcome for a protocol.
    pub fn delivery(&self, protocol: &str, outcome: &str) {
        self.deliveries
            .with_label_values(&[protocol, outcome])
            .inc();
    }

    /// `~timing` at the moment of delivery: false for a message whose `expires_time`
    /// has passed (dropped, never delivered, counted); a stale one is delivered and
    /// counted.
    pub fn deliverable(&self, protocol: &str, decorator: Option<&serde_json::Value>) -> bool {
        let Some(t) = decorator else { return true };
        let now = murmur_shared::ids::now_ms() as i64;
        if murmur_shared::timing::expired(Some(t), now) {
            self.timing.with_label_values(&[protocol, "expired"]).inc();
            self.delivery(protocol, outcome::EXPIRED);
            return false;
        }
        if murmur_shared::timing::stale(Some(t), now) {
            self.timing.with_label_values(&[protocol, "stale"]).inc();
            self.delivery(protocol, outcome::STALE);
        }
        true
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // unwrap: names and labels are static and valid.
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap();
    registry.register(Box::new(c.clone())).unwrap(); // unwrap: each name registered once.
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    // unwrap: names and labels are static and valid.
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap();
    registry.register(Box::new(g.clone())).unwrap(); // unwrap: each name registered once.
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_the_murmur_prefix() {
        let m = Metrics::new();
        m.connections.with_label_values(&["helios"]).inc();
        m.delivery("helios", outcome::DELIVERED);
        let text = m.render();
        assert!(
            text.contains("murmur_connections{protocol=\"helios\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("murmur_deliveries_total{outcome=\"delivered\",protocol=\"helios\"} 1")
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("murmur_"), "{line}");
        }
    }

    #[test]
    fn two_nodes_in_one_process_do_not_share_metrics() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.bus_up.set(1);
        assert_eq!(b.bus_up.get(), 0);
    }
}
