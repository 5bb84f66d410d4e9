//! The audit chain: each record's hash is an HMAC, under a key derived from the
//! hash secret, of the previous hash and the record's content. Someone who can
//! write the database but does not hold the secret cannot forge, edit, remove
//! or reorder a record without `verify` naming the first broken sequence number.

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::hash::KeyHasher;

/// Who made a change: `cli`, or `admin:<token id>` (a digest prefix, never the token).
pub type Actor = String;

/// A record about to be appended.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: Actor,
    pub action: &'static str,
    pub key_id: Option<Uuid>,
    /// The changed fields; never secrets or hashes.
    pub changes: serde_json::Value,
}

/// The audit side of one key write: who makes it, what it is, and the sealer
/// that chains its record. A store appends the record in the write's own
/// transaction, so a change and its audit record commit together or not at all.
#[derive(Clone, Copy)]
pub struct Audit<'a> {
    pub sealer: &'a AuditSealer,
    pub actor: &'a str,
    pub action: &'static str,
    /// The webhook endpoints whose outbox rows the record's event (if it
    /// maps to one) is written to, in the same transaction; `None`: no event.
    pub hooks: Option<&'a crate::webhooks::Subscriptions>,
}

impl Audit<'_> {
    /// The draft of this write's record about `key_id` with `changes`.
    pub fn draft(&self, key_id: Option<Uuid>, changes: serde_json::Value) -> AuditDraft {
        AuditDraft {
            actor: self.actor.to_owned(),
            action: self.action,
            key_id,
            changes,
        }
    }

    /// The same writer, recording another action (a rotation also creates a key).
    pub fn as_action(self, action: &'static str) -> Self {
        Audit { action, ..self }
    }

    /// The same writer, raising no webhook event (a rotation's successor is
    /// reported by `key.rotated`, not also `key.created`).
    pub fn quiet(self) -> Self {
        Audit {
            hooks: None,
            ..self
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub key_id: Option<Uuid>,
    /// Canonical JSON of the changed fields, exactly as hashed.
    pub changes: String,
    #[serde(serialize_with = "hex")]
    #[schema(value_type = String)]
    pub prev_hash: Vec<u8>,
    #[serde(serialize_with = "hex")]
    #[schema(value_type = String)]
    pub hash: Vec<u8>,
}

fn hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(b))
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The first record that does not check out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at sequence {seq}: {reason}")]
pub struct Broken {
    pub seq: i64,
    pub reason: &'static str,
}

#[derive(Clone)]
pub struct AuditSealer {
    key: [u8; 32],
}

impl std::fmt::Debug for AuditSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSealer(<secret>)")
    }
}

pub const GENESIS: [u8; 32] = [0; 32];

/// The hashed part of a record.
struct Content<'a> {
    seq: i64,
    at: DateTime<Utc>,
    actor: &'a str,
    action: &'a str,
    key_id: Option<Uuid>,
    changes: &'a str,
}

impl<'a> Content<'a> {
    fn of(e: &'a AuditEntry) -> Content<'a> {
        Content {
            seq: e.seq,
            at: e.at,
            actor: &e.actor,
            action: &e.action,
            key_id: e.key_id,
            changes: &e.changes,
        }
    }
}

impl AuditSealer {
    pub fn new(hasher: &KeyHasher) -> AuditSealer {
        AuditSealer {
            key: hasher.derive("audit-chain-v1"),
        }
    }

    fn digest(&self, c: &Content<'_>, prev: &[u8]) -> Vec<u8> {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        m.update(prev);
        m.update(&c.seq.to_be_bytes());
        m.update(&c.at.timestamp_micros().to_be_bytes());
        for field in [
            c.actor.as_bytes(),
            c.action.as_bytes(),
            c.changes.as_bytes(),
        ] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field);
        }
        match c.key_id {
            Some(id) => {
                m.update(&[1]);
                m.update(id.as_bytes());
            }
            None => m.update(&[0]),
        }
        m.finalize().into_bytes().to_vec()
    }

    /// The record that follows `prev` (or starts the chain).
    pub fn seal(
        &self,
        prev: Option<(i64, &[u8])>,
        draft: AuditDraft,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        let (seq, prev_hash) = match prev {
            Some((s, h)) => (s + 1, h.to_vec()),
            None => (1, GENESIS.to_vec()),
        };
        // Databases keep microseconds; hash what will be read back.
        let at = at.trunc_subsecs(6);
        let changes = draft.changes.to_string();
        let content = Content {
            seq,
            at,
            actor: &draft.actor,
            action: draft.action,
            key_id: draft.key_id,
            changes: &changes,
        };
        let hash = self.digest(&content, &prev_hash);
        AuditEntry {
            seq,
            at,
            actor: draft.actor,
            action: draft.action.to_string(),
            key_id: draft.key_id,
            changes,
            prev_hash,
            hash,
        }
    }

    /// Checks a whole chain in sequence order; returns the number of records.
    pub fn verify(&self, entries: impl IntoIterator<Item = AuditEntry>) -> Result<u64, Broken> {
        let mut v = ChainVerifier::new(self);
        for e in entries {
            v.push(e)?;
        }
        Ok(v.count())
    }
}

