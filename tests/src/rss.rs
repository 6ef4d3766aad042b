//! Memory and descriptors of a process, from `/proc` (Linux): [`vm_rss`] (`VmRSS` of
//! `/proc/<pid>/status`), [`open_fds`] (entries of `/proc/<pid>/fd`) and [`RssSampler`],
//! which polls a process's `VmRSS` in the background and keeps the peak, so a test can
//! bound how much a node grew while something happened (e.g. [`crate::Node::pid`] during a
//! flood).
//!
//! `VmRSS` counts the process's resident pages only: data the kernel holds in socket
//! buffers is not part of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One mebibyte, in bytes.
pub const MIB: u64 = 1024 * 1024;

/// `VmRSS` of process `pid` in bytes; `None` if the process is gone (or has no `VmRSS`,
/// e.g. a zombie).
pub fn try_vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `VmRSS` of process `pid` in bytes; panics if it cannot be read.
pub fn vm_rss(pid: u32) -> u64 {
    try_vm_rss(pid).unwrap_or_else(|| panic!("cannot read VmRSS of process {pid}"))
}

/// Number of open file descriptors of process `pid` (entries of `/proc/<pid>/fd`);
/// panics if the directory cannot be read.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
        .count()
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Samples `VmRSS` of one process every `every` on a background task and keeps the
/// largest value seen. Stops when dropped (or with [`RssSampler::stop`]).
pub struct RssSampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    /// Starts sampling `pid` (first sample taken at once). Needs a Tokio runtime (e.g.
    /// `#[actix_rt::test]`).
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(try_vm_rss(pid).unwrap_or(0)));
        let samples = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, halt) = (peak.clone(), samples.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !halt.load(Ordering::Relaxed) {
                tick.tick().await;
                let Some(rss) = try_vm_rss(pid) else { break };
                p.fetch_max(rss, Ordering::Relaxed);
                s.fetch_add(1, Ordering::Relaxed);
            }
        });
        RssSampler {
            pid,
            peak,
            samples,
            stop,
        }
    }

    /// The process sampled.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The largest `VmRSS` seen so far (bytes), this instant's value included.
    pub fn peak(&self) -> u64 {
        if let Some(now) = try_vm_rss(self.pid) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Forgets the peak: from now on it is the current value and what follows.
    pub fn reset(&self) {
        let now = try_vm_rss(self.pid).unwrap_or(0);
        self.peak.store(now, Ordering::Relaxed);
    }

    /// Stops sampling and returns the peak.
    pub fn stop(self) -> u64 {
        self.peak()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn reads_this_process() {
        let pid = std::process::id();
        let rss = vm_rss(pid);
        assert!(
            rss > MIB,
            "a test process has more than 1 MiB resident: {rss}"
        );
        assert!(open_fds(pid) >= 3, "stdin, stdout, stderr at least");
        let sampler = RssSampler::start(pid, Duration::from_millis(5));
        let held: Vec<u8> = vec![1; 32 * MIB as usize];
        crate::eventually("a few samples", Duration::from_secs(5), || async {
            (sampler.samples() >= 3).then_some(())
        })
        .await;
        assert!(
            sampler.peak() >= rss + 16 * MIB,
            "the 32 MiB touched are seen"
        );
        drop(held);
        assert!(sampler.stop() > 0);
        assert_eq!(try_vm_rss(u32::MAX), None);
    }
}
