//! `[store]`: the key database and the hash secret (URL and secret may come
//! from the environment).

use std::path::PathBuf;

use super::Env;
use super::checker::Checker;
use crate::config::file::StoreSection;
use crate::config::{HashSecretSource, Pooler, Secret, StoreConfig, StoreUrl, env, redact_url};

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreUrl::Sqlite(PathBuf::from("data/keygate.db")),
            hash_secret: HashSecretSource::File(PathBuf::from("data/hash.secret")),
            max_connections: 8,
            pooler: Pooler::None,
            listen_url: None,
        }
    }
}

impl Checker {
    pub(super) fn store(&mut self, s: StoreSection, env: Env<'_>) -> StoreConfig {
        let d = StoreConfig::default();
        let url = match env(env::DATABASE_URL).or(s.url) {
            Some(url) => self.store_url(&url).unwrap_or(d.url),
            None => d.url,
        };
        let hash_secret = match (env(env::HASH_SECRET), s.hash_secret_file) {
            (Some(v), _) => HashSecretSource::Env(Secret::new(v)),
            (None, Some(file)) => HashSecretSource::File(PathBuf::from(file)),
            (None, None) => d.hash_secret,
        };
        let pooler = self.parsed("store.pooler", s.pooler).unwrap_or(d.pooler);
        let listen_url = env(env::DATABASE_LISTEN_URL).or(s.listen_url);
        let postgres = matches!(url, StoreUrl::Postgres(_));
        if !postgres && (pooler != Pooler::None || listen_url.is_some()) {
            let path = if listen_url.is_some() {
                "store.listen_url"
            } else {
                "store.pooler"
            };
            self.problem(path, "only applies to a postgres:// store");
        }
        let listen_url = listen_url.filter(|u| {
            let ok = u.starts_with("postgres://") || u.starts_with("postgresql://");
            if !ok {
                self.problem(
                    "store.listen_url",
                    format!("{:?} must start with postgres://", redact_url(u)),
                );
            }
            ok && postgres
        });
        StoreConfig {
            url,
            hash_secret,
            max_connections: self.at_least_one(
                "store.max_connections",
                s.max_connections,
                d.max_connections,
            ),
            pooler,
            listen_url: listen_url.map(Secret::new),
        }
    }

    fn store_url(&mut self, url: &str) -> Option<StoreUrl> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(StoreUrl::Postgres(Secret::new(url)));
        }
        let Some(path) = url.strip_prefix("sqlite://") else {
            self.problem(
                "store.url",
                format!(
                    "{:?} must start with postgres:// or sqlite://",
                    redact_url(url)
                ),
            );
            return None;
        };
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            self.problem(
                "store.url",
                "sqlite URL needs a file path, e.g. sqlite://data/keygate.db",
            );
        }
        Some(StoreUrl::Sqlite(PathBuf::from(path)))
    }
}
