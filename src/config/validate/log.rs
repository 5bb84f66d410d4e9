//! `[log]`: format and level (both may come from the environment).

use super::Env;
use super::checker::Checker;
use crate::config::file::LogSection;
use crate::config::{Lenient, LogConfig, LogFormat, env};

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: "info".into(),
        }
    }
}

impl Checker {
    pub(super) fn log(&mut self, l: LogSection, env: Env<'_>) -> LogConfig {
        let d = LogConfig::default();
        let format = env(env::LOG_FORMAT).map(Lenient::parse).or(l.format);
        let level = env(env::LOG_LEVEL).or(l.level).unwrap_or(d.level);
        let format = self.parsed("log.format", format).unwrap_or(d.format);
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.problem(
                "log.level",
                format!("{level:?} is not a valid level or filter"),
            );
        }
        LogConfig { format, level }
    }
}
