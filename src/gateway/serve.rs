//! The listeners' services: the proxy behind the front door (plain and TLS,
//! on runtimes of its own) and the admin API.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Fds, ListenFds};
use pingora_core::services::Service as _;
use pingora_proxy::HttpProxy;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::GatewayError;
use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::proxy::door::Door;
use crate::proxy::{Proxy, ProxyState};
use crate::tls::SniResolver;

/// The proxy's runtime and task, its shutdown switch, and its count of open
/// connections.
pub(super) type ProxyRun = (
    pingora_runtime::Runtime,
    JoinHandle<()>,
    watch::Sender<bool>,
    Arc<AtomicUsize>,
);

/// The proxy service behind the front door, on its plain and TLS listeners,
/// on runtimes of its own.
pub(super) fn serve_proxy(
    config: &Config,
    state: &Arc<ProxyState>,
    plain: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Option<Arc<SniResolver>>)>,
) -> Result<ProxyRun, GatewayError> {
    let threads = config.gateway.threads;
    let conf = Arc::new(ServerConf {
        threads,
        upstream_keepalive_pool_size: config.gateway.upstream_keepalive_pool,
        ..ServerConf::default()
    });
    let mut http = HttpProxy::new(
        Proxy {
            state: state.clone(),
        },
        conf,
    );
    http.handle_init_modules();
    let open = Arc::new(AtomicUsize::new(0));
    let door = Door::new(
        Arc::new(http),
        config.gateway.door,
        state.metrics.clone(),
        open.clone(),
    );
    let mut service = pingora_core::services::listening::Service::new("keygate".into(), door);
    let fds: ListenFds = Arc::new(parking_lot::Mutex::new(Fds::new()));
    let key = plain.local_addr().map_err(GatewayError::Proxy)?.to_string();
    fds.lock().add(key.clone(), into_raw_fd(plain));
    service.add_tcp(&key);
    if let Some((listener, Some(resolver))) = tls {
        let key = listener
            .local_addr()
            .map_err(GatewayError::Proxy)?
            .to_string();
        fds.lock().add(key.clone(), into_raw_fd(listener));
        let mut settings = TlsSettings::intermediate("", "").map_err(GatewayError::Tls)?;
        settings.set_cert_resolver(resolver);
        if config.gateway.tls.as_ref().is_some_and(|t| t.http2) {
            settings.enable_h2();
        }
        service.add_tls_with_settings(&key, None, settings);
    }
    let runtime = if config.gateway.work_stealing {
        pingora_runtime::Runtime::new_steal(threads, "keygate-proxy")
    } else {
        pingora_runtime::Runtime::new_no_steal(threads, "keygate-proxy")
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = runtime.get_handle().spawn(async move {
        service.start_service(Some(fds), shutdown_rx, 1).await;
    });
    Ok((runtime, task, shutdown_tx, open))
}

/// Serves the admin API until the returned sender says stop.
pub(super) fn serve_admin(
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

fn into_raw_fd(l: std::net::TcpListener) -> std::os::fd::RawFd {
    use std::os::fd::IntoRawFd;
    l.into_raw_fd()
}
