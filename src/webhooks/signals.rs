//! Events that the request path notices (`ratelimit.exceeded`,
//! `credits.low`): handed over with a non-blocking `try_send` on a bounded
//! queue (dropped and counted when it is full), deduplicated and written to
//! the outbox by a task off the request path.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::Subscriptions;
use super::events::{self, EventType};
use super::model::NewEvent;
use crate::clock::Clock;
use crate::credits::Account;
use crate::keys::KeyEntry;
use crate::metrics::Metrics;
use crate::outcome::{Detail, Rejection};
use crate::ratelimit::credit::Debit;
use crate::ratelimit::window::Window;
use crate::store::WebhookStore;

/// Signals waiting for the outbox.
const QUEUE: usize = 4096;
/// Remembered (key, window) pairs before the memory is cleared.
const REMEMBER: usize = 100_000;

#[derive(Debug, Clone)]
pub enum Signal {
    /// A request was refused by a full window.
    RateLimited {
        key_id: Uuid,
        owner_id: Arc<str>,
        window: Window,
        /// Start of the window's bucket (Unix ms): one event per bucket.
        bucket_start_ms: u64,
    },
    /// A debit took a balance from at least the threshold to below it.
    CreditsLow {
        key_id: Uuid,
        owner_id: Arc<str>,
        /// `key:<lineage id>` or `owner:<owner id>`.
        account: String,
        remaining: i64,
        threshold: i64,
    },
}

/// The request path's end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Signals {
    tx: mpsc::Sender<Signal>,
    metrics: Arc<Metrics>,
    /// `credits.low` below this balance; `None`: off.
    pub credits_low: Option<i64>,
    pub ratelimit: bool,
}

impl Signals {
    pub fn send(&self, s: Signal) {
        if self.tx.try_send(s).is_err() {
            self.metrics.webhook_signals_dropped.inc();
        }
    }

    /// What a decision signals: a refusal by a full window, or a debit that
    /// took the balance below the threshold (once per crossing: only the
    /// debit that crosses it, each debit being atomic).
    pub fn observe(
        &self,
        key: &KeyEntry,
        verdict: &Result<(), Rejection>,
        debit: Option<&Debit>,
        now_ms: i64,
    ) {
        if let (true, Err(r)) = (self.ratelimit, verdict) {
            if let Detail::RateLimited { window, .. } = r.detail {
                let now = u64::try_from(now_ms).unwrap_or(0);
                self.send(Signal::RateLimited {
                    key_id: key.id,
                    owner_id: key.owner.id.clone(),
                    window,
                    bucket_start_ms: window.bucket(now).start_ms,
                });
            }
        }
        if let (Some(threshold), Some(d)) = (self.credits_low, debit) {
            let before = d.remaining.saturating_add(d.reserved);
            if before >= threshold && d.remaining < threshold {
                let account = match &d.charged_to.account {
                    Account::Key(lineage) => format!("key:{lineage}"),
                    Account::Owner(id) => format!("owner:{id}"),
                };
                self.send(Signal::CreditsLow {
                    key_id: key.id,
                    owner_id: key.owner.id.clone(),
                    account,
                    remaining: d.remaining,
                    threshold,
                });
            }
        }
    }
}

/// The queue's two ends; `None` when no endpoint wants these events.
pub fn channel(
    subs: &Subscriptions,
    credits_low: Option<i64>,
    metrics: Arc<Metrics>,
) -> Option<(Signals, mpsc::Receiver<Signal>)> {
    let ratelimit = !subs.endpoints_for(EventType::RatelimitExceeded).is_empty();
    let credits_low = credits_low.filter(|_| !subs.endpoints_for(EventType::CreditsLow).is_empty());
    if !ratelimit && credits_low.is_none() {
        return None;
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let s = Signals {
        tx,
        metrics,
        credits_low,
        ratelimit,
    };
    Some((s, rx))
}

/// Writes signals to the outbox until `stop`.
pub async fn drain(
    mut rx: mpsc::Receiver<Signal>,
    store: Arc<dyn WebhookStore>,
    subs: Subscriptions,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: HashMap<(Uuid, Window), u64> = HashMap::new();
    loop {
        let s = tokio::select! {
            s = rx.recv() => match s { Some(s) => s, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Signal::RateLimited {
            key_id,
            window,
            bucket_start_ms,
            ..
        } = &s
        {
            if seen.get(&(*key_id, *window)) == Some(bucket_start_ms) {
                continue;
            }
            if seen.len() >= REMEMBER {
                seen.clear();
            }
            seen.insert((*key_id, *window), *bucket_start_ms);
        }
        let e = event(&s, clock.now());
        let endpoints = subs.endpoints_for(e.event);
        if let Err(err) = store.enqueue(&e, &endpoints).await {
            tracing::warn!(error = %err, event = e.event.as_str(), "webhooks: event not enqueued");
        }
    }
}

/// The outbox event of a signal. A rate-limit event's id is derived from
/// the key, window and bucket, so other instances' copies are the same row.
fn event(s: &Signal, now: chrono::DateTime<chrono::Utc>) -> NewEvent {
    let (id, event, data) = match s {
        Signal::RateLimited {
            key_id,
            owner_id,
            window,
            bucket_start_ms,
        } => (
            format!(
                "evt_ratelimit_{}_{}_{bucket_start_ms}",
                key_id.simple(),
                window.as_str()
            ),
            EventType::RatelimitExceeded,
            serde_json::json!({
                "key_id": key_id,
                "owner_id": &**owner_id,
                "window": window.as_str(),
                "window_start": chrono::DateTime::from_timestamp_millis(
                    i64::try_from(*bucket_start_ms).unwrap_or(0)),
            }),
        ),
        Signal::CreditsLow {
            key_id,
            owner_id,
            account,
            remaining,
            threshold,
        } => (
            events::new_event_id(),
            EventType::CreditsLow,
            serde_json::json!({
                "key_id": key_id,
                "owner_id": &**owner_id,
                "account": account,
                "remaining": remaining,
                "threshold": threshold,
            }),
        ),
    };
    NewEvent {
        id,
        event,
        at: now,
        payload: events::payload(event, now, data),
    }
}
