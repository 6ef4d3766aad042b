//! Locating binaries, log files and their tails: the plumbing shared by [`crate::node`] and
//! [`crate::redis`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The `murmur` binary under test: `$MURMUR_BIN` if set, else
/// `<workspace>/target/debug/murmur`. Panics with a build hint if it does not exist.
pub fn murmur_bin() -> PathBuf {
    let path = match std::env::var_os("MURMUR_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/murmur"),
    };
    if !path.is_file() {
        panic!(
            "murmur binary not found at {}: run `cargo build -p murmur-gateway` first \
             (or point MURMUR_BIN at it)",
            path.display()
        );
    }
    path
}

/// A `murmur` command with every inherited `MURMUR_*` variable removed (so the developer's
/// shell cannot leak config into tests), stdin closed and `kill_on_drop` set.
///
/// Example: `murmur_command().args(["token", "--user", "u1", "--ttl", "1h"])
/// .env("MURMUR_JWT_SECRET", JWT_SECRET).output().await`.
pub fn murmur_command() -> tokio::process::Command {
    clean_command(&murmur_bin())
}

/// `program` with inherited `MURMUR_*` variables removed, stdin closed, `kill_on_drop`.
pub(crate) fn clean_command(program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MURMUR_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Finds `name` on `$PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `<temp>/murmur-tests`, created on demand: where node and redis logs go.
pub fn log_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("murmur-tests");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create log directory {}: {e}", dir.display()));
    dir
}

/// Opens (appending) a log file and returns two handles to it, for a child's stdout and
/// stderr.
pub(crate) fn log_stdio(path: &Path) -> (Stdio, Stdio) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", path.display()));
    let second = file
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot duplicate log file handle {}: {e}", path.display()));
    (Stdio::from(file), Stdio::from(second))
}

/// The last `n` lines of a (log) file; a note instead if it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The first 8 hex digits of a fresh UUID v4.
pub(crate) fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_last_lines() {
        let path = log_dir().join(format!("tail-test-{}.log", short_id()));
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
        std::fs::remove_file(&path).unwrap();
        assert!(tail(&path, 2).starts_with("<cannot read"));
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-binary-4711").is_none());
    }
}
