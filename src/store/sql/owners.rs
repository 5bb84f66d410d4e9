//! Owner writes and reads, in [`Dialect::write`] transactions like key
//! writes (so owner changes are numbered in the same change log), each with
//! its audit record. Owners are named by their id in the audit `changes`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::audit::append;
use super::{
    Column, Dialect, Session, SqlRow, SqlStore, Statements, Value, assignments, placeholders,
};
use crate::audit::Audit;
use crate::credits::{Account, CreditOp, CreditState};
use crate::owners::{OwnerPatch, OwnerRecord, OwnerSpec};
use crate::store::{OwnerChange, OwnerQuery, OwnerStore, StoreError};

fn select_records() -> String {
    let spec: Vec<String> = OwnerSpec::COLUMNS
        .iter()
        .map(|c| format!("o.{c}"))
        .collect();
    format!(
        "SELECT o.id, o.created_at, o.updated_at, o.credits, {}, cs.epoch AS credits_epoch, \
         cs.spent AS credits_spent FROM owners o \
         LEFT JOIN credit_spent_owners cs ON cs.owner_id = o.id",
        spec.join(", ")
    )
}

pub(super) fn select_by_id() -> String {
    format!("{} WHERE o.id = $1", select_records())
}

/// `$1` after id (or NULL), `$2` limit.
pub(super) fn select_page() -> String {
    format!(
        "{} WHERE ($1 IS NULL OR o.id > $1) ORDER BY o.id LIMIT $2",
        select_records()
    )
}

pub(super) fn insert_sql() -> String {
    format!(
        "INSERT INTO owners (id, created_at, updated_at, credits, {}) VALUES ({})",
        OwnerSpec::COLUMNS.join(", "),
        placeholders(4 + OwnerSpec::COLUMNS.len())
    )
}

/// `$1` id, `$2` updated_at, then the spec's columns.
pub(super) fn update_sql() -> String {
    format!(
        "UPDATE owners SET updated_at = $2, {} WHERE id = $1",
        assignments(OwnerSpec::COLUMNS, 3)
    )
}

const OWNER_CREDITS: &str = "SELECT credits FROM owners WHERE id = $1";
const SET_CREDITS: &str = "UPDATE owners SET credits = $2, updated_at = $3 WHERE id = $1";
const KEYS_OF_OWNER: &str = "SELECT count(*) AS n FROM api_keys WHERE owner_id = $1";
const DELETE: &str = "DELETE FROM owners WHERE id = $1";

