//! Handling one report: signature, then each token: format and checksum,
//! the in-memory table by HMAC, and for a keygate key the configured action
//! through the key service (audited in the change's transaction). Runs on
//! the gateway's main runtime, off the proxy's threads; at most
//! [`CONCURRENT_REPORTS`] at a time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::keyring::{Keyring, VerifyError};
use crate::auth::hash::KeyHasher;
use crate::auth::key;
use crate::clock::Clock;
use crate::config::{Config, LeakAction, SecretScanningConfig};
use crate::gateway::GatewayError;
use crate::keys::KeyTable;
use crate::outbound::Outbound;
use crate::service::{KeyService, ServiceError};
use crate::store::StoreError;
use crate::store::Stores;

/// Reports handled at once; more wait (up to [`QUEUE_WAIT`]).
pub const CONCURRENT_REPORTS: usize = 4;
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// The actor of the audit records secret scanning writes.
pub const ACTOR: &str = "secret-scanning";

/// One token GitHub found: `{"token", "type", "url", "source"}`.
#[derive(Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    /// Where it was found (`source` says what kind of place; not used).
    #[serde(default)]
    url: String,
}

/// GitHub's feedback for one token. The token is named by its SHA-256 (hex),
/// never echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub token_hash: String,
    pub token_type: String,
    pub label: Label,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    TruePositive,
    FalsePositive,
}

/// Why a report was not handled. None of them carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Signature(#[from] VerifyError),
    #[error("the report is not a JSON list of {{token, type, url, source}}")]
    Malformed,
    #[error("too many reports at once")]
    Busy,
    #[error("the key store failed: {0}")]
    Store(#[source] ServiceError),
    #[error("the report's task failed")]
    Task,
}

impl ScanError {
    /// The HTTP status GitHub gets.
    pub fn status(&self) -> u16 {
        match self {
            ScanError::Signature(VerifyError::Signature(_)) => 401,
            ScanError::Malformed => 400,
            ScanError::Signature(VerifyError::KeysUnavailable)
            | ScanError::Busy
            | ScanError::Store(_)
            | ScanError::Task => 503,
        }
    }
}

pub struct Scanner {
    pub config: SecretScanningConfig,
    pub keyring: Keyring,
    keys: Arc<KeyTable>,
    hasher: KeyHasher,
    service: KeyService,
    /// The gateway's main runtime, where the store's connections live.
    runtime: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
}

/// What a [`Scanner`] needs from the gateway.
pub struct ScannerParts {
    pub keyring: Keyring,
    pub keys: Arc<KeyTable>,
    pub hasher: KeyHasher,
    pub service: KeyService,
    pub runtime: tokio::runtime::Handle,
}

impl Scanner {
    pub fn new(config: SecretScanningConfig, p: ScannerParts) -> Scanner {
        Scanner {
            config,
            keyring: p.keyring,
            keys: p.keys,
            hasher: p.hasher,
            service: p.service,
            runtime: p.runtime,
            permits: Arc::new(Semaphore::new(CONCURRENT_REPORTS)),
        }
    }

    /// Handles a signed report on the main runtime; the caller (a proxy
    /// thread) only waits for the answer.
    pub async fn handle(
        self: &Arc<Self>,
        key_id: String,
        signature: String,
        body: Bytes,
    ) -> Result<Vec<Feedback>, ScanError> {
        let me = self.clone();
        let task = self
            .runtime
            .spawn(async move { me.report(&key_id, &signature, &body).await });
        task.await.map_err(|_| ScanError::Task)?
    }

    async fn report(
        &self,
        key_id: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<Vec<Feedback>, ScanError> {
        let _permit = tokio::time::timeout(QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| ScanError::Busy)?
            .map_err(|_| ScanError::Busy)?;
        self.keyring.verify(key_id, signature, body).await?;
        let tokens: Vec<Reported> =
            serde_json::from_slice(body).map_err(|_| ScanError::Malformed)?;
        let mut feedback = Vec::with_capacity(tokens.len());
        for t in tokens {
            let label = self.token(&t).await?;
            feedback.push(Feedback {
                token_hash: token_hash(&t.token),
                token_type: t.token_type,
                label,
            });
        }
        Ok(feedback)
    }

    /// Whether the token is a keygate key this gateway knows; if so, the
    /// configured action is taken.
    async fn token(&self, t: &Reported) -> Result<Label, ScanError> {
        if key::parse(&t.token).is_err() {
            return Ok(Label::FalsePositive);
        }
        let Some(entry) = self.keys.get(&self.hasher.hash(&t.token)) else {
            return Ok(Label::FalsePositive);
        };
        let action = self.config.action;
        match self
            .service
            .leaked(entry.id, &t.url, action, &ACTOR.into())
            .await
        {
            Ok(_) => {}
            // Deleted since the table saw it: not a key any more.
            Err(ServiceError::Store(StoreError::NotFound(_))) => return Ok(Label::FalsePositive),
            Err(e) => return Err(ScanError::Store(e)),
        }
        let what = match action {
            LeakAction::Revoke => "revoked",
            LeakAction::Flag => "flagged",
        };
        tracing::warn!(key_id = %entry.id, action = what, "secret scanning: a key was reported leaked");
        Ok(Label::TruePositive)
    }
}

/// GitHub's `token_hash`: the token's SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The scanner of an enabled `[secret_scanning]` section; `None` when off.
pub fn build(
    config: &Config,
    stores: &Stores,
    hasher: &KeyHasher,
    keys: &Arc<KeyTable>,
    clock: &Clock,
) -> Result<Option<Arc<Scanner>>, GatewayError> {
    let c = &config.secret_scanning;
    if !c.enabled {
        return Ok(None);
    }
    let outbound = Outbound::new(c.ca_file.as_deref()).map_err(GatewayError::SecretScanning)?;
    let sealer = crate::audit::AuditSealer::new(hasher);
    let service = KeyService::new(
        stores.keys.clone(),
        hasher.clone(),
        sealer,
        config,
        clock.clone(),
    );
    let parts = ScannerParts {
        keyring: Keyring::new(
            c.public_keys_url.clone(),
            outbound,
            c.keys_refetch_min_interval,
        ),
        keys: keys.clone(),
        hasher: hasher.clone(),
        service,
        runtime: tokio::runtime::Handle::current(),
    };
    tracing::info!(path = %c.path, action = ?c.action, "secret scanning endpoint on the proxy listener");
    Ok(Some(Arc::new(Scanner::new(c.clone(), parts))))
}
