//! The configuration file as written: loosely typed so that validation can
//! report every problem at once, with its path, instead of stopping at the
//! first. Durations and names from a fixed set are [`Lenient`]: parsed by
//! serde, but kept with their text when they do not parse.
//!
//! Absent values are `None` (and empty lists), left out when printed; their
//! defaults are applied, and written, once: in validation. Build a file as values and validate it with
//! [`Config::from_file`](super::Config::from_file), or print it with
//! `toml::to_string`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lenient::{Choice, Lenient};
use super::{AuthMode, LeakAction, LogFormat, OnBackendError, Pooler, Role, UpstreamProtocol};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub gateway: GatewaySection,
    pub keys: KeysSection,
    pub store: StoreSection,
    pub ratelimit: RateLimitSection,
    pub usage: UsageSection,
    pub admin: AdminSection,
    pub log: LogSection,
    pub secret_scanning: SecretScanningSection,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamSection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteSection>,
    pub webhooks: WebhooksSection,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookSection>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySection {
    pub listen: Option<String>,
    pub threads: Option<usize>,
    pub key_header: Option<String>,
    pub accept_bearer: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    pub forward_key: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forward_metadata: Vec<String>,
    pub shutdown_grace: Option<Lenient<Duration>>,
    pub upstream_keepalive_pool: Option<usize>,
    pub work_stealing: Option<bool>,
    /// Bounds on request heads, enforced before Pingora reads them.
    pub request_head_timeout: Option<Lenient<Duration>>,
    pub keepalive_timeout: Option<Lenient<Duration>>,
    pub max_header_size: Option<String>,
    pub max_headers: Option<usize>,
    /// Where `serve` writes its pid (for `keygate reload`).
    pub pid_file: Option<String>,
    /// The Unix socket a new process takes the listening sockets over (`serve --upgrade`).
    pub upgrade_socket: Option<String>,
    pub tls: Option<TlsSection>,
}

/// `[gateway.tls]`: a TLS listener with certificates chosen by SNI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<CertSection>,
    pub min_version: Option<Lenient<TlsVersion>>,
    pub http2: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertSection {
    pub cert: String,
    pub key: String,
}

/// `min_version` in `[gateway.tls]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl Choice for TlsVersion {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeysSection {
    pub default_prefix: Option<String>,
    pub max_per_owner: Option<u32>,
    pub sync_interval: Option<Lenient<Duration>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSection {
    pub url: Option<String>,
    pub hash_secret_file: Option<String>,
    pub max_connections: Option<u32>,
    pub pooler: Option<Lenient<Pooler>>,
    pub listen_url: Option<String>,
}

/// `backend` in `[ratelimit]`. (Variants are in the order a problem lists them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Redis,
    #[default]
    Memory,
}

/// `mode` in `[ratelimit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    #[default]
    Exact,
    Batched,
}

impl Choice for BackendName {}
impl Choice for ModeName {}
impl Choice for Pooler {}
impl Choice for TopologyName {}

/// `topology` in `[ratelimit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyName {
    #[default]
    Standalone,
    Cluster,
    Sentinel,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSection {
    pub backend: Option<Lenient<BackendName>>,
    pub url: Option<String>,
    pub timeout: Option<Lenient<Duration>>,
    pub on_backend_error: Option<Lenient<OnBackendError>>,
    pub breaker_failures: Option<u32>,
    pub breaker_probe_interval: Option<Lenient<Duration>>,
    pub mode: Option<Lenient<ModeName>>,
    pub batch_interval: Option<Lenient<Duration>>,
    pub lease: Option<u64>,
    pub topology: Option<Lenient<TopologyName>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<String>,
    pub master_name: Option<String>,
    pub tls_ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageSection {
    pub enabled: Option<bool>,
    pub flush_interval: Option<Lenient<Duration>>,
    pub spool_dir: Option<String>,
    pub queue_capacity: Option<usize>,
    pub batch_size: Option<usize>,
    /// `"512MiB"`, `"1GiB"`, `"64KiB"`, `"1000"` (bytes).
    pub spool_max_size: Option<String>,
    pub access_log: Option<bool>,
}

/// `[webhooks]`: delivery tuning for every endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksSection {
    pub max_age: Option<Lenient<Duration>>,
    pub initial_backoff: Option<Lenient<Duration>>,
    pub max_backoff: Option<Lenient<Duration>>,
    pub timeout: Option<Lenient<Duration>>,
    pub poll_interval: Option<Lenient<Duration>>,
    pub batch_size: Option<usize>,
    pub key_expiring_days: Option<u32>,
    pub credits_low_threshold: Option<i64>,
    pub retention: Option<Lenient<Duration>>,
}

/// One `[[webhook]]` endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSection {
    pub name: Option<String>,
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The environment variable that holds the signing secret (`whsec_...`).
    pub secret_env: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSection {
    pub listen: Option<String>,
    /// `[[admin.tokens]]`: named tokens with a role.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<AdminTokenSection>,
}

/// One `[[admin.tokens]]`: the token as its SHA-256 (hex) or the name of an
/// environment variable holding it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminTokenSection {
    pub name: String,
    pub role: Option<Lenient<Role>>,
    pub token_sha256: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub format: Option<Lenient<LogFormat>>,
    pub level: Option<String>,
}

/// `[secret_scanning]`: GitHub's secret-scanning partner endpoint (off by default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretScanningSection {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub public_keys_url: Option<String>,
    pub action: Option<Lenient<LeakAction>>,
    pub ca_file: Option<String>,
    /// `"1MiB"`, `"64KiB"`, `"1000"` (bytes).
    pub max_body: Option<String>,
    pub keys_refetch_min_interval: Option<Lenient<Duration>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamSection {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    pub tls: Option<bool>,
    pub sni: Option<String>,
    pub protocol: Option<Lenient<UpstreamProtocol>>,
    pub connect_timeout: Option<Lenient<Duration>>,
    pub read_timeout: Option<Lenient<Duration>>,
    pub idle_timeout: Option<Lenient<Duration>>,
    pub fail_timeout: Option<Lenient<Duration>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteSection {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    pub upstream: String,
    pub auth: Option<Lenient<AuthMode>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Window name (`second` … `month`) to limit.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<String, u64>,
    /// Credits a request costs (default 1).
    pub cost: Option<u64>,
    /// A response header carrying the cost the upstream reports.
    pub cost_header: Option<String>,
}
