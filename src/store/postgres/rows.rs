//! Reading key rows of the postgres schema: the column lists and their decoding
//! into [`KeyRecord`] (the API's view) and [`KeyRow`] (the key table's).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::super::model::{KeyRecord, KeyStatus};
use super::super::*;
use crate::auth::hash::KeyHash;

/// Decodes a key row for the API; `now` derives the status.
pub(crate) fn decode(row: &PgRow, now: DateTime<Utc>) -> Result<KeyRecord, StoreError> {
    let g = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    Ok(KeyRecord::from_row(
        decode_row(row)?,
        row.try_get("name").map_err(g)?,
        row.try_get("prefix").map_err(g)?,
        row.try_get("hint").map_err(g)?,
        row.try_get::<Json<Vec<String>>, _>("tags").map_err(g)?.0,
        row.try_get("revoked_at").map_err(g)?,
        row.try_get("revoked_reason").map_err(g)?,
        row.try_get("created_at").map_err(g)?,
        row.try_get("updated_at").map_err(g)?,
        row.try_get("last_used_at").map_err(g)?,
        row.try_get("use_count").map_err(g)?,
        now,
    ))
}

pub(super) fn decode_row(row: &PgRow) -> Result<KeyRow, StoreError> {
    let g = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let hash: Vec<u8> = row.try_get("key_hash").map_err(g)?;
    Ok(KeyRow {
        id: row.try_get("id").map_err(g)?,
        hash: KeyHash::from_slice(&hash)
            .ok_or_else(|| StoreError::Corrupt("key hash is not 32 bytes".into()))?,
        owner_id: row.try_get("owner_id").map_err(g)?,
        scopes: row.try_get::<Json<Vec<String>>, _>("scopes").map_err(g)?.0,
        allowed_cidrs: parse_cidrs(
            &row.try_get::<Json<Vec<String>>, _>("allowed_cidrs")
                .map_err(g)?
                .0,
        )?,
        allowed_routes: row
            .try_get::<Json<Vec<String>>, _>("allowed_routes")
            .map_err(g)?
            .0,
        rate_limits: row.try_get::<Json<Limits>, _>("rate_limits").map_err(g)?.0,
        metadata: row
            .try_get::<Json<BTreeMap<String, String>>, _>("metadata")
            .map_err(g)?
            .0,
        enabled: row.try_get("enabled").map_err(g)?,
        expires_at: row.try_get("expires_at").map_err(g)?,
        revoked: row.try_get("revoked").map_err(g)?,
        rotated_to: row.try_get("rotated_to").map_err(g)?,
        rotated_at: row.try_get("rotated_at").map_err(g)?,
        lineage_id: row.try_get("lineage_id").map_err(g)?,
    })
}

pub(super) fn status_clause(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Revoked => "k.revoked_at IS NOT NULL",
        KeyStatus::Expired => "k.revoked_at IS NULL AND k.expires_at <= $5",
        KeyStatus::Disabled => {
            "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $5) AND NOT k.enabled"
        }
        KeyStatus::Active => {
            "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $5) AND k.enabled"
        }
    }
}
