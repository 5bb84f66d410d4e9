//! The configuration file as written: loosely typed so that validation can
//! report every problem at once, with its path, instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub gateway: GatewaySection,
    pub keys: KeysSection,
    pub store: StoreSection,
    pub ratelimit: RateLimitSection,
    pub usage: UsageSection,
    pub admin: AdminSection,
    pub log: LogSection,
    pub upstream: Vec<UpstreamSection>,
    pub route: Vec<RouteSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GatewaySection {
    pub listen: Option<String>,
    pub threads: Option<usize>,
    pub key_header: Option<String>,
    pub accept_bearer: bool,
    pub trusted_proxies: Vec<String>,
    pub forward_key: bool,
    pub forward_metadata: Vec<String>,
    pub shutdown_grace: Option<String>,
    pub upstream_keepalive_pool: Option<usize>,
    pub work_stealing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeysSection {
    pub default_prefix: Option<String>,
    pub max_per_owner: Option<u32>,
    pub sync_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StoreSection {
    pub url: Option<String>,
    pub hash_secret_file: Option<String>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RateLimitSection {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub on_backend_error: Option<String>,
    pub breaker_failures: Option<u32>,
    pub breaker_probe_interval: Option<String>,
    pub mode: Option<String>,
    pub batch_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsageSection {
    pub enabled: Option<bool>,
    pub flush_interval: Option<String>,
    pub spool_dir: Option<String>,
    pub queue_capacity: Option<usize>,
    pub batch_size: Option<usize>,
    pub spool_max_size: Option<String>,
    pub access_log: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AdminSection {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamSection {
    pub name: String,
    pub servers: Vec<String>,
    pub tls: bool,
    pub sni: Option<String>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub fail_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouteSection {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub methods: Vec<String>,
    pub upstream: String,
    pub auth: Option<String>,
    pub scopes: Vec<String>,
    pub rate_limits: BTreeMap<String, u64>,
}
