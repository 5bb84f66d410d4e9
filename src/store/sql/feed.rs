//! The key feed: a consistent snapshot of every key with the change number it
//! reflects, then the changes after a number (rows changed, keys deleted).

use std::time::Duration;

use async_trait::async_trait;

use super::{Dialect, Session, SqlRow, SqlStore, Value};
use crate::auth::hash::KeyHash;
use crate::keys::model::{KeyRow, KeySpec};
use crate::owners::{OwnerRow, OwnerSpec};
use crate::store::{ChangeListener, Changes, FeedRow, KeyFeed, SnapshotSink, StoreError};

const ROW_COLUMNS: &str =
    "id, key_hash, lineage_id, revoked_at, rotated_to, rotated_at, change_seq, credits";

/// Every owner, as the key table holds it.
pub(super) fn select_owners() -> String {
    format!(
        "SELECT id, credits, change_seq, {} FROM owners",
        OwnerSpec::COLUMNS.join(", ")
    )
}

pub(super) fn select_owners_since() -> String {
    format!(
        "{} WHERE change_seq > $1 ORDER BY change_seq",
        select_owners()
    )
}

const OWNER_TOMBSTONES_SINCE: &str =
    "SELECT owner_id, change_seq FROM owner_tombstones WHERE change_seq > $1";

fn owner_row(row: &impl SqlRow) -> Result<OwnerRow, StoreError> {
    Ok(OwnerRow {
        id: row.get("id")?,
        spec: OwnerSpec::read(row)?,
        credits: row.get("credits")?,
    })
}

pub(super) fn select_all() -> String {
    format!(
        "SELECT {ROW_COLUMNS}, {} FROM api_keys",
        KeySpec::COLUMNS.join(", ")
    )
}

pub(super) fn select_since() -> String {
    format!("{} WHERE change_seq > $1 ORDER BY change_seq", select_all())
}

const TOMBSTONES_SINCE: &str =
    "SELECT key_hash, change_seq FROM api_key_tombstones WHERE change_seq > $1";

fn key_row(row: &impl SqlRow) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        id: row.get("id")?,
        hash: row.get("key_hash")?,
        lineage_id: row.get("lineage_id")?,
        revoked: row.opt_time("revoked_at")?.is_some(),
        rotated_to: row.get("rotated_to")?,
        rotated_at: row.get("rotated_at")?,
        spec: KeySpec::read(row)?,
        credits: row.get("credits")?,
    })
}

#[async_trait]
impl<D: Dialect> KeyFeed for SqlStore<D> {
    async fn snapshot(&self, sink: SnapshotSink<'_>) -> Result<i64, StoreError> {
        let mut tx = self.d.read().await?;
        let seq: i64 = match tx.fetch_optional(D::FRAGMENTS.head_seq, vec![]).await? {
            Some(row) => row.get("seq")?,
            None => 0,
        };
        tx.for_each(&self.sql.sync_owners, vec![], &mut |row| {
            sink(FeedRow::Owner(Box::new(owner_row(&row)?)));
            Ok(())
        })
        .await?;
        tx.for_each(&self.sql.sync_all, vec![], &mut |row| {
            sink(FeedRow::Key(Box::new(key_row(&row)?)));
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn changes_since(&self, seq: i64) -> Result<Changes, StoreError> {
        let mut tx = self.d.read().await?;
        let after = || vec![Value::Int(Some(seq))];
        let rows = tx.fetch_all(&self.sql.sync_since, after()).await?;
        let tombstones = tx.fetch_all(TOMBSTONES_SINCE, after()).await?;
        let owners = tx.fetch_all(&self.sql.sync_owners_since, after()).await?;
        let gone = tx.fetch_all(OWNER_TOMBSTONES_SINCE, after()).await?;
        tx.commit().await?;
        let mut out = Changes {
            seq,
            ..Changes::default()
        };
        for row in &rows {
            out.seq = out.seq.max(row.get("change_seq")?);
            out.upserts.push(key_row(row)?);
        }
        for row in &owners {
            out.seq = out.seq.max(row.get("change_seq")?);
            out.owners.push(owner_row(row)?);
        }
        for t in &gone {
            out.seq = out.seq.max(t.get("change_seq")?);
            out.owner_deletes.push(t.get("owner_id")?);
        }
        for t in &tombstones {
            out.seq = out.seq.max(t.get("change_seq")?);
            match t
                .opt_bytes("key_hash")?
                .as_deref()
                .and_then(KeyHash::from_slice)
            {
                Some(h) => out.deletes.push(h),
                None => out.reload = true,
            }
        }
        Ok(out)
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        self.d.listen().await
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.d.poll_interval()
    }
}
