//! Key writes and reads. Every write runs in a [`Dialect::write`] transaction:
//! read the key under the lock, decide in Rust, write, read back, append the
//! audit record, commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::append;
use super::{
    Column, Dialect, Fragments, Session, SqlRow, SqlStore, Statements, Value, assignments,
    placeholders,
};
use crate::audit::Audit;
use crate::credits::{Account, CreditOp, LedgerEntry};
use crate::keys::model::{self, KeyRecord, KeySpec, KeyState, NewKey};
use crate::store::{ConflictReason, KeyChange, KeyQuery, KeyStore, StoreError, WriteRules};

/// The key's own columns besides its spec.
const STATE_COLUMNS: &str = "k.id, k.key_hash, k.prefix, k.hint, k.lineage_id, k.revoked_at, \
     k.revoked_reason, k.created_at, k.updated_at, k.rotated_to, k.rotated_at, k.flagged_at, \
     k.flagged_reason";

/// `SELECT <a key record> FROM api_keys k ...`, without a WHERE clause.
fn select_records() -> String {
    let spec: Vec<String> = KeySpec::COLUMNS.iter().map(|c| format!("k.{c}")).collect();
    format!(
        "SELECT {STATE_COLUMNS}, {}, COALESCE(u.use_count, 0) AS use_count, u.last_used_at, \
         k.credits, cs.epoch AS credits_epoch, cs.spent AS credits_spent \
         FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id \
         LEFT JOIN credit_spent_keys cs ON cs.lineage_id = k.lineage_id",
        spec.join(", ")
    )
}

pub(super) fn select_by_id() -> String {
    format!("{} WHERE k.id = $1", select_records())
}

/// Keyset pagination with optional filters: `$1` owner, `$2` tag, `$3` after
/// id, `$4` limit, `$5` now, `$6` status.
pub(super) fn select_page(f: &Fragments) -> String {
    format!(
        "{} WHERE ($1 IS NULL OR k.owner_id = $1) AND {} AND ($3 IS NULL OR k.id > $3) \
         AND ($6 IS NULL OR (CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' \
         WHEN k.expires_at <= $5 THEN 'expired' WHEN NOT k.enabled THEN 'disabled' \
         ELSE 'active' END) = $6) ORDER BY k.id LIMIT $4",
        select_records(),
        f.has_tag
    )
}

pub(super) fn insert_sql() -> String {
    let own = "id, key_hash, prefix, hint, lineage_id, created_at, updated_at, credits";
    format!(
        "INSERT INTO api_keys ({own}, {}) VALUES ({})",
        KeySpec::COLUMNS.join(", "),
        placeholders(8 + KeySpec::COLUMNS.len())
    )
}

/// `$1` id, `$2` updated_at, then the spec's columns.
pub(super) fn update_spec_sql() -> String {
    format!(
        "UPDATE api_keys SET updated_at = $2, {} WHERE id = $1",
        assignments(KeySpec::COLUMNS, 3)
    )
}

const LIVE_KEYS_OF_OWNER: &str = "SELECT count(*) AS n FROM api_keys WHERE owner_id = $1 \
     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
const REVOKE: &str =
    "UPDATE api_keys SET revoked_at = $2, revoked_reason = $3, updated_at = $2 WHERE id = $1";
const FLAG: &str =
    "UPDATE api_keys SET flagged_at = $2, flagged_reason = $3, updated_at = $2 WHERE id = $1";
const MARK_ROTATED: &str = "UPDATE api_keys SET rotated_to = $2, rotated_at = $3, updated_at = $3, \
     expires_at = $4 WHERE id = $1";
const INSERT_USAGE_ROW: &str = "INSERT INTO api_key_usage (key_id) VALUES ($1)";
const DELETE_KEY: &str = "DELETE FROM api_keys WHERE id = $1";
/// Erasure: a deleted key's usage goes with it.
const DELETE_USAGE: [&str; 2] = [
    "DELETE FROM usage_events WHERE key_id = $1",
    "DELETE FROM usage_hourly WHERE key_id = $1",
];

/// Reads a key record; `now` derives its status.
pub(super) fn record(row: &impl SqlRow, now: DateTime<Utc>) -> Result<KeyRecord, StoreError> {
    let spec = KeySpec::read(row)?;
    let state = KeyState {
        revoked_at: row.get("revoked_at")?,
        revoked_reason: row.get("revoked_reason")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        rotated_to: row.get("rotated_to")?,
        rotated_at: row.get("rotated_at")?,
        flagged_at: row.get("flagged_at")?,
        flagged_reason: row.get("flagged_reason")?,
    };
    Ok(KeyRecord {
        id: row.get("id")?,
        prefix: row.get("prefix")?,
        hint: row.get("hint")?,
        status: model::status(state.revoked_at.is_some(), &spec, now),
        spec,
        state,
        last_used_at: row.get("last_used_at")?,
        use_count: row.get("use_count")?,
        lineage_id: row.get("lineage_id")?,
        credits: super::credits::view(row, now)?,
    })
}

