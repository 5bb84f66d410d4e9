//! The client-side CPU of one rate-limit script call, measured against a
//! real Redis: `cargo run --profile release-thin --example redis_cost --
//! redis://127.0.0.1:6379 [calls] [in-flight]`.
//!
//! Runs the full row's call (4 sliding windows of one key: 8 keys, 22
//! arguments) on a current-thread runtime with many calls in flight, the way
//! a proxy thread does, and reports this process's CPU time per call (user +
//! system: argument building, the multiplexed connection, the socket
//! syscalls, reply parsing). Redis's own CPU is not in it. Calls in flight
//! together share script calls ([`keygate::ratelimit::redis`]); the report
//! says how many requests each script call carried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate::config::{RedisConfig, RedisTopology, Secret};
use keygate::ratelimit::decision::{Check, Scope, Span};
use keygate::ratelimit::redis::{Call, RedisBackend, RedisMetrics};
use keygate::ratelimit::window::Window;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("redis://127.0.0.1:6379".into());
    let calls: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let in_flight: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(url, calls, in_flight))
}

async fn run(
    url: String,
    calls: usize,
    in_flight: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = RedisConfig {
        topology: RedisTopology::Standalone(Secret::new(url)),
        tls_ca_file: None,
    };
    let batch = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("b", "b"))?;
    let metrics = RedisMetrics {
        master_changes: prometheus::IntCounter::new("x", "x")?,
        batch: batch.clone(),
    };
    let backend = Arc::new(RedisBackend::new(&cfg, 5, metrics)?);
    let timeout = Duration::from_secs(2);
    backend.probe(timeout).await?;
    let checks: Vec<Check> = [Window::Second, Window::Minute, Window::Hour, Window::Day]
        .into_iter()
        .map(|window| Check {
            scope: Scope::Key,
            window,
            limit: 1_000_000_000_000,
        })
        .collect();
    let prefix = keygate::ratelimit::redis::key_prefix(uuid::Uuid::new_v4());
    let one = |b: Arc<RedisBackend>, checks: Vec<Check>, prefix: String| async move {
        let now = keygate::clock::Clock::system().now_ms() as u64;
        let spans: Vec<Span> = checks.iter().map(|c| Span::at(c.window, now)).collect();
        let call = Call {
            key_prefix: &prefix,
            owner_prefix: None,
            checks: &checks,
            spans: &spans,
            route_name: "api",
            credit: None,
            ask: 1,
        };
        b.check(&call, timeout).await.map(|r| r.allowed)
    };
    // Warm up, then measure.
    for round in ["warm-up", "measured"] {
        let n = if round == "warm-up" {
            calls / 10
        } else {
            calls
        };
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let (calls0, requests0) = (batch.get_sample_count(), batch.get_sample_sum());
        let mut set = tokio::task::JoinSet::new();
        let mut done = 0usize;
        let mut started = 0usize;
        while done < n {
            while started < n && set.len() < in_flight {
                set.spawn(one(backend.clone(), checks.clone(), prefix.clone()));
                started += 1;
            }
            if let Some(r) = set.join_next().await {
                r??;
                done += 1;
            }
        }
        let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
        let script_calls = batch.get_sample_count() - calls0;
        let per_call = (batch.get_sample_sum() - requests0) / script_calls.max(1) as f64;
        println!(
            "{round}: {n} calls, {in_flight} in flight: {:.2} µs CPU/call, {:.0} calls/s, {script_calls} script calls ({per_call:.1} requests each)",
            cpu * 1e6 / n as f64,
            n as f64 / wall
        );
    }
    Ok(())
}
