//! A Redis FLUSHALL in the middle of spending: balances are rebuilt from the
//! ledger (top-ups − debits recorded by the usage writer), so the free credit
//! is at most the debits not yet recorded when the balance was rebuilt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::harness::key_spec;

const C: i64 = 600;
const CONCURRENCY: usize = 16;

#[tokio::test]
async fn a_redis_flush_mid_run_grants_at_most_the_debits_not_yet_recorded() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    // The harness's usage.flush_interval is 100 ms.
    let cfg = strict_redis(routed(&up, |_| {}).await, &r);
    let s = cfg.services().await;
    let k = key_with_credits(&s, key_spec("acme"), credits(C, None)).await;
    let secret = k.secret.expose();
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let ok = AtomicUsize::new(0);
    let started = Instant::now();
    let load = async {
        use futures::StreamExt;
        futures::stream::iter(0..3 * C as usize)
            .map(|i| {
                let gw = if i % 2 == 0 { &a } else { &b };
                let ok = &ok;
                async move {
                    if call(gw, "/x", secret).await.0 == 200 {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await
    };
    let flush = async {
        while ok.load(Ordering::SeqCst) < (C / 2) as usize {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let view = s
            .keys
            .get(k.key.id)
            .await
            .expect("key")
            .credits
            .expect("credits");
        let recorded = C - view.remaining;
        let seen = ok.load(Ordering::SeqCst);
        r.cmd(&["FLUSHALL"]);
        (recorded, seen, started.elapsed())
    };
    let (_, (recorded, seen, at)) = tokio::join!(load, flush);
    let admitted = ok.load(Ordering::SeqCst) as i64;
    let free = admitted - C;
    // Unrecorded when Redis lost the balance: what had been admitted (at most
    // CONCURRENCY responses still on their way) minus what the ledger had.
    let unrecorded = seen as i64 + CONCURRENCY as i64 - recorded;
    let rate = seen as f64 / at.as_secs_f64();
    println!(
        "FLUSHALL after {seen} admitted ({rate:.0} req/s): ledger had {recorded}, \
         admitted {admitted} of {C} credits in all: free credit {free} (bound: {unrecorded} unrecorded)"
    );
    assert!(
        free >= 0,
        "a rebuilt balance never takes credit away: {free}"
    );
    assert!(
        free <= unrecorded,
        "free credit {free} > unrecorded {unrecorded}"
    );
    // Spent everything: the rebuilt balance ran out too.
    assert_eq!(call(&a, "/x", secret).await.0, 402);
    a.stop().await;
    b.stop().await;
}