async fn fetch<S: Session>(
    sql: &Statements,
    s: &mut S,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<KeyRecord, StoreError> {
    let row = s
        .fetch_optional(&sql.key_by_id, vec![Value::Uuid(Some(id))])
        .await?
        .ok_or(StoreError::NotFound(id))?;
    record(&row, now)
}

async fn insert_row<S: Session>(sql: &Statements, s: &mut S, k: &NewKey) -> Result<(), StoreError> {
    let created = Value::Time(Some(k.created_at));
    let mut args = vec![
        Value::Uuid(Some(k.id)),
        Value::Bytes(Some(k.hash.0.to_vec())),
        Value::Text(Some(k.prefix.clone())),
        Value::Text(Some(k.hint.clone())),
        Value::Uuid(Some(k.lineage_id)),
        created.clone(),
        created,
        k.credits.value()?,
    ];
    args.extend(k.spec.values()?);
    s.execute(&sql.insert_key, args).await?;
    s.execute(INSERT_USAGE_ROW, vec![Value::Uuid(Some(k.id))])
        .await?;
    Ok(())
}

/// The audit record's `changes`: the fields that differ from `before` (all of
/// them for a new key), without the ones every write touches.
fn audit_changes(
    before: Option<&KeyRecord>,
    after: &KeyRecord,
) -> Result<serde_json::Value, StoreError> {
    const IGNORE: &[&str] = &["updated_at", "status", "use_count", "last_used_at"];
    let json = |r: &KeyRecord| serde_json::to_value(r).map_err(StoreError::Encode);
    let before = before.map_or_else(|| Ok(serde_json::json!({})), json)?;
    Ok(crate::audit::chain::diff(&before, &json(after)?, IGNORE))
}

fn conflict(id: Uuid, reason: ConflictReason, what: &'static str) -> StoreError {
    StoreError::Conflict { id, reason, what }
}

/// Whether `change` may apply to `before`: `Ok(false)` when it changes
/// nothing (revoking a revoked key, flagging a flagged or revoked one), a
/// conflict when it may not (a revoked key is immutable).
fn change_allowed(before: &KeyRecord, change: &KeyChange) -> Result<bool, StoreError> {
    match change {
        KeyChange::Flag { .. } if before.state.flagged_at.is_some() => Ok(false),
        _ if before.state.revoked_at.is_none() => Ok(true),
        KeyChange::Revoke { .. } | KeyChange::Flag { .. } => Ok(false),
        KeyChange::Patch(_) | KeyChange::Credits(_) => Err(conflict(
            before.id,
            ConflictReason::Revoked,
            "a revoked key cannot be changed",
        )),
    }
}

/// Whether a key may be rotated now.
fn rotation_allowed(old: &KeyRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    let refuse = |reason, what| Err(conflict(old.id, reason, what));
    if old.state.revoked_at.is_some() {
        return refuse(ConflictReason::Revoked, "a revoked key cannot be rotated");
    }
    if old.spec.expires_at.is_some_and(|t| t <= now) {
        return refuse(ConflictReason::Expired, "an expired key cannot be rotated");
    }
    if old.state.rotated_to.is_some() {
        return refuse(
            ConflictReason::Rotated,
            "it was already rotated; rotate its successor instead",
        );
    }
    Ok(())
}

#[async_trait]
impl<D: Dialect> KeyStore for SqlStore<D> {
    async fn insert_key(
        &self,
        key: &NewKey,
        rules: WriteRules,
        audit: Audit<'_>,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.d.write().await?;
        let owner = Value::Text(Some(key.spec.owner_id.clone()));
        let live: i64 = match tx
            .fetch_optional(
                LIVE_KEYS_OF_OWNER,
                vec![owner, Value::Time(Some(key.created_at))],
            )
            .await?
        {
            Some(row) => row.get("n")?,
            None => 0,
        };
        if live >= i64::from(rules.max_per_owner) {
            return Err(StoreError::OwnerLimit {
                owner: key.spec.owner_id.clone(),
                max: rules.max_per_owner,
            });
        }
        super::owners::implicit_owner(&mut tx, &key.spec.owner_id, key.created_at, audit).await?;
        insert_row(&self.sql, &mut tx, key).await?;
        if let Some(c) = &key.credits {
            let entry = LedgerEntry {
                kind: "set",
                amount: c.base,
            };
            let account = Account::Key(key.lineage_id);
            super::credits::ledger(&mut tx, &account, entry, key.created_at, audit.actor).await?;
        }
        let record = fetch(&self.sql, &mut tx, key.id, key.created_at).await?;
        let draft = audit.draft(Some(key.id), audit_changes(None, &record)?);
        append(&mut tx, audit, draft, key.created_at).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn change_key(
        &self,
        id: Uuid,
        change: &KeyChange,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.d.write().await?;
        let before = fetch(&self.sql, &mut tx, id, now).await?;
        if !change_allowed(&before, change)? {
            return Ok(before);
        }
        let id_value = Value::Uuid(Some(id));
        match change {
            KeyChange::Patch(patch) => {
                let mut spec = before.spec.clone();
                patch.as_ref().clone().apply_to(&mut spec);
                let mut args = vec![id_value, Value::Time(Some(now))];
                args.extend(spec.values()?);
                tx.execute(&self.sql.update_spec, args).await?;
                if let Some(input) = &patch.credits {
                    let op = CreditOp::Configure(input.clone());
                    super::credits::change_key_credits(&mut tx, &before, &op, now, audit.actor)
                        .await?;
                }
            }
            KeyChange::Credits(op) => {
                super::credits::change_key_credits(&mut tx, &before, op, now, audit.actor).await?;
            }
            KeyChange::Revoke { reason } => {
                let args = vec![
                    id_value,
                    Value::Time(Some(now)),
                    Value::Text(reason.clone()),
                ];
                tx.execute(REVOKE, args).await?;
            }
            KeyChange::Flag { reason } => {
                let args = vec![
                    id_value,
                    Value::Time(Some(now)),
                    Value::Text(Some(reason.clone())),
                ];
                tx.execute(FLAG, args).await?;
            }
        }
        let after = fetch(&self.sql, &mut tx, id, now).await?;
        let draft = audit.draft(Some(id), audit_changes(Some(&before), &after)?);
        append(&mut tx, audit, draft, now).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn rotate_key(
        &self,
        id: Uuid,
        new: &NewKey,
        grace_until: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(KeyRecord, KeyRecord), StoreError> {
        let now = new.created_at;
        let mut tx = self.d.write().await?;
        let old = fetch(&self.sql, &mut tx, id, now).await?;
        rotation_allowed(&old, now)?;
        // The successor: a new id and secret, the old key's spec (read under
        // the lock), prefix and rate-limit lineage.
        let successor = NewKey {
            prefix: old.prefix.clone(),
            lineage_id: old.lineage_id,
            spec: old.spec.clone(),
            credits: super::credits::key_state(&mut tx, id).await?,
            ..new.clone()
        };
        insert_row(&self.sql, &mut tx, &successor).await?;
        let sunset = old
            .spec
            .expires_at
            .map_or(grace_until, |t| t.min(grace_until));
        let args = vec![
            Value::Uuid(Some(id)),
            Value::Uuid(Some(successor.id)),
            Value::Time(Some(now)),
            Value::Time(Some(sunset)),
        ];
        tx.execute(MARK_ROTATED, args).await?;
        let previous = fetch(&self.sql, &mut tx, id, now).await?;
        let created = fetch(&self.sql, &mut tx, successor.id, now).await?;
        let rotated = audit.draft(Some(id), audit_changes(Some(&old), &previous)?);
        append(&mut tx, audit, rotated, now).await?;
        let created_draft = audit
            .as_action("key.create")
            .draft(Some(created.id), audit_changes(None, &created)?);
        append(&mut tx, audit.quiet(), created_draft, now).await?;
        tx.commit().await?;
        Ok((created, previous))
    }

    async fn delete_key(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.d.write().await?;
        let id_value = || vec![Value::Uuid(Some(id))];
        let lineage = fetch(&self.sql, &mut tx, id, now).await?.lineage_id;
        // Before the delete: the key.deleted event reads the key's owner and name.
        let draft = audit.draft(Some(id), serde_json::Value::Null);
        append(&mut tx, audit, draft, now).await?;
        if tx.execute(DELETE_KEY, id_value()).await? == 0 {
            return Err(StoreError::NotFound(id));
        }
        for sql in DELETE_USAGE {
            tx.execute(sql, id_value()).await?;
        }
        super::credits::erase_key_lineage(&mut tx, lineage).await?;
        tx.commit().await
    }

    async fn get_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        let mut s = self.d.conn().await?;
        let row = s
            .fetch_optional(&self.sql.key_by_id, vec![Value::Uuid(Some(id))])
            .await?;
        row.map(|r| record(&r, now)).transpose()
    }

    async fn list_keys(
        &self,
        q: &KeyQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let mut s = self.d.conn().await?;
        let args = vec![
            Value::Text(q.owner_id.clone()),
            Value::Text(q.tag.clone()),
            Value::Uuid(q.after),
            Value::Int(Some(i64::from(q.limit))),
            Value::Time(Some(now)),
            Value::Text(q.status.map(|s| s.as_str().to_owned())),
        ];
        let rows = s.fetch_all(&self.sql.key_page, args).await?;
        rows.iter().map(|r| record(r, now)).collect()
    }
}
