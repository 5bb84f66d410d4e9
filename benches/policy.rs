//! Micro-benchmarks of the request path's policy work: key parsing, HMAC,
//! table lookup, the full auth decision (valid and garbage keys), scopes, CIDRs,
//! route matching. Run: `cargo bench --bench policy`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use keygate::auth::hash::KeyHasher;
use keygate::auth::{key, scope};
use keygate::clock::Clock;
use keygate::config::Config;
use keygate::keys::model::{KeyRow, KeySpec};
use keygate::keys::{EntryContext, Interner, KeyTable};
use keygate::proxy::policy::Gate;
use keygate::proxy::router::Router;
use keygate::ratelimit::window::Limits;
use pingora_http::RequestHeader;
use uuid::Uuid;

const TABLE_KEYS: usize = 100_000;

fn config(routes: usize) -> Config {
    let mut toml = String::from("[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:9\"]\n");
    for i in 0..routes {
        toml.push_str(&format!(
            "[[route]]\nname = \"r{i}\"\npath_prefix = \"/api/v1/service{i}\"\nupstream = \"u\"\nscopes = [\"orders:read\"]\n"
        ));
    }
    let env = |k: &str| (k == "KEYGATE_HASH_SECRET").then(|| "b".repeat(32));
    Config::from_toml(&toml, Path::new("bench.toml"), &env).expect("config")
}

fn row(owner: &str, hash: keygate::auth::hash::KeyHash) -> KeyRow {
    KeyRow {
        id: Uuid::now_v7(),
        hash,
        lineage_id: Uuid::now_v7(),
        revoked: false,
        rotated_to: None,
        rotated_at: None,
        spec: KeySpec {
            owner_id: owner.into(),
            scopes: vec!["users:read".into(), "orders:*".into()],
            allowed_cidrs: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "192.0.2.0/24".parse().expect("cidr"),
            ],
            metadata: BTreeMap::from([("plan".to_string(), "gold".to_string())]),
            ..KeySpec::default()
        },
        credits: None,
    }
}

/// A table of [`TABLE_KEYS`] keys and one valid key in it.
struct Fixture {
    cfg: Config,
    hasher: KeyHasher,
    table: Arc<KeyTable>,
    valid: key::PlaintextKey,
}

fn fixture() -> Fixture {
    let cfg = config(1);
    let hasher = KeyHasher::new(&[b'b'; 32]).expect("secret");
    let table = Arc::new(KeyTable::default());
    let mut interner = Interner::new(EntryContext::new(&cfg, Default::default()));
    let mut valid = None;
    for i in 0..TABLE_KEYS {
        let k = key::generate("kg").expect("key");
        let h = hasher.hash(k.expose());
        table.insert(
            h,
            Arc::new(interner.entry(row(&format!("owner{}", i % 1000), h))),
        );
        valid.get_or_insert(k);
    }
    table.mark_synced(0);
    let valid = valid.expect("a key");
    Fixture {
        cfg,
        hasher,
        table,
        valid,
    }
}

/// The full auth decision for a valid, a garbage and an unknown well-formed key.
fn bench_auth_decision(c: &mut Criterion) {
    let Fixture {
        cfg,
        hasher,
        table,
        valid,
    } = fixture();
    let garbage = format!("kg_{}", "Q".repeat(38));
    let unknown = key::generate("kg").expect("key");
    let metrics = Arc::new(keygate::metrics::Metrics::new().expect("metrics"));
    let health = Arc::new(keygate::ratelimit::Health::new(
        cfg.ratelimit.on_backend_error,
    ));
    let limiter =
        keygate::ratelimit::Limiter::new(&cfg, metrics, health, Clock::system()).expect("limiter");
    let gate = Gate::new(
        &cfg,
        hasher.clone(),
        table.clone(),
        Arc::new(limiter),
        Clock::system(),
    );
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    let request = |k: &str| {
        let mut r = RequestHeader::build("GET", b"/api/v1/service0/orders", None).expect("req");
        r.insert_header("x-api-key", k).expect("header");
        r
    };
    let (req_valid, req_garbage, req_unknown) = (
        request(valid.expose()),
        request(&garbage),
        request(unknown.expose()),
    );
    let scopes = cfg.routes[0].scopes.clone();
    // The key part of the gate's decision, as the proxy makes it: the key
    // header, shape and checksum, HMAC, lookup, state, route, IP, scopes.
    let decide = |req: &RequestHeader| {
        let key = req
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        gate.check_key(key, Some(keygate::routes::RouteId(0)), &scopes, Some(ip))
            .is_ok()
    };
    let mut run = |name: &str, req: &RequestHeader, want_ok: bool| {
        assert_eq!(decide(req), want_ok, "{name}");
        c.bench_function(name, |b| b.iter(|| black_box(decide(black_box(req)))));
    };
    run("auth_decision/valid_key", &req_valid, true);
    run("auth_decision/garbage_key", &req_garbage, false);
    run("auth_decision/unknown_wellformed_key", &req_unknown, false);
}

