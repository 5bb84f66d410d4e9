//! The test harness: a real recording upstream, the real gateway on free ports.
// Shared infrastructure: not every helper is used by every test module.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod gateway;
pub mod upstream;

pub use gateway::{TestConfig, TestGateway, metric_value};
pub use upstream::{Upstream, dead_addr};

/// The JSON error body of a rejection.
pub async fn error_code(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("JSON error body");
    (status, body)
}
