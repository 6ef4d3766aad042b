//! Server-side cost from `/proc`: CPU seconds (utime + stime of `/proc/<pid>/stat`) and
//! resident memory (`VmRSS` of `/proc/<pid>/status`) of watched processes.

use std::sync::OnceLock;

use serde::Serialize;

/// A process to watch: `name=pid` on the command line (or a bare pid).
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = match s.split_once('=') {
            Some((n, p)) => (n.to_string(), p),
            None => (format!("pid{s}"), s),
        };
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: expected name=pid"))?;
        Ok(Watched { name, pid })
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be asked).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of `pid` in seconds (`None` if the process is gone). `pid` 0 = this
/// process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat_ticks(&text).map(|t| t as f64 / clk_tck())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `pid` in KiB (`pid` 0 = this process).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let path = if pid == 0 {
        "/proc/self/status".to_string()
    } else {
        format!("/proc/{pid}/status")
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_rss_kib(&text)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The soft limit on open files of this process (`/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds of every watched process and of this process at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    pub servers: Vec<Option<f64>>,
    pub tool: f64,
}

impl CpuSnapshot {
    pub fn take(watched: &[Watched]) -> CpuSnapshot {
        CpuSnapshot {
            servers: watched.iter().map(|w| cpu_seconds(w.pid)).collect(),
            tool: cpu_seconds(0).unwrap_or_default(),
        }
    }
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct CpuUse {
    /// Seconds of CPU per watched process, by name.
    pub per_process: Vec<(String, f64)>,
    /// Sum over the watched processes (the servers).
    pub server_cpu_s: f64,
    /// The load tool itself.
    pub tool_cpu_s: f64,
    /// `server_cpu_s` per million primary events of the window (deliveries, ACKs, ...).
    pub server_cpu_s_per_million: Option<f64>,
}

impl CpuUse {
    pub fn between(watched: &[Watched], a: &CpuSnapshot, b: &CpuSnapshot, events: u64) -> CpuUse {
        let mut per_process = Vec::new();
        let mut total = 0.0;
        for (i, w) in watched.iter().enumerate() {
            if let (Some(Some(x)), Some(Some(y))) = (a.servers.get(i), b.servers.get(i)) {
                let d = round3(y - x);
                total += d;
                per_process.push((w.name.clone(), d));
            }
        }
        let server_cpu_s = round3(total);
        let per_million =
            (!watched.is_empty() && events > 0).then(|| round3(server_cpu_s / events as f64 * 1e6));
        CpuUse {
            per_process,
            server_cpu_s,
            tool_cpu_s: round3(b.tool - a.tool),
            server_cpu_s_per_million: per_million,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let line =
            "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn rss_line() {
        let status = "Name:\tmurmur\nVmPeak:\t  1000 kB\nVmRSS:\t   20480 kB\nThreads: 3\n";
        assert_eq!(parse_rss_kib(status), Some(20480));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn this_process_is_measurable() {
        assert!(cpu_seconds(0).is_some());
        assert!(rss_kib(0).unwrap() > 0);
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn watched_parses() {
        let w: Watched = "node1=42".parse().unwrap();
        assert_eq!((w.name.as_str(), w.pid), ("node1", 42));
        let w: Watched = "7".parse().unwrap();
        assert_eq!(w.pid, 7);
        assert!("x=y".parse::<Watched>().is_err());
    }
}
