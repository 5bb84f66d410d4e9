//! The test harness: a real recording upstream, the real gateway on free ports.
// Shared infrastructure: not every helper is used by every test module.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod gateway;
pub mod pg;
pub mod pg_tls;
pub mod pgbouncer;
pub mod procs;
pub mod redis;
pub mod redis_cluster;
pub mod redis_node;
pub mod redis_sentinel;
pub mod redis_tls;
pub mod tls;
pub mod upstream;
pub mod users;

pub use gateway::{StoreKind, TestConfig, TestGateway, metric_value};

/// Turns `async fn name(kind: StoreKind)` test bodies into a `postgres` and a
/// `sqlite` test each: `name::postgres`, `name::sqlite`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn postgres() {
                    super::$name(crate::harness::StoreKind::Postgres).await
                }
                #[tokio::test]
                async fn sqlite() {
                    super::$name(crate::harness::StoreKind::Sqlite).await
                }
            }
        )*
    };
}
pub(crate) use both_stores;
pub use upstream::{Upstream, dead_addr};

/// An enabled key for `owner` with no scopes, CIDRs or limits; tests vary it
/// with struct update syntax: `KeySpec { scopes, ..key_spec("o") }`.
pub fn key_spec(owner: &str) -> keygate::keys::model::KeySpec {
    keygate::keys::model::KeySpec {
        owner_id: owner.into(),
        name: "k".into(),
        enabled: true,
        ..Default::default()
    }
}

/// The status of `GET /x` with `key`.
pub async fn status(gw: &TestGateway, key: &str) -> u16 {
    get_with_key(gw, key).await.status().as_u16()
}

/// `GET /x` with `key` in `X-API-Key`: the whole response.
pub async fn get_with_key(gw: &TestGateway, key: impl AsRef<str>) -> reqwest::Response {
    gw.get("/x")
        .header("x-api-key", key.as_ref())
        .send()
        .await
        .expect("send")
}

/// The JSON error body of a rejection.
pub async fn error_code(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("JSON error body");
    (status, body)
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns
/// how long it took, or `None` on timeout.
pub async fn eventually<F, Fut>(
    timeout: std::time::Duration,
    mut f: F,
) -> Option<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}
