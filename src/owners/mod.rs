//! Owners: the customers keys belong to, as records. An owner's `rate_limits`
//! are shared by all its keys (counted in the same atomic step as the key's
//! own windows), its `route_limits` replace route caps for its keys, its
//! `metadata` is forwarded like key metadata, its `credits` are the pool its
//! keys draw on, and a disabled owner's keys are refused (`owner_disabled`).
//! The first key of an owner that does not exist yet creates it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credits::{CreditState, CreditsInput, CreditsView};
use crate::keys::model::{present, present_object};
use crate::ratelimit::window::Limits;
use crate::store::StoreError;
use crate::store::sql::{Column, SqlRow, Value};

/// What an owner's operator chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnerSpec {
    #[schema(max_length = 200)]
    pub name: String,
    /// Flat string fields; `gateway.forward_metadata` ones go upstream for
    /// every key of the owner (a key's own value wins).
    pub metadata: BTreeMap<String, String>,
    /// A disabled owner's keys get `401 owner_disabled`.
    pub enabled: bool,
    /// Shared by all the owner's keys, on top of each key's own limits.
    pub rate_limits: Limits,
    /// Per-route caps replacing the route's `rate_limits` for the owner's
    /// keys (a key's own `route_limits` win), e.g. `{"orders-write": {"minute": 10}}`.
    pub route_limits: BTreeMap<String, Limits>,
}

impl Default for OwnerSpec {
    fn default() -> Self {
        OwnerSpec {
            name: String::new(),
            metadata: BTreeMap::new(),
            enabled: true,
            rate_limits: Limits::default(),
            route_limits: BTreeMap::new(),
        }
    }
}

impl OwnerSpec {
    pub const COLUMNS: &'static [&'static str] =
        &["name", "metadata", "enabled", "rate_limits", "route_limits"];

    pub fn values(&self) -> Result<Vec<Value>, StoreError> {
        Ok(vec![
            self.name.value()?,
            self.metadata.value()?,
            self.enabled.value()?,
            self.rate_limits.value()?,
            self.route_limits.value()?,
        ])
    }

    pub fn read(row: &impl SqlRow) -> Result<OwnerSpec, StoreError> {
        Ok(OwnerSpec {
            name: row.get("name")?,
            metadata: row.get("metadata")?,
            enabled: row.get("enabled")?,
            rate_limits: row.get("rate_limits")?,
            route_limits: row.get("route_limits")?,
        })
    }
}

/// A create (`id` required) or update body: absent fields stay; lists and
/// objects are replaced whole.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerPatch {
    /// On creation: the owner's id, the `owner_id` of its keys. Cannot be changed.
    #[serde(default, deserialize_with = "present")]
    #[schema(min_length = 1, max_length = 128)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limits: Option<Limits>,
    #[serde(default, deserialize_with = "present")]
    pub route_limits: Option<BTreeMap<String, Limits>>,
    /// The owner's credits (`null`: none).
    #[serde(default, deserialize_with = "present_object")]
    pub credits: Option<Option<CreditsInput>>,
}

impl OwnerPatch {
    pub fn apply_to(&self, spec: &mut OwnerSpec) {
        if let Some(v) = &self.name {
            spec.name = v.clone();
        }
        if let Some(v) = &self.metadata {
            spec.metadata = v.clone();
        }
        if let Some(v) = self.enabled {
            spec.enabled = v;
        }
        if let Some(v) = self.rate_limits {
            spec.rate_limits = v;
        }
        if let Some(v) = &self.route_limits {
            spec.route_limits = v.clone();
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.metadata.is_none()
            && self.enabled.is_none()
            && self.rate_limits.is_none()
            && self.route_limits.is_none()
            && self.credits.is_none()
    }
}

/// A stored owner as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OwnerRecord {
    pub id: String,
    #[serde(flatten)]
    pub spec: OwnerSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An owner as the sync loads it into the gateway's table.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerRow {
    pub id: String,
    pub spec: OwnerSpec,
    pub credits: Option<CreditState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_and_records() {
        let p: OwnerPatch =
            serde_json::from_str(r#"{"enabled": false, "credits": null}"#).expect("patch");
        assert_eq!(p.credits, Some(None));
        let mut spec = OwnerSpec::default();
        p.apply_to(&mut spec);
        assert!(!spec.enabled && !p.is_empty());
        assert!(serde_json::from_str::<OwnerPatch>(r#"{"colour": 1}"#).is_err());
        assert_eq!(
            OwnerSpec::COLUMNS.len(),
            spec.values().map_or(0, |v| v.len())
        );
    }
}
