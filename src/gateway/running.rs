//! A serving gateway: its addresses, reloads, the socket handover, and the
//! stop that loses nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Handover, ReloadError, Reloaded, Reloader, Stop, UpgradeError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::ProxyState;

/// Where a serving gateway listens.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub proxy: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// A serving gateway. Dropping it without [`RunningGateway::stop`] stops it abruptly.
pub struct RunningGateway {
    pub(super) addrs: Addrs,
    pub(super) reloader: Reloader,
    pub(super) handover: Handover,
    pub(super) grace: Duration,
    pub(super) state: Arc<ProxyState>,
    pub(super) shutdown_tx: watch::Sender<bool>,
    /// Connections the proxy is serving (HTTP/1 ones between requests too).
    pub(super) connections: Arc<AtomicUsize>,
    pub(super) runtime: Option<pingora_runtime::Runtime>,
    pub(super) proxy_task: JoinHandle<()>,
    pub(super) admin_stop_tx: watch::Sender<bool>,
    pub(super) admin_task: JoinHandle<()>,
    pub(super) bg_stop_tx: watch::Sender<bool>,
    pub(super) background: Vec<JoinHandle<()>>,
    pub(super) usage_stop_tx: watch::Sender<Option<Stop>>,
    pub(super) usage_task: Option<JoinHandle<()>>,
}

impl RunningGateway {
    pub fn proxy_addr(&self) -> SocketAddr {
        self.addrs.proxy
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs.admin
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    /// Re-reads the configuration file and applies what a reload can.
    pub fn reload_file(&self, path: &std::path::Path) -> Result<Reloaded, ReloadError> {
        self.reloader.reload_file(path)
    }

    /// Applies an already validated configuration (tests, embedders).
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        self.reloader.apply(config)
    }

    /// Hands the listening sockets to the process waiting on `socket`
    /// (`keygate serve --upgrade`); then [`Self::stop`] this one gracefully.
    pub fn hand_over(&self, socket: &std::path::Path) -> Result<usize, UpgradeError> {
        self.handover.send(socket)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Stops the gateway. Graceful: stop accepting, wait up to the grace period
    /// for in-flight requests and open connections (a kept-alive one is
    /// closed after its next response, or after
    /// [`DRAIN_IDLE`](crate::proxy::door::DRAIN_IDLE) idle), then
    /// close what is left.
    pub async fn stop(mut self, how: Stop) {
        let _ = self.shutdown_tx.send(true);
        if how == Stop::Graceful {
            let deadline = Instant::now() + self.grace;
            let busy = |g: &Self| {
                g.state.metrics.inflight.get() > 0 || g.connections.load(Ordering::Relaxed) > 0
            };
            while busy(&self) && Instant::now() < deadline {
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
