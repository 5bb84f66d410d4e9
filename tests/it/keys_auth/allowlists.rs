//! Who may call what: scope wildcards, CIDR allowlists over IPv4, IPv6 and
//! mapped addresses, `X-Forwarded-For` from trusted proxies only.

use super::{call, code};
use crate::harness::{StoreKind, TestConfig, TestGateway, Upstream, both_stores, key_spec};

async fn scope_wildcards(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("w", "/w", "a", |r| {
            r.scopes = vec!["orders:items:write".into()]
        });
    let svc = cfg.keys().await;
    let mut keys = Vec::new();
    for scopes in [
        vec!["orders:*"],
        vec!["*"],
        vec!["orders:items:write"],
        vec!["orders:read"],
        vec!["orders:items:*"],
        vec!["order:*"],
    ] {
        let mut s = key_spec("o");
        s.scopes = scopes.iter().map(|x| x.to_string()).collect();
        keys.push(svc.create(s, &"t".into()).await.expect("create"));
    }
    let gw = cfg.start().await;
    let got: Vec<u16> = futures::future::join_all(
        keys.iter()
            .map(|k| async { call(&gw, "/w", k.secret.expose()).await.0 }),
    )
    .await;
    assert_eq!(got, vec![200, 200, 200, 403, 200, 403]);
    gw.stop().await;
}

async fn cidr_allowlists_ipv4_ipv6_and_mapped_addresses(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let base = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let svc = base.keys().await;
    let make = |cidrs: &[&str]| {
        let mut s = key_spec("o");
        s.allowed_cidrs = cidrs.iter().map(|c| c.parse().expect("cidr")).collect();
        s
    };
    let v4_ok = svc
        .create(make(&["127.0.0.0/8"]), &"t".into())
        .await
        .expect("create");
    let v4_no = svc
        .create(make(&["10.0.0.0/8", "192.168.0.0/16"]), &"t".into())
        .await
        .expect("create");
    let v6_ok = svc
        .create(make(&["::1/128"]), &"t".into())
        .await
        .expect("create");
    let v6_no = svc
        .create(make(&["2001:db8::/32"]), &"t".into())
        .await
        .expect("create");

    // IPv6 listener, IPv6 client.
    let gw6 = TestConfig::with_store(base.db_url())
        .with(|f| f.gateway.listen = Some("[::1]:0".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    assert_eq!(call(&gw6, "/", v6_ok.secret.expose()).await.0, 200);
    assert_eq!(
        code(&call(&gw6, "/", v6_no.secret.expose()).await.1),
        "ip_not_allowed"
    );
    assert_eq!(
        code(&call(&gw6, "/", v4_ok.secret.expose()).await.1),
        "ip_not_allowed"
    );
    gw6.stop().await;

    // Dual-stack listener, IPv4 client: the peer is ::ffff:127.0.0.1 and must
    // match IPv4 CIDRs.
    let dual = TestConfig::with_store(base.db_url())
        .with(|f| f.gateway.listen = Some("[::]:0".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let url = format!("http://127.0.0.1:{}/", dual.proxy.port());
    let status = |k: String| {
        let client = dual.client.clone();
        let url = url.clone();
        async move {
            client
                .get(url)
                .header("x-api-key", k)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(v4_ok.secret.expose().into()).await, 200);
    assert_eq!(status(v4_no.secret.expose().into()).await, 403);
    assert_eq!(status(v6_ok.secret.expose().into()).await, 403);
    dual.stop().await;
}

async fn forwarded_for_is_believed_only_from_trusted_proxies(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let db = TestConfig::new(kind).await;
    let svc = db.keys().await;
    let mut s = key_spec("o");
    s.allowed_cidrs = vec!["203.0.113.0/24".parse().expect("cidr")];
    let k = svc.create(s, &"t".into()).await.expect("create");
    let behind_lb = TestConfig::with_store(db.db_url())
        .with(|f| f.gateway.trusted_proxies = vec!["127.0.0.0/8".into()])
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let exposed = TestConfig::with_store(db.db_url())
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let with_xff = |gw: &TestGateway, xff: &str| {
        let req = gw
            .get("/")
            .header("x-api-key", k.secret.expose())
            .header("x-forwarded-for", xff);
        async move { req.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(with_xff(&behind_lb, "203.0.113.9").await, 200);
    assert_eq!(
        with_xff(&behind_lb, "203.0.113.9, 127.0.0.5").await,
        200,
        "trusted hops are skipped"
    );
    assert_eq!(
        with_xff(&behind_lb, "203.0.113.9, 198.51.100.1").await,
        403,
        "the right-most untrusted entry counts"
    );
    assert_eq!(
        with_xff(&exposed, "203.0.113.9").await,
        403,
        "spoofed XFF from an untrusted peer is ignored"
    );
    behind_lb.stop().await;
    exposed.stop().await;
}

both_stores!(
    scope_wildcards,
    cidr_allowlists_ipv4_ipv6_and_mapped_addresses,
    forwarded_for_is_believed_only_from_trusted_proxies,
);
