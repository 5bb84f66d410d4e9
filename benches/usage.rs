//! What a usage record costs off the request path but in the proxy's
//! process: its journal/spool line (JSON + CRC). `cargo bench --bench usage`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::outcome::Outcome;
use keygate::usage::UsageRecord;
use uuid::Uuid;

fn record() -> UsageRecord {
    UsageRecord {
        id: keygate::ids::uuid_v7(),
        request_id: keygate::ids::uuid_v7().hyphenated().to_string(),
        ts_ms: 1_764_590_400_000,
        key_id: Some(Uuid::new_v4()),
        owner_id: Some(Arc::from("acme-corp")),
        route: Some(Arc::from("orders")),
        method: "GET".into(),
        status: 200,
        outcome: Outcome::Ok,
        latency_us: 812,
        upstream_latency_us: Some(640),
        bytes_in: 0,
        bytes_out: 2_048,
        client_ip: Some(
            "10.1.2.3"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        ),
        deprecated_key: false,
        credits: 0,
        charged_to: None,
    }
}

fn bench_encode(c: &mut Criterion) {
    let r = record();
    let mut buf = Vec::with_capacity(64 << 10);
    c.bench_function("usage/journal_line", |b| {
        b.iter(|| {
            buf.clear();
            keygate::usage::spool::encode(black_box(&r), &mut buf).unwrap_or_default();
            black_box(buf.len())
        })
    });
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
