//! Logging: `tracing` with pretty or JSON output; Pingora's `log` records are
//! bridged in. Nothing is logged per request at info level.
//!
//! Pingora's own `debug` and `trace` records can hold raw request bytes
//! (a malformed request's head, with its `X-API-Key`), so they are dropped
//! whatever `log.level` says: Pingora is capped at `info`. The level can be
//! changed while running ([`set_level`], used by reloads).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

static HANDLE: OnceLock<FilterHandle> = OnceLock::new();

/// Pingora's records above `info` are never shown (they may carry secrets).
fn allowed(m: &Metadata<'_>) -> bool {
    !(m.target().starts_with("pingora") && *m.level() > Level::INFO)
}

#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error("log.level {0:?} is not a valid level or filter")]
    Invalid(String),
    #[error("logging is not set up in this process")]
    NotInstalled,
}

/// Caps the `log` bridge at the most verbose level the filter lets through,
/// so that Pingora's per-request debug calls stop at `log`'s static check.
fn cap_log_bridge(filter: &EnvFilter) {
    let max = filter
        .max_level_hint()
        .map_or(tracing_log::log::LevelFilter::Trace, |l| {
            tracing_log::AsLog::as_log(&l)
        });
    tracing_log::log::set_max_level(max.min(tracing_log::log::LevelFilter::Trace));
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_log::LogTracer::init();
    cap_log_bridge(&filter);
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let output = match cfg.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(FilterFn::new(allowed))
            .boxed(),
        LogFormat::Pretty => fmt.compact().with_filter(FilterFn::new(allowed)).boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = HANDLE.set(handle);
    }
}

/// Changes the level (`log.level` syntax) of the running process.
pub fn set_level(level: &str) -> Result<(), LevelError> {
    let filter = EnvFilter::try_new(level).map_err(|_| LevelError::Invalid(level.to_owned()))?;
    let handle = HANDLE.get().ok_or(LevelError::NotInstalled)?;
    cap_log_bridge(&filter);
    handle.reload(filter).map_err(|_| LevelError::NotInstalled)
}
