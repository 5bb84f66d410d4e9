//! Webhooks: key and owner events, written to an outbox in the same
//! transaction as the change and delivered at least once, signed per the
//! Standard Webhooks specification.
//!
//! The outbox has one row per (event, endpoint): the endpoints an event goes
//! to are decided when it is written, so a delivery's fate (retries, dead
//! letter, a manual retry) is its own.

pub mod events;
pub mod model;
pub mod signals;
pub mod signature;
pub mod worker;

use std::sync::Arc;

use crate::config::WebhooksConfig;
use events::{EventPattern, EventType};

/// Which endpoints want which events: what the store needs to write the
/// outbox rows of a change (no URL, no secret).
#[derive(Debug, Clone, Default)]
pub struct Subscriptions(Arc<Vec<(String, Vec<EventPattern>)>>);

impl Subscriptions {
    pub fn new(config: &WebhooksConfig) -> Subscriptions {
        let subs = config
            .endpoints
            .iter()
            .map(|e| (e.name.clone(), e.events.clone()))
            .collect();
        Subscriptions(Arc::new(subs))
    }

    /// The endpoints that want `e`, in configuration order.
    pub fn endpoints_for(&self, e: EventType) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, patterns)| patterns.iter().any(|p| p.matches(e)))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
