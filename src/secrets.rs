//! Loading the hash secret: from `KEYGATE_HASH_SECRET` or a file. Never a default.

use std::path::{Path, PathBuf};

use crate::auth::hash::{MIN_SECRET_LEN, SecretError};
use crate::config::{HashSecretSource, Secret};

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

pub fn load_hash_secret(source: &HashSecretSource) -> Result<Secret, SecretLoadError> {
    let value = match source {
        HashSecretSource::Env(s) => s.expose().trim().to_owned(),
        HashSecretSource::File(path) => read_file(path)?,
    };
    if value.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(value.len()).into());
    }
    Ok(Secret::new(value))
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
