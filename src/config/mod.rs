//! Configuration: the TOML file ([`file`]), validated into the types below
//! ([`validate`], one module per section, where each section's defaults are
//! written). Every problem is reported at once, each with its path.

pub mod file;
mod lenient;
mod load;
mod secret;
mod secret_scanning;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::ratelimit::window::Limits;
pub use file::FileConfig;
pub use lenient::{Choice, Lenient, Text};
pub use load::{ConfigError, Problem};
pub use secret::{Secret, redact_url};
pub use secret_scanning::{LeakAction, SecretScanningConfig};
pub use validate::{WebhookEndpoint, WebhooksConfig, is_metadata_field, validate_cidr};

/// Environment variables that override the file.
pub mod env {
    pub const CONFIG: &str = "KEYGATE_CONFIG";
    pub const DATABASE_URL: &str = "KEYGATE_DATABASE_URL";
    pub const DATABASE_LISTEN_URL: &str = "KEYGATE_DATABASE_LISTEN_URL";
    pub const REDIS_URL: &str = "KEYGATE_REDIS_URL";
    pub const HASH_SECRET: &str = "KEYGATE_HASH_SECRET";
    pub const ADMIN_TOKEN: &str = "KEYGATE_ADMIN_TOKEN";
    pub const LOG_FORMAT: &str = "KEYGATE_LOG_FORMAT";
    pub const LOG_LEVEL: &str = "KEYGATE_LOG";
}

pub const DEFAULT_PATH: &str = "config/keygate.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub keys: KeysConfig,
    pub store: StoreConfig,
    pub ratelimit: RateLimitConfig,
    pub usage: UsageConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub secret_scanning: SecretScanningConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub webhooks: WebhooksConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub key_header: HeaderName,
    pub accept_bearer: bool,
    pub trusted_proxies: Vec<IpNetwork>,
    pub forward_key: bool,
    pub forward_metadata: Vec<String>,
    /// How long SIGTERM waits for in-flight requests before closing them.
    pub shutdown_grace: Duration,
    pub upstream_keepalive_pool: usize,
    /// One work-stealing runtime for all proxy threads, or one runtime per
    /// thread (Pingora's "no steal" mode).
    pub work_stealing: bool,
    pub door: DoorLimits,
    pub pid_file: PathBuf,
    pub upgrade_socket: PathBuf,
    pub tls: Option<TlsConfig>,
}

/// What the front door allows a request head before Pingora reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorLimits {
    /// From the first byte of a head to its end.
    pub head_timeout: Duration,
    /// How long a connection may sit idle before (or between) requests.
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// The TLS listener (`[gateway.tls]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// Chosen by SNI; the first is the default.
    pub certs: Vec<crate::tls::ServerCert>,
    pub min_tls13: bool,
    /// Offer HTTP/2 (ALPN `h2`) beside HTTP/1.1.
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeysConfig {
    pub default_prefix: String,
    pub max_per_owner: u32,
    /// How often the key table polls the store for changes it was not notified of.
    pub sync_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Postgres(Secret),
    Sqlite(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashSecretSource {
    Env(Secret),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub url: StoreUrl,
    pub hash_secret: HashSecretSource,
    pub max_connections: u32,
    /// What stands between keygate and Postgres.
    pub pooler: Pooler,
    /// A direct connection for LISTEN (and migrations) when `url` goes
    /// through a transaction pooler.
    pub listen_url: Option<Secret>,
}

/// `store.pooler`: how Postgres is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// Directly, or through a session pooler: every feature works.
    #[default]
    None,
    /// Through PgBouncer / RDS Proxy / Supavisor in transaction pooling: no
    /// named prepared statements, no session state, no LISTEN.
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    #[default]
    Local,
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitBackend {
    Memory,
    Redis(RedisConfig),
}

/// Where Redis is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: RedisTopology,
    /// The CA that signs the servers' certificates (`rediss://`), instead of
    /// the public roots.
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (`url`).
    Standalone(Secret),
    /// A Redis Cluster, found from these seed nodes.
    Cluster(Vec<Secret>),
    /// The master that the sentinels name `master_name`; `url` (optional)
    /// carries the master's scheme, credentials and database.
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
        url: Option<Secret>,
    },
}

/// How the Redis backend counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    /// Every request decided and counted in Redis by one atomic script run
    /// (requests in flight together share a call): exact across instances.
    Exact,
    /// Local counting, flushed to Redis every interval: bounded over-admission.
    Batched(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub mode: RateLimitMode,
    pub backend: RateLimitBackend,
    pub timeout: Duration,
    pub on_backend_error: OnBackendError,
    pub breaker_failures: u32,
    pub breaker_probe_interval: Duration,
    /// Exact mode with Redis: admissions a gateway takes from Redis at once
    /// for a busy key (at most a sixteenth of the room left); 1: none.
    pub lease: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageConfig {
    pub enabled: bool,
    pub flush_interval: Duration,
    pub spool_dir: PathBuf,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub spool_max_bytes: u64,
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer tokens; empty means the admin API is off (health and metrics stay up).
    pub tokens: Vec<AdminToken>,
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET endpoints and `/v1/verify`.
    Read,
    /// Also keys, owners and credits.
    Write,
    /// Everything.
    #[default]
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// A named admin token, kept only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Named in the audit log as `admin:<name>`.
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// `host:port` as written; resolved when the gateway starts.
    pub servers: Vec<String>,
    pub tls: bool,
    pub sni: String,
    /// HTTP/1.1, or HTTP/2 (over TLS with ALPN, or cleartext prior knowledge) for gRPC.
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a server that failed to connect is skipped.
    pub fail_timeout: Duration,
}

/// `[[upstream]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    H1,
    H2,
}

/// Secure by default: a route needs a key unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Required,
    Public,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Lowercase host without port.
    pub host: Option<String>,
    pub path_prefix: String,
    /// Empty means every method.
    pub methods: Vec<Method>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub rate_limits: Limits,
    /// Credits a request costs (default 1; 0: free).
    pub cost: u64,
    /// A response header in which the upstream reports the request's cost
    /// (debited after the response instead of `cost`, which is reserved).
    pub cost_header: Option<HeaderName>,
}

impl Choice for OnBackendError {}
impl Choice for Role {}
impl Choice for LogFormat {}
impl Choice for AuthMode {}
impl Choice for UpstreamProtocol {}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_admin_cost;
