//! Starting the real gateway in-process from a typed configuration, on free ports.

use std::net::SocketAddr;
use std::path::Path;

use keygate::config::file::{
    BackendName, FileConfig, RateLimitSection, RouteSection, UpstreamSection,
};
use keygate::config::{AuthMode, Config};
use keygate::{BuildOptions, Gateway, RunningGateway, Stop};

pub const HASH_SECRET: &str = "test-hash-secret-test-hash-secret-0123456789";

/// Builds a gateway configuration as a typed [`FileConfig`].
#[derive(Clone)]
pub struct TestConfig {
    file: FileConfig,
    env: Vec<(String, String)>,
    db_url: String,
    /// Holds the usage spool; removed with the last clone.
    pub data: std::sync::Arc<super::procs::ScratchDir>,
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl TestConfig {
    /// A gateway on free ports with a fresh database on the shared test Postgres.
    pub async fn pg() -> TestConfig {
        Self::new(StoreKind::Postgres).await
    }

    /// A gateway on free ports with a fresh database of the given kind.
    pub async fn new(kind: StoreKind) -> TestConfig {
        match kind {
            StoreKind::Postgres => Self::with_store(&super::pg::fresh_db().await),
            StoreKind::Sqlite => {
                let data = super::procs::ScratchDir::new("data");
                let url = format!("sqlite://{}", data.path().join("keygate.db").display());
                Self::build_with_data(&url, data)
            }
        }
    }

    pub fn kind(&self) -> StoreKind {
        if self.db_url.starts_with("sqlite://") {
            StoreKind::Sqlite
        } else {
            StoreKind::Postgres
        }
    }

    /// Runs raw SQL on this config's database (for tampering in tests).
    pub async fn exec(&self, sql: &str) {
        use sqlx::Executor;
        match self.kind() {
            StoreKind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.db_url).await.expect("connect");
                pool.execute(sqlx::AssertSqlSafe(sql.to_string()))
                    .await
                    .expect("sql");
            }
            StoreKind::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.db_url)
                    .await
                    .expect("connect");
                pool.execute(sqlx::AssertSqlSafe(sql.to_string()))
                    .await
                    .expect("sql");
            }
        }
    }

    /// The usage store behind this config, opened as the gateway opens it.
    pub async fn store(&self) -> std::sync::Arc<dyn keygate::store::UsageStore> {
        keygate::store::open(&self.build().store)
            .await
            .expect("open store")
            .usage
    }

    /// In-process gateways use the work-stealing runtime: Pingora's per-thread
    /// runtime keeps its thread pools in a process-wide `ThreadLocal` whose
    /// slots are reused by later threads, so a gateway started after another
    /// was stopped in the same process can inherit dead runtime handles. One
    /// gateway per process (production, and the binary-based tests) is fine.
    pub fn with_store(db_url: &str) -> TestConfig {
        Self::build_with_data(db_url, super::procs::ScratchDir::new("data"))
    }

    fn build_with_data(db_url: &str, data: super::procs::ScratchDir) -> TestConfig {
        let mut file = FileConfig::default();
        file.gateway.listen = Some("127.0.0.1:0".into());
        file.gateway.threads = Some(2);
        file.gateway.shutdown_grace = Some("5s".into());
        file.gateway.work_stealing = Some(true);
        file.admin.listen = Some("127.0.0.1:0".into());
        file.store.url = Some(db_url.into());
        file.keys.sync_interval = Some("1s".into());
        file.usage.spool_dir = Some(data.path().join("spool").display().to_string());
        file.usage.flush_interval = Some("100ms".into());
        TestConfig {
            file,
            env: vec![("KEYGATE_HASH_SECRET".into(), HASH_SECRET.into())],
            db_url: db_url.to_string(),
            data: std::sync::Arc::new(data),
        }
    }

    pub fn spool_dir(&self) -> std::path::PathBuf {
        self.data.path().join("spool")
    }

    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// The key service the CLI and admin API use, on this config's store.
    pub async fn keys(&self) -> keygate::service::KeyService {
        let config = self.build();
        let hasher = keygate::auth::hash::KeyHasher::new(HASH_SECRET.as_bytes()).expect("secret");
        let stores = keygate::store::open(&config.store)
            .await
            .expect("open store");
        let clock = keygate::clock::Clock::system();
        keygate::service::Services::new(&stores, hasher, &config, clock).keys
    }

    /// Every service the CLI and admin API use (keys, owners, audit, usage),
    /// on this config's store.
    pub async fn services(&self) -> keygate::service::Services {
        let config = self.build();
        let hasher = keygate::auth::hash::KeyHasher::new(HASH_SECRET.as_bytes()).expect("secret");
        let stores = keygate::store::open(&config.store)
            .await
            .expect("open store");
        let clock = keygate::clock::Clock::system();
        keygate::service::Services::new(&stores, hasher, &config, clock)
    }

    /// Changes any part of the file.
    pub fn with(mut self, change: impl FnOnce(&mut FileConfig)) -> Self {
        change(&mut self.file);
        self
    }

    /// Adds an `[[upstream]]`; `change` sets more than its name and servers.
    pub fn upstream(
        self,
        name: &str,
        servers: &[SocketAddr],
        change: impl FnOnce(&mut UpstreamSection),
    ) -> Self {
        let mut u = UpstreamSection {
            name: name.into(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        change(&mut u);
        self.with(|f| f.upstream.push(u))
    }

    /// For [`route`](Self::route): a route that needs no key.
    pub fn public(r: &mut RouteSection) {
        r.auth = Some(AuthMode::Public.into());
    }

    /// Adds a `[[route]]`; `change` sets more than its name, prefix and upstream.
    pub fn route(
        self,
        name: &str,
        prefix: &str,
        upstream: &str,
        change: impl FnOnce(&mut RouteSection),
    ) -> Self {
        let mut r = RouteSection {
            name: name.into(),
            path_prefix: Some(prefix.into()),
            upstream: upstream.into(),
            ..Default::default()
        };
        change(&mut r);
        self.with(|f| f.route.push(r))
    }

    /// Changes the `[ratelimit]` section.
    pub fn ratelimit(self, change: impl FnOnce(&mut RateLimitSection)) -> Self {
        self.with(|f| change(&mut f.ratelimit))
    }

    /// Counts rate limits on the Redis at `url`.
    pub fn redis(self, url: &str) -> Self {
        self.ratelimit(|r| {
            r.backend = Some(BackendName::Redis.into());
            r.url = Some(url.into());
        })
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn file(&self) -> &FileConfig {
        &self.file
    }

    /// The file as TOML, for debugging.
    pub fn toml(&self) -> String {
        toml::to_string(&self.file).unwrap_or_else(|e| format!("<not TOML: {e}>"))
    }

    pub fn build(&self) -> Config {
        let env = self.env.clone();
        let lookup = move |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        Config::from_file(self.file.clone(), Path::new("test.toml"), &lookup)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{}", self.toml()))
    }

    pub async fn start(&self) -> TestGateway {
        self.start_with(BuildOptions::default()).await
    }

    pub async fn start_with(&self, opts: BuildOptions) -> TestGateway {
        let gw = Gateway::build_with(self.build(), opts)
            .await
            .expect("gateway builds");
        TestGateway::new(gw.start().expect("gateway starts"))
    }
}

pub struct TestGateway {
    pub running: Option<RunningGateway>,
    pub client: reqwest::Client,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl TestGateway {
    pub fn new(running: RunningGateway) -> TestGateway {
        TestGateway {
            proxy: running.proxy_addr(),
            admin: running.admin_addr(),
            running: Some(running),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of one sample line, e.g. `keygate_requests_total{outcome="ok",route="r"}`.
    /// `/readyz`: its status and JSON body.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(self.admin_url("/readyz"))
            .send()
            .await
            .expect("readyz");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    /// Fails the test when the series is not exposed (a misspelt name must
    /// not read as 0).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    }

    /// Waits (up to 3 s) for a metric to reach `want`. Metrics are recorded
    /// just after a response is sent, so a scrape right after can be early.
    pub async fn metric_reaches(&self, series: &str, want: f64) -> bool {
        super::eventually(std::time::Duration::from_secs(3), || async {
            metric_value(&self.metrics().await, series) == Some(want)
        })
        .await
        .is_some()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop(Stop::Fast).await;
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse::<f64>().ok())
    })
}
