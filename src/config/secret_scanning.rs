//! The `[secret_scanning]` section, validated (its defaults are in
//! `validate/secret_scanning.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Choice;

/// `[secret_scanning]`: GitHub's secret-scanning partner endpoint, on the
/// proxy listener (see [`crate::leak`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretScanningConfig {
    pub enabled: bool,
    /// The path GitHub posts reports to (answered before routing).
    pub path: String,
    /// GitHub's signing keys: `{"public_keys": [{"key_identifier", "key", "is_current"}]}`.
    pub public_keys_url: String,
    pub action: LeakAction,
    /// CAs trusted for `public_keys_url` besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// The largest report accepted, in bytes.
    pub max_body: usize,
    /// The shortest time between two fetches of the keys on an unknown identifier.
    pub keys_refetch_min_interval: Duration,
}

/// What happens to a key GitHub reports leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakAction {
    /// Revoked with reason `leaked: <url>`.
    #[default]
    Revoke,
    /// Marked (`flagged_at`, `flagged_reason`); the key keeps working.
    Flag,
}

impl Choice for LeakAction {}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, LeakAction};

    const ROUTE: &str = "[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:9000\"]\n\
        [[route]]\nname = \"r\"\nupstream = \"u\"\n";

    fn load(section: &str) -> Result<Config, ConfigError> {
        let text = format!("[secret_scanning]\n{section}\n{ROUTE}");
        Config::from_toml(&text, Path::new("t.toml"), &|_| None)
    }

    #[test]
    fn off_by_default_and_every_problem_named() {
        let c = load("").expect("defaults");
        let s = &c.secret_scanning;
        assert!(!s.enabled);
        assert_eq!(s.path, "/.well-known/keygate/secret-scanning");
        assert_eq!((s.action, s.max_body), (LeakAction::Revoke, 1 << 20));
        let c = load("enabled = true\naction = \"flag\"\nmax_body = \"64KiB\"").expect("flag");
        assert_eq!(c.secret_scanning.action, LeakAction::Flag);
        assert_eq!(c.secret_scanning.max_body, 64 << 10);
        let bad = "path = \"no-slash\"\npublic_keys_url = \"ftp://x\"\naction = \"burn\"\n\
            max_body = \"1TiB\"\nkeys_refetch_min_interval = \"soon\"";
        let Err(ConfigError::Invalid { problems, .. }) = load(bad) else {
            panic!("accepted");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "secret_scanning.path",
            "secret_scanning.public_keys_url",
            "secret_scanning.action",
            "secret_scanning.max_body",
            "secret_scanning.keys_refetch_min_interval",
        ] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
    }
}
