//! Building, starting and stopping a whole gateway: proxy, admin listener and
//! background workers. `main` and the tests use the same path.

mod listeners;
mod reload;
mod running;
mod serve;
mod webhooks;

pub use listeners::{Handover, Listeners, UpgradeError};
pub use reload::{ReloadError, Reloaded, Reloader};
pub use running::{Addrs, RunningGateway};
use serve::{serve_admin, serve_proxy};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::{AdminState, Readiness};
use crate::auth::hash::KeyHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::EntryContext;
use crate::keys::KeyTable;
use crate::keys::sync::KeySync;
use crate::metrics::Metrics;
use crate::proxy::ProxyState;
use crate::proxy::policy::Gate;
use crate::proxy::routing::Routing;
use crate::ratelimit::{Health as RateLimitHealth, Limiter};
use crate::routes::RouteIds;
use crate::secrets;
use crate::service::Services;
use crate::store::{self, StoreError, Stores};
use crate::tls::{CertSet, SniResolver};
use crate::usage::writer::UsageWriter;
use arc_swap::ArcSwap;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] crate::proxy::upstream::ResolveError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretLoadError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot start the admin listener: {0}")]
    Admin(std::io::Error),
    #[error("cannot start the proxy listener: {0}")]
    Proxy(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    RateLimit(#[from] crate::ratelimit::LimiterError),
    #[error("usage spool {0}: {1}")]
    Usage(std::path::PathBuf, std::io::Error),
    #[error("TLS listener: {0}")]
    Tls(#[source] Box<pingora_error::Error>),
    #[error("the gateway was built without listening sockets")]
    NotBound,
    #[error("secret scanning: {0}")]
    SecretScanning(#[source] crate::outbound::OutboundError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::worker::WorkerError),
}

/// Options that tests and embedders set; `main` uses the defaults.
#[derive(Clone, Default)]
pub struct BuildOptions {
    pub clock: Clock,
}

/// A gateway that is built (sockets bound, state loaded) but not yet serving.
pub struct Gateway {
    config: Arc<Config>,
    state: Arc<ProxyState>,
    admin: Arc<AdminState>,
    sync: KeySync,
    usage_writer: Option<UsageWriter>,
    /// Bound by `build`; `None` after `build_unbound` (sockets come later).
    listeners: Option<Listeners>,
    route_ids: Arc<RouteIds>,
    webhooks: Option<webhooks::Webhooks>,
}

/// How long `build` waits for the first key load before starting not-ready.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, let in-flight requests finish within the grace period.
    Graceful,
    /// Stop now.
    Fast,
}

impl Gateway {
    pub async fn build(config: Config) -> Result<Gateway, GatewayError> {
        Self::build_with(config, BuildOptions::default()).await
    }

    pub async fn build_with(config: Config, opts: BuildOptions) -> Result<Gateway, GatewayError> {
        let listeners = Listeners::bind(&config)?;
        let mut gateway = Self::build_unbound(config, opts).await?;
        gateway.listeners = Some(listeners);
        Ok(gateway)
    }

    /// Builds everything but the listening sockets, which [`Self::start_on`]
    /// takes (from the process being replaced).
    pub async fn build_unbound(
        config: Config,
        opts: BuildOptions,
    ) -> Result<Gateway, GatewayError> {
        // rustls for Redis (and the TLS listener) uses the process-wide provider: ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new()?);
        let route_ids = Arc::new(RouteIds::default());
        let secret = secrets::load_hash_secret(&config.store)?;
        let hasher =
            KeyHasher::new(secret.expose().as_bytes()).map_err(secrets::SecretLoadError::from)?;
        let stores = store::open(&config.store).await?;
        let keys = Arc::new(KeyTable::default());
        let readiness = Readiness {
            keys: keys.clone(),
            ratelimit: Arc::new(RateLimitHealth::new(config.ratelimit.on_backend_error)),
            sync: Arc::default(),
        };
        let sync = first_load(&config, &stores, &readiness, &opts, &route_ids).await?;
        let limiter = Arc::new(
            Limiter::new(
                &config,
                metrics.clone(),
                readiness.ratelimit.clone(),
                opts.clock.clone(),
            )?
            .with_ledger(stores.credits.clone()),
        );
        limiter.connect().await?;
        let (usage, usage_writer) = usage_pipeline(&config, &stores, &metrics)?;
        let scanner = crate::leak::scanner::build(&config, &stores, &hasher, &keys, &opts.clock)?;
        let (webhooks, signals) =
            webhooks::Webhooks::build(&config, &stores, &metrics, &opts.clock)?;
        let state = Arc::new(ProxyState {
            gate: Gate::new(&config, hasher.clone(), keys, limiter, opts.clock.clone())
                .with_signals(signals),
            routing: ArcSwap::from_pointee(Routing::build(&config, &route_ids, &metrics)?),
            metrics,
            usage,
            clock: opts.clock.clone(),
            scanner,
        });
        let services = Services::new(&stores, hasher, &config, opts.clock);
        let admin = Arc::new(AdminState::new(
            readiness,
            services,
            state.clone(),
            &config.admin.tokens,
        ));
        if !admin.api_enabled() {
            tracing::info!("admin API off (no KEYGATE_ADMIN_TOKEN); health and metrics stay up");
        }
        Ok(Gateway {
            config,
            state,
            admin,
            sync,
            usage_writer,
            listeners: None,
            route_ids,
            webhooks,
        })
    }

    /// Starts serving. Must run inside a Tokio runtime, which hosts the admin
    /// listener and background workers; the proxy gets runtimes of its own.
    pub fn start(mut self) -> Result<RunningGateway, GatewayError> {
        let listeners = self.listeners.take().ok_or(GatewayError::NotBound)?;
        self.start_on(listeners)
    }

    /// Starts serving on the given sockets.
    pub fn start_on(self, listeners: Listeners) -> Result<RunningGateway, GatewayError> {
        let addr = |l: &std::net::TcpListener, e: fn(std::io::Error) -> GatewayError| {
            l.local_addr().map_err(e)
        };
        let proxy_addr = addr(&listeners.proxy, GatewayError::Proxy)?;
        let admin_addr = addr(&listeners.admin, GatewayError::Admin)?;
        let tls_addr = match &listeners.tls {
            Some(l) => Some(addr(l, GatewayError::Proxy)?),
            None => None,
        };
        let handover = listeners.handover();
        let resolver = self.config.gateway.tls.as_ref().and_then(|t| {
            CertSet::new(&t.certs).map(|c| Arc::new(SniResolver::new(c, t.min_tls13)))
        });
        let (runtime, proxy_task, shutdown_tx, connections) = serve_proxy(
            &self.config,
            &self.state,
            listeners.proxy,
            listeners.tls.map(|l| (l, resolver.clone())),
        )?;
        let (admin_stop_tx, admin_task) = serve_admin(listeners.admin, self.admin.clone())?;
        let (usage_stop_tx, usage_stop_rx) = watch::channel(None);
        let usage_task = self
            .usage_writer
            .map(|w| tokio::spawn(w.run(usage_stop_rx)));
        let (bg_stop_tx, bg_stop_rx) = watch::channel(false);
        let mut background = vec![
            tokio::spawn(self.sync.run(bg_stop_rx.clone())),
            tokio::spawn(
                self.state
                    .gate
                    .limiter()
                    .clone()
                    .run_background(bg_stop_rx.clone()),
            ),
        ];
        if let Some(w) = self.webhooks {
            background.extend(w.spawn(bg_stop_rx));
        }
        let reloader = Reloader::new(
            self.config.clone(),
            self.state.clone(),
            self.route_ids,
            self.admin.services.keys.known_routes().clone(),
            resolver,
        );
        Ok(RunningGateway {
            usage_stop_tx,
            usage_task,
            bg_stop_tx,
            background,
            addrs: Addrs {
                proxy: proxy_addr,
                tls: tls_addr,
                admin: admin_addr,
            },
            grace: self.config.gateway.shutdown_grace,
            state: self.state,
            shutdown_tx,
            connections,
            runtime: Some(runtime),
            proxy_task,
            admin_stop_tx,
            admin_task,
            reloader,
            handover,
        })
    }
}

/// The key sync, after its first load: a gateway whose store is down starts
/// not ready (and becomes ready when it answers); a missing schema is fatal.
async fn first_load(
    config: &Config,
    stores: &Stores,
    readiness: &Readiness,
    opts: &BuildOptions,
    route_ids: &Arc<RouteIds>,
) -> Result<KeySync, GatewayError> {
    let feed = &stores.feed;
    // A store without push notifications is polled often enough to be ~1 s behind.
    let interval = feed.poll_interval().map_or(config.keys.sync_interval, |p| {
        p.min(config.keys.sync_interval)
    });
    let mut sync = KeySync::new(
        feed.clone(),
        readiness.keys.clone(),
        EntryContext::new(config, route_ids.clone()),
        opts.clock.clone(),
        interval,
        readiness.sync.clone(),
    );
    let kind = stores.db.kind();
    match tokio::time::timeout(FIRST_LOAD_WAIT, sync.load()).await {
        Ok(Ok(n)) => tracing::info!(keys = n, store = kind, "key table loaded"),
        // Not a passing outage: a missing schema or a TLS setup that cannot work.
        Ok(Err(e @ (StoreError::Schema(_) | StoreError::Tls { .. }))) => return Err(e.into()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "key store unavailable at start; not ready until it answers")
        }
        Err(_) => tracing::warn!("key store did not answer at start; not ready until it does"),
    }
    Ok(sync)
}

type UsagePipeline = (Option<crate::usage::UsageSink>, Option<UsageWriter>);

fn usage_pipeline(
    config: &Config,
    stores: &Stores,
    metrics: &Arc<Metrics>,
) -> Result<UsagePipeline, GatewayError> {
    if !config.usage.enabled {
        return Ok((None, None));
    }
    let (sink, writer) =
        crate::usage::pipeline(&config.usage, stores.usage.clone(), metrics.clone())
            .map_err(|e| GatewayError::Usage(config.usage.spool_dir.clone(), e))?;
    Ok((Some(sink), Some(writer)))
}
