//! Prometheus metrics in a registry of keygate's own. Labels are bounded: route
//! names come from the config, outcomes from [`Outcome`], results from a fixed set.
//! Per-request handles are resolved once at start, so recording is a few atomics.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::outcome::Outcome;

mod labels;
pub use labels::{DeliveryResult, ReloadResult, ScanResult, UsageResult};

/// The route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const AUTH_BUCKETS: &[f64] = &[
    0.000_002, 0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.05, 0.1,
];

/// One route's request counters (per outcome) and latency histogram,
/// resolved once per configuration so recording is a few atomics.
pub struct RouteMetrics {
    by_outcome: Vec<IntCounter>,
    duration: Histogram,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: prometheus::HistogramVec,
    /// Requests that matched no route.
    no_route: RouteMetrics,
    pub auth_duration: Histogram,
    pub keys_loaded: IntGauge,
    pub key_sync_age: Gauge,
    pub ratelimit_backend_errors: IntCounter,
    pub ratelimit_degraded: IntGauge,
    pub ratelimit_master_changes: IntCounter,
    /// Requests per rate-limit script call (those that arrived together).
    pub ratelimit_script_batch: Histogram,
    /// Requests admitted from a lease: counted in Redis ahead, decided here.
    pub ratelimit_leased: IntCounter,
    usage_events: [IntCounter; 3],
    config_reloads: [IntCounter; 2],
    pub usage_queue_depth: IntGauge,
    pub inflight: IntGauge,
    webhook_deliveries: [IntCounter; 3],
    scan_reports: [IntCounter; 4],
    /// Reported tokens: keygate's (true positive) and not (false positive).
    scan_tokens: [IntCounter; 2],
    pub webhook_backlog: IntGauge,
    /// Request-path webhook signals dropped because their queue was full.
    pub webhook_signals_dropped: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Registers a collector and hands it back.
fn reg<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> Result<C, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn route_metrics(
    requests: &IntCounterVec,
    durations: &prometheus::HistogramVec,
    route: &str,
) -> RouteMetrics {
    RouteMetrics {
        by_outcome: Outcome::ALL
            .iter()
            .map(|o| requests.with_label_values(&[route, o.as_str()]))
            .collect(),
        duration: durations.with_label_values(&[route]),
    }
}

/// The per-request series: requests by route and outcome, durations by
/// route, and the time keygate spends before the upstream call.
fn request_metrics(
    r: &Registry,
) -> Result<(IntCounterVec, prometheus::HistogramVec, Histogram), MetricsError> {
    let requests = reg(
        r,
        IntCounterVec::new(
            Opts::new("keygate_requests_total", "Requests by route and outcome"),
            &["route", "outcome"],
        )?,
    )?;
    let durations = reg(
        r,
        prometheus::HistogramVec::new(
            HistogramOpts::new(
                "keygate_request_duration_seconds",
                "Time from request head to the end of the response, by route",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["route"],
        )?,
    )?;
    let auth_duration = reg(
        r,
        Histogram::with_opts(
            HistogramOpts::new(
                "keygate_auth_duration_seconds",
                "Time spent in keygate before the upstream call (routing, auth, rate limits)",
            )
            .buckets(AUTH_BUCKETS.to_vec()),
        )?,
    )?;
    Ok((requests, durations, auth_duration))
}

/// The secret-scanning endpoint's reports by result, and their tokens by
/// GitHub's label (true positive first).
fn scan_metrics(r: &Registry) -> Result<([IntCounter; 4], [IntCounter; 2]), MetricsError> {
    let counter_vec = |name, help, label| -> Result<IntCounterVec, MetricsError> {
        Ok(reg(
            r,
            IntCounterVec::new(Opts::new(name, help), &[label])?,
        )?)
    };
    let reports = counter_vec(
        "keygate_secret_scanning_reports_total",
        "Reports to the secret-scanning endpoint by result",
        "result",
    )?;
    let tokens = counter_vec(
        "keygate_secret_scanning_tokens_total",
        "Tokens in verified secret-scanning reports, by GitHub's label",
        "label",
    )?;
    Ok((
        ScanResult::ALL.map(|x| reports.with_label_values(&[x.as_str()])),
        ["true_positive", "false_positive"].map(|l| tokens.with_label_values(&[l])),
    ))
}

/// `keygate_build_info{version}`, always 1.
fn build_info(r: &Registry) -> Result<(), MetricsError> {
    let build_info = reg(
        r,
        IntGaugeVec::new(
            Opts::new("keygate_build_info", "Build information; always 1"),
            &["version"],
        )?,
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Ok(())
}

impl Metrics {
    /// The registry with every metric; route series are made per
    /// configuration with [`Metrics::route`].
    pub fn new() -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let (requests, durations, auth_duration) = request_metrics(&r)?;
        let no_route = route_metrics(&requests, &durations, NO_ROUTE);
        let gauge = |name, help| reg(&r, IntGauge::new(name, help)?);
        let counter = |name, help| reg(&r, IntCounter::new(name, help)?);
        let by_result =
            |name, help| reg(&r, IntCounterVec::new(Opts::new(name, help), &["result"])?);
        let usage = by_result(
            "keygate_usage_events_total",
            "Usage records by what became of them",
        )?;
        let reloads = by_result(
            "keygate_config_reloads_total",
            "Configuration reloads by result",
        )?;
        let deliveries = by_result(
            "keygate_webhook_deliveries_total",
            "Webhook delivery attempts by result",
        )?;
        let (scan_reports, scan_tokens) = scan_metrics(&r)?;
        build_info(&r)?;
        Ok(Metrics {
            requests,
            durations,
            no_route,
            auth_duration,
            keys_loaded: gauge("keygate_keys_loaded", "Keys in the in-memory table")?,
            key_sync_age: reg(
                &r,
                Gauge::new(
                    "keygate_key_sync_age_seconds",
                    "Seconds since the key table last confirmed it is in sync with the store",
                )?,
            )?,
            ratelimit_backend_errors: counter(
                "keygate_ratelimit_backend_errors_total",
                "Rate-limit backend calls that failed or timed out",
            )?,
            ratelimit_degraded: gauge(
                "keygate_ratelimit_degraded",
                "1 while rate limiting falls back because the backend is unavailable",
            )?,
            ratelimit_master_changes: counter(
                "keygate_ratelimit_master_changes_total",
                "Times the Redis sentinels named a different master (failovers seen)",
            )?,
            ratelimit_script_batch: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "keygate_ratelimit_script_batch_requests",
                        "Requests decided by one Redis rate-limit script call (requests on one thread that arrived while a call was in flight go together)",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
                )?,
            )?,
            ratelimit_leased: counter(
                "keygate_ratelimit_leased_total",
                "Requests admitted from a lease: admissions counted in Redis ahead for this gateway and decided in memory",
            )?,
            config_reloads: ReloadResult::ALL.map(|x| reloads.with_label_values(&[x.as_str()])),
            usage_events: UsageResult::ALL.map(|x| usage.with_label_values(&[x.as_str()])),
            usage_queue_depth: gauge(
                "keygate_usage_queue_depth",
                "Usage records waiting to be written",
            )?,
            inflight: gauge("keygate_inflight_requests", "Requests being processed")?,
            webhook_deliveries: DeliveryResult::ALL
                .map(|x| deliveries.with_label_values(&[x.as_str()])),
            scan_reports,
            scan_tokens,
            webhook_backlog: gauge(
                "keygate_webhook_outbox_backlog",
                "Webhook deliveries not yet delivered or dead-lettered",
            )?,
            webhook_signals_dropped: counter(
                "keygate_webhook_signals_dropped_total",
                "Rate-limit and credit events dropped because their queue was full",
            )?,
            registry: r,
        })
    }

