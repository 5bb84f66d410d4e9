//! Loading the hash secret: from `KEYGATE_HASH_SECRET` or a file. Never a default.

use std::path::{Path, PathBuf};

use std::io::Write;

use rand::RngExt;

use crate::auth::hash::{MIN_SECRET_LEN, SecretError};
use crate::config::{HashSecretSource, Secret, StoreConfig, StoreUrl};

#[derive(Debug, thiserror::Error)]
pub enum SecretLoadError {
    #[error(
        "no hash secret: set KEYGATE_HASH_SECRET or create {path} (at least {MIN_SECRET_LEN} bytes, e.g. `openssl rand -hex 32 > {path}`)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read hash secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hash secret: {0}")]
    Weak(#[from] SecretError),
}

/// The hash secret from `KEYGATE_HASH_SECRET` or `store.hash_secret_file`.
/// With the embedded SQLite store a missing file is created with a random
/// secret (mode 0600), so a first run just works; with Postgres it is an
/// error, because several gateways must share one secret.
pub fn load_hash_secret(store: &StoreConfig) -> Result<Secret, SecretLoadError> {
    let embedded = matches!(store.url, StoreUrl::Sqlite(_));
    let value = match &store.hash_secret {
        HashSecretSource::Env(s) => s.expose().trim().to_owned(),
        HashSecretSource::File(path) if embedded && !path.exists() => create_file(path)?,
        HashSecretSource::File(path) => read_file(path)?,
    };
    if value.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(value.len()).into());
    }
    Ok(Secret::new(value))
}

fn create_file(path: &Path) -> Result<String, SecretLoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| SecretLoadError::Read {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let secret = crate::audit::chain::to_hex(&bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(secret.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(err)?;
    tracing::info!(path = %path.display(), "created a new hash secret; back it up: keys cannot be verified without it");
    Ok(secret)
}

fn read_file(path: &Path) -> Result<String, SecretLoadError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretLoadError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(SecretLoadError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}
