//! The outbox's rows as the store, the worker and the admin API see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::EventType;

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: due at `next_at` (retrying when `attempts` > 0).
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Still undelivered after `webhooks.max_age`; `retry` revives it.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An event to enqueue for every endpoint that wants it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `webhook-id`: stable across endpoints and attempts. Enqueueing an id
    /// again for the same endpoint is a no-op (deduplicated events).
    pub id: String,
    pub event: EventType,
    pub at: DateTime<Utc>,
    /// The body (see [`super::events::payload`]).
    pub payload: String,
}

/// A delivery claimed by a worker (leased until it settles or the lease ends).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub event_id: String,
    pub endpoint: String,
    pub payload: String,
    pub attempts: i64,
    /// Start of the retry period (creation, or the last manual retry).
    pub since: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered {
        status: u16,
    },
    /// Tried again at `next_at`.
    Failed {
        next_at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
    },
    /// Out of time: dead-lettered.
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// One row of the delivery log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    /// The `webhook-id` header: the same for every attempt and endpoint.
    pub event_id: String,
    pub endpoint: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending deliveries).
    pub next_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status, if it got one.
    pub last_status: Option<i64>,
    /// Why the last attempt failed (no header or body is quoted).
    pub last_error: Option<String>,
    /// The body as signed and sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A page of the delivery log: newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub endpoint: Option<String>,
    /// Deliveries older than this id.
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// A key that expires soon (for `key.expiring`).
#[derive(Debug, Clone)]
pub struct ExpiringKey {
    pub id: Uuid,
    pub owner_id: String,
    pub name: String,
    pub expires_at: DateTime<Utc>,
}
