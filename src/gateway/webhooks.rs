//! The webhook side of a gateway: the delivery worker and the drain of the
//! request path's signals, both background tasks stopped with the others.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::GatewayError;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Stores;

/// The webhook delivery worker and the request path's signal queue.
pub(super) struct Webhooks {
    worker: crate::webhooks::worker::Worker,
    signals: Option<tokio::sync::mpsc::Receiver<crate::webhooks::signals::Signal>>,
    store: Arc<dyn crate::store::WebhookStore>,
    subs: crate::webhooks::Subscriptions,
    clock: Clock,
}

impl Webhooks {
    /// Nothing when no endpoint is configured.
    pub(super) fn build(
        config: &Config,
        stores: &Stores,
        metrics: &Arc<Metrics>,
        clock: &Clock,
    ) -> Result<(Option<Webhooks>, Option<crate::webhooks::signals::Signals>), GatewayError> {
        let cfg = &config.webhooks;
        if cfg.endpoints.is_empty() {
            return Ok((None, None));
        }
        let subs = crate::webhooks::Subscriptions::new(cfg);
        let worker = crate::webhooks::worker::Worker::new(
            cfg,
            stores.webhooks.clone(),
            metrics.clone(),
            clock.clone(),
        )?;
        let (signals, rx) = match crate::webhooks::signals::channel(
            &subs,
            cfg.credits_low_threshold,
            metrics.clone(),
        ) {
            Some((s, rx)) => (Some(s), Some(rx)),
            None => (None, None),
        };
        let w = Webhooks {
            worker,
            signals: rx,
            store: stores.webhooks.clone(),
            subs,
            clock: clock.clone(),
        };
        Ok((Some(w), signals))
    }

    pub(super) fn spawn(self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.worker.run(stop.clone()))];
        if let Some(rx) = self.signals {
            let drain =
                crate::webhooks::signals::drain(rx, self.store, self.subs, self.clock, stop);
            tasks.push(tokio::spawn(drain));
        }
        tasks
    }
}
