//! Turns a [`FileConfig`] into a [`Config`], collecting every problem with its path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnetwork::IpNetwork;

use super::file::*;
use super::*;
use crate::auth::{key, scope};
use crate::ratelimit::window::{Limits, Window};

pub enum Failure {
    Syntax(String),
    Invalid(Vec<Problem>),
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn parse(text: &str, env: Env<'_>) -> Result<Config, Failure> {
    let mut problems = Vec::new();
    let de = toml::Deserializer::parse(text).map_err(|e| Failure::Syntax(e.to_string()))?;
    let file: FileConfig = serde_ignored::deserialize(de, |path| {
        problems.push(Problem {
            path: render_path(&path),
            message: "unknown key".into(),
        })
    })
    .map_err(|e| Failure::Syntax(e.to_string()))?;
    let mut c = Checker { problems };
    let config = c.config(file, env);
    if c.problems.is_empty() {
        Ok(config)
    } else {
        Err(Failure::Invalid(c.problems))
    }
}

/// `route[2].upstream` rather than serde_ignored's `route.2.upstream`.
fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        P::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render_path(parent)
        }
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(s) = value else { return default };
        match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problem(path, "duration must be greater than zero");
                default
            }
            Err(e) => {
                self.problem(
                    path,
                    format!("invalid duration {s:?} ({e}); use e.g. \"250ms\", \"30s\", \"24h\""),
                );
                default
            }
        }
    }

    fn addr(&mut self, path: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let s = value.unwrap_or(default);
        SocketAddr::from_str(s).unwrap_or_else(|_| {
            self.problem(path, format!("invalid listen address {s:?}; use ip:port"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn positive(&mut self, path: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.problem(path, "must be at least 1");
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn config(&mut self, f: FileConfig, env: Env<'_>) -> Config {
        let gateway = self.gateway(f.gateway);
        let keys = self.keys(f.keys);
        let store = self.store(f.store, env);
        let ratelimit = self.ratelimit(f.ratelimit, env);
        let usage = self.usage(f.usage);
        let admin = self.admin(f.admin, env, gateway.listen);
        let log = self.log(f.log, env);
        let upstreams = self.upstreams(f.upstream);
        let routes = self.routes(f.route, &upstreams);
        Config {
            gateway,
            keys,
            store,
            ratelimit,
            usage,
            admin,
            log,
            upstreams,
            routes,
        }
    }

    fn gateway(&mut self, g: GatewaySection) -> GatewayConfig {
        let listen = self.addr("gateway.listen", g.listen.as_deref(), "0.0.0.0:8080");
        let default_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = self.positive("gateway.threads", g.threads, default_threads);
        let header = g.key_header.as_deref().unwrap_or("x-api-key");
        let key_header = HeaderName::from_str(&header.to_ascii_lowercase()).unwrap_or_else(|_| {
            self.problem(
                "gateway.key_header",
                format!("{header:?} is not a valid header name"),
            );
            HeaderName::from_static("x-api-key")
        });
        if key_header.as_str().starts_with("x-keygate-") {
            self.problem(
                "gateway.key_header",
                "must not start with x-keygate- (those are stripped)",
            );
        }
        let trusted_proxies = g
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.cidr(&format!("gateway.trusted_proxies[{i}]"), s))
            .collect();
        for (i, field) in g.forward_metadata.iter().enumerate() {
            if !is_metadata_field(field) {
                self.problem(
                    format!("gateway.forward_metadata[{i}]"),
                    format!(
                        "{field:?} must be 1-64 chars of [a-z0-9_-] (it becomes a header name)"
                    ),
                );
            }
        }
        GatewayConfig {
            listen,
            threads,
            key_header,
            accept_bearer: g.accept_bearer,
            trusted_proxies,
            forward_key: g.forward_key,
            forward_metadata: g.forward_metadata,
            shutdown_grace: self.duration(
                "gateway.shutdown_grace",
                g.shutdown_grace.as_deref(),
                Duration::from_secs(10),
            ),
            upstream_keepalive_pool: self.positive(
                "gateway.upstream_keepalive_pool",
                g.upstream_keepalive_pool,
                256,
            ),
            work_stealing: g.work_stealing.unwrap_or(false),
        }
    }

    fn cidr(&mut self, path: &str, s: &str) -> Option<IpNetwork> {
        match validate_cidr(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    fn keys(&mut self, k: KeysSection) -> KeysConfig {
        let default_prefix = k.default_prefix.unwrap_or_else(|| "kg".into());
        if key::validate_prefix(&default_prefix).is_err() {
            self.problem(
                "keys.default_prefix",
                format!("{default_prefix:?} must be 1-24 chars: [a-z][a-z0-9]*(_[a-z0-9]+)*"),
            );
        }
        let max_per_owner = match k.max_per_owner {
            Some(0) => {
                self.problem("keys.max_per_owner", "must be at least 1");
                100
            }
            Some(n) => n,
            None => 100,
        };
        KeysConfig {
            default_prefix,
            max_per_owner,
            sync_interval: self.duration(
                "keys.sync_interval",
                k.sync_interval.as_deref(),
                Duration::from_secs(5),
            ),
        }
    }

    fn store(&mut self, s: StoreSection, env: Env<'_>) -> StoreConfig {
        let url = env(env::DATABASE_URL)
            .or(s.url)
            .unwrap_or_else(|| "sqlite://data/keygate.db".into());
        let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreUrl::Postgres(Secret::new(url))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                self.problem(
                    "store.url",
                    "sqlite URL needs a file path, e.g. sqlite://data/keygate.db",
                );
            }
            StoreUrl::Sqlite(PathBuf::from(path))
        } else {
            self.problem(
                "store.url",
                format!(
                    "{:?} must start with postgres:// or sqlite://",
                    redact_url(&url)
                ),
            );
            StoreUrl::Sqlite(PathBuf::from("data/keygate.db"))
        };
        let hash_secret = match env(env::HASH_SECRET) {
            Some(v) => HashSecretSource::Env(Secret::new(v)),
            None => HashSecretSource::File(PathBuf::from(
                s.hash_secret_file
                    .unwrap_or_else(|| "data/hash.secret".into()),
            )),
        };
        let max_connections = match s.max_connections {
            Some(0) => {
                self.problem("store.max_connections", "must be at least 1");
                8
            }
            Some(n) => n,
            None => 8,
        };
        StoreConfig {
            url,
            hash_secret,
            max_connections,
        }
    }

    fn ratelimit(&mut self, r: RateLimitSection, env: Env<'_>) -> RateLimitConfig {
        let url = env(env::REDIS_URL).or(r.url);
        let backend = match r.backend.as_deref().unwrap_or("memory") {
            "memory" => RateLimitBackend::Memory,
            "redis" => match url {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                    RateLimitBackend::Redis(Secret::new(u))
                }
                Some(u) => {
                    self.problem(
                        "ratelimit.url",
                        format!("{:?} must start with redis://", redact_url(&u)),
                    );
                    RateLimitBackend::Memory
                }
                None => {
                    self.problem(
                        "ratelimit.url",
                        "required when backend = \"redis\" (or set KEYGATE_REDIS_URL)",
                    );
                    RateLimitBackend::Memory
                }
            },
            other => {
                self.problem(
                    "ratelimit.backend",
                    format!("{other:?} must be \"redis\" or \"memory\""),
                );
                RateLimitBackend::Memory
            }
        };
        let on_backend_error = match r.on_backend_error.as_deref().unwrap_or("local") {
            "local" => OnBackendError::Local,
            "allow" => OnBackendError::Allow,
            "deny" => OnBackendError::Deny,
            other => {
                self.problem(
                    "ratelimit.on_backend_error",
                    format!("{other:?} must be \"local\", \"allow\" or \"deny\""),
                );
                OnBackendError::Local
            }
        };
        let breaker_failures = match r.breaker_failures {
            Some(0) => {
                self.problem("ratelimit.breaker_failures", "must be at least 1");
                3
            }
            Some(n) => n,
            None => 3,
        };
        let mode = match r.mode.as_deref().unwrap_or("exact") {
            "exact" => RateLimitMode::Exact,
            "batched" => RateLimitMode::Batched(self.duration(
                "ratelimit.batch_interval",
                r.batch_interval.as_deref(),
                Duration::from_millis(20),
            )),
            other => {
                self.problem(
                    "ratelimit.mode",
                    format!("{other:?} must be \"exact\" or \"batched\""),
                );
                RateLimitMode::Exact
            }
        };
        if r.batch_interval.is_some() && mode == RateLimitMode::Exact {
            self.problem(
                "ratelimit.batch_interval",
                "only applies with mode = \"batched\"",
            );
        }
        RateLimitConfig {
            mode,
            backend,
            timeout: self.duration(
                "ratelimit.timeout",
                r.timeout.as_deref(),
                Duration::from_millis(50),
            ),
            on_backend_error,
            breaker_failures,
            breaker_probe_interval: self.duration(
                "ratelimit.breaker_probe_interval",
                r.breaker_probe_interval.as_deref(),
                Duration::from_millis(500),
            ),
        }
    }

    fn usage(&mut self, u: UsageSection) -> UsageConfig {
        UsageConfig {
            enabled: u.enabled.unwrap_or(true),
            flush_interval: self.duration(
                "usage.flush_interval",
                u.flush_interval.as_deref(),
                Duration::from_secs(1),
            ),
            spool_dir: PathBuf::from(u.spool_dir.unwrap_or_else(|| "data/spool".into())),
            queue_capacity: self.positive("usage.queue_capacity", u.queue_capacity, 65_536),
            batch_size: self.positive("usage.batch_size", u.batch_size, 2_000),
            spool_max_bytes: match u.spool_max_size.as_deref().map(parse_size) {
                None => 1 << 30,
                Some(Some(n)) if n > 0 => n,
                Some(_) => {
                    self.problem(
                        "usage.spool_max_size",
                        "must be a size such as \"512MiB\", \"1GiB\" or \"64KiB\"",
                    );
                    1 << 30
                }
            },
            access_log: u.access_log,
        }
    }

    fn admin(&mut self, a: AdminSection, env: Env<'_>, gateway: SocketAddr) -> AdminConfig {
        let listen = self.addr("admin.listen", a.listen.as_deref(), "127.0.0.1:8081");
        if listen == gateway && listen.port() != 0 {
            self.problem("admin.listen", "must differ from gateway.listen");
        }
        let tokens = env(env::ADMIN_TOKEN)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        AdminConfig { listen, tokens }
    }

    fn log(&mut self, l: LogSection, env: Env<'_>) -> LogConfig {
        let format = match env(env::LOG_FORMAT)
            .or(l.format)
            .as_deref()
            .unwrap_or("pretty")
        {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "log.format",
                    format!("{other:?} must be \"pretty\" or \"json\""),
                );
                LogFormat::Pretty
            }
        };
        let level = env(env::LOG_LEVEL)
            .or(l.level)
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.problem(
                "log.level",
                format!("{level:?} is not a valid level or filter"),
            );
        }
        LogConfig { format, level }
    }

    fn upstreams(&mut self, ups: Vec<UpstreamSection>) -> Vec<UpstreamConfig> {
        let mut seen = HashSet::new();
        ups.into_iter()
            .enumerate()
            .map(|(i, u)| {
                let p = format!("upstream[{i}]");
                if u.name.is_empty() {
                    self.problem(format!("{p}.name"), "required");
                } else if !seen.insert(u.name.clone()) {
                    self.problem(
                        format!("{p}.name"),
                        format!("duplicate upstream name {:?}", u.name),
                    );
                }
                if u.servers.is_empty() {
                    self.problem(
                        format!("{p}.servers"),
                        "needs at least one server (host:port)",
                    );
                }
                for (j, s) in u.servers.iter().enumerate() {
                    if !is_host_port(s) {
                        self.problem(
                            format!("{p}.servers[{j}]"),
                            format!("{s:?} must be host:port"),
                        );
                    }
                }
                let sni = u.sni.clone().unwrap_or_else(|| {
                    u.servers
                        .first()
                        .map(|s| host_of(s).to_owned())
                        .unwrap_or_default()
                });
                UpstreamConfig {
                    connect_timeout: self.duration(
                        &format!("{p}.connect_timeout"),
                        u.connect_timeout.as_deref(),
                        Duration::from_secs(1),
                    ),
                    read_timeout: self.duration(
                        &format!("{p}.read_timeout"),
                        u.read_timeout.as_deref(),
                        Duration::from_secs(30),
                    ),
                    idle_timeout: self.duration(
                        &format!("{p}.idle_timeout"),
                        u.idle_timeout.as_deref(),
                        Duration::from_secs(60),
                    ),
                    fail_timeout: self.duration(
                        &format!("{p}.fail_timeout"),
                        u.fail_timeout.as_deref(),
                        Duration::from_secs(10),
                    ),
                    name: u.name,
                    servers: u.servers,
                    tls: u.tls,
                    sni,
                }
            })
            .collect()
    }

    fn routes(&mut self, routes: Vec<RouteSection>, ups: &[UpstreamConfig]) -> Vec<RouteConfig> {
        let by_name: HashMap<&str, usize> = ups
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str(), i))
            .collect();
        let mut seen = HashSet::new();
        routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r, &by_name, &mut seen))
            .collect()
    }

    fn route(
        &mut self,
        i: usize,
        r: RouteSection,
        upstreams: &HashMap<&str, usize>,
        seen: &mut HashSet<String>,
    ) -> RouteConfig {
        let p = format!("route[{i}]");
        if r.name.is_empty() {
            self.problem(format!("{p}.name"), "required");
        } else if !seen.insert(r.name.clone()) {
            self.problem(
                format!("{p}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        let upstream = match upstreams.get(r.upstream.as_str()) {
            Some(&idx) => idx,
            None if r.upstream.is_empty() => {
                self.problem(format!("{p}.upstream"), "required");
                0
            }
            None => {
                self.problem(
                    format!("{p}.upstream"),
                    format!("no upstream named {:?}", r.upstream),
                );
                0
            }
        };
        let path_prefix = r.path_prefix.unwrap_or_else(|| "/".into());
        if !path_prefix.starts_with('/') {
            self.problem(
                format!("{p}.path_prefix"),
                format!("{path_prefix:?} must start with '/'"),
            );
        }
        let host = r.host.map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                self.problem(
                    format!("{p}.host"),
                    format!("{h:?} must be a bare host name"),
                );
            }
        }
        let methods = r
            .methods
            .iter()
            .enumerate()
            .filter_map(
                |(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        self.problem(
                            format!("{p}.methods[{j}]"),
                            format!("{m:?} is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect();
        let auth = match r.auth.as_deref().unwrap_or("required") {
            "required" => AuthMode::Required,
            "public" => AuthMode::Public,
            other => {
                self.problem(
                    format!("{p}.auth"),
                    format!("{other:?} must be \"required\" or \"public\""),
                );
                AuthMode::Required
            }
        };
        for (j, s) in r.scopes.iter().enumerate() {
            if let Err(e) = scope::validate(s, false) {
                self.problem(format!("{p}.scopes[{j}]"), e.to_string());
            }
        }
        let mut rate_limits = Limits::default();
        for (window, limit) in &r.rate_limits {
            match Window::parse(window) {
                Some(_) if !crate::ratelimit::window::valid_limit(*limit) => {
                    self.problem(
                        format!("{p}.rate_limits.{window}"),
                        crate::ratelimit::window::LIMIT_RANGE,
                    );
                }
                Some(w) => rate_limits.set(w, Some(*limit)),
                None => self.problem(
                    format!("{p}.rate_limits.{window}"),
                    "unknown window; use second, minute, hour, day or month",
                ),
            }
        }
        if auth == AuthMode::Public && (!r.scopes.is_empty() || !rate_limits.is_empty()) {
            self.problem(
                format!("{p}.auth"),
                "a public route has no key, so it cannot have scopes or per-key rate_limits",
            );
        }
        RouteConfig {
            name: r.name,
            host,
            path_prefix,
            methods,
            upstream,
            auth,
            scopes: r.scopes,
            rate_limits,
        }
    }
}

pub fn validate_cidr(s: &str) -> Result<IpNetwork, String> {
    let net = IpNetwork::from_str(s).map_err(|e| format!("invalid CIDR {s:?}: {e}"))?;
    // `10.0.0.1/8` is almost always a typo for `10.0.0.0/8`; refuse rather than guess.
    if net.network() != net.ip() {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}/{}?",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

/// `"64KiB"`, `"512MB"`, `"1GiB"`, `"1000"` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub fn is_metadata_field(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn host_of(server: &str) -> &str {
    match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => server,
    }
}

fn is_host_port(s: &str) -> bool {
    if SocketAddr::from_str(s).is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
        None => false,
    }
}
