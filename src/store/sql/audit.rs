//! The audit log: records are appended inside the key write's transaction
//! (whose lock orders them), each sealed onto the one before.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Dialect, Session, SqlRow, SqlStore, Value};
use crate::audit::{Audit, AuditDraft, AuditEntry};
use crate::store::{AuditLog, StoreError};

const HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const INSERT: &str = "INSERT INTO audit_log (seq, at, actor, action, key_id, changes, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const PAGE: &str = "SELECT seq, at, actor, action, key_id, changes, prev_hash, hash FROM audit_log \
     WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Seals `draft` onto the newest record and inserts it, in `tx`, with the
/// outbox rows of the webhook event it maps to (if any): a change, its audit
/// record and its event commit together or not at all.
pub(super) async fn append<S: Session>(
    tx: &mut S,
    audit: Audit<'_>,
    draft: AuditDraft,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(hooks) = audit.hooks {
        super::outbox::enqueue_audited(tx, hooks, &draft, now).await?;
    }
    let sealer = audit.sealer;
    let prev: Option<(i64, Vec<u8>)> = match tx.fetch_optional(HEAD, vec![]).await? {
        Some(r) => Some((r.get("seq")?, r.get("hash")?)),
        None => None,
    };
    let e = sealer.seal(prev.as_ref().map(|(s, h)| (*s, h.as_slice())), draft, now);
    let args = vec![
        Value::Int(Some(e.seq)),
        Value::Time(Some(e.at)),
        Value::Text(Some(e.actor)),
        Value::Text(Some(e.action)),
        Value::Uuid(e.key_id),
        Value::Text(Some(e.changes)),
        Value::Bytes(Some(e.prev_hash)),
        Value::Bytes(Some(e.hash)),
    ];
    tx.execute(INSERT, args).await?;
    Ok(())
}

fn entry(r: &impl SqlRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.get("seq")?,
        at: r.get("at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        key_id: r.get("key_id")?,
        changes: r.get("changes")?,
        prev_hash: r.get("prev_hash")?,
        hash: r.get("hash")?,
    })
}

#[async_trait]
impl<D: Dialect> AuditLog for SqlStore<D> {
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut s = self.d.conn().await?;
        let args = vec![Value::Int(Some(after)), Value::Int(Some(i64::from(limit)))];
        let rows = s.fetch_all(PAGE, args).await?;
        rows.iter().map(entry).collect()
    }
}
