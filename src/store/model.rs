//! Records as the store keeps them and the API shows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ratelimit::window::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        [
            KeyStatus::Active,
            KeyStatus::Disabled,
            KeyStatus::Expired,
            KeyStatus::Revoked,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A key's stored fields (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: Uuid,
    pub owner_id: String,
    pub name: String,
    pub prefix: String,
    pub hint: String,
    pub scopes: Vec<String>,
    #[schema(value_type = Vec<String>)]
    pub allowed_cidrs: Vec<IpNetwork>,
    pub allowed_routes: Vec<String>,
    pub rate_limits: Limits,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub use_count: i64,
    /// Derived from the fields above at read time.
    pub status: KeyStatus,
    /// Set on a key that was rotated: the key that replaced it.
    pub rotated_to: Option<Uuid>,
    pub rotated_at: Option<DateTime<Utc>>,
    /// Shared by a key and every key rotated from it (rate-limit identity).
    pub lineage_id: Uuid,
}

impl KeyRecord {
    pub fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else if !self.enabled {
            KeyStatus::Disabled
        } else {
            KeyStatus::Active
        }
    }
}