/// Key parsing, HMAC and the table lookup.
fn bench_key(c: &mut Criterion) {
    let Fixture {
        hasher,
        table,
        valid,
        ..
    } = fixture();
    c.bench_function("key/parse_and_checksum", |b| {
        b.iter(|| key::parse(black_box(valid.expose())).is_ok())
    });
    c.bench_function("key/hmac_sha256", |b| {
        b.iter(|| hasher.hash(black_box(valid.expose())))
    });
    let h = hasher.hash(valid.expose());
    c.bench_function("key/table_lookup_100k", |b| {
        b.iter(|| table.get(black_box(&h)).is_some())
    });
}

fn bench_scope(c: &mut Criterion) {
    let held = vec![
        "users:read".to_string(),
        "billing:*".to_string(),
        "orders:*".to_string(),
    ];
    let required = vec!["orders:items:write".to_string()];
    c.bench_function("scope/wildcard_match", |b| {
        b.iter(|| scope::first_missing(black_box(&held), black_box(&required)).is_none())
    });
}

fn bench_cidr(c: &mut Criterion) {
    let mut interner = Interner::new(EntryContext::new(&config(1), Default::default()));
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    let entry = interner.entry(row("o", keygate::auth::hash::KeyHash([9; 32])));
    let v6: IpAddr = "2001:db8::1".parse().expect("ip");
    c.bench_function("cidr/v4_match", |b| {
        b.iter(|| entry.ip_allowed(black_box(ip)))
    });
    c.bench_function("cidr/v6_miss", |b| {
        b.iter(|| entry.ip_allowed(black_box(v6)))
    });
}

fn bench_ratelimit(c: &mut Criterion) {
    // The local (memory / fallback) rate-limit decision for a key with four windows.
    let limiter = keygate::ratelimit::memory::MemoryLimiter::default();
    let limits = Limits {
        second: Some(1 << 40),
        minute: Some(1 << 40),
        hour: Some(1 << 40),
        day: Some(1 << 40),
        month: None,
    };
    let checks = keygate::ratelimit::decision::plan(
        &limits,
        keygate::routes::RouteId(0),
        &Limits::default(),
        &Limits::default(),
    );
    let id = Uuid::now_v7();
    c.bench_function("ratelimit/local_decision_4_windows", |b| {
        // A clock that moves within one second, as consecutive requests see it.
        let mut tick = 0u64;
        b.iter(|| {
            tick += 1;
            let now = 1_800_000_000_000 + tick % 1000;
            let spans: Vec<_> = checks
                .iter()
                .map(|c| keygate::ratelimit::decision::Span::at(c.window, now))
                .collect();
            black_box(limiter.check(id, black_box(&checks), &spans).allowed)
        })
    });
}

fn bench_route(c: &mut Criterion) {
    let many = config(100);
    let router = Router::new(&many.routes);
    c.bench_function("route/match_100_routes", |b| {
        b.iter(|| {
            router.route(
                black_box(Some("api.example.com")),
                black_box("/api/v1/service77/orders/1"),
                &Method::GET,
            )
        })
    });
}

criterion_group!(
    benches,
    bench_auth_decision,
    bench_key,
    bench_scope,
    bench_cidr,
    bench_ratelimit,
    bench_route
);
criterion_main!(benches);
