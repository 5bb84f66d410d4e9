//! Starting the real gateway in-process from TOML, on free ports.

use std::net::SocketAddr;
use std::path::Path;

use keygate::config::Config;
use keygate::{BuildOptions, Gateway, RunningGateway, Stop};

pub const HASH_SECRET: &str = "test-hash-secret-test-hash-secret-0123456789";

/// Builds a gateway configuration; sections are appended as TOML text.
pub struct TestConfig {
    toml: String,
    env: Vec<(String, String)>,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            toml: "[gateway]\nlisten = \"127.0.0.1:0\"\nthreads = 2\nshutdown_grace = \"5s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n"
                .to_string(),
            env: vec![("KEYGATE_HASH_SECRET".into(), HASH_SECRET.into())],
        }
    }
}

impl TestConfig {
    /// Adds TOML to the `[gateway]` section (must be called before other sections).
    pub fn gateway(mut self, line: &str) -> Self {
        let at = self.toml.find("\n\n[admin]").expect("gateway section");
        self.toml.insert_str(at, &format!("\n{line}"));
        self
    }

    pub fn section(mut self, toml: &str) -> Self {
        self.toml.push_str(toml);
        self.toml.push('\n');
        self
    }

    pub fn upstream(self, name: &str, servers: &[SocketAddr], extra: &str) -> Self {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        self.section(&format!(
            "[[upstream]]\nname = \"{name}\"\nservers = [{}]\n{extra}\n",
            list.join(", ")
        ))
    }

    pub fn route(self, name: &str, prefix: &str, upstream: &str, extra: &str) -> Self {
        self.section(&format!(
            "[[route]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n"
        ))
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn toml(&self) -> &str {
        &self.toml
    }

    pub fn build(&self) -> Config {
        let env = self.env.clone();
        let lookup = move |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        Config::from_toml(&self.toml, Path::new("test.toml"), &lookup)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{}", self.toml))
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
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop(Stop::Fast).await;
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}
