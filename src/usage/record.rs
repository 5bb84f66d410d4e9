//! One usage record per proxied or rejected request (CONTRACT §7).

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::credits::ChargedTo;
use crate::outcome::Outcome;

/// Built on the request path (cheap: the strings are moved or shared), written
/// in batches off it. Never holds the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Server-generated, time-ordered; writes are idempotent by it.
    pub id: Uuid,
    pub request_id: String,
    /// Unix milliseconds.
    pub ts_ms: i64,
    pub key_id: Option<Uuid>,
    pub owner_id: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    pub method: String,
    pub status: u16,
    pub outcome: Outcome,
    pub latency_us: u64,
    pub upstream_latency_us: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: Option<IpAddr>,
    /// Made with a rotated key during its grace period.
    #[serde(default)]
    pub deprecated_key: bool,
    /// Credits the request cost (the ledger's debit).
    #[serde(default)]
    pub credits: i64,
    /// The balance they were debited from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged_to: Option<ChargedTo>,
}
