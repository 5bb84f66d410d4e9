//! The key model, declared once. [`KeySpec`] is what a key's owner chooses
//! (scopes, CIDRs, limits, ...): the same value is created, patched, copied to
//! a rotation's successor, stored, shown by the API and loaded by the sync.
//! [`KeyPatch`] is its partial form, generated from the same field list, for
//! `POST`/`PATCH` bodies and CLI options. [`KeyRecord`] is a stored key: its
//! spec plus what keygate keeps about it.
//!
//! Adding a field: add it to the `key_spec!` list below (type, default, doc),
//! validate it in [`super::validate`], add the column in a migration for each
//! store, and use it. The stores bind and read the spec's columns from
//! [`KeySpec::COLUMNS`], [`KeySpec::values`] and [`KeySpec::read`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::hours::AllowedHours;
use crate::auth::hash::KeyHash;
use crate::credits::{CreditState, CreditsInput, CreditsView};
use crate::ratelimit::window::Limits;
use crate::store::StoreError;
use crate::store::sql::{Column, SqlRow, Value};

/// A field that is present in a patch, even as `null` (which clears an
/// optional field); an absent field is `None` through `#[serde(default)]`.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Like [`present`], for an optional object field: `T` only from a JSON
/// object (serde's derive would also read a struct from an array).
pub(crate) fn present_object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? {
        None => Ok(Some(None)),
        Some(m) => serde_path_to_error::deserialize(serde_json::Value::Object(m))
            .map(|t| Some(Some(t)))
            .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner()))),
    }
}

