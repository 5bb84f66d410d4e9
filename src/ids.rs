//! Time-ordered ids (UUIDv7) from the thread-local CSPRNG: no system call per
//! id (`Uuid::now_v7` asks the kernel for randomness every time).
//!
//! Ids are strictly increasing within the process (RFC 9562 §6.2, method 1: a
//! 12-bit counter after the millisecond timestamp, carried into the timestamp
//! when it overflows), so records sort in the order they were made.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngExt;
use uuid::Uuid;

/// The last (millisecond << 12 | counter) handed out.
static LAST: AtomicU64 = AtomicU64::new(0);

fn next_tick(now_ms: u64) -> u64 {
    let fresh = now_ms << 12;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = fresh.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub fn uuid_v7() -> Uuid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let tick = next_tick(ms);
    let random: u64 = rand::rng().random();
    // 48-bit ms | version 7 | 12-bit counter | variant | 62 random bits
    let hi = ((tick >> 12) << 16) | 0x7000 | (tick & 0x0fff);
    let lo = (random & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    Uuid::from_u64_pair(hi, lo)
}

/// A UUID as a header value (lowercase, hyphenated), without a heap string.
pub fn uuid_header(id: uuid::Uuid) -> http::HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    // Hex digits and hyphens are always a valid header value.
    http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordered_unique_and_version_7() {
        let ids: Vec<_> = (0..10_000).map(|_| super::uuid_v7()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(ids[0].get_version_num(), 7);
        assert_eq!(ids[0].get_variant(), uuid::Variant::RFC4122);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (secs, nanos) = ids[0]
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or_default();
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(now.abs_diff(ms) < 5_000, "timestamp is now: {ms} vs {now}");
    }
}
