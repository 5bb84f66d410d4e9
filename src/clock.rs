//! Wall-clock time, injectable so tests can cross expiry and month boundaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The system clock, or a manual one that tests set and advance.
#[derive(Clone, Default, Debug)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start.timestamp_millis()))))
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            None => Utc::now().timestamp_millis(),
            Some(t) => t.load(Ordering::Relaxed),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => {
                DateTime::from_timestamp_millis(t.load(Ordering::Relaxed)).unwrap_or_default()
            }
        }
    }

    /// Sets a manual clock; no effect on the system clock.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Some(c) = &self.0 {
            c.store(t.timestamp_millis(), Ordering::Relaxed);
        }
    }

    pub fn advance_ms(&self, ms: i64) {
        if let Some(c) = &self.0 {
            c.fetch_add(ms, Ordering::Relaxed);
        }
    }
}
