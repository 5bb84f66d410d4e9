//! The API key format: `<prefix>_<random><checksum>`.
//!
//! `random` is 32 base62 characters from a CSPRNG (about 190 bits); `checksum` is
//! the CRC32 of `<prefix>_<random>` in base62, zero-padded to 6 characters. A
//! mistyped or made-up key fails [`parse`] before any hashing or lookup.

use std::fmt;

use rand::RngExt;

pub const RANDOM_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
pub const MAX_PREFIX_LEN: usize = 24;
/// The longest well-formed key; anything longer is rejected on length alone.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + RANDOM_LEN + CHECKSUM_LEN;
pub const HINT_LEN: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed key. Deliberately carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("key has the wrong length")]
    Length,
    #[error("key has no '_' between prefix and body")]
    NoSeparator,
    #[error("key prefix must be 1-24 chars: [a-z][a-z0-9]*(_[a-z0-9]+)*")]
    Prefix,
    #[error("key body must be base62")]
    Body,
    #[error("key checksum does not match")]
    Checksum,
}

/// A key in plaintext. Only exists in the output of create/rotate and while a
/// request is being authenticated; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlaintextKey(String);

impl PlaintextKey {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last characters, safe to display to identify a key.
    pub fn hint(&self) -> String {
        self.0[self.0.len() - HINT_LEN..].to_owned()
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextKey(<redacted>)")
    }
}

/// Checks a prefix against `[a-z][a-z0-9]*(_[a-z0-9]+)*`, 1-24 characters.
pub fn validate_prefix(prefix: &str) -> Result<(), KeyFormatError> {
    let b = prefix.as_bytes();
    if b.is_empty() || b.len() > MAX_PREFIX_LEN || !b[0].is_ascii_lowercase() {
        return Err(KeyFormatError::Prefix);
    }
    let mut prev_underscore = false;
    for &c in b {
        match c {
            b'_' if prev_underscore => return Err(KeyFormatError::Prefix),
            b'_' => prev_underscore = true,
            c if c.is_ascii_lowercase() || c.is_ascii_digit() => prev_underscore = false,
            _ => return Err(KeyFormatError::Prefix),
        }
    }
    if prev_underscore {
        return Err(KeyFormatError::Prefix);
    }
    Ok(())
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A fresh key with the given prefix, from the thread-local CSPRNG.
pub fn generate(prefix: &str) -> Result<PlaintextKey, KeyFormatError> {
    validate_prefix(prefix)?;
    let mut rng = rand::rng();
    let mut key = Vec::with_capacity(prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
    key.extend_from_slice(prefix.as_bytes());
    key.push(b'_');
    for _ in 0..RANDOM_LEN {
        key.push(BASE62[rng.random_range(0..BASE62.len())]);
    }
    let sum = checksum(&key);
    key.extend_from_slice(&sum);
    // Only ASCII was pushed.
    String::from_utf8(key)
        .map(PlaintextKey)
        .map_err(|_| KeyFormatError::Body)
}

/// Checks shape and checksum; returns the prefix. Cheap: no allocation, no hashing
/// beyond a CRC32 of at most [`MAX_KEY_LEN`] bytes.
pub fn parse(key: &str) -> Result<&str, KeyFormatError> {
    let b = key.as_bytes();
    if b.len() > MAX_KEY_LEN || b.len() < 2 + RANDOM_LEN + CHECKSUM_LEN {
        return Err(KeyFormatError::Length);
    }
    let tail_start = b.len() - RANDOM_LEN - CHECKSUM_LEN;
    if b[tail_start - 1] != b'_' {
        return Err(KeyFormatError::NoSeparator);
    }
    let prefix = &key[..tail_start - 1];
    validate_prefix(prefix)?;
    if !b[tail_start..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::Body);
    }
    let body_end = b.len() - CHECKSUM_LEN;
    if checksum(&b[..body_end]) != b[body_end..] {
        return Err(KeyFormatError::Checksum);
    }
    Ok(prefix)
}

impl std::str::FromStr for PlaintextKey {
    type Err = KeyFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(|_| PlaintextKey(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse() {
        for prefix in ["kg", "acme_live", "a1_b2_c3", &"x".repeat(24)] {
            let k = generate(prefix).expect("valid prefix");
            let s = k.expose();
            assert_eq!(s.len(), prefix.len() + 1 + 32 + 6);
            assert_eq!(parse(s), Ok(prefix));
            assert_eq!(k.hint(), &s[s.len() - 4..]);
        }
    }

    #[test]
    fn keys_are_random() {
        let a = generate("kg").expect("prefix");
        let b = generate("kg").expect("prefix");
        assert_ne!(a, b);
    }

    #[test]
    fn a_typo_breaks_the_checksum() {
        let k = generate("kg").expect("prefix");
        let s = k.expose();
        let pos = 10;
        let c = s.as_bytes()[pos];
        let swapped = if c == b'a' { 'b' } else { 'a' };
        let typo = format!("{}{}{}", &s[..pos], swapped, &s[pos + 1..]);
        assert_eq!(parse(&typo), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn malformed_shapes() {
        assert_eq!(parse(""), Err(KeyFormatError::Length));
        assert_eq!(parse("kg_short"), Err(KeyFormatError::Length));
        assert_eq!(parse(&"a".repeat(200)), Err(KeyFormatError::Length));
        let body = "A".repeat(38);
        assert_eq!(
            parse(&format!("kgX{body}")),
            Err(KeyFormatError::NoSeparator)
        );
        assert_eq!(parse(&format!("KG_{body}")), Err(KeyFormatError::Prefix));
        assert_eq!(parse(&format!("_{body}")), Err(KeyFormatError::Length));
        assert_eq!(parse(&format!("kg__{body}")), Err(KeyFormatError::Prefix));
        let bad_body = format!("kg_{}!{}", "A".repeat(20), "A".repeat(17));
        assert_eq!(parse(&bad_body), Err(KeyFormatError::Body));
        // Multi-byte UTF-8 never panics on slicing.
        let utf = format!("kg_{}é", "A".repeat(36));
        assert!(parse(&utf).is_err());
    }

    #[test]
    fn prefixes() {
        for ok in ["kg", "acme_live", "a", "a1", "a_1"] {
            assert_eq!(validate_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1a", "A", "a_", "a__b", "a-b", &"a".repeat(25)] {
            assert_eq!(validate_prefix(bad), Err(KeyFormatError::Prefix), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = generate("kg").expect("prefix");
        assert!(!format!("{k:?}").contains(&k.expose()[3..]));
    }
}
