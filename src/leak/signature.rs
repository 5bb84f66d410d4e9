//! GitHub secret-scanning signatures: the raw request body is signed with
//! ECDSA P-256 over SHA-256; `Github-Public-Key-Identifier` names the key
//! (from the document at `public_keys_url`) and `Github-Public-Key-Signature`
//! carries the signature, base64 of its DER encoding.

use std::collections::HashMap;

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

/// Why a report's signature is not accepted. Carries no part of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature headers are missing")]
    Unsigned,
    #[error("the signing key is not one GitHub publishes")]
    UnknownKey,
    #[error("the signature is not base64 DER")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// GitHub's published keys: `{"public_keys": [{"key_identifier", "key", "is_current"}]}`.
#[derive(Debug, Deserialize)]
struct KeyDocument {
    public_keys: Vec<PublishedKey>,
}

#[derive(Debug, Deserialize)]
struct PublishedKey {
    key_identifier: String,
    /// A PEM `PUBLIC KEY` (SPKI).
    key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("the public key document is not GitHub's format: {0}")]
    Format(#[source] serde_json::Error),
    #[error("public key {id:?} is not a P-256 key in PEM")]
    Key { id: String },
}

/// Verifying keys by identifier.
#[derive(Debug, Default, Clone)]
pub struct Keys(HashMap<String, VerifyingKey>);

impl Keys {
    /// Parses the document at `public_keys_url`.
    pub fn parse(json: &[u8]) -> Result<Keys, KeysError> {
        let doc: KeyDocument = serde_json::from_slice(json).map_err(KeysError::Format)?;
        let mut keys = HashMap::with_capacity(doc.public_keys.len());
        for k in doc.public_keys {
            let key = VerifyingKey::from_public_key_pem(&k.key).map_err(|_| KeysError::Key {
                id: k.key_identifier.clone(),
            })?;
            keys.insert(k.key_identifier, key);
        }
        Ok(Keys(keys))
    }

    pub fn has(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `signature` (base64 DER) over `body` with key `id`.
    pub fn verify(&self, id: &str, signature: &str, body: &[u8]) -> Result<(), SignatureError> {
        let key = self.0.get(id).ok_or(SignatureError::UnknownKey)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let sig = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        key.verify(body, &sig).map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).expect("key")
    }

    fn document(keys: &[(&str, &SigningKey)]) -> Vec<u8> {
        let list: Vec<serde_json::Value> = keys
            .iter()
            .map(|(id, k)| {
                let pem = k
                    .verifying_key()
                    .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                    .expect("pem");
                serde_json::json!({"key_identifier": id, "key": pem, "is_current": true})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "public_keys": list })).expect("json")
    }

    fn sign(k: &SigningKey, body: &[u8]) -> String {
        let sig: Signature = k.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn signatures_are_checked_against_the_named_key() {
        let (a, b) = (key(1), key(2));
        let keys = Keys::parse(&document(&[("ka", &a), ("kb", &b)])).expect("keys");
        let body = br#"[{"token":"x","type":"t","url":"u","source":"s"}]"#;
        assert_eq!(keys.verify("ka", &sign(&a, body), body), Ok(()));
        assert_eq!(
            keys.verify("kb", &sign(&a, body), body),
            Err(SignatureError::Mismatch),
            "signed by another key"
        );
        assert_eq!(
            keys.verify("ka", &sign(&a, body), b"[{}]"),
            Err(SignatureError::Mismatch),
            "a changed body"
        );
        assert_eq!(
            keys.verify("kc", &sign(&a, body), body),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            keys.verify("ka", "not base64!", body),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn documents_that_are_not_githubs_are_refused() {
        assert!(Keys::parse(b"{}").is_err());
        assert!(Keys::parse(br#"{"public_keys":[{"key_identifier":"k","key":"nope"}]}"#).is_err());
    }
}
