//! LISTEN/NOTIFY for the key sync, on a direct connection, checked: right
//! after LISTEN a probe notification is sent through the pool; a listener
//! that does not hear it (a transaction pooler between keygate and Postgres
//! silently drops LISTEN) is reported instead of trusted.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool};

use super::db_err;
use crate::store::{ChangeListener, StoreError};

const CHANNEL: &str = "keygate_keys";
/// Payloads that are not change numbers: the probe's.
const PROBE_PREFIX: &str = "probe:";
/// How long the probe may take to come back.
const PROBE_WAIT: Duration = Duration::from_secs(3);

struct PgChanges(PgListener);

#[async_trait]
impl ChangeListener for PgChanges {
    async fn next(&mut self) -> Result<bool, StoreError> {
        match self.0.try_recv().await {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// LISTENs on `direct` and proves with a probe sent through `pool` that
/// notifications arrive.
pub(super) async fn connect(
    direct: &PgPool,
    pool: &PgPool,
    persistent: bool,
) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
    let mut l = PgListener::connect_with(direct).await.map_err(db_err)?;
    l.listen(CHANNEL).await.map_err(db_err)?;
    let probe = format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(&probe)
        .persistent(persistent)
        .execute(pool)
        .await;
    match sent {
        Ok(_) => {}
        // The probe came back to the pool's connection instead: behind a
        // transaction pooler both share a server connection, and the
        // listener hears nothing reliably.
        Err(sqlx::Error::Protocol(m)) if m.contains("NotificationResponse") => {
            return Err(StoreError::DeafListener);
        }
        Err(e) => return Err(db_err(e)),
    }
    let heard = tokio::time::timeout(PROBE_WAIT, async {
        loop {
            match l.try_recv().await {
                Ok(Some(n)) if n.payload() == probe => return Ok(true),
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(false),
                Err(e) => return Err(db_err(e)),
            }
        }
    })
    .await;
    match heard {
        Ok(Ok(true)) => Ok(Some(Box::new(PgChanges(l)))),
        Ok(Err(e)) => Err(e),
        Ok(Ok(false)) | Err(_) => Err(StoreError::DeafListener),
    }
}
