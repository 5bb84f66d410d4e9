//! Redis key names. Every key of one request carries one hash tag, so a
//! request's counters live in one Redis Cluster slot and the script stays
//! atomic: `{<limit id>}` for a key's own windows, `{o:<owner id>}` for every
//! key of an owner with shared limits or credits.

use uuid::Uuid;

use crate::ratelimit::decision::{Scope, Span};
use crate::ratelimit::window::Window;

/// The Redis Cluster hash slot of keys under `prefix`: CRC16 (XMODEM) of
/// the hash tag (the text between the first `{` and the next `}`, if not
/// empty), else of the whole prefix, modulo 16384.
pub(super) fn cluster_slot(prefix: &str) -> u16 {
    let b = prefix.as_bytes();
    let tag = b.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &b[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(b)) % 16384
}

/// A month bucket's keys outlive its end by a day.
const MONTH_TTL_MARGIN_MS: u64 = 86_400_000;

/// The Redis key of one bucket: `<prefix><scope>:<window>:<bucket>`, the prefix
/// being `kg:{<limit id>}:` (see [`key_prefix`]).
pub fn bucket_key(
    prefix: &str,
    scope: Scope,
    route_name: &str,
    window: Window,
    bucket: u64,
) -> String {
    let mut k = Vec::with_capacity(prefix.len() + route_name.len() + 32);
    write_bucket_key(&mut k, prefix, scope, route_name, window, bucket);
    String::from_utf8(k).unwrap_or_default()
}

/// Writes a bucket's key (see [`bucket_key`]) without allocating.
fn write_bucket_key(
    out: &mut impl std::io::Write,
    prefix: &str,
    scope: Scope,
    route_name: &str,
    window: Window,
    bucket: u64,
) {
    // Writes into memory cannot fail.
    let _ = match scope {
        Scope::Key | Scope::Owner => write!(out, "{prefix}k:"),
        Scope::Route(_) => write!(out, "{prefix}r:{route_name}:"),
    };
    let _ = out.write_all(window.as_str().as_bytes());
    let _ = out.write_all(b":");
    let _ = out.write_all(itoa::Buffer::new().format(bucket).as_bytes());
}

/// A bucket's key as a command argument, written straight into the command.
pub(super) struct BucketKey<'a> {
    pub(super) prefix: &'a str,
    pub(super) scope: Scope,
    pub(super) route_name: &'a str,
    pub(super) window: Window,
    pub(super) bucket: u64,
}

impl redis::ToRedisArgs for BucketKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        write_bucket_key(
            &mut w,
            self.prefix,
            self.scope,
            self.route_name,
            self.window,
            self.bucket,
        );
    }
}

impl redis::ToSingleRedisArg for BucketKey<'_> {}

/// The keys of a window's current bucket and the one before it, as the
/// scripts take them.
pub fn bucket_pair(
    prefix: &str,
    scope: Scope,
    route_name: &str,
    window: Window,
    bucket: u64,
) -> [String; 2] {
    [
        bucket_key(prefix, scope, route_name, window, bucket),
        bucket_key(prefix, scope, route_name, window, bucket.wrapping_sub(1)),
    ]
}

/// How long a bucket's counter must live: a sliding window reads it as the
/// previous bucket too; a month's lives past its end by a margin.
pub fn bucket_ttl_ms(span: &Span) -> u64 {
    if span.sliding {
        2 * span.bucket.len_ms + 1_000
    } else {
        span.left_ms() + MONTH_TTL_MARGIN_MS
    }
}

/// `kg:{<limit id>}:`: the hash tag keeps one key's buckets in one cluster slot.
pub fn key_prefix(id: Uuid) -> String {
    LineagePrefix::new(id).as_str().to_owned()
}

/// [`key_prefix`] on the stack (the request path builds one per request).
pub struct LineagePrefix([u8; 42]);

impl LineagePrefix {
    pub fn new(id: Uuid) -> LineagePrefix {
        let mut b = [0u8; 42];
        b[..4].copy_from_slice(b"kg:{");
        id.hyphenated().encode_lower(&mut b[4..40]);
        b[40..].copy_from_slice(b"}:");
        LineagePrefix(b)
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `kg:{o:<owner id>}:`, the id's `%`, `{`, `}` and `:` escaped as `%XX` so
/// that no id can end the tag early or run into another's keys. The same on
/// every instance (the owner id never changes).
pub fn owner_tag(owner: &str) -> String {
    let mut t = String::with_capacity(owner.len() + 10);
    t.push_str("kg:{o:");
    for c in owner.chars() {
        match c {
            '%' | '{' | '}' | ':' => {
                t.push('%');
                t.push_str(&format!("{:02X}", c as u32));
            }
            c => t.push(c),
        }
    }
    t.push_str("}:");
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::decision::Check;

    #[test]
    fn keys_share_a_hash_tag() {
        let id = Uuid::from_u128(5);
        let c = Check {
            scope: Scope::Route(crate::routes::RouteId(1)),
            window: Window::Minute,
            limit: 5,
        };
        let p = key_prefix(id);
        assert_eq!(p, format!("kg:{{{id}}}:"));
        let k = bucket_key(&p, c.scope, "orders", c.window, 42);
        assert_eq!(k, format!("kg:{{{id}}}:r:orders:minute:42"));
        let k2 = bucket_key(&p, Scope::Key, "orders", c.window, 42);
        assert_eq!(k2, format!("kg:{{{id}}}:k:minute:42"));
    }

    #[test]
    fn cluster_slots_are_redis_keyslots() {
        // CLUSTER KEYSLOT's answers (Redis documentation and redis-cli).
        assert_eq!(cluster_slot("somekey"), 11058);
        assert_eq!(cluster_slot("foo{hash_tag}"), 2515);
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(cluster_slot("{}foo"), 9500, "an empty tag: the whole key");
        let p = key_prefix(Uuid::from_u128(7));
        let k = bucket_key(&p, Scope::Key, "r", Window::Hour, 3);
        assert_eq!(
            cluster_slot(&p),
            cluster_slot(&k),
            "a key's buckets share its slot"
        );
    }

    #[test]
    fn owner_tags_cannot_be_broken_out_of() {
        assert_eq!(owner_tag("acme"), "kg:{o:acme}:");
        assert_eq!(owner_tag("a}b:{%"), "kg:{o:a%7Db%3A%7B%25}:");
        assert_ne!(owner_tag("a:b"), owner_tag("a%3Ab"));
    }
}
