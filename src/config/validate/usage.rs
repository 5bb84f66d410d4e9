//! `[usage]`: usage records, their queue, batches and disk spool.

use std::path::PathBuf;
use std::time::Duration;

use super::checker::Checker;
use crate::config::UsageConfig;
use crate::config::file::UsageSection;

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            enabled: true,
            flush_interval: Duration::from_secs(1),
            spool_dir: PathBuf::from("data/spool"),
            queue_capacity: 65_536,
            batch_size: 2_000,
            spool_max_bytes: 1 << 30,
            access_log: false,
        }
    }
}

impl Checker {
    pub(super) fn usage(&mut self, u: UsageSection) -> UsageConfig {
        let d = UsageConfig::default();
        UsageConfig {
            enabled: u.enabled.unwrap_or(d.enabled),
            flush_interval: self.duration(
                "usage.flush_interval",
                u.flush_interval,
                d.flush_interval,
            ),
            spool_dir: u.spool_dir.map_or(d.spool_dir, PathBuf::from),
            queue_capacity: self.at_least_one(
                "usage.queue_capacity",
                u.queue_capacity,
                d.queue_capacity,
            ),
            batch_size: self.at_least_one("usage.batch_size", u.batch_size, d.batch_size),
            spool_max_bytes: self.size(
                "usage.spool_max_size",
                u.spool_max_size.as_deref(),
                d.spool_max_bytes,
            ),
            access_log: u.access_log.unwrap_or(d.access_log),
        }
    }
}
