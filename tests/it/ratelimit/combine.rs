//! The batch script against a real Redis: requests of different shapes in
//! one `EVALSHA` (a balance that is missing, windows, a balance with a seed,
//! a refused request, a key Redis raises an error on) each get their own
//! answer and touch only their keys; a request that gave up before its call
//! was sent is left out of it.

use std::sync::Arc;
use std::time::Duration;

use keygate::config::{RedisConfig, RedisTopology, Secret};
use keygate::credits::cell::Ask;
use keygate::ratelimit::decision::{Check, Scope, Span};
use keygate::ratelimit::redis::{Call, CreditCall, CreditReply, RedisBackend, RedisMetrics};
use keygate::ratelimit::window::Window;

use super::redis;
use crate::harness::redis::RedisServer;

pub(super) fn check(window: Window, limit: u64) -> Check {
    Check {
        scope: Scope::Key,
        window,
        limit,
    }
}

pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// A backend on `r`, and its histogram of requests per script call.
pub(super) async fn backend(r: &RedisServer) -> (Arc<RedisBackend>, prometheus::Histogram) {
    let batch = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("b", "b"))
        .expect("histogram");
    let metrics = RedisMetrics {
        master_changes: prometheus::IntCounter::new("m", "m").expect("counter"),
        batch: batch.clone(),
    };
    let cfg = RedisConfig {
        topology: RedisTopology::Standalone(Secret::new(r.url())),
        tls_ca_file: None,
    };
    let backend = Arc::new(RedisBackend::new(&cfg, 5, metrics).expect("backend"));
    backend.probe(TIMEOUT).await.expect("redis answers");
    (backend, batch)
}

/// Opens the thread's connection with a request on keys of its own, so that
/// the requests after it queue at their first poll.
pub(super) async fn warm_up(backend: &RedisBackend) {
    let now = keygate::clock::Clock::system().now_ms() as u64;
    let windows = [check(Window::Minute, 10)];
    let spans = [Span::at(Window::Minute, now)];
    let warm = call("kg:{warm}:", &windows[..], &spans[..], None);
    backend.check(&warm, TIMEOUT).await.expect("warm-up");
}

pub(super) fn call<'a>(
    prefix: &'a str,
    checks: &'a [Check],
    spans: &'a [Span],
    credit: Option<CreditCall<'a>>,
) -> Call<'a> {
    Call {
        key_prefix: prefix,
        owner_prefix: None,
        checks,
        spans,
        route_name: "r",
        credit,
        ask: 1,
    }
}

#[tokio::test]
async fn one_script_call_answers_each_request_of_a_batch_on_its_own() {
    let r = redis().await;
    let (backend, batch) = backend(&r).await;
    let timeout = TIMEOUT;

    let now = keygate::clock::Clock::system().now_ms() as u64;
    let windows = [check(Window::Minute, 10), check(Window::Hour, 100)];
    let spans: Vec<Span> = windows.iter().map(|c| Span::at(c.window, now)).collect();
    let full = [check(Window::Minute, 1)];
    let full_spans = [Span::at(Window::Minute, now)];
    let ask = Ask {
        epoch: 1,
        granted: 50,
        reserve: 7,
    };
    let missing = CreditCall {
        cell: "kg:{a}:c",
        ask,
        seed: None,
    };
    let seeded = CreditCall {
        cell: "kg:{c}:c",
        ask,
        seed: Some(20),
    };
    let a = call("kg:{a}:", &windows[..], &spans[..], Some(missing));
    let b = call("kg:{b}:", &windows[..], &spans[..], None);
    let c = call("kg:{c}:", &[][..], &[][..], Some(seeded));
    let d = call("kg:{d}:", &full[..], &full_spans[..], None);
    // e's balance is not a hash: Redis raises an error on it, for e alone.
    r.cmd(&["SET", "kg:{e}:c", "not a balance"]);
    let broken = CreditCall {
        cell: "kg:{e}:c",
        ask,
        seed: None,
    };
    let e = call("kg:{e}:", &windows[..], &spans[..], Some(broken));
    // d fills its one-per-minute window first, alone.
    let first = backend.check(&d, timeout).await.expect("d alone");
    assert!(first.allowed);

    // Pushed before the sending task first runs: one call for all five.
    let (ra, rb, rc, rd, re) = tokio::join!(
        backend.check(&a, timeout),
        backend.check(&b, timeout),
        backend.check(&c, timeout),
        backend.check(&d, timeout),
        backend.check(&e, timeout),
    );
    assert_eq!(batch.get_sample_count(), 2, "d alone, then one call");
    assert_eq!(batch.get_sample_sum(), 6.0);
    assert!(re.is_err(), "e's broken balance: {re:?}");

    let ra = ra.expect("a");
    assert_eq!((ra.allowed, ra.credit), (false, CreditReply::NeedSeed));
    let rb = rb.expect("b");
    assert!(rb.allowed);
    assert_eq!(rb.credit, CreditReply::None);
    assert_eq!(rb.counts.iter().map(|c| c.curr).collect::<Vec<_>>(), [0, 0]);
    let rc = rc.expect("c");
    assert_eq!(
        (rc.allowed, rc.credit, rc.remaining),
        (true, CreditReply::Enough, 50 - 20 - 7)
    );
    let rd = rd.expect("d");
    assert!(!rd.allowed, "d's window is full");
    assert_eq!(rd.counts[0].curr, 1);

    // What Redis holds: a counted nothing, b once per window, c debited, d once.
    assert!(
        r.counters("kg:{a}:*").is_empty(),
        "{:?}",
        r.counters("kg:{a}:*")
    );
    let b_counts = r.counters("kg:{b}:*");
    assert_eq!(b_counts.len(), 2, "{b_counts:?}");
    assert!(b_counts.values().all(|v| *v == 1), "{b_counts:?}");
    assert_eq!(
        r.cmd(&["HGET", "kg:{c}:c", "s"]),
        ::redis::Value::BulkString(b"27".to_vec())
    );
    assert_eq!(r.counters("kg:{d}:*").values().sum::<i64>(), 1);
}

#[tokio::test]
async fn a_request_that_gave_up_before_its_call_was_sent_is_not_counted() {
    let r = redis().await;
    let (backend, batch) = backend(&r).await;
    let now = keygate::clock::Clock::system().now_ms() as u64;
    let windows = [check(Window::Minute, 10)];
    let spans = [Span::at(Window::Minute, now)];
    let gone = call("kg:{gone}:", &windows[..], &spans[..], None);
    let stays = call("kg:{stays}:", &windows[..], &spans[..], None);
    // The thread's connection is open, so a request queues at its first poll.
    warm_up(&backend).await;
    // Queued (its call's task spawned, not yet run), then dropped: the
    // request's own timeout, or its client leaving.
    let mut first = Box::pin(backend.check(&gone, TIMEOUT));
    assert!(futures::poll!(&mut first).is_pending());
    drop(first);
    let reply = backend.check(&stays, TIMEOUT).await.expect("stays");
    assert!(reply.allowed);
    assert_eq!(batch.get_sample_count(), 2, "the warm-up, then one call");
    assert_eq!(
        batch.get_sample_sum(),
        2.0,
        "only the request still waiting was sent"
    );
    assert!(r.counters("kg:{gone}:*").is_empty());
    assert_eq!(r.counters("kg:{stays}:*").values().sum::<i64>(), 1);
}
