//! `[gateway]`: the proxy listener and how keys and client addresses are read.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

use super::checker::Checker;
use std::path::PathBuf;

use crate::config::file::GatewaySection;
use crate::config::{DoorLimits, GatewayConfig};

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
            door: DoorLimits {
                head_timeout: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(60),
                max_header_bytes: 64 << 10,
                max_headers: 100,
            },
            pid_file: PathBuf::from("data/keygate.pid"),
            upgrade_socket: PathBuf::from("data/upgrade/keygate.sock"),
            tls: None,
        }
    }
}

/// Pingora's own ceilings on a request head; ours must stay below them so
/// that a head we let through is one Pingora accepts.
const PINGORA_MAX_HEADERS: usize = 256;
const PINGORA_MAX_HEADER_BYTES: u64 = (1 << 20) - 1;

impl Checker {
    pub(super) fn gateway(&mut self, mut g: GatewaySection) -> GatewayConfig {
        let d = GatewayConfig::default();
        let door = self.door(&g, d.door);
        let tls = g.tls.take().map(|t| self.tls(t));
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
            door,
            pid_file: g.pid_file.map_or(d.pid_file, PathBuf::from),
            upgrade_socket: g.upgrade_socket.map_or(d.upgrade_socket, PathBuf::from),
            tls,
        }
    }

    fn door(&mut self, g: &GatewaySection, d: DoorLimits) -> DoorLimits {
        let max_headers = self.at_least_one("gateway.max_headers", g.max_headers, d.max_headers);
        if max_headers > PINGORA_MAX_HEADERS {
            self.problem(
                "gateway.max_headers",
                format!("at most {PINGORA_MAX_HEADERS} (Pingora's limit)"),
            );
        }
        let bytes = self.size_at_most(
            "gateway.max_header_size",
            g.max_header_size.as_deref(),
            d.max_header_bytes as u64,
            PINGORA_MAX_HEADER_BYTES,
            "at most 1MiB - 1 (Pingora's limit)",
        );
        DoorLimits {
            head_timeout: self.duration(
                "gateway.request_head_timeout",
                g.request_head_timeout.clone(),
                d.head_timeout,
            ),
            keepalive_timeout: self.duration(
                "gateway.keepalive_timeout",
                g.keepalive_timeout.clone(),
                d.keepalive_timeout,
            ),
            max_header_bytes: usize::try_from(bytes).unwrap_or(d.max_header_bytes),
            max_headers: max_headers.min(PINGORA_MAX_HEADERS),
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
