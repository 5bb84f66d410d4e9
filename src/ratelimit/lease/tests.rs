use super::*;
use crate::ratelimit::decision::Scope;
use crate::ratelimit::window::Window;

const NOW: u64 = 60_000 * 1_000 + 10_000;

fn plan(limit: u64) -> ([Check; 1], [Span; 1]) {
    let check = Check {
        scope: Scope::Key,
        window: Window::Minute,
        limit,
    };
    ([check], [Span::at(Window::Minute, NOW)])
}

/// A gateway's leases of at most `max`, a key's id and route (`n` tells
/// tests apart), and a plan of one minute window with a limit of 1,000.
fn setup(max: u64, n: u128) -> (Leases, Uuid, RouteId, [Check; 1], [Span; 1]) {
    let (checks, spans) = plan(1_000);
    (
        Leases::new(max),
        Uuid::from_u128(n),
        RouteId(0),
        checks,
        spans,
    )
}

fn asking(leases: &Leases, id: Uuid, route: RouteId) -> Asking {
    match leases.ask(id, route) {
        Ask::Lease(a) => a,
        _ => panic!("expected to ask for a lease"),
    }
}

#[test]
fn a_grant_admits_what_it_counted_and_no_more() {
    let (leases, id, route, checks, spans) = setup(8, 1);
    let ask = asking(&leases, id, route);
    assert_eq!(ask.n, 8);
    assert!(
        matches!(leases.ask(id, route), Ask::One),
        "one lease asked for at a time; nothing granted yet to wait for"
    );
    let counts = [Counts { curr: 100, prev: 0 }];
    ask.keep(&checks, &spans, &counts, 8, NOW);
    let mut remaining = Vec::new();
    while let Some(v) = leases.take(id, route, &checks, &spans, NOW) {
        remaining.push(v.windows[0].remaining);
    }
    // The request itself left 899; the lease admits 7 more, in order.
    assert_eq!(remaining, vec![898, 897, 896, 895, 894, 893, 892]);
    assert_eq!(leases.held(), 0);
    assert_eq!(
        asking(&leases, id, route).n,
        8,
        "asking again once it is used"
    );
}

#[test]
fn a_lease_ends_with_its_bucket_or_a_new_plan() {
    let leases = Leases::new(8);
    let (id, route) = (Uuid::from_u128(2), RouteId(3));
    let (checks, spans) = plan(1_000);
    asking(&leases, id, route).keep(&checks, &spans, &[Counts::default()], 8, NOW);
    let (other, _) = plan(999);
    assert!(leases.take(id, route, &other, &spans, NOW).is_none());
    assert!(leases.take(id, RouteId(4), &checks, &spans, NOW).is_none());
    let next = 60_000 * 1_001;
    let later = [Span::at(Window::Minute, next)];
    assert!(leases.take(id, route, &checks, &later, next).is_none());
    assert!(leases.take(id, route, &checks, &spans, NOW).is_some());
    // A reply that comes back after its bucket ended keeps nothing.
    let (id2, late) = (Uuid::from_u128(5), next + 1);
    asking(&leases, id2, route).keep(&checks, &spans, &[Counts::default()], 8, late);
    assert!(leases.take(id2, route, &checks, &spans, NOW).is_none());
}

#[test]
fn a_second_grant_adds_to_what_is_held() {
    let (leases, id, route, checks, spans) = setup(4, 3);
    asking(&leases, id, route).keep(&checks, &spans, &[Counts::default()], 4, NOW);
    assert_eq!(leases.held(), 3);
    // Redis's counts include the 3 held here: the headers must not count them as used.
    let counts = [Counts { curr: 4, prev: 0 }];
    asking(&leases, id, route).keep(&checks, &spans, &counts, 4, NOW);
    assert_eq!(leases.held(), 6);
    let v = leases.take(id, route, &checks, &spans, NOW).expect("held");
    assert_eq!(v.windows[0].remaining, 1_000 - 3);
}

#[tokio::test]
async fn after_a_grant_of_many_others_wait_for_the_ask_in_flight() {
    let (leases, id, route, checks, spans) = setup(8, 6);
    asking(&leases, id, route).keep(&checks, &spans, &[Counts::default()], 2, NOW);
    assert!(leases.take(id, route, &checks, &spans, NOW).is_some());
    let ask = asking(&leases, id, route);
    let Ask::Wait(woken) = leases.ask(id, route) else {
        panic!("the last grant was 2: wait for the ask in flight")
    };
    ask.keep(&checks, &spans, &[Counts { curr: 2, prev: 0 }], 8, NOW);
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("woken when the ask ended");
    assert_eq!(leases.held(), 7);
    // A grant of one (near the limit): nobody waits for the next ask.
    let mut ask = asking(&leases, id, route);
    for _ in 0..7 {
        assert!(leases.take(id, route, &checks, &spans, NOW).is_some());
    }
    ask.keep(&checks, &spans, &[Counts { curr: 999, prev: 0 }], 1, NOW);
    ask = asking(&leases, id, route);
    assert!(matches!(leases.ask(id, route), Ask::One));
    drop(ask);
}

#[test]
fn off_asks_for_one() {
    let leases = Leases::new(1);
    assert!(matches!(
        leases.ask(Uuid::from_u128(4), RouteId(0)),
        Ask::One
    ));
    assert!(!leases.enabled());
}
