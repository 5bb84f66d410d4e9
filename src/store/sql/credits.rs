//! The credits ledger: top-ups and sets (`credit_ledger`, written with the
//! change that makes them), and the debits recorded so far in each account's
//! epoch (`credit_spent_*`, added to by the usage writer from usage records).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Column, Dialect, Session, SqlRow, SqlStore, Value};
use crate::credits::{self, Account, CreditOp, CreditState, CreditsView, LedgerEntry};
use crate::keys::model::KeyRecord;
use crate::store::{CreditLedger, StoreError};
use uuid::Uuid;

const KEY_SPENT: &str = "SELECT epoch, spent FROM credit_spent_keys WHERE lineage_id = $1";
const OWNER_SPENT: &str = "SELECT epoch, spent FROM credit_spent_owners WHERE owner_id = $1";
const LEDGER: &str = "INSERT INTO credit_ledger (at, key_lineage, owner_id, kind, amount, actor) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Adds `$3` spent in epoch `$2`: a newer epoch starts over, an older one is
/// no longer counted.
macro_rules! add_spent_sql {
    ($table:literal, $id:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS c (",
            $id,
            ", epoch, spent) VALUES ($1, $2, $3) ON CONFLICT (",
            $id,
            ") DO UPDATE SET spent = CASE WHEN excluded.epoch > c.epoch THEN excluded.spent \
             WHEN excluded.epoch = c.epoch THEN c.spent + excluded.spent ELSE c.spent END, \
             epoch = CASE WHEN excluded.epoch > c.epoch THEN excluded.epoch ELSE c.epoch END"
        )
    };
}
const ADD_KEY_SPENT: &str = add_spent_sql!("credit_spent_keys", "lineage_id");
const ADD_OWNER_SPENT: &str = add_spent_sql!("credit_spent_owners", "owner_id");

fn account_arg(a: &Account) -> (&'static str, Value) {
    match a {
        Account::Key(lineage) => (KEY_SPENT, Value::Uuid(Some(*lineage))),
        Account::Owner(id) => (OWNER_SPENT, Value::Text(Some(id.to_string()))),
    }
}

/// The (epoch, spent) recorded for an account.
pub(super) async fn recorded<S: Session>(
    s: &mut S,
    account: &Account,
) -> Result<(i64, i64), StoreError> {
    let (sql, id) = account_arg(account);
    match s.fetch_optional(sql, vec![id]).await? {
        Some(r) => Ok((r.get("epoch")?, r.get("spent")?)),
        None => Ok((0, 0)),
    }
}

/// Adds debits of one account in one epoch (from usage records).
pub(super) async fn add_spent<S: Session>(
    s: &mut S,
    account: &Account,
    epoch: i64,
    credits: i64,
) -> Result<(), StoreError> {
    let (sql, id) = match account {
        Account::Key(l) => (ADD_KEY_SPENT, Value::Uuid(Some(*l))),
        Account::Owner(o) => (ADD_OWNER_SPENT, Value::Text(Some(o.to_string()))),
    };
    let args = vec![id, Value::Int(Some(epoch)), Value::Int(Some(credits))];
    s.execute(sql, args).await?;
    Ok(())
}

