//! Requests of one key in one script call form a group: Redis reads its
//! counters once and writes each once, and still decides every request on
//! its own time and on what the group's earlier requests added. Groups of
//! one call that share counters (an owner's window) see each other's
//! counts; a counter Redis refuses leaves no debit behind.

use keygate::credits::cell::Ask;
use keygate::ratelimit::decision::{Check, Scope, Span};
use keygate::ratelimit::redis::{Call, CreditCall, bucket_key};
use keygate::ratelimit::window::Window;

use super::combine::{TIMEOUT, backend, call, check, warm_up};
use super::redis;

/// A time 1 s into a minute bucket, and that bucket's index.
fn minute_start() -> (u64, u64) {
    let now = keygate::clock::Clock::system().now_ms() as u64;
    let b = Window::Minute.bucket(now);
    (b.start_ms, b.index)
}

/// A credit ask on `cell` (epoch 1, cost 7) whose balance, when missing,
/// starts from the ledger's 0 spent.
fn paid(cell: &str, granted: i64) -> CreditCall<'_> {
    let ask = Ask {
        epoch: 1,
        granted,
        reserve: 7,
    };
    CreditCall {
        cell,
        ask,
        seed: Some(0),
    }
}

#[tokio::test]
async fn a_busy_keys_requests_share_reads_and_writes_and_are_each_decided_at_their_own_time() {
    let r = redis().await;
    let (backend, batch) = backend(&r).await;
    let (start, index) = minute_start();
    let limit = [check(Window::Minute, 12)];
    // Ten in the previous minute: at 1 s into this one they weigh 9.83, at
    // 40 s 3.33. So a third request at 1 s is refused, one at 40 s is not.
    let prev = bucket_key("kg:{busy}:", Scope::Key, "r", Window::Minute, index - 1);
    r.cmd(&["SET", &prev, "10"]);
    let early = [Span::at(Window::Minute, start + 1_000)];
    let late = [Span::at(Window::Minute, start + 40_000)];
    let a = call("kg:{busy}:", &limit[..], &early[..], None);
    let d = call("kg:{busy}:", &limit[..], &late[..], None);
    let one = [check(Window::Minute, 1)];
    let other = call("kg:{other}:", &one[..], &early[..], None);
    warm_up(&backend).await;
    r.cmd(&["CONFIG", "RESETSTAT"]);

    // Pushed before the sending task first runs: one call, two groups.
    let (ra, ro, rb, rc, rd) = tokio::join!(
        backend.check(&a, TIMEOUT),
        backend.check(&other, TIMEOUT),
        backend.check(&a, TIMEOUT),
        backend.check(&a, TIMEOUT),
        backend.check(&d, TIMEOUT),
    );
    assert_eq!((batch.get_sample_count(), batch.get_sample_sum()), (2, 6.0));
    let seen = |r: &keygate::ratelimit::redis::Reply| (r.allowed, r.counts[0].curr);
    let replies = [ra, rb, rc, rd].map(|r| r.expect("busy key's reply"));
    assert_eq!(
        replies.each_ref().map(seen),
        [(true, 0), (true, 1), (false, 2), (true, 2)],
        "each decided on the earlier ones' counts, the last at 40 s"
    );
    assert!(ro.expect("other").allowed);

    let curr = bucket_key("kg:{busy}:", Scope::Key, "r", Window::Minute, index);
    assert_eq!(r.counters("kg:{busy}:*")[&curr], 3);
    assert_eq!(r.counters("kg:{other}:*").values().sum::<i64>(), 1);
    assert_eq!(r.calls("mget"), 2, "one read per group");
    assert_eq!(
        (r.calls("incrby"), r.calls("incr")),
        (1, 1),
        "one write per group's window: the busy key's three, the other's one"
    );
}

#[tokio::test]
async fn an_owners_window_shared_by_two_keys_groups_in_one_call_admits_exactly_its_limit() {
    let r = redis().await;
    let (backend, _) = backend(&r).await;
    let (start, _) = minute_start();
    let checks = [
        check(Window::Minute, 100),
        Check {
            scope: Scope::Owner,
            window: Window::Minute,
            limit: 3,
        },
    ];
    let spans = [Span::at(Window::Minute, start + 1_000); 2];
    let of = |key| Call {
        owner_prefix: Some("kg:{o:1}:o:"),
        ..call(key, &checks[..], &spans[..], None)
    };
    let (a, b) = (of("kg:{o:1}:a:"), of("kg:{o:1}:b:"));
    warm_up(&backend).await;

    let replies = tokio::join!(
        backend.check(&a, TIMEOUT),
        backend.check(&b, TIMEOUT),
        backend.check(&a, TIMEOUT),
        backend.check(&b, TIMEOUT),
        backend.check(&a, TIMEOUT),
    );
    let admitted = [replies.0, replies.1, replies.2, replies.3, replies.4]
        .into_iter()
        .map(|r| r.expect("reply"))
        .filter(|r| r.allowed)
        .count();
    assert_eq!(admitted, 3, "the owner's limit, across both groups");
    let owner: i64 = r.counters("kg:{o:1}:o:*").values().sum();
    let keys: i64 = ["kg:{o:1}:a:*", "kg:{o:1}:b:*"]
        .iter()
        .map(|p| r.counters(p).values().sum::<i64>())
        .sum();
    assert_eq!((owner, keys), (3, 3), "counted once per admitted request");
}

