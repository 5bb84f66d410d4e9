//! Route choice (prefix boundaries, longest match, host, method) and what is
//! refused before any upstream: no route, dot segments, a missing key.

use super::{body, raw_request};
use crate::harness::{TestConfig, Upstream, error_code, get_with_key};

#[tokio::test]
async fn route_choice_prefix_boundary_longest_host_and_methods() {
    let (a, b, c, d) = tokio::join!(
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
        Upstream::start("d")
    );
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[a.addr], |_| {})
        .upstream("b", &[b.addr], |_| {})
        .upstream("c", &[c.addr], |_| {})
        .upstream("d", &[d.addr], |_| {})
        .route("root", "/", "a", TestConfig::public)
        .route("orders", "/orders", "b", TestConfig::public)
        .route("items", "/orders/items", "c", TestConfig::public)
        .route("orders-host", "/orders", "d", |r| {
            TestConfig::public(r);
            r.host = Some("api.example.com".into());
        })
        .route("m-get", "/m", "a", |r| {
            TestConfig::public(r);
            r.methods = vec!["GET".into()];
        })
        .route("m-post", "/m", "b", |r| {
            TestConfig::public(r);
            r.methods = vec!["POST".into()];
        })
        .start()
        .await;
    let cases = [
        ("GET", "/orders", None, "upstream b"),
        ("GET", "/orders/42", None, "upstream b"),
        ("GET", "/ordersX", None, "upstream a"),
        ("GET", "/orders/items/1", None, "upstream c"),
        ("GET", "/orders/1", Some("api.example.com"), "upstream d"),
        (
            "GET",
            "/orders/1",
            Some("API.example.com:8080"),
            "upstream d",
        ),
        ("GET", "/orders/1", Some("other.example.com"), "upstream b"),
        ("GET", "/m/x", None, "upstream a"),
        ("POST", "/m/x", None, "upstream b"),
        ("DELETE", "/m/x", None, "upstream a"),
    ];
    for (method, path, host, want) in cases {
        let mut req = gw
            .client
            .request(method.parse().expect("method"), gw.url(path));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 200, "{method} {path} {host:?}");
        assert_eq!(body(resp).await, want, "{method} {path} {host:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn no_route_is_a_json_404() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("only", "/only", "a", |r| {
            TestConfig::public(r);
            r.methods = vec!["GET".into()];
        })
        .start()
        .await;
    for (method, path) in [("GET", "/nothing"), ("POST", "/only")] {
        let resp = gw
            .client
            .request(method.parse().expect("m"), gw.url(path))
            .send()
            .await
            .expect("send");
        let rid = resp.headers()["x-request-id"]
            .to_str()
            .expect("rid")
            .to_string();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let (status, v) = error_code(resp).await;
        assert_eq!(status, 404);
        assert_eq!(v["error"]["code"], "route_not_found");
        assert_eq!(v["error"]["request_id"], rid.as_str());
    }
    assert_eq!(up.count(), 0);
    assert!(
        gw.metric_reaches(
            "keygate_requests_total{outcome=\"route_not_found\",route=\"_none\"}",
            2.0
        )
        .await
    );
    gw.stop().await;
}

#[tokio::test]
async fn dot_segments_are_refused_before_routing() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("public", "/public", "a", TestConfig::public)
        .route("private", "/private", "a", |_| {})
        .start()
        .await;
    for path in [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/./x",
    ] {
        // Raw HTTP: client libraries normalise dot segments away before sending.
        let resp = raw_request(
            gw.proxy,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(
            resp.contains("\"code\":\"invalid_request\""),
            "{path}: {resp}"
        );
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn required_routes_without_a_store_key_answer_401() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("private", "/", "a", |_| {})
        .start()
        .await;
    let resp = gw.get("/x").send().await.expect("send");
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("x-api-key")
    );
    let (status, v) = error_code(resp).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("missing_key"))
    );
    let (status, v) = error_code(get_with_key(&gw, "kg_garbage").await).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_key"))
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}
