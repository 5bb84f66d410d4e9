//! GitHub's signing keys, fetched from `public_keys_url` and cached. A report
//! signed with a key the cache does not know triggers a refetch (GitHub
//! rotates its keys), but at most one fetch runs at a time and at most one
//! starts per `keys_refetch_min_interval`: a flood of made-up identifiers
//! costs GitHub's endpoint one request per interval, never one per report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Method;
use tokio::sync::Mutex;

use super::signature::{Keys, KeysError, SignatureError};
use crate::outbound::{Outbound, OutboundError};

/// How long one fetch of the keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest key document read (GitHub's is about 1 KiB).
const MAX_DOCUMENT: usize = 256 << 10;

/// Why the keys could not be fetched. Names no header or body.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching the public keys failed: {0}")]
    Outbound(#[source] OutboundError),
    #[error("the public keys URL answered {0}")]
    Status(http::StatusCode),
    #[error(transparent)]
    Document(#[from] KeysError),
}

/// Why a report's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// No key has ever been fetched: the report cannot be judged yet.
    #[error("GitHub's public keys are not available")]
    KeysUnavailable,
}

pub struct Keyring {
    url: String,
    outbound: Outbound,
    min_interval: Duration,
    keys: ArcSwap<Keys>,
    /// Held while fetching (one fetch at a time); when the last one started.
    last_fetch: Mutex<Option<Instant>>,
    loaded: std::sync::atomic::AtomicBool,
    fetches: AtomicU64,
}

impl Keyring {
    pub fn new(url: String, outbound: Outbound, min_interval: Duration) -> Keyring {
        Keyring {
            url,
            outbound,
            min_interval,
            keys: ArcSwap::from_pointee(Keys::default()),
            last_fetch: Mutex::new(None),
            loaded: Default::default(),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many fetches have been started.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Checks `signature` over `body` with the key `id`, refetching the keys
    /// once if `id` is unknown and the interval allows.
    pub async fn verify(&self, id: &str, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
        if !self.keys.load().has(id) {
            self.refresh().await;
        }
        if !self.loaded.load(Ordering::Acquire) {
            return Err(VerifyError::KeysUnavailable);
        }
        Ok(self.keys.load().verify(id, signature, body)?)
    }

    /// Fetches the keys unless a fetch started less than the interval ago;
    /// callers arriving during a fetch wait for it and do not fetch again.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "secret scanning: public keys fetched");
                self.keys.store(Arc::new(keys));
                self.loaded.store(true, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "secret scanning: cannot fetch the public keys"),
        }
    }

    async fn fetch(&self) -> Result<Keys, FetchError> {
        let headers = crate::outbound::static_headers(&[
            (http::header::ACCEPT, "application/json"),
            (http::header::USER_AGENT, "keygate-secret-scanning"),
        ]);
        let resp = self
            .outbound
            .send(
                Method::GET,
                &self.url,
                headers,
                Bytes::new(),
                FETCH_TIMEOUT,
                MAX_DOCUMENT,
            )
            .await
            .map_err(FetchError::Outbound)?;
        if !resp.status.is_success() {
            return Err(FetchError::Status(resp.status));
        }
        Ok(Keys::parse(&resp.body)?)
    }
}
