//! Building, starting and stopping a whole gateway: proxy, admin listener and
//! background workers. `main` and the tests use the same path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Fds, ListenFds};
use pingora_core::services::Service as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, Readiness};
use crate::auth::hash::KeyHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::EntryContext;
use crate::keys::KeyTable;
use crate::keys::sync::KeySync;
use crate::metrics::Metrics;
use crate::proxy::policy::Gate;
use crate::proxy::upstream::UpstreamPool;
use crate::proxy::{Proxy, ProxyState, listener};
use crate::ratelimit::{Health as RateLimitHealth, Limiter};
use crate::secrets;
use crate::service::Services;
use crate::store::{self, StoreError, Stores};
use crate::usage::writer::UsageWriter;

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
    proxy_listener: std::net::TcpListener,
    admin_listener: std::net::TcpListener,
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
        // rustls for Redis (and the TLS listener) uses the process-wide provider: ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Arc::new(config);
        let route_names: Vec<Arc<str>> = config
            .routes
            .iter()
            .map(|r| Arc::from(r.name.as_str()))
            .collect();
        let metrics = Arc::new(Metrics::new(&route_names)?);
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
        let sync = first_load(&config, &stores, &readiness, &opts).await?;
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
        let state = Arc::new(ProxyState {
            gate: Gate::new(&config, hasher.clone(), keys, limiter, opts.clock.clone()),
            upstreams: config
                .upstreams
                .iter()
                .map(UpstreamPool::new)
                .collect::<Result<Vec<_>, _>>()?,
            metrics,
            usage,
            clock: opts.clock.clone(),
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
        let bind = |what, addr| {
            listener::bind(addr).map_err(|source| GatewayError::Bind { what, addr, source })
        };
        Ok(Gateway {
            proxy_listener: bind("gateway.listen", config.gateway.listen)?,
            admin_listener: bind("admin.listen", config.admin.listen)?,
            config,
            state,
            admin,
            sync,
            usage_writer,
        })
    }

    /// Starts serving. Must run inside a Tokio runtime, which hosts the admin
    /// listener and background workers; the proxy gets runtimes of its own.
    pub fn start(self) -> Result<RunningGateway, GatewayError> {
        let proxy_addr = self
            .proxy_listener
            .local_addr()
            .map_err(GatewayError::Proxy)?;
        let admin_addr = self
            .admin_listener
            .local_addr()
            .map_err(GatewayError::Admin)?;
        let threads = self.config.gateway.threads;

        let conf = Arc::new(ServerConf {
            threads,
            upstream_keepalive_pool_size: self.config.gateway.upstream_keepalive_pool,
            ..ServerConf::default()
        });
        let mut service = pingora_proxy::http_proxy_service_with_name(
            &conf,
            Proxy {
                state: self.state.clone(),
            },
            "keygate",
        );
        let addr_key = proxy_addr.to_string();
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(Fds::new()));
        fds.lock()
            .add(addr_key.clone(), into_raw_fd(self.proxy_listener));
        service.add_tcp(&addr_key);

        let runtime = if self.config.gateway.work_stealing {
            pingora_runtime::Runtime::new_steal(threads, "keygate-proxy")
        } else {
            pingora_runtime::Runtime::new_no_steal(threads, "keygate-proxy")
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let proxy_task = runtime.get_handle().spawn(async move {
            service.start_service(Some(fds), shutdown_rx, 1).await;
        });

        let (admin_stop_tx, admin_task) = serve_admin(self.admin_listener, self.admin.clone())?;

        let (usage_stop_tx, usage_stop_rx) = watch::channel(None);
        let usage_task = self
            .usage_writer
            .map(|w| tokio::spawn(w.run(usage_stop_rx)));
        let (bg_stop_tx, bg_stop_rx) = watch::channel(false);
        let background = vec![
            tokio::spawn(self.sync.run(bg_stop_rx.clone())),
            tokio::spawn(self.state.gate.limiter().clone().run_background(bg_stop_rx)),
        ];

        Ok(RunningGateway {
            usage_stop_tx,
            usage_task,
            bg_stop_tx,
            background,
            proxy_addr,
            admin_addr,
            grace: self.config.gateway.shutdown_grace,
            state: self.state,
            shutdown_tx,
            runtime: Some(runtime),
            proxy_task,
            admin_stop_tx,
            admin_task,
        })
    }
}

/// Serves the admin API until the returned sender says stop.
fn serve_admin(
    listener: std::net::TcpListener,
    admin: Arc<AdminState>,
) -> Result<(watch::Sender<bool>, JoinHandle<()>), GatewayError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(GatewayError::Admin)?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let app = admin::router(admin);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    Ok((stop_tx, task))
}

/// The key sync, after its first load: a gateway whose store is down starts
/// not ready (and becomes ready when it answers); a missing schema is fatal.
async fn first_load(
    config: &Config,
    stores: &Stores,
    readiness: &Readiness,
    opts: &BuildOptions,
) -> Result<KeySync, GatewayError> {
    let feed = &stores.feed;
    // A store without push notifications is polled often enough to be ~1 s behind.
    let interval = feed.poll_interval().map_or(config.keys.sync_interval, |p| {
        p.min(config.keys.sync_interval)
    });
    let mut sync = KeySync::new(
        feed.clone(),
        readiness.keys.clone(),
        EntryContext::new(config),
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

fn into_raw_fd(l: std::net::TcpListener) -> std::os::fd::RawFd {
    use std::os::fd::IntoRawFd;
    l.into_raw_fd()
}

/// A serving gateway. Dropping it without [`RunningGateway::stop`] stops it abruptly.
pub struct RunningGateway {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    grace: Duration,
    state: Arc<ProxyState>,
    shutdown_tx: watch::Sender<bool>,
    runtime: Option<pingora_runtime::Runtime>,
    proxy_task: JoinHandle<()>,
    admin_stop_tx: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    bg_stop_tx: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    usage_stop_tx: watch::Sender<Option<Stop>>,
    usage_task: Option<JoinHandle<()>>,
}

impl RunningGateway {
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Stops the gateway. Graceful: stop accepting, wait up to the grace period
    /// for in-flight requests, then close what is left.
    pub async fn stop(mut self, how: Stop) {
        let _ = self.shutdown_tx.send(true);
        if how == Stop::Graceful {
            let deadline = Instant::now() + self.grace;
            while self.state.metrics.inflight.get() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let left = self.state.metrics.inflight.get();
            if left > 0 {
                tracing::warn!(
                    requests = left,
                    "grace period over; closing requests still in flight"
                );
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.proxy_task).await;
        }
        if let Some(rt) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || {
                rt.shutdown_timeout(Duration::from_millis(500))
            })
            .await;
        }
        // Every request has been recorded by now: flush the usage queue.
        let _ = self.usage_stop_tx.send(Some(how));
        if let Some(task) = &mut self.usage_task {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        let _ = self.bg_stop_tx.send(true);
        for task in &mut self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let _ = self.admin_stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.admin_task).await;
        self.admin_task.abort();
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        let _ = self.admin_stop_tx.send(true);
        let _ = self.bg_stop_tx.send(true);
        let _ = self.usage_stop_tx.send(Some(Stop::Fast));
        self.admin_task.abort();
        for task in &self.background {
            task.abort();
        }
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime inside async code panics; let a thread do it.
            std::thread::spawn(move || rt.shutdown_timeout(Duration::from_millis(100)));
        }
    }
}