fn record(row: &impl SqlRow, now: DateTime<Utc>) -> Result<OwnerRecord, StoreError> {
    Ok(OwnerRecord {
        id: row.get("id")?,
        spec: OwnerSpec::read(row)?,
        credits: super::credits::view(row, now)?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

fn text(id: &str) -> Value {
    Value::Text(Some(id.to_owned()))
}

async fn fetch<S: Session>(
    sql: &Statements,
    s: &mut S,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<OwnerRecord>, StoreError> {
    let row = s.fetch_optional(&sql.owner_by_id, vec![text(id)]).await?;
    row.map(|r| record(&r, now)).transpose()
}

async fn existing<S: Session>(
    sql: &Statements,
    s: &mut S,
    id: &str,
    now: DateTime<Utc>,
) -> Result<OwnerRecord, StoreError> {
    fetch(sql, s, id, now)
        .await?
        .ok_or_else(|| StoreError::OwnerNotFound(id.to_owned()))
}

/// The audit `changes`: the owner's id and the fields that differ.
fn audit_changes(
    id: &str,
    before: Option<&OwnerRecord>,
    after: Option<&OwnerRecord>,
) -> Result<serde_json::Value, StoreError> {
    let json = |r: Option<&OwnerRecord>| {
        r.map_or(Ok(serde_json::json!({})), |r| {
            serde_json::to_value(r).map_err(StoreError::Encode)
        })
    };
    let mut diff = crate::audit::chain::diff(&json(before)?, &json(after)?, &["updated_at"]);
    if let Some(m) = diff.as_object_mut() {
        m.insert("owner_id".into(), serde_json::json!(id));
    }
    Ok(diff)
}

/// Applies a credit change to an owner's stored state.
async fn change_credits<S: Session>(
    tx: &mut S,
    id: &str,
    op: &CreditOp,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let state: Option<CreditState> = match tx.fetch_optional(OWNER_CREDITS, vec![text(id)]).await? {
        Some(r) => r.get("credits")?,
        None => return Err(StoreError::OwnerNotFound(id.to_owned())),
    };
    let account = Account::Owner(id.into());
    if let Some(after) = super::credits::change(tx, &account, state, op, now, actor).await? {
        let args = vec![text(id), after.value()?, Value::Time(Some(now))];
        tx.execute(SET_CREDITS, args).await?;
    }
    Ok(())
}

/// The first key of an owner creates it.
const IMPLICIT_OWNER: &str = "INSERT INTO owners (id, created_at, updated_at) VALUES ($1, $2, $2) \
     ON CONFLICT (id) DO NOTHING";

/// Creates the key's owner if it does not exist yet (audited as such).
pub(super) async fn implicit_owner<S: Session>(
    tx: &mut S,
    owner: &str,
    now: DateTime<Utc>,
    audit: Audit<'_>,
) -> Result<(), StoreError> {
    let args = vec![Value::Text(Some(owner.to_owned())), Value::Time(Some(now))];
    if tx.execute(IMPLICIT_OWNER, args).await? == 1 {
        let changes = serde_json::json!({"owner_id": owner, "implicit": true});
        let draft = audit.as_action("owner.create").draft(None, changes);
        append(tx, audit, draft, now).await?;
    }
    Ok(())
}

#[async_trait]
impl<D: Dialect> OwnerStore for SqlStore<D> {
    async fn insert_owner(
        &self,
        patch: &OwnerPatch,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<OwnerRecord, StoreError> {
        let id = patch.id.clone().unwrap_or_default();
        let mut tx = self.d.write().await?;
        if fetch(&self.sql, &mut tx, &id, now).await?.is_some() {
            return Err(StoreError::OwnerExists(id));
        }
        let mut spec = OwnerSpec::default();
        patch.apply_to(&mut spec);
        let t = Value::Time(Some(now));
        let mut args = vec![text(&id), t.clone(), t, Value::Json(None)];
        args.extend(spec.values()?);
        tx.execute(&self.sql.insert_owner, args).await?;
        if let Some(input) = &patch.credits {
            let op = CreditOp::Configure(input.clone());
            change_credits(&mut tx, &id, &op, now, audit.actor).await?;
        }
        let after = existing(&self.sql, &mut tx, &id, now).await?;
        let draft = audit.draft(None, audit_changes(&id, None, Some(&after))?);
        append(&mut tx, audit, draft, now).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn change_owner(
        &self,
        id: &str,
        change: &OwnerChange,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<OwnerRecord, StoreError> {
        let mut tx = self.d.write().await?;
        let before = existing(&self.sql, &mut tx, id, now).await?;
        let op = match change {
            OwnerChange::Patch(patch) => {
                let mut spec = before.spec.clone();
                patch.apply_to(&mut spec);
                let mut args = vec![text(id), Value::Time(Some(now))];
                args.extend(spec.values()?);
                tx.execute(&self.sql.update_owner, args).await?;
                patch.credits.clone().map(CreditOp::Configure)
            }
            OwnerChange::Credits(op) => Some(op.clone()),
        };
        if let Some(op) = op {
            change_credits(&mut tx, id, &op, now, audit.actor).await?;
        }
        let after = existing(&self.sql, &mut tx, id, now).await?;
        let draft = audit.draft(None, audit_changes(id, Some(&before), Some(&after))?);
        append(&mut tx, audit, draft, now).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn delete_owner(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.d.write().await?;
        let keys: i64 = match tx.fetch_optional(KEYS_OF_OWNER, vec![text(id)]).await? {
            Some(r) => r.get("n")?,
            None => 0,
        };
        if keys > 0 {
            return Err(StoreError::OwnerHasKeys {
                owner: id.to_owned(),
                keys,
            });
        }
        if tx.execute(DELETE, vec![text(id)]).await? == 0 {
            return Err(StoreError::OwnerNotFound(id.to_owned()));
        }
        for sql in super::credits::ERASE_OWNER {
            tx.execute(sql, vec![text(id)]).await?;
        }
        let draft = audit.draft(None, serde_json::json!({"owner_id": id}));
        append(&mut tx, audit, draft, now).await?;
        tx.commit().await
    }

    async fn get_owner(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OwnerRecord>, StoreError> {
        let mut s = self.d.conn().await?;
        fetch(&self.sql, &mut s, id, now).await
    }

    async fn list_owners(
        &self,
        q: &OwnerQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<OwnerRecord>, StoreError> {
        let mut s = self.d.conn().await?;
        let args = vec![
            Value::Text(q.after.clone()),
            Value::Int(Some(i64::from(q.limit))),
        ];
        let rows = s.fetch_all(&self.sql.owner_page, args).await?;
        rows.iter().map(|r| record(r, now)).collect()
    }
}
