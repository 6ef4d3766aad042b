//! Logging: `tracing` with an env-filter (`MURMUR_LOG`), pretty for humans or JSON
//! (`MURMUR_LOG_FORMAT=json`) for clusters.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A bad filter falls back to `info` with a warning.
pub fn init(filter: &str, format: LogFormat) {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_target(true);
    let result = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if result.is_err() {
        eprintln!("murmur: logging was already initialised");
    }
    if let Some(e) = bad {
        tracing::warn!(filter, error = %e, "invalid MURMUR_LOG filter, using info");
    }
}
