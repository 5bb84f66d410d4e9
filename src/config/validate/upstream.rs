//! `[[upstream]]`: named groups of servers and their timeouts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::checker::Checker;
use crate::config::UpstreamConfig;
use crate::config::file::UpstreamSection;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

impl Checker {
    pub(super) fn upstreams(&mut self, ups: Vec<UpstreamSection>) -> Vec<UpstreamConfig> {
        let mut seen = HashSet::new();
        ups.into_iter()
            .enumerate()
            .map(|(i, u)| self.upstream(&format!("upstream[{i}]"), u, &mut seen))
            .collect()
    }

    fn upstream(
        &mut self,
        p: &str,
        u: UpstreamSection,
        seen: &mut HashSet<String>,
    ) -> UpstreamConfig {
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
        let sni = u.sni.unwrap_or_else(|| {
            u.servers
                .first()
                .map(|s| host_of(s).to_owned())
                .unwrap_or_default()
        });
        let protocol = self
            .parsed(&format!("{p}.protocol"), u.protocol)
            .unwrap_or_default();
        let mut timeout =
            |field: &str, value, default| self.duration(&format!("{p}.{field}"), value, default);
        UpstreamConfig {
            protocol,
            connect_timeout: timeout("connect_timeout", u.connect_timeout, CONNECT_TIMEOUT),
            read_timeout: timeout("read_timeout", u.read_timeout, READ_TIMEOUT),
            idle_timeout: timeout("idle_timeout", u.idle_timeout, IDLE_TIMEOUT),
            fail_timeout: timeout("fail_timeout", u.fail_timeout, FAIL_TIMEOUT),
            name: u.name,
            servers: u.servers,
            tls: u.tls.unwrap_or(false),
            sni,
        }
    }
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
