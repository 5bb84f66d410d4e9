//! The delivery worker, one per gateway: claims due outbox rows (a lease, so
//! no other instance takes them meanwhile), sends them signed, settles each
//! attempt, and enqueues `key.expiring` from a periodic scan.
//!
//! At least once: a row is settled only after its answer, and a worker that
//! dies holding rows leaves them to whoever claims after the lease. A 2xx is
//! delivered; anything else is retried with exponential back-off and jitter
//! until the next attempt would fall past `max_age`, then dead-lettered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method};
use rand::RngExt;
use tokio::sync::watch;

use super::Subscriptions;
use super::events::{self, EventType};
use super::model::{Claimed, NewEvent, Settle};
use super::signature::SigningSecret;
use crate::clock::Clock;
use crate::config::WebhooksConfig;
use crate::metrics::{DeliveryResult, Metrics};
use crate::outbound::{Outbound, OutboundError};
use crate::store::{StoreError, WebhookStore};

/// An answer body is read (and dropped) up to this size.
const MAX_ANSWER: usize = 64 * 1024;
/// Polls between two `key.expiring` scans.
const SCAN_EVERY: u32 = 60;
/// Keys per `key.expiring` scan.
const SCAN_LIMIT: u32 = 1000;

struct Target {
    url: String,
    secret: SigningSecret,
    client: Outbound,
}

pub struct Worker {
    store: Arc<dyn WebhookStore>,
    targets: HashMap<String, Target>,
    subs: Subscriptions,
    cfg: WebhooksConfig,
    metrics: Arc<Metrics>,
    clock: Clock,
}

#[derive(Debug, thiserror::Error)]
#[error("webhook endpoint {endpoint}: {source}")]
pub struct WorkerError {
    endpoint: String,
    #[source]
    source: OutboundError,
}

