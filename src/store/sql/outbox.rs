//! The webhook outbox: rows written in a change's transaction, claimed by one
//! worker at a time with a lease, settled per attempt.
//!
//! A claim marks rows leased until a time; a worker that dies holding them
//! (SIGKILL) leaves them to the next claim once the lease has passed, so a
//! delivery is made at least once, always under the same event id.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{Dialect, Session, SqlRow, SqlStore, Value};
use crate::audit::AuditDraft;
use crate::store::{StoreError, WebhookStore};
use crate::webhooks::Subscriptions;
use crate::webhooks::events::{self, EventType};
use crate::webhooks::model::{
    Claimed, Delivery, DeliveryQuery, DeliveryStatus, ExpiringKey, NewEvent, Settle,
};

const INSERT: &str = "INSERT INTO webhook_deliveries \
     (id, event_id, endpoint, event_type, payload, created_at, next_at, since) \
     VALUES ($1, $2, $3, $4, $5, $6, $6, $6) ON CONFLICT (event_id, endpoint) DO NOTHING";
const KEY_SUBJECT: &str = "SELECT owner_id, name FROM api_keys WHERE id = $1";
const COLUMNS: &str = "id, event_id, endpoint, event_type, payload, created_at, status, attempts, \
     next_at, delivered_at, last_status, last_error";
const DELIVERED: &str = "UPDATE webhook_deliveries SET status = 'delivered', \
     attempts = attempts + 1, delivered_at = $2, lease_until = NULL, last_status = $3, \
     last_error = NULL WHERE id = $1";
const FAILED: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = $2, \
     lease_until = NULL, last_status = $3, last_error = $4 WHERE id = $1";
const DEAD: &str = "UPDATE webhook_deliveries SET status = 'dead', attempts = attempts + 1, \
     lease_until = NULL, last_status = $2, last_error = $3 WHERE id = $1";
const RETRY: &str = "UPDATE webhook_deliveries SET status = 'pending', next_at = $2, since = $2, \
     lease_until = NULL WHERE id = $1";
/// Finished rows whose last attempt is older than `$1` (a dead row's
/// `next_at` is its last attempt).
const PRUNE: &str = "DELETE FROM webhook_deliveries WHERE (status = 'delivered' AND delivered_at < $1) \
     OR (status = 'dead' AND next_at < $1)";
const BACKLOG: &str = "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'";
const EXPIRING: &str = "SELECT id, owner_id, name, expires_at FROM api_keys \
     WHERE revoked_at IS NULL AND rotated_to IS NULL AND expires_at IS NOT NULL \
     AND expires_at > $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3";

/// Leases the due rows (at most `$3`) until `$1`; `lock` skips rows another
/// transaction is claiming.
pub(super) fn claim_sql(lock: &str) -> String {
    format!(
        "UPDATE webhook_deliveries SET lease_until = $1 WHERE id IN \
         (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $2 \
          AND (lease_until IS NULL OR lease_until <= $2) ORDER BY next_at LIMIT $3{lock}) \
         RETURNING id, event_id, endpoint, payload, attempts, since"
    )
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

/// Inserts `event` for each of `endpoints` (not again for one that has it).
async fn insert<S: Session>(
    tx: &mut S,
    event: &NewEvent,
    endpoints: &[&str],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for endpoint in endpoints {
        let args = vec![
            Value::Uuid(Some(crate::ids::uuid_v7())),
            text(&event.id),
            text(endpoint),
            text(event.event.as_str()),
            text(&event.payload),
            Value::Time(Some(event.at)),
        ];
        n += tx.execute(INSERT, args).await?;
    }
    Ok(n)
}

/// The outbox rows of an audit record's event, if it maps to one that an
/// endpoint wants. Runs in the record's transaction.
pub(super) async fn enqueue_audited<S: Session>(
    tx: &mut S,
    hooks: &Subscriptions,
    draft: &AuditDraft,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(event) = EventType::of_audit(draft.action, &draft.changes) else {
        return Ok(());
    };
    let endpoints = hooks.endpoints_for(event);
    if endpoints.is_empty() {
        return Ok(());
    }
    let mut data = json!({ "changes": draft.changes });
    if let Some(id) = draft.key_id {
        data["key_id"] = json!(id);
        if let Some(r) = tx
            .fetch_optional(KEY_SUBJECT, vec![Value::Uuid(Some(id))])
            .await?
        {
            data["owner_id"] = json!(r.get::<String>("owner_id")?);
            data["name"] = json!(r.get::<String>("name")?);
        }
    } else if let Some(owner) = draft.changes.get("owner_id") {
        data["owner_id"] = owner.clone();
    }
    let e = NewEvent {
        id: events::new_event_id(),
        event,
        at: now,
        payload: events::payload(event, now, data),
    };
    insert(tx, &e, &endpoints).await?;
    Ok(())
}

fn delivery(r: &impl SqlRow) -> Result<Delivery, StoreError> {
    let status: String = r.get("status")?;
    let payload: String = r.get("payload")?;
    Ok(Delivery {
        id: r.get("id")?,
        event_id: r.get("event_id")?,
        endpoint: r.get("endpoint")?,
        event_type: r.get("event_type")?,
        status: DeliveryStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "status",
            reason: format!("unknown delivery status {status:?}"),
        })?,
        attempts: r.get("attempts")?,
        created_at: r.get("created_at")?,
        next_at: r.get("next_at")?,
        delivered_at: r.get("delivered_at")?,
        last_status: r.get("last_status")?,
        last_error: r.get("last_error")?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
            column: "payload",
            reason: e.to_string(),
        })?,
    })
}

