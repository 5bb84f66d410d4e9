//! The walking skeleton: routing, upstream failover, rejections, header hygiene,
//! request ids, streaming, configuration errors and the process lifecycle.
//! `routing`: route choice and the refusals before an upstream; `upstreams`:
//! failover, upstream errors, streaming; `headers`: header hygiene and request
//! ids; `lifecycle`: `check-config` and signals.

mod headers;
mod lifecycle;
mod routing;
mod upstreams;

use std::time::Duration;

async fn body(resp: reqwest::Response) -> String {
    resp.text().await.expect("body")
}

async fn raw_request(addr: std::net::SocketAddr, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
