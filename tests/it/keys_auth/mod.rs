//! Authentication and authorization through the real proxy: every rejection
//! code, the identity headers, scopes, CIDRs, trusted proxies, expiry, rotation.
//! `headers`: what reaches the upstream; `rejections`: every refusal code;
//! `allowlists`: scopes, CIDRs and trusted proxies; `lifecycle`: expiry,
//! rotation and the per-owner cap.

mod allowlists;
mod headers;
mod lifecycle;
mod rejections;

use crate::harness::TestGateway;

async fn call(gw: &TestGateway, path: &str, key: &str) -> (u16, serde_json::Value) {
    let resp = gw
        .get(path)
        .header("x-api-key", key)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
