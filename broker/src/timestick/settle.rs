//! A POSTed message's settlement ([`Recorded`]): the POST that records a `message_id`
//! has [`LEASE`] to make its effect durable and settle it; a copy of the message that
//! finds it unsettled waits for that, and carries the message out itself once the lease
//! has run out (its node died or failed in between), so that the client's retry of a
//! message that never went out is not refused as a duplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use murmur_shared::ids::{now_ms, SessionId};

use super::TsError;
use crate::node::Node;
use crate::store::{Recorded, StoreError, StoreErrorKind};

/// How long the POST that recorded a message has to settle it. Its own work is bounded
/// by [`WORK_WITHIN`], well inside.
pub const LEASE: Duration = Duration::from_secs(5);
/// The bound on what the recording POST does between recording and settling.
pub const WORK_WITHIN: Duration = Duration::from_secs(3);
/// How often a waiting copy looks again.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Runs the recording POST's work within [`WORK_WITHIN`]: past it, the client is
/// answered "unavailable" and the message stays unsettled (a retry takes it over once
/// the lease has run out).
pub async fn within_lease<T>(work: impl Future<Output = Result<T, TsError>>) -> Result<T, TsError> {
    tokio::time::timeout(WORK_WITHIN, work)
        .await
        .unwrap_or_else(|_| Err(slow("the message's effect took too long to become durable")))
}

/// A copy of a message recorded unsettled at `since_ms`: waits until it is settled (a
/// duplicate) or its lease runs out, then takes it over (`Ok`: this POST carries it
/// out). Gives up as "unavailable" after [`LEASE`] plus what it waited already.
pub async fn wait_or_take_over(
    node: &Arc<Node>,
    id: SessionId,
    message_id: &str,
    mut since_ms: u64,
) -> Result<(), TsError> {
    let lease = LEASE.as_millis() as u64;
    let give_up = now_ms() + 2 * lease;
    loop {
        let now = now_ms();
        if now >= since_ms.saturating_add(lease) {
            if node
                .store()
                .ts_take_over(id, message_id, since_ms, now)
                .await?
            {
                return Ok(());
            }
        } else {
            tokio::time::sleep(LOOK_EVERY).await;
        }
        match node.store().ts_message(id, message_id).await? {
            Some(Recorded::Unsettled { since_ms: s }) => since_ms = s,
            Some(Recorded::Settled) => return Err(TsError::Duplicate),
            // The record expired meanwhile (the session's TTL): nothing left to refuse.
            Some(Recorded::New) | None => return Ok(()),
        }
        if now_ms() >= give_up {
            return Err(slow("the message is still being processed; retry later"));
        }
    }
}

fn slow(why: &'static str) -> TsError {
    TsError::Unavailable(StoreError::new(StoreErrorKind::Timeout, why))
}
