//! `[secret_scanning]`: GitHub's secret-scanning partner endpoint.

use std::path::PathBuf;
use std::time::Duration;

use super::checker::Checker;
use crate::config::file::SecretScanningSection;
use crate::config::{LeakAction, SecretScanningConfig};

impl Default for SecretScanningConfig {
    fn default() -> Self {
        SecretScanningConfig {
            enabled: false,
            path: "/.well-known/keygate/secret-scanning".into(),
            public_keys_url: "https://api.github.com/meta/public_keys/secret_scanning".into(),
            action: LeakAction::Revoke,
            ca_file: None,
            max_body: 1 << 20,
            keys_refetch_min_interval: Duration::from_secs(60),
        }
    }
}

/// Reports larger than this are refused whatever the setting (GitHub sends
/// a few hundred tokens at most per request).
const MAX_BODY_LIMIT: u64 = 16 << 20;

impl Checker {
    pub(super) fn secret_scanning(&mut self, s: SecretScanningSection) -> SecretScanningConfig {
        let d = SecretScanningConfig::default();
        let path = s.path.unwrap_or(d.path);
        if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace)
        {
            self.problem(
                "secret_scanning.path",
                format!("{path:?} must be a path starting with \"/\", without query or spaces"),
            );
        }
        let url = s.public_keys_url.unwrap_or(d.public_keys_url);
        if crate::outbound::parse_url(&url).is_err() {
            self.problem(
                "secret_scanning.public_keys_url",
                format!("{url:?} is not an http(s) URL"),
            );
        }
        let max_body = self.size_at_most(
            "secret_scanning.max_body",
            s.max_body.as_deref(),
            d.max_body as u64,
            MAX_BODY_LIMIT,
            "at most 16MiB",
        );
        SecretScanningConfig {
            enabled: s.enabled.unwrap_or(d.enabled),
            path,
            public_keys_url: url,
            action: self
                .parsed("secret_scanning.action", s.action)
                .unwrap_or(d.action),
            ca_file: s.ca_file.map(PathBuf::from),
            max_body: usize::try_from(max_body.min(MAX_BODY_LIMIT)).unwrap_or(d.max_body),
            keys_refetch_min_interval: self.duration(
                "secret_scanning.keys_refetch_min_interval",
                s.keys_refetch_min_interval,
                d.keys_refetch_min_interval,
            ),
        }
    }
}