/// Applies `op` to an account's stored state under the caller's write lock;
/// writes the ledger row. `Ok(None)`: nothing changed.
pub(super) async fn change<S: Session>(
    s: &mut S,
    account: &Account,
    state: Option<CreditState>,
    op: &CreditOp,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<Option<CreditState>>, StoreError> {
    let recorded = recorded(s, account).await?;
    let (after, entry) = credits::apply(state, op, recorded, now.timestamp_millis());
    let Some(entry) = entry else { return Ok(None) };
    ledger(s, account, entry, now, actor).await?;
    Ok(Some(after))
}

/// Appends a top-up, set or clear to the ledger.
pub(super) async fn ledger<S: Session>(
    s: &mut S,
    account: &Account,
    entry: LedgerEntry,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let (lineage, owner) = match account {
        Account::Key(l) => (Some(*l), None),
        Account::Owner(o) => (None, Some(o.to_string())),
    };
    let args = vec![
        Value::Time(Some(now)),
        Value::Uuid(lineage),
        Value::Text(owner),
        Value::Text(Some(entry.kind.to_owned())),
        Value::Int(Some(entry.amount)),
        Value::Text(Some(actor.to_owned())),
    ];
    s.execute(LEDGER, args).await?;
    Ok(())
}

/// The API's view of a stored state and the recorded spending (`credits`,
/// `credits_epoch`, `credits_spent` columns of a record query).
pub(super) fn view(
    row: &impl SqlRow,
    now: DateTime<Utc>,
) -> Result<Option<CreditsView>, StoreError> {
    let state: Option<CreditState> = row.get("credits")?;
    let Some(state) = state else { return Ok(None) };
    let epoch: Option<i64> = row.get("credits_epoch")?;
    let spent: Option<i64> = row.get("credits_spent")?;
    Ok(Some(CreditsView {
        remaining: state.remaining(
            now.timestamp_millis(),
            epoch.unwrap_or(0),
            spent.unwrap_or(0),
        ),
        refill: state.refill,
    }))
}

const KEY_CREDITS: &str = "SELECT credits FROM api_keys WHERE id = $1";
/// A key's credits belong to its lineage: every rotation shares them.
const SET_KEY_CREDITS: &str =
    "UPDATE api_keys SET credits = $2, updated_at = $3 WHERE lineage_id = $1";

/// A key's stored credit state (its lineage's).
pub(super) async fn key_state<S: Session>(
    tx: &mut S,
    id: Uuid,
) -> Result<Option<CreditState>, StoreError> {
    match tx
        .fetch_optional(KEY_CREDITS, vec![Value::Uuid(Some(id))])
        .await?
    {
        Some(r) => r.get("credits"),
        None => Err(StoreError::NotFound(id)),
    }
}

/// Applies a credit change to the key's lineage.
pub(super) async fn change_key_credits<S: Session>(
    tx: &mut S,
    key: &KeyRecord,
    op: &CreditOp,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let state = key_state(tx, key.id).await?;
    let account = Account::Key(key.lineage_id);
    if let Some(after) = change(tx, &account, state, op, now, actor).await? {
        let args = vec![
            Value::Uuid(Some(key.lineage_id)),
            after.value()?,
            Value::Time(Some(now)),
        ];
        tx.execute(SET_KEY_CREDITS, args).await?;
    }
    Ok(())
}

/// Erasure: once no key of a lineage is left, its ledger and spending go too.
const ERASE_LINEAGE: [&str; 2] = [
    "DELETE FROM credit_spent_keys WHERE lineage_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM api_keys WHERE lineage_id = $1)",
    "DELETE FROM credit_ledger WHERE key_lineage = $1 \
     AND NOT EXISTS (SELECT 1 FROM api_keys WHERE lineage_id = $1)",
];
/// Erasure of an owner's credits.
pub(super) const ERASE_OWNER: [&str; 2] = [
    "DELETE FROM credit_spent_owners WHERE owner_id = $1",
    "DELETE FROM credit_ledger WHERE owner_id = $1",
];

pub(super) async fn erase_key_lineage<S: Session>(
    s: &mut S,
    lineage: Uuid,
) -> Result<(), StoreError> {
    for sql in ERASE_LINEAGE {
        s.execute(sql, vec![Value::Uuid(Some(lineage))]).await?;
    }
    Ok(())
}

#[async_trait]
impl<D: Dialect> CreditLedger for SqlStore<D> {
    async fn recorded_spent(&self, account: &Account) -> Result<(i64, i64), StoreError> {
        let mut s = self.d.conn().await?;
        recorded(&mut s, account).await
    }
}
