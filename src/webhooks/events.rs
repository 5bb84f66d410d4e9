//! What webhooks report: the event types, the endpoints' filters (with
//! wildcards), which audit actions become which event, and the payload.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// An event a webhook endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    KeyRotated,
    KeyDeleted,
    KeyLeaked,
    KeyExpiring,
    OwnerDisabled,
    CreditsLow,
    RatelimitExceeded,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::KeyCreated,
        EventType::KeyUpdated,
        EventType::KeyRevoked,
        EventType::KeyRotated,
        EventType::KeyDeleted,
        EventType::KeyLeaked,
        EventType::KeyExpiring,
        EventType::OwnerDisabled,
        EventType::CreditsLow,
        EventType::RatelimitExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyUpdated => "key.updated",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyRotated => "key.rotated",
            EventType::KeyDeleted => "key.deleted",
            EventType::KeyLeaked => "key.leaked",
            EventType::KeyExpiring => "key.expiring",
            EventType::OwnerDisabled => "owner.disabled",
            EventType::CreditsLow => "credits.low",
            EventType::RatelimitExceeded => "ratelimit.exceeded",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event an audit record reports, if any. `changes` is the record's
    /// changed fields (an owner update is `owner.disabled` only when it
    /// turns `enabled` off).
    pub fn of_audit(action: &str, changes: &serde_json::Value) -> Option<EventType> {
        Some(match action {
            "key.create" => EventType::KeyCreated,
            "key.update" | "key.credits" => EventType::KeyUpdated,
            "key.revoke" => EventType::KeyRevoked,
            "key.rotate" => EventType::KeyRotated,
            "key.delete" => EventType::KeyDeleted,
            "key.leaked" | "key.flagged" => EventType::KeyLeaked,
            "owner.update" if changes.get("enabled") == Some(&json!(false)) => {
                EventType::OwnerDisabled
            }
            _ => return None,
        })
    }
}

/// An endpoint's `events` entry: `"*"`, `"key.*"`, or one event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    All,
    /// `"<family>.*"`: every event whose type starts with `<family>.`.
    Family(&'static str),
    One(EventType),
}

const FAMILIES: [&str; 4] = ["key", "owner", "credits", "ratelimit"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {0:?}; use \"*\", \"<family>.*\" (key, owner, credits, ratelimit) or one of: {list}", list = event_list())]
pub struct UnknownEvent(pub String);

fn event_list() -> String {
    EventType::ALL.map(EventType::as_str).join(", ")
}

impl EventPattern {
    pub fn parse(s: &str) -> Result<EventPattern, UnknownEvent> {
        if s == "*" {
            return Ok(EventPattern::All);
        }
        if let Some(family) = s.strip_suffix(".*") {
            if let Some(f) = FAMILIES.into_iter().find(|f| *f == family) {
                return Ok(EventPattern::Family(f));
            }
        }
        EventType::parse(s)
            .map(EventPattern::One)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }

    pub fn matches(&self, e: EventType) -> bool {
        match self {
            EventPattern::All => true,
            EventPattern::Family(f) => e
                .as_str()
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('.')),
            EventPattern::One(t) => *t == e,
        }
    }
}

/// A new event id: `evt_<uuid v7>`.
pub fn new_event_id() -> String {
    format!("evt_{}", crate::ids::uuid_v7().simple())
}

/// The body delivered: `{"type", "timestamp", "data"}` (Standard Webhooks'
/// recommended shape). `data` never holds a secret or hash.
pub fn payload(event: EventType, at: DateTime<Utc>, data: serde_json::Value) -> String {
    json!({
        "type": event.as_str(),
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_wildcards() {
        let key = EventPattern::parse("key.*").expect("family");
        assert!(key.matches(EventType::KeyRevoked));
        assert!(key.matches(EventType::KeyExpiring));
        assert!(!key.matches(EventType::OwnerDisabled));
        assert!(
            EventPattern::parse("*")
                .expect("all")
                .matches(EventType::CreditsLow)
        );
        let one = EventPattern::parse("credits.low").expect("one");
        assert!(one.matches(EventType::CreditsLow));
        assert!(!one.matches(EventType::RatelimitExceeded));
        for bad in ["key", "keys.*", "key.made", "*.created", ""] {
            assert!(EventPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_actions_map_to_events() {
        let none = serde_json::json!({});
        assert_eq!(
            EventType::of_audit("key.rotate", &none),
            Some(EventType::KeyRotated)
        );
        assert_eq!(
            EventType::of_audit("key.flagged", &none),
            Some(EventType::KeyLeaked)
        );
        assert_eq!(EventType::of_audit("owner.update", &none), None);
        let off = serde_json::json!({"enabled": false, "owner_id": "o"});
        assert_eq!(
            EventType::of_audit("owner.update", &off),
            Some(EventType::OwnerDisabled)
        );
        assert_eq!(EventType::of_audit("owner.create", &off), None);
    }
}
