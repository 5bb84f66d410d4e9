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