    /// A route's series (created at 0 so that every route shows up).
    pub fn route(&self, name: &str) -> RouteMetrics {
        route_metrics(&self.requests, &self.durations, name)
    }

    /// Counts one finished request on `route` (`None`: it matched none).
    pub fn request(&self, route: Option<&RouteMetrics>, outcome: Outcome, seconds: f64) {
        let m = route.unwrap_or(&self.no_route);
        m.by_outcome[outcome.index()].inc();
        m.duration.observe(seconds);
    }

    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads[result as usize].inc();
    }

    pub fn usage(&self, result: UsageResult, n: u64) {
        self.usage_events[result.index()].inc_by(n);
    }

    pub fn usage_count(&self, result: UsageResult) -> u64 {
        self.usage_events[result.index()].get()
    }

    /// Counts a report to the secret-scanning endpoint and its tokens.
    pub fn scan_report(&self, result: ScanResult, true_positives: u64, false_positives: u64) {
        self.scan_reports[result as usize].inc();
        self.scan_tokens[0].inc_by(true_positives);
        self.scan_tokens[1].inc_by(false_positives);
    }

    pub fn webhook_delivery(&self, result: DeliveryResult) {
        self.webhook_deliveries[result as usize].inc();
    }

    pub fn webhook_delivery_count(&self, result: DeliveryResult) -> u64 {
        self.webhook_deliveries[result as usize].get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_contract_metric() {
        let m = Metrics::new().expect("metrics");
        let orders = m.route("orders");
        m.request(Some(&orders), Outcome::Ok, 0.001);
        m.request(None, Outcome::RouteNotFound, 0.0001);
        m.usage(UsageResult::Spooled, 2);
        let text = m.render();
        for name in [
            "keygate_requests_total{outcome=\"ok\",route=\"orders\"} 1",
            "keygate_requests_total{outcome=\"route_not_found\",route=\"_none\"} 1",
            "keygate_request_duration_seconds_bucket",
            "keygate_auth_duration_seconds_bucket",
            "keygate_keys_loaded",
            "keygate_key_sync_age_seconds",
            "keygate_ratelimit_backend_errors_total",
            "keygate_ratelimit_degraded",
            "keygate_usage_events_total{result=\"spooled\"} 2",
            "keygate_usage_queue_depth",
            "keygate_build_info{version=",
            "keygate_webhook_deliveries_total{result=\"dead\"} 0",
            "keygate_webhook_outbox_backlog",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
        assert_eq!(m.usage_count(UsageResult::Spooled), 2);
    }
}
