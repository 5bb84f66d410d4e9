//! Usage records in `COPY … (FORMAT binary)`'s wire format: one buffer per
//! batch, every field written in place, no value allocated.
//!
//! The format (PostgreSQL docs, "COPY", binary format): an 11-byte signature,
//! flags and header-extension length (both 0), then per row the field count
//! (i16) and per field its length (i32, −1 for NULL) and its bytes in the
//! type's binary send format, and a trailer of −1 (i16).

use std::fmt::Write as _;

use uuid::Uuid;

use super::usage::big;
use crate::store::StoreError;
use crate::store::sql::record_time;
use crate::usage::UsageRecord;

/// The statement [`encode`]'s payload is for: its columns in its order.
pub const STATEMENT: &str = "COPY usage_events (id, request_id, ts, key_id, owner_id, route, \
     method, status, outcome, latency_us, upstream_latency_us, bytes_in, bytes_out, client_ip, \
     deprecated_key, credits) FROM STDIN (FORMAT binary)";
const FIELDS: i16 = 16;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to Postgres's (2000-01-01 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A field's bytes, written after a length slot filled in when they are done.
struct Row<'a>(&'a mut Vec<u8>);

impl Row<'_> {
    fn bytes(&mut self, b: &[u8]) {
        // A field longer than i32::MAX bytes cannot reach here: record strings
        // are bounded by the request head's limits.
        let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
    }

    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.bytes(s.as_bytes()),
            None => self.null(),
        }
    }

    fn uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.bytes(u.as_bytes()),
            None => self.null(),
        }
    }

    fn int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.bytes(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    /// A value formatted into the buffer, its length patched in after.
    fn display(&mut self, v: impl std::fmt::Display) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        let mut s = Utf8(self.0);
        let _ = write!(s, "{v}");
        let len = i32::try_from(self.0.len() - at - 4).unwrap_or(i32::MAX);
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// `fmt::Write` straight into the byte buffer.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The whole `COPY` payload of `batch`; an error only for a record whose time
/// is not representable (as the `INSERT` path).
pub fn encode(batch: &[UsageRecord]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(19 + batch.len() * 260);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for r in batch {
        let ts = record_time(r)?.timestamp_micros() - PG_EPOCH_US;
        out.extend_from_slice(&FIELDS.to_be_bytes());
        let mut row = Row(&mut out);
        row.uuid(Some(r.id));
        row.text(Some(&r.request_id));
        row.int8(Some(ts));
        row.uuid(r.key_id);
        row.text(r.owner_id.as_deref());
        row.text(r.route.as_deref());
        row.text(Some(&r.method));
        row.bytes(&i16::try_from(r.status).unwrap_or(i16::MAX).to_be_bytes());
        row.text(Some(r.outcome.as_str()));
        row.int8(Some(big(r.latency_us)));
        row.int8(r.upstream_latency_us.map(big));
        row.int8(Some(big(r.bytes_in)));
        row.int8(Some(big(r.bytes_out)));
        match r.client_ip {
            Some(ip) => row.display(ip),
            None => row.null(),
        }
        row.bytes(&[u8::from(r.deprecated_key)]);
        row.int8(Some(r.credits));
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_fields_in_order_with_nulls_and_the_payload_is_framed() {
        let r = UsageRecord {
            id: Uuid::from_u128(1),
            request_id: "r".into(),
            ts_ms: 946_684_800_001, // 1 ms after Postgres's epoch
            key_id: None,
            owner_id: None,
            route: Some("api".into()),
            method: "GET".into(),
            status: 200,
            outcome: crate::outcome::Outcome::Ok,
            latency_us: 5,
            upstream_latency_us: None,
            bytes_in: 0,
            bytes_out: 2,
            client_ip: Some("::1".parse().unwrap()),
            deprecated_key: true,
            credits: -3,
            charged_to: None,
        };
        let b = encode(std::slice::from_ref(&r)).unwrap();
        assert_eq!(&b[..11], SIGNATURE);
        assert_eq!(&b[11..19], &[0; 8]);
        assert_eq!(&b[b.len() - 2..], &[0xff, 0xff]);
        let mut at = 19;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s.to_vec()
        };
        assert_eq!(take(2), 16i16.to_be_bytes());
        let mut field = || {
            let len = i32::from_be_bytes(take(4).try_into().unwrap());
            (len >= 0).then(|| take(len as usize))
        };
        assert_eq!(field().unwrap(), Uuid::from_u128(1).as_bytes());
        assert_eq!(field().unwrap(), b"r");
        assert_eq!(field().unwrap(), 1000i64.to_be_bytes());
        assert_eq!(field(), None, "key_id");
        assert_eq!(field(), None, "owner_id");
        assert_eq!(field().unwrap(), b"api");
        assert_eq!(field().unwrap(), b"GET");
        assert_eq!(field().unwrap(), 200i16.to_be_bytes());
        assert_eq!(field().unwrap(), b"ok");
        assert_eq!(field().unwrap(), 5i64.to_be_bytes());
        assert_eq!(field(), None, "upstream_latency_us");
        assert_eq!(field().unwrap(), 0i64.to_be_bytes());
        assert_eq!(field().unwrap(), 2i64.to_be_bytes());
        assert_eq!(field().unwrap(), b"::1");
        assert_eq!(field().unwrap(), [1u8]);
        assert_eq!(field().unwrap(), (-3i64).to_be_bytes());
    }
}
