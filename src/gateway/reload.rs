//! Live reload (`SIGHUP`, `keygate reload`): the file is read and validated
//! again; if it is valid, routes, upstreams, route caps, TLS certificates and
//! the log level are swapped in. Requests in flight finish on the snapshot
//! they started with. An invalid file changes nothing. Settings that only a
//! restart can apply are named and left as they run.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::ProxyState;
use crate::proxy::routing::Routing;
use crate::proxy::upstream::ResolveError;
use crate::routes::{KnownRoutes, RouteIds};
use crate::tls::{CertSet, SniResolver};

pub struct Reloader {
    /// What is running: reloadable parts from the last good reload, the rest
    /// from the start.
    current: Mutex<Arc<Config>>,
    state: Arc<ProxyState>,
    route_ids: Arc<RouteIds>,
    known: KnownRoutes,
    tls: Option<Arc<SniResolver>>,
    metrics: Arc<Metrics>,
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings that changed in the file but need a restart (left as they run).
    pub restart_only: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    LogLevel(#[from] crate::telemetry::LevelError),
}

/// The settings a reload does not apply, by name, when they differ.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! fields {
        ($a:expr, $b:expr, $($name:literal => $field:ident),* $(,)?) => {
            $( if $a.$field != $b.$field { out.push($name); } )*
        };
    }
    let (g, h) = (&old.gateway, &new.gateway);
    fields!(g, h,
        "gateway.listen" => listen, "gateway.threads" => threads,
        "gateway.key_header" => key_header, "gateway.accept_bearer" => accept_bearer,
        "gateway.trusted_proxies" => trusted_proxies, "gateway.forward_key" => forward_key,
        "gateway.forward_metadata" => forward_metadata, "gateway.shutdown_grace" => shutdown_grace,
        "gateway.upstream_keepalive_pool" => upstream_keepalive_pool,
        "gateway.work_stealing" => work_stealing, "gateway.pid_file" => pid_file,
        "gateway.upgrade_socket" => upgrade_socket,
    );
    if g.door != h.door {
        out.push("gateway.request_head_timeout/keepalive_timeout/max_header_size/max_headers");
    }
    let tls_shape = |c: &Config| {
        c.gateway
            .tls
            .as_ref()
            .map(|t| (t.listen, t.min_tls13, t.http2))
    };
    if tls_shape(old) != tls_shape(new) {
        out.push("gateway.tls (listen, min_version, http2)");
    }
    fields!(old, new, "[keys]" => keys, "[store]" => store, "[ratelimit]" => ratelimit,
        "[usage]" => usage, "[admin]" => admin, "[secret_scanning]" => secret_scanning);
    if old.log.format != new.log.format {
        out.push("log.format");
    }
    // Compared as printed: a secret prints redacted, so a new secret alone
    // goes unnoticed (it is read again at the restart that applies it).
    if format!("{:?}", old.webhooks) != format!("{:?}", new.webhooks) {
        out.push("[webhooks] and [[webhook]]");
    }
    out
}

/// `new`'s reloadable parts over `old`'s restart-only ones: what now runs.
fn merged(old: &Config, new: Config) -> Config {
    let mut gateway = old.gateway.clone();
    if let (Some(t), Some(n)) = (gateway.tls.as_mut(), new.gateway.tls) {
        t.certs = n.certs;
    }
    let mut log = old.log.clone();
    log.level = new.log.level;
    Config {
        gateway,
        log,
        upstreams: new.upstreams,
        routes: new.routes,
        ..old.clone()
    }
}

impl Reloader {
    pub fn new(
        config: Arc<Config>,
        state: Arc<ProxyState>,
        route_ids: Arc<RouteIds>,
        known: KnownRoutes,
        tls: Option<Arc<SniResolver>>,
    ) -> Reloader {
        let metrics = state.metrics.clone();
        Reloader {
            current: Mutex::new(config),
            state,
            route_ids,
            known,
            tls,
            metrics,
        }
    }

    /// Reads `path` again (with the process environment) and applies it.
    pub fn reload_file(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        match Config::load(path) {
            Ok(c) => self.apply(c),
            Err(e) => {
                self.metrics.config_reload(ReloadResult::Invalid);
                Err(e.into())
            }
        }
    }

    /// Applies a validated configuration; on error nothing has changed.
    pub fn apply(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let result = self.swap(new);
        self.metrics.config_reload(match result {
            Ok(_) => ReloadResult::Ok,
            Err(_) => ReloadResult::Invalid,
        });
        result
    }

    fn swap(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let mut current = self.current.lock();
        // Everything that can fail comes first.
        let routing = Routing::build(&new, &self.route_ids, &self.metrics)?;
        let certs = new
            .gateway
            .tls
            .as_ref()
            .and_then(|t| CertSet::new(&t.certs));
        match crate::telemetry::set_level(&new.log.level) {
            Ok(()) | Err(crate::telemetry::LevelError::NotInstalled) => {}
            Err(e) => return Err(e.into()),
        }
        let restart_only = restart_only(&current, &new);
        // One store: every request from now on sees the new routes together.
        self.state.routing.store(Arc::new(routing));
        self.known.store(Arc::new(
            new.routes.iter().map(|r| r.name.clone()).collect(),
        ));
        if let (Some(resolver), Some(certs)) = (&self.tls, certs) {
            resolver.replace(certs);
        }
        *current = Arc::new(merged(&current, new));
        Ok(Reloaded { restart_only })
    }
}
