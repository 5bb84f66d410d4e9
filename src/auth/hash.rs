//! Keys are stored and looked up as `HMAC-SHA256(hash_secret, key)`: a database
//! dump cannot confirm guesses without the secret, which never enters the database.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const MIN_SECRET_LEN: usize = 32;

/// An HMAC-SHA256 digest of a key. Equality is constant-time.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // HMAC output is uniformly random to anyone without the secret, so a
        // prefix is a perfectly distributed hash (see `PrefixHasher`).
        state.write_u64(u64::from_le_bytes([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], self.0[6], self.0[7],
        ]));
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

impl KeyHash {
    pub fn from_slice(b: &[u8]) -> Option<KeyHash> {
        <[u8; 32]>::try_from(b).ok().map(KeyHash)
    }
}

/// A `Hasher` that passes through the single `u64` written by `KeyHash::hash`.
#[derive(Default, Clone, Copy)]
pub struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by KeyHash; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type PrefixBuildHasher = std::hash::BuildHasherDefault<PrefixHasher>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the hash secret must be at least {MIN_SECRET_LEN} bytes (got {0})")]
    TooShort(usize),
}

/// Hashes keys with the server's secret. The keyed state is computed once and
/// cloned per key, so a hash costs two SHA-256 compressions.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<secret>)")
    }
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> Result<KeyHasher, SecretError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(secret.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| SecretError::TooShort(secret.len()))?;
        Ok(KeyHasher { mac })
    }

    pub fn hash(&self, key: &str) -> KeyHash {
        let mut m = self.mac.clone();
        m.update(key.as_bytes());
        KeyHash(m.finalize().into_bytes().into())
    }

    /// A keyed digest of arbitrary bytes under a domain label, for uses other
    /// than key lookup (the audit chain) so that one secret serves both safely.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(b"keygate-derive:");
        m.update(label.as_bytes());
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_hash_different_secret_different_hash() {
        let a = KeyHasher::new(&[1; 32]).expect("secret");
        let b = KeyHasher::new(&[2; 32]).expect("secret");
        assert_eq!(a.hash("kg_x"), a.hash("kg_x"));
        assert_ne!(a.hash("kg_x"), a.hash("kg_y"));
        assert_ne!(a.hash("kg_x"), b.hash("kg_x"));
        assert_ne!(a.derive("audit"), a.hash("audit").0);
    }

    #[test]
    fn rfc4231_test_case_6() {
        let h = KeyHasher::new(&[0xaa; 131]).expect("secret");
        let got = h.hash("Test Using Larger Than Block-Size Key - Hash Key First");
        let want = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
        let hex: String = got.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            KeyHasher::new(b"short").err(),
            Some(SecretError::TooShort(5))
        );
    }
}