#[tokio::test]
async fn a_group_whose_first_request_gave_up_still_counts_the_others() {
    let r = redis().await;
    let (backend, batch) = backend(&r).await;
    let (start, _) = minute_start();
    let limit = [check(Window::Minute, 10)];
    let spans = [Span::at(Window::Minute, start + 1_000)];
    let later = [Span::at(Window::Minute, start + 2_000)];
    let (gone, stays) = (
        call("kg:{k}:", &limit[..], &spans[..], None),
        call("kg:{k}:", &limit[..], &later[..], None),
    );
    warm_up(&backend).await;
    // All three queue in one call; the group's first then gives up.
    let mut first = Box::pin(backend.check(&gone, TIMEOUT));
    let mut second = Box::pin(backend.check(&stays, TIMEOUT));
    let mut third = Box::pin(backend.check(&stays, TIMEOUT));
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    assert!(futures::poll!(&mut third).is_pending());
    drop(first);
    let (second, third) = tokio::join!(second, third);
    let seen = [second, third].map(|r| r.map(|r| (r.allowed, r.counts[0].curr)).ok());
    assert_eq!(seen, [Some((true, 0)), Some((true, 1))]);
    assert_eq!((batch.get_sample_count(), batch.get_sample_sum()), (2, 3.0));
    assert_eq!(r.counters("kg:{k}:*").values().sum::<i64>(), 2);
}

#[tokio::test]
async fn a_window_redis_refuses_fails_its_requests_and_leaves_no_debit() {
    let r = redis().await;
    let (backend, _) = backend(&r).await;
    let (start, index) = minute_start();
    let limit = [check(Window::Minute, 10)];
    let spans = [Span::at(Window::Minute, start + 1_000)];
    warm_up(&backend).await;
    // The current minute's counter is not a number: Redis refuses to count it.
    let curr = bucket_key("kg:{m}:", Scope::Key, "r", Window::Minute, index);
    r.cmd(&["HSET", &curr, "not", "a counter"]);
    let (one, two) = (
        call(
            "kg:{m}:",
            &limit[..],
            &spans[..],
            Some(paid("kg:{m}:c", 50)),
        ),
        call(
            "kg:{m}:",
            &limit[..],
            &spans[..],
            Some(paid("kg:{m}:c", 50)),
        ),
    );
    let (a, b) = tokio::join!(backend.check(&one, TIMEOUT), backend.check(&two, TIMEOUT));
    assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
    assert_eq!(
        r.cmd(&["EXISTS", "kg:{m}:c"]),
        ::redis::Value::Int(0),
        "nothing debited for requests that were not counted"
    );
}

#[tokio::test]
async fn a_busy_keys_balance_is_read_and_debited_once_per_call_and_each_request_pays_in_turn() {
    let r = redis().await;
    let (backend, _) = backend(&r).await;
    let (start, _) = minute_start();
    let limit = [check(Window::Minute, 100)];
    let spans = [Span::at(Window::Minute, start + 1_000)];
    warm_up(&backend).await;
    r.cmd(&["CONFIG", "RESETSTAT"]);
    let req = call(
        "kg:{p}:",
        &limit[..],
        &spans[..],
        Some(paid("kg:{p}:c", 20)),
    );
    let replies = tokio::join!(
        backend.check(&req, TIMEOUT),
        backend.check(&req, TIMEOUT),
        backend.check(&req, TIMEOUT),
    );
    let seen = [replies.0, replies.1, replies.2]
        .map(|r| r.map(|r| (r.allowed, r.credit, r.remaining)).ok());
    use keygate::ratelimit::redis::CreditReply::{Enough, Exhausted};
    assert_eq!(
        seen,
        [
            Some((true, Enough, 13)),
            Some((true, Enough, 6)),
            Some((false, Exhausted, 6))
        ]
    );
    assert_eq!(
        r.cmd(&["HGET", "kg:{p}:c", "s"]),
        ::redis::Value::BulkString(b"14".to_vec())
    );
    assert_eq!(r.counters("kg:{p}:k:*").values().sum::<i64>(), 2);
    let calls = ["hmget", "hset", "hincrby"].map(|c| r.calls(c));
    assert_eq!(calls, [1, 1, 0], "one read and one write of the balance");
}
