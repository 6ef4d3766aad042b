//! The in-memory scheduler: an ordered map by due time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Claimed, Held, Scheduler};
use crate::store::StoreResult;

/// See the module docs.
#[derive(Default)]
pub struct MemoryScheduler {
    jobs: Mutex<BTreeMap<(i64, String), Held>>,
}

impl MemoryScheduler {
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BTreeMap<(i64, String), Held>) -> T,
    ) -> BoxFuture<'_, StoreResult<T>> {
        // unwrap: closures do not panic while holding the lock.
        let out = f(&mut self.jobs.lock().unwrap());
        future::ready(Ok(out)).boxed()
    }
}

impl Scheduler for MemoryScheduler {
    fn hold(&self, held: Held) -> BoxFuture<'_, StoreResult<()>> {
        self.with(move |jobs| {
            jobs.insert((held.due_ms, held.id.clone()), held);
        })
    }

    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, StoreResult<Claimed>> {
        self.with(move |jobs| {
            let mut out = Vec::new();
            while out.len() < limit {
                match jobs.first_key_value() {
                    Some(((due, _), _)) if *due <= now_ms => {
                        if let Some((_, held)) = jobs.pop_first() {
                            out.push(held);
                        }
                    }
                    _ => break,
                }
            }
            Claimed {
                jobs: out,
                corrupt: 0,
            }
        })
    }

    fn ack(&self, _ids: Vec<String>) -> BoxFuture<'_, StoreResult<()>> {
        // One process: a claimed job is carried out or lost with the process anyway.
        future::ready(Ok(())).boxed()
    }

    fn reap(&self, _now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        future::ready(Ok(0)).boxed()
    }

    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        self.with(|jobs| jobs.first_key_value().map(|((due, _), _)| *due))
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.with(|jobs| jobs.len() as u64)
    }
}
