//! What a usage record costs to store in Postgres: `cargo run --profile
//! release-thin --example usage_cost -- postgres://postgres@127.0.0.1:5432/postgres
//! [records] [batch] [alter-sql|""] [keys]`.
//!
//! Creates a scratch database, writes `records` records (one route, of one key
//! as in the benchmark's full row, or of `keys` keys in turn as in its
//! full-keys row) in batches of `batch` through the store's
//! `write_usage` (the usage writer's call), and reports per record: this
//! process's CPU (binding, the protocol, reading the reply) and the Postgres
//! server's (the backend processes of the scratch database and the server's
//! background writers, read from /proc), then drops the database.

use std::sync::Arc;
use std::time::Instant;

use keygate::config::Pooler;
use keygate::outcome::Outcome;
use keygate::store::Stores;
use keygate::store::postgres::{self, PgSettings};
use keygate::usage::UsageRecord;
use uuid::Uuid;

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU seconds of every process whose parent is `postmaster` (backends,
/// WAL writer, checkpointer, ...), from /proc/<pid>/stat.
fn server_cpu_seconds(postmaster: u32) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis: state ppid ... utime(12) stime(13).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(postmaster) {
            continue;
        }
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (n(11) + n(12)) / tick;
    }
    total
}

fn record(key: Uuid, route: &Arc<str>) -> UsageRecord {
    UsageRecord {
        id: keygate::ids::uuid_v7(),
        request_id: keygate::ids::uuid_v7().hyphenated().to_string(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        key_id: Some(key),
        owner_id: Some(Arc::from("acme-corp")),
        route: Some(route.clone()),
        method: "GET".into(),
        status: 200,
        outcome: Outcome::Ok,
        latency_us: 812,
        upstream_latency_us: Some(640),
        bytes_in: 0,
        bytes_out: 2,
        client_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        deprecated_key: false,
        credits: 0,
        charged_to: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let admin = args
        .get(1)
        .cloned()
        .unwrap_or("postgres://postgres@127.0.0.1:5432/postgres".into());
    let records: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(300);
    // An experiment's schema change, run after the migrations.
    let alter = args.get(4).filter(|s| !s.is_empty()).cloned();
    let keys: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(admin, records, batch, alter, keys))
}

async fn run(
    admin: String,
    records: usize,
    batch: usize,
    alter: Option<String>,
    keys: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    let mut a = sqlx::PgConnection::connect(&admin).await?;
    let postmaster: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut a)
        .await?;
    let postmaster = std::fs::read_to_string(format!("/proc/{postmaster}/stat"))?
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(1).and_then(|p| p.parse().ok()))
        .ok_or("no postmaster")?;
    let db = format!("kg_usage_cost_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut a)
        .await?;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => return Err("admin URL without a database".into()),
    };
    let stores = Stores::over(postgres::open(PgSettings {
        url: &url,
        max_connections: 2,
        pooler: Pooler::None,
        listen_url: None,
    })?);
    stores.db.migrate().await?;
    if let Some(sql) = alter {
        let mut c = sqlx::PgConnection::connect(&url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await?;
    }
    let key_ids: Vec<Uuid> = (0..keys).map(|_| Uuid::new_v4()).collect();
    let route: Arc<str> = Arc::from("api");
    for round in ["warm-up", "measured"] {
        let n = if round == "warm-up" {
            records / 10
        } else {
            records
        };
        let all: Vec<UsageRecord> = (0..n).map(|i| record(key_ids[i % keys], &route)).collect();
        let (c0, s0, t0) = (
            own_cpu_seconds(),
            server_cpu_seconds(postmaster),
            Instant::now(),
        );
        for chunk in all.chunks(batch) {
            stores.usage.write_usage(chunk).await?;
        }
        let (c, s, w) = (
            own_cpu_seconds() - c0,
            server_cpu_seconds(postmaster) - s0,
            t0.elapsed().as_secs_f64(),
        );
        println!(
            "{round}: {n} records of {keys} key(s) in batches of {batch}: client {:.2} µs CPU/record, \
             Postgres {:.2} µs CPU/record, {:.0} records/s",
            c * 1e6 / n as f64,
            s * 1e6 / n as f64,
            n as f64 / w
        );
    }
    drop(stores);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&mut a)
    .await?;
    Ok(())
}