impl Worker {
    pub fn new(
        cfg: &WebhooksConfig,
        store: Arc<dyn WebhookStore>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Worker, WorkerError> {
        let mut targets = HashMap::new();
        for e in &cfg.endpoints {
            let client = Outbound::new(e.ca_file.as_deref()).map_err(|source| WorkerError {
                endpoint: e.name.clone(),
                source,
            })?;
            let t = Target {
                url: e.url.clone(),
                secret: e.secret.clone(),
                client,
            };
            targets.insert(e.name.clone(), t);
        }
        Ok(Worker {
            store,
            targets,
            subs: Subscriptions::new(cfg),
            cfg: cfg.clone(),
            metrics,
            clock,
        })
    }

    /// How long a claim holds its rows: past every attempt of a batch
    /// (they run concurrently, each bounded by the timeout).
    fn lease(&self) -> Duration {
        self.cfg.timeout * 2 + Duration::from_secs(2)
    }

    /// Delivers until `stop` says so; an attempt under way is finished.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut polls = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            if polls % SCAN_EVERY == 0 {
                if let Err(e) = self.scan_expiring().await {
                    tracing::warn!(error = %e, "webhooks: key.expiring scan failed");
                }
                if let Err(e) = self.prune().await {
                    tracing::warn!(error = %e, "webhooks: pruning old deliveries failed");
                }
            }
            polls = polls.wrapping_add(1);
            let full = match self.tick().await {
                Ok(n) => n >= self.cfg.batch_size,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: outbox unavailable");
                    false
                }
            };
            if let Ok(n) = self.store.backlog().await {
                self.metrics.webhook_backlog.set(n);
            }
            if !full {
                // Woken early by the stop; a dropped sender is a stop too.
                let woke = tokio::time::timeout(self.cfg.poll_interval, stop.changed()).await;
                if let Ok(Err(_)) = woke {
                    return;
                }
            }
        }
    }

    /// Claims one batch and attempts it; returns how many were claimed.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::MAX);
        let claimed = self
            .store
            .claim(now, now + lease, self.cfg.batch_size)
            .await?;
        let n = claimed.len();
        let attempts = claimed.iter().map(|c| self.attempt(c));
        for (c, outcome) in claimed
            .iter()
            .zip(futures::future::join_all(attempts).await)
        {
            let result = match &outcome {
                Settle::Delivered { .. } => DeliveryResult::Delivered,
                Settle::Failed { .. } => DeliveryResult::Failed,
                Settle::Dead { .. } => DeliveryResult::Dead,
            };
            self.metrics.webhook_delivery(result);
            if result == DeliveryResult::Dead {
                tracing::warn!(delivery = %c.id, endpoint = %c.endpoint, "webhook dead-lettered");
            }
            self.store.settle(c.id, &outcome, self.clock.now()).await?;
        }
        Ok(n)
    }

    /// One signed POST and what to record of it.
    async fn attempt(&self, c: &Claimed) -> Settle {
        let Some(t) = self.targets.get(&c.endpoint) else {
            // An endpoint removed from the configuration: kept for a retry
            // after it is configured again.
            return self.failed(c, None, "endpoint not configured".into());
        };
        let ts = self.clock.now().timestamp();
        let body = Bytes::from(c.payload.clone());
        let mut h = crate::outbound::static_headers(&[
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::USER_AGENT, "keygate-webhooks"),
        ]);
        let sig = t.secret.sign(&c.event_id, ts, &body);
        for (name, value) in [
            ("webhook-id", c.event_id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        let sent = t
            .client
            .send(Method::POST, &t.url, h, body, self.cfg.timeout, MAX_ANSWER)
            .await;
        match sent {
            Ok(r) if r.status.is_success() => Settle::Delivered {
                status: r.status.as_u16(),
            },
            Ok(r) => self.failed(c, Some(r.status.as_u16()), format!("HTTP {}", r.status)),
            // An answer too large still answered: its status decides.
            Err(e) => self.failed(c, None, e.to_string()),
        }
    }

    /// Retried after the back-off, or dead if that falls past `max_age`.
    fn failed(&self, c: &Claimed, status: Option<u16>, error: String) -> Settle {
        let now = self.clock.now();
        let next_at = now + self.backoff(c.attempts + 1);
        let max_age = chrono::Duration::from_std(self.cfg.max_age).unwrap_or(chrono::Duration::MAX);
        if next_at > c.since + max_age {
            Settle::Dead { status, error }
        } else {
            Settle::Failed {
                next_at,
                status,
                error,
            }
        }
    }

    fn backoff(&self, n: i64) -> chrono::Duration {
        backoff(self.cfg.initial_backoff, self.cfg.max_backoff, n)
    }

    /// Deletes delivered and dead-lettered rows older than `webhooks.retention`.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let retention =
            chrono::Duration::from_std(self.cfg.retention).unwrap_or(chrono::Duration::MAX);
        let before = self
            .clock
            .now()
            .checked_sub_signed(retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.store.prune(before).await
    }

    /// Enqueues `key.expiring` for keys expiring within `key_expiring_days`:
    /// once per key and expiry (the event id is derived from both).
    pub async fn scan_expiring(&self) -> Result<u64, StoreError> {
        let endpoints = self.subs.endpoints_for(EventType::KeyExpiring);
        if endpoints.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let until = now + chrono::Duration::days(i64::from(self.cfg.key_expiring_days));
        let mut n = 0;
        for k in self.store.expiring_keys(now, until, SCAN_LIMIT).await? {
            let data = serde_json::json!({
                "key_id": k.id,
                "owner_id": k.owner_id,
                "name": k.name,
                "expires_at": k.expires_at,
            });
            let e = NewEvent {
                id: expiring_id(k.id, k.expires_at),
                event: EventType::KeyExpiring,
                at: now,
                payload: events::payload(EventType::KeyExpiring, now, data),
            };
            n += self.store.enqueue(&e, &endpoints).await?;
        }
        Ok(n)
    }
}

/// After the `n`th failure: `initial * 2^(n-1)` capped at `max`, then a
/// random point in its upper half (jitter: instances that failed together do
/// not retry together).
fn backoff(initial: Duration, max: Duration, n: i64) -> chrono::Duration {
    let base = initial.as_millis() as f64;
    let cap = max.as_millis() as f64;
    let exp = i32::try_from(n.saturating_sub(1))
        .unwrap_or(i32::MAX)
        .min(62);
    let full = (base * 2f64.powi(exp)).min(cap).max(1.0);
    let ms = rand::rng().random_range(full / 2.0..=full);
    chrono::Duration::milliseconds(ms as i64)
}

/// The same key and expiry always make the same event id.
fn expiring_id(key: uuid::Uuid, at: DateTime<Utc>) -> String {
    format!("evt_expiring_{}_{}", key.simple(), at.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for (n, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            for _ in 0..50 {
                let d = backoff(i, m, n).num_milliseconds();
                assert!((full / 2..=full).contains(&d), "n={n}: {d}");
            }
        }
        assert_eq!(
            expiring_id(
                uuid::Uuid::nil(),
                DateTime::from_timestamp(7, 0).expect("t")
            ),
            "evt_expiring_00000000000000000000000000000000_7"
        );
    }
}
