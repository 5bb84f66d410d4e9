//! `[gateway]`: the proxy listener and how keys and client addresses are read.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

use super::checker::Checker;
use crate::config::GatewayConfig;
use crate::config::file::GatewaySection;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            key_header: HeaderName::from_static("x-api-key"),
            accept_bearer: false,
            trusted_proxies: Vec::new(),
            forward_key: false,
            forward_metadata: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
            upstream_keepalive_pool: 256,
            work_stealing: false,
        }
    }
}

impl Checker {
    pub(super) fn gateway(&mut self, g: GatewaySection) -> GatewayConfig {
        let d = GatewayConfig::default();
        let listen = self.addr("gateway.listen", g.listen.as_deref(), d.listen);
        let threads = self.at_least_one("gateway.threads", g.threads, d.threads);
        let key_header = self.key_header(g.key_header.as_deref(), d.key_header);
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
            accept_bearer: g.accept_bearer.unwrap_or(d.accept_bearer),
            trusted_proxies,
            forward_key: g.forward_key.unwrap_or(d.forward_key),
            forward_metadata: g.forward_metadata,
            shutdown_grace: self.duration(
                "gateway.shutdown_grace",
                g.shutdown_grace,
                d.shutdown_grace,
            ),
            upstream_keepalive_pool: self.at_least_one(
                "gateway.upstream_keepalive_pool",
                g.upstream_keepalive_pool,
                d.upstream_keepalive_pool,
            ),
            work_stealing: g.work_stealing.unwrap_or(d.work_stealing),
        }
    }

    fn key_header(&mut self, value: Option<&str>, default: HeaderName) -> HeaderName {
        let key_header = match value {
            None => default,
            Some(header) => {
                HeaderName::from_str(&header.to_ascii_lowercase()).unwrap_or_else(|_| {
                    self.problem(
                        "gateway.key_header",
                        format!("{header:?} is not a valid header name"),
                    );
                    default
                })
            }
        };
        if key_header.as_str().starts_with("x-keygate-") {
            self.problem(
                "gateway.key_header",
                "must not start with x-keygate- (those are stripped)",
            );
        }
        key_header
    }
}

pub fn is_metadata_field(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
