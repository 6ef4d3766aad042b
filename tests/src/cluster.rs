//! [`Cluster`]: one [`RedisServer`] and n [`Node`]s sharing it.

use futures_util::future::join_all;

use crate::node::{Node, NodeBuilder};
use crate::redis::RedisServer;

/// n murmur nodes in cluster mode on one redis-server. Nodes are dropped (killed) before
/// redis.
pub struct Cluster {
    nodes: Vec<Node>,
    redis: RedisServer,
}

impl Cluster {
    /// Starts redis, then `n` default nodes (concurrently), each with its own id and ports,
    /// and waits until all are ready.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_, builder| builder).await
    }

    /// Like [`Cluster::start`], letting `configure(index, builder)` adjust each node (the
    /// builder already points at the cluster's redis).
    pub async fn start_with(
        n: usize,
        configure: impl Fn(usize, NodeBuilder) -> NodeBuilder,
    ) -> Cluster {
        let redis = RedisServer::start().await;
        let builders = (0..n).map(|i| configure(i, NodeBuilder::new().redis(&redis)));
        let nodes = join_all(builders.map(NodeBuilder::spawn)).await;
        Cluster { nodes, redis }
    }

    /// Adds one more node on the same redis and waits until it is ready.
    pub async fn add_node(&mut self, configure: impl FnOnce(NodeBuilder) -> NodeBuilder) -> &Node {
        let node = configure(NodeBuilder::new().redis(&self.redis))
            .spawn()
            .await;
        self.nodes.push(node);
        &self.nodes[self.nodes.len() - 1]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All nodes, mutably (to kill or terminate them).
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`, mutably.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The shared redis-server.
    pub fn redis(&self) -> &RedisServer {
        &self.redis
    }

    /// The shared redis-server, mutably (to stop and restart it).
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        &mut self.redis
    }
}