/// Checks a chain one record at a time, so a long log need not fit in memory.
pub struct ChainVerifier<'a> {
    sealer: &'a AuditSealer,
    expected_seq: i64,
    prev: Vec<u8>,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(sealer: &'a AuditSealer) -> Self {
        ChainVerifier {
            sealer,
            expected_seq: 1,
            prev: GENESIS.to_vec(),
        }
    }

    pub fn push(&mut self, e: AuditEntry) -> Result<(), Broken> {
        if e.seq != self.expected_seq {
            return Err(Broken {
                seq: self.expected_seq.min(e.seq),
                reason: "sequence numbers are not contiguous (a record was removed or reordered)",
            });
        }
        if !bool::from(e.prev_hash.ct_eq(&self.prev)) {
            return Err(Broken {
                seq: e.seq,
                reason: "previous-hash link does not match the record before it",
            });
        }
        let want = self.sealer.digest(&Content::of(&e), &e.prev_hash);
        if !bool::from(want.ct_eq(&e.hash)) {
            return Err(Broken {
                seq: e.seq,
                reason: "record content does not match its hash (edited)",
            });
        }
        self.prev = e.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// Records verified so far.
    pub fn count(&self) -> u64 {
        (self.expected_seq - 1) as u64
    }

    /// The hash of the last verified record.
    pub fn head(&self) -> Option<&[u8]> {
        (self.expected_seq > 1).then_some(self.prev.as_slice())
    }
}

/// The fields that differ between two JSON objects, with their new values.
pub fn diff(
    before: &serde_json::Value,
    after: &serde_json::Value,
    ignore: &[&str],
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, v) in a {
            if !ignore.contains(&k.as_str()) && b.get(k) != Some(v) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sealer() -> AuditSealer {
        AuditSealer::new(&KeyHasher::new(&[7; 32]).expect("secret"))
    }

    fn chain(n: usize) -> Vec<AuditEntry> {
        let s = sealer();
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_slice()));
            let draft = AuditDraft {
                actor: "cli".into(),
                action: "key.update",
                key_id: Some(Uuid::from_u128(i as u128)),
                changes: json!({"name": format!("n{i}")}),
            };
            let e = s.seal(prev, draft, Utc::now());
            out.push(e);
        }
        out
    }

    #[test]
    fn untouched_chain_verifies() {
        assert_eq!(sealer().verify(chain(5)), Ok(5));
        assert_eq!(sealer().verify(vec![]), Ok(0));
    }

    #[test]
    fn edit_is_found() {
        let mut c = chain(5);
        c[2].changes = "{\"name\":\"forged\"}".into();
        assert_eq!(sealer().verify(c).map_err(|b| b.seq), Err(3));
    }

    #[test]
    fn removal_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(sealer().verify(c).map_err(|b| b.seq), Err(2));
    }

    #[test]
    fn reorder_is_found() {
        let mut c = chain(5);
        c.swap(2, 3);
        assert_eq!(sealer().verify(c).map_err(|b| b.seq), Err(3));
        // Reordering with renumbered sequence breaks the links instead.
        let mut c = chain(5);
        c.swap(2, 3);
        c[2].seq = 3;
        c[3].seq = 4;
        assert_eq!(sealer().verify(c).map_err(|b| b.seq), Err(3));
    }

    #[test]
    fn rehashing_without_the_secret_is_found() {
        let mut c = chain(3);
        let forger = AuditSealer::new(&KeyHasher::new(&[8; 32]).expect("secret"));
        let prev = (c[0].seq, c[0].hash.clone());
        c[1] = forger.seal(
            Some((prev.0, &prev.1)),
            AuditDraft {
                actor: "cli".into(),
                action: "key.delete",
                key_id: None,
                changes: json!({}),
            },
            Utc::now(),
        );
        assert_eq!(sealer().verify(c).map_err(|b| b.seq), Err(2));
    }

    #[test]
    fn diff_lists_changed_fields() {
        let d = diff(
            &json!({"a": 1, "b": 2, "t": 0}),
            &json!({"a": 1, "b": 3, "t": 9}),
            &["t"],
        );
        assert_eq!(d, json!({"b": 3}));
    }
}
