//! The webhook delivery log and redelivery, for the admin API and the CLI.

use std::sync::Arc;

use uuid::Uuid;

use super::{ServiceError, page};
use crate::clock::Clock;
use crate::store::{StoreError, WebhookStore};
use crate::webhooks::events::EventType;
use crate::webhooks::model::{Delivery, DeliveryQuery};

pub struct WebhookService {
    store: Arc<dyn WebhookStore>,
    clock: Clock,
}

impl WebhookService {
    pub fn new(store: Arc<dyn WebhookStore>, clock: Clock) -> WebhookService {
        WebhookService { store, clock }
    }

    /// A page of deliveries, newest first, and the cursor for the next one.
    pub async fn list(
        &self,
        mut q: DeliveryQuery,
    ) -> Result<(Vec<Delivery>, Option<Uuid>), ServiceError> {
        if let Some(t) = q.event_type.as_deref() {
            if EventType::parse(t).is_none() {
                return Err(ServiceError::field("event_type", "unknown event type"));
            }
        }
        q.limit = q.limit.clamp(1, page::MAX);
        let want = q.limit as usize;
        q.limit += 1;
        let mut rows = self.store.deliveries(&q).await?;
        let next = if rows.len() > want {
            rows.truncate(want);
            rows.last().map(|d| d.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Makes a delivery (dead, failing or delivered) due now, with a fresh
    /// `max_age`; it keeps its event id.
    pub async fn retry(&self, id: Uuid) -> Result<Delivery, ServiceError> {
        self.store
            .retry(id, self.clock.now())
            .await?
            .ok_or(ServiceError::Store(StoreError::DeliveryNotFound(id)))
    }
}