macro_rules! key_spec {
    ($(
        $(#[doc = $doc:literal])*
        $(#[schema($($schema:tt)*)])?
        $field:ident : $ty:ty = $default:expr;
    )*) => {
        /// A key's chosen fields (see the module docs).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
        pub struct KeySpec {
            $( $(#[doc = $doc])* $(#[schema($($schema)*)])? pub $field: $ty, )*
        }

        impl Default for KeySpec {
            fn default() -> Self {
                KeySpec { $( $field: $default, )* }
            }
        }

        impl KeySpec {
            /// The spec's columns, named as its fields.
            pub const COLUMNS: &'static [&'static str] = &[$( stringify!($field) ),*];

            /// The values of [`Self::COLUMNS`], in order.
            pub fn values(&self) -> Result<Vec<Value>, StoreError> {
                Ok(vec![$( Column::value(&self.$field)? ),*])
            }

            pub fn read(row: &impl SqlRow) -> Result<KeySpec, StoreError> {
                Ok(KeySpec { $( $field: Column::read(row, stringify!($field))?, )* })
            }
        }

        /// A partial [`KeySpec`]: absent fields are left as they are; lists and
        /// objects are replaced whole; `"expires_at": null` clears the expiry.
        /// Creation applies it to the defaults (`owner_id` is then required).
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct KeyPatch {
            $(
                $(#[doc = $doc])*
                #[serde(default, deserialize_with = "present")]
                $(#[schema($($schema)*)])?
                pub $field: Option<$ty>,
            )*
            /// On creation: the key prefix (default `keys.default_prefix`). Cannot be changed.
            #[serde(default)]
            pub prefix: Option<String>,
            /// Instead of `expires_at`: a duration from now, e.g. "30d".
            #[serde(default)]
            pub expires_in: Option<String>,
            /// The key's own credits (`null`: none; the owner's apply).
            #[serde(default, deserialize_with = "present_object")]
            pub credits: Option<Option<CreditsInput>>,
        }

        impl KeyPatch {
            /// Sets the fields this patch carries.
            pub fn apply_to(self, spec: &mut KeySpec) {
                $( if let Some(v) = self.$field { spec.$field = v; } )*
            }

            /// Whether it changes no field of the spec.
            pub fn is_empty(&self) -> bool {
                $( self.$field.is_none() && )* self.expires_in.is_none() && self.credits.is_none()
            }
        }

        impl From<KeySpec> for KeyPatch {
            fn from(s: KeySpec) -> KeyPatch {
                KeyPatch { $( $field: Some(s.$field), )* prefix: None, expires_in: None, credits: None }
            }
        }
    };
}

key_spec! {
    /// The customer, user or organisation the key belongs to.
    #[schema(min_length = 1, max_length = 128)]
    owner_id: String = String::new();
    name: String = String::new();
    /// `orders:read`; `orders:*` and `*` are wildcards.
    scopes: Vec<String> = Vec::new();
    /// IPv4/IPv6 networks the key may be used from; empty: any.
    #[schema(value_type = Vec<String>)]
    allowed_cidrs: Vec<IpNetwork> = Vec::new();
    /// Route names the key may use; empty: all.
    allowed_routes: Vec<String> = Vec::new();
    rate_limits: Limits = Limits::default();
    /// Per-route caps that replace the route's `rate_limits` for this key,
    /// e.g. `{"orders-write": {"minute": 10}}` (`{}` lifts the cap).
    route_limits: BTreeMap<String, Limits> = BTreeMap::new();
    /// Flat string fields; `gateway.forward_metadata` ones go upstream.
    metadata: BTreeMap<String, String> = BTreeMap::new();
    tags: Vec<String> = Vec::new();
    enabled: bool = true;
    expires_at: Option<DateTime<Utc>> = None;
    /// When the key may be used, in an IANA time zone (DST-correct); `null`:
    /// always. Outside: 403 `outside_allowed_hours`.
    #[schema(value_type = Option<AllowedHours>)]
    allowed_hours: Option<AllowedHours> = None;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub const ALL: [KeyStatus; 4] = [
        KeyStatus::Active,
        KeyStatus::Disabled,
        KeyStatus::Expired,
        KeyStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a key is and has done, apart from its spec: identity, state, history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyState {
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set on a key that was rotated: the key that replaced it.
    pub rotated_to: Option<Uuid>,
    pub rotated_at: Option<DateTime<Utc>>,
    /// Set when secret scanning reported the key leaked and the configured
    /// action is `flag`: the key still works.
    pub flagged_at: Option<DateTime<Utc>>,
    /// `leaked: <url>`, with the URL where it was found.
    pub flagged_reason: Option<String>,
}

/// A stored key as the API shows it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: Uuid,
    pub prefix: String,
    pub hint: String,
    #[serde(flatten)]
    pub spec: KeySpec,
    #[serde(flatten)]
    pub state: KeyState,
    pub last_used_at: Option<DateTime<Utc>>,
    pub use_count: i64,
    /// Derived from the fields above at read time.
    pub status: KeyStatus,
    /// Shared by a key and every key rotated from it (rate-limit identity).
    pub lineage_id: Uuid,
    /// The key's own credits (shared with its rotations); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsView>,
}

impl KeyRecord {
    pub fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        status(self.state.revoked_at.is_some(), &self.spec, now)
    }
}

/// A key's status from its state and spec at `now`.
pub fn status(revoked: bool, spec: &KeySpec, now: DateTime<Utc>) -> KeyStatus {
    if revoked {
        KeyStatus::Revoked
    } else if spec.expires_at.is_some_and(|t| t <= now) {
        KeyStatus::Expired
    } else if !spec.enabled {
        KeyStatus::Disabled
    } else {
        KeyStatus::Active
    }
}

/// A key to insert: a new secret's hash and display parts, and its spec.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: Uuid,
    pub hash: KeyHash,
    pub prefix: String,
    pub hint: String,
    /// The rate-limit identity: the key's own id, or its predecessor's lineage.
    pub lineage_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub spec: KeySpec,
    pub credits: Option<CreditState>,
}

/// A key as the sync loads it into the gateway's table.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: Uuid,
    pub hash: KeyHash,
    pub lineage_id: Uuid,
    pub revoked: bool,
    pub rotated_to: Option<Uuid>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub spec: KeySpec,
    pub credits: Option<CreditState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_sets_only_what_it_carries_and_null_clears() {
        let mut spec = KeySpec {
            owner_id: "o".into(),
            expires_at: Some(Utc::now()),
            ..KeySpec::default()
        };
        let patch: KeyPatch =
            serde_json::from_str(r#"{"name": "n", "expires_at": null}"#).expect("patch");
        assert!(!patch.is_empty());
        patch.apply_to(&mut spec);
        assert_eq!((spec.owner_id.as_str(), spec.name.as_str()), ("o", "n"));
        assert_eq!(spec.expires_at, None);
        assert!(serde_json::from_str::<KeyPatch>(r#"{"colour": 1}"#).is_err());
        assert!(KeyPatch::default().is_empty());
    }

    #[test]
    fn a_record_serializes_flat() {
        let now = Utc::now();
        let r = KeyRecord {
            id: Uuid::nil(),
            prefix: "kg".into(),
            hint: "abcd".into(),
            spec: KeySpec::default(),
            state: KeyState {
                revoked_at: None,
                revoked_reason: None,
                created_at: now,
                updated_at: now,
                rotated_to: None,
                rotated_at: None,
                flagged_at: None,
                flagged_reason: None,
            },
            last_used_at: None,
            use_count: 0,
            status: KeyStatus::Active,
            lineage_id: Uuid::nil(),
            credits: None,
        };
        let v = serde_json::to_value(&r).expect("json");
        for field in [
            "id",
            "owner_id",
            "scopes",
            "revoked_at",
            "status",
            "enabled",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        assert_eq!(
            KeySpec::COLUMNS.len(),
            KeySpec::default().values().map_or(0, |v| v.len())
        );
    }
}
