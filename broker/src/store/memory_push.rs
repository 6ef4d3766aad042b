//! [`PushStore`] for the in-memory store.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::BoxFuture;

use super::memory::MemoryStore;
use super::push::{PushCounts, PushJob, PushStore, DEVICES_KEPT};
use super::StoreResult;

/// Push state of the memory store.
#[derive(Default)]
pub(crate) struct PushState {
    /// id → (job, when it is due).
    jobs: HashMap<String, (PushJob, u64)>,
    /// (due ms, id).
    due: BTreeSet<(u64, String)>,
    dead: u64,
    /// Per user: (device, last sign-in ms), most recent first.
    devices: HashMap<String, Vec<(String, u64)>>,
}

impl PushState {
    fn schedule(&mut self, job: PushJob, at: u64) {
        self.unschedule(&job.id);
        self.due.insert((at, job.id.clone()));
        self.jobs.insert(job.id.clone(), (job, at));
    }

    fn unschedule(&mut self, id: &str) -> bool {
        match self.jobs.remove(id) {
            Some((_, at)) => {
                self.due.remove(&(at, id.to_string()));
                true
            }
            None => false,
        }
    }
}

impl PushStore for MemoryStore {
    fn push_enqueue(&self, jobs: Vec<PushJob>, max: usize) -> BoxFuture<'_, StoreResult<usize>> {
        self.with_push(move |s| {
            let now = murmur_shared::ids::now_ms();
            let mut queued = 0;
            for job in jobs {
                if s.jobs.contains_key(&job.id) {
                    continue;
                }
                if s.jobs.len() >= max {
                    s.dead += 1;
                    continue;
                }
                s.schedule(job, now);
                queued += 1;
            }
            queued
        })
    }

    fn push_claim(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<PushJob>>> {
        self.with_push(move |s| {
            let due: Vec<(u64, String)> = s
                .due
                .iter()
                .take_while(|(at, _)| *at <= now_ms)
                .take(limit)
                .cloned()
                .collect();
            let mut out = Vec::with_capacity(due.len());
            for (_, id) in due {
                if let Some((job, _)) = s.jobs.get(&id) {
                    let job = job.clone();
                    s.schedule(job.clone(), now_ms + lease_ms);
                    out.push(job);
                }
            }
            out
        })
    }

    fn push_settle(
        &self,
        done: Vec<String>,
        retry: Vec<(PushJob, u64)>,
        dead: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.with_push(move |s| {
            for id in &done {
                s.unschedule(id);
            }
            for id in &dead {
                if s.unschedule(id) {
                    s.dead += 1;
                }
            }
            for (job, at) in retry {
                if s.jobs.contains_key(&job.id) {
                    s.schedule(job, at);
                }
            }
        })
    }

    fn push_counts(&self) -> BoxFuture<'_, StoreResult<PushCounts>> {
        self.with_push(|s| PushCounts {
            queued: s.jobs.len(),
            dead: s.dead,
        })
    }

    fn note_device(&self, user: &str, device: &str, now_ms: u64) -> BoxFuture<'_, StoreResult<()>> {
        let (user, device) = (user.to_string(), device.to_string());
        self.with_push(move |s| {
            let list = s.devices.entry(user).or_default();
            list.retain(|(d, _)| d != &device);
            list.insert(0, (device, now_ms));
            list.truncate(DEVICES_KEPT);
        })
    }

    fn devices_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let user = user.to_string();
        self.with_push(move |s| {
            s.devices
                .get(&user)
                .map(|l| l.iter().map(|(d, _)| d.clone()).collect())
                .unwrap_or_default()
        })
    }
}
