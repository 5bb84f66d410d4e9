//! `[ratelimit]`'s Redis: a standalone server, a cluster or a sentinel-watched
//! master, with TLS (`rediss://`) and an optional private CA.

use std::path::PathBuf;

use super::checker::Checker;
use crate::config::file::TopologyName;
use crate::config::{Lenient, RedisConfig, RedisTopology, Secret, redact_url};

/// The Redis settings as written.
pub(super) struct RedisFields {
    pub url: Option<String>,
    pub topology: Option<Lenient<TopologyName>>,
    pub nodes: Vec<String>,
    pub sentinels: Vec<String>,
    pub master_name: Option<String>,
    pub tls_ca_file: Option<String>,
}

impl RedisFields {
    /// Whether any field that only Redis reads is set.
    pub fn any(&self) -> bool {
        self.topology.is_some()
            || !self.nodes.is_empty()
            || !self.sentinels.is_empty()
            || self.master_name.is_some()
            || self.tls_ca_file.is_some()
    }
}

fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

impl Checker {
    pub(super) fn redis(&mut self, f: RedisFields) -> Option<RedisConfig> {
        let topology = self
            .parsed("ratelimit.topology", f.topology)
            .unwrap_or_default();
        let mut ok = true;
        let mut url = |c: &mut Checker, path: &str, u: String| {
            if is_redis_url(&u) {
                return Some(Secret::new(u));
            }
            let shown = redact_url(&u);
            c.problem(
                path,
                format!("{shown:?} must start with redis:// or rediss://"),
            );
            ok = false;
            None
        };
        let only = |c: &mut Checker, set: bool, path: &str, topo: &str| {
            if set {
                c.problem(path, format!("only applies with topology = \"{topo}\""));
            }
        };
        if topology != TopologyName::Cluster {
            only(self, !f.nodes.is_empty(), "ratelimit.nodes", "cluster");
        }
        if topology != TopologyName::Sentinel {
            only(
                self,
                !f.sentinels.is_empty(),
                "ratelimit.sentinels",
                "sentinel",
            );
            only(
                self,
                f.master_name.is_some(),
                "ratelimit.master_name",
                "sentinel",
            );
        }
        let topology = match topology {
            TopologyName::Standalone => match f.url {
                Some(u) => url(self, "ratelimit.url", u).map(RedisTopology::Standalone),
                None => {
                    self.problem(
                        "ratelimit.url",
                        "required when backend = \"redis\" (or set KEYGATE_REDIS_URL)",
                    );
                    None
                }
            },
            TopologyName::Cluster => {
                let seeds: Vec<String> = f.nodes.into_iter().chain(f.url).collect();
                if seeds.is_empty() {
                    self.problem("ratelimit.nodes", "a cluster needs seed nodes (or url)");
                }
                let nodes: Vec<Secret> = seeds
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, n)| url(self, &format!("ratelimit.nodes[{i}]"), n))
                    .collect();
                (!nodes.is_empty()).then_some(RedisTopology::Cluster(nodes))
            }
            TopologyName::Sentinel => {
                self.sentinel(f.sentinels, f.master_name, f.url.map(Secret::new))
            }
        };
        let tls_ca_file = f.tls_ca_file.map(PathBuf::from);
        if let Some(ca) = &tls_ca_file {
            if !ca.is_file() {
                self.problem(
                    "ratelimit.tls_ca_file",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }
        Some(RedisConfig {
            topology: topology.filter(|_| ok)?,
            tls_ca_file,
        })
    }

    fn sentinel(
        &mut self,
        sentinels: Vec<String>,
        master_name: Option<String>,
        url: Option<Secret>,
    ) -> Option<RedisTopology> {
        if sentinels.is_empty() {
            self.problem(
                "ratelimit.sentinels",
                "sentinel needs at least one sentinel (host:port)",
            );
        }
        for (i, s) in sentinels.iter().enumerate() {
            let bare = s
                .strip_prefix("redis://")
                .or_else(|| s.strip_prefix("rediss://"))
                .unwrap_or(s);
            if !bare
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                self.problem(
                    format!("ratelimit.sentinels[{i}]"),
                    format!("{s:?} must be host:port"),
                );
            }
        }
        let Some(master_name) = master_name.filter(|m| !m.is_empty()) else {
            self.problem(
                "ratelimit.master_name",
                "required with topology = \"sentinel\"",
            );
            return None;
        };
        if let Some(u) = url.as_ref().filter(|u| !is_redis_url(u.expose())) {
            let shown = redact_url(u.expose());
            self.problem(
                "ratelimit.url",
                format!("{shown:?} must start with redis:// or rediss://"),
            );
            return None;
        }
        (!sentinels.is_empty()).then_some(RedisTopology::Sentinel {
            sentinels,
            master_name,
            url,
        })
    }
}