fn status_value(s: Option<u16>) -> Value {
    Value::Int(s.map(i64::from))
}

#[async_trait]
impl<D: Dialect> WebhookStore for SqlStore<D> {
    async fn enqueue(&self, event: &NewEvent, endpoints: &[&str]) -> Result<u64, StoreError> {
        let mut tx = self.d.begin().await?;
        let n = insert(&mut tx, event, endpoints).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.d.begin().await?;
        let args = vec![
            Value::Time(Some(lease_until)),
            Value::Time(Some(now)),
            Value::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))),
        ];
        let rows = tx.fetch_all(&self.sql.claim, args).await?;
        let claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.get("id")?,
                    event_id: r.get("event_id")?,
                    endpoint: r.get("endpoint")?,
                    payload: r.get("payload")?,
                    attempts: r.get("attempts")?,
                    since: r.get("since")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn settle(&self, id: Uuid, s: &Settle, now: DateTime<Utc>) -> Result<(), StoreError> {
        let id = Value::Uuid(Some(id));
        let (sql, args) = match s {
            Settle::Delivered { status } => (
                DELIVERED,
                vec![id, Value::Time(Some(now)), status_value(Some(*status))],
            ),
            Settle::Failed {
                next_at,
                status,
                error,
            } => (
                FAILED,
                vec![
                    id,
                    Value::Time(Some(*next_at)),
                    status_value(*status),
                    text(error),
                ],
            ),
            Settle::Dead { status, error } => (DEAD, vec![id, status_value(*status), text(error)]),
        };
        self.d.conn().await?.execute(sql, args).await?;
        Ok(())
    }

    async fn deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE ($1 IS NULL OR status = $1) \
             AND ($2 IS NULL OR event_type = $2) AND ($3 IS NULL OR endpoint = $3) \
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        );
        let args = vec![
            Value::Text(q.status.map(|s| s.as_str().to_owned())),
            Value::Text(q.event_type.clone()),
            Value::Text(q.endpoint.clone()),
            Value::Uuid(q.before),
            Value::Int(Some(i64::from(q.limit))),
        ];
        let rows = self.d.conn().await?.fetch_all(&sql, args).await?;
        rows.iter().map(delivery).collect()
    }

    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Delivery>, StoreError> {
        let mut tx = self.d.begin().await?;
        let args = vec![Value::Uuid(Some(id)), Value::Time(Some(now))];
        if tx.execute(RETRY, args).await? == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = $1");
        let row = tx.fetch_optional(&sql, vec![Value::Uuid(Some(id))]).await?;
        let d = row.map(|r| delivery(&r)).transpose()?;
        tx.commit().await?;
        Ok(d)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut s = self.d.conn().await?;
        s.execute(PRUNE, vec![Value::Time(Some(before))]).await
    }

    async fn backlog(&self) -> Result<i64, StoreError> {
        let row = self.d.conn().await?.fetch_optional(BACKLOG, vec![]).await?;
        row.map_or(Ok(0), |r| r.get("n"))
    }

    async fn expiring_keys(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiringKey>, StoreError> {
        let args = vec![
            Value::Time(Some(now)),
            Value::Time(Some(until)),
            Value::Int(Some(i64::from(limit))),
        ];
        let rows = self.d.conn().await?.fetch_all(EXPIRING, args).await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiringKey {
                    id: r.get("id")?,
                    owner_id: r.get("owner_id")?,
                    name: r.get("name")?,
                    expires_at: r.get("expires_at")?,
                })
            })
            .collect()
    }
}
