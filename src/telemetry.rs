//! Logging: `tracing` with pretty or JSON output; Pingora's `log` records are
//! bridged in. Nothing is logged per request at info level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Pingora logs through the `log` crate. Cap the bridge at the most verbose
    // level the filter can let through, so that Pingora's per-request debug
    // calls stop at `log`'s static check instead of reaching the subscriber.
    let max = filter
        .max_level_hint()
        .map_or(tracing_log::log::LevelFilter::Trace, |l| {
            tracing_log::AsLog::as_log(&l)
        });
    let _ = tracing_log::LogTracer::builder().with_max_level(max).init();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
