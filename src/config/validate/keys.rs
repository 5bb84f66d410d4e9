//! `[keys]`: how keys are minted and how often the key table resyncs.

use std::time::Duration;

use super::checker::Checker;
use crate::auth::key;
use crate::config::KeysConfig;
use crate::config::file::KeysSection;

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            default_prefix: "kg".into(),
            max_per_owner: 100,
            sync_interval: Duration::from_secs(5),
        }
    }
}

impl Checker {
    pub(super) fn keys(&mut self, k: KeysSection) -> KeysConfig {
        let d = KeysConfig::default();
        let default_prefix = k.default_prefix.unwrap_or(d.default_prefix);
        if key::validate_prefix(&default_prefix).is_err() {
            self.problem(
                "keys.default_prefix",
                format!("{default_prefix:?} must be 1-24 chars: [a-z][a-z0-9]*(_[a-z0-9]+)*"),
            );
        }
        KeysConfig {
            default_prefix,
            max_per_owner: self.at_least_one(
                "keys.max_per_owner",
                k.max_per_owner,
                d.max_per_owner,
            ),
            sync_interval: self.duration("keys.sync_interval", k.sync_interval, d.sync_interval),
        }
    }
}
