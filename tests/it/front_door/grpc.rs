//! gRPC through keygate: a tonic health server as an `h2` (prior knowledge)
//! upstream, a tonic client over keygate's TLS listener (ALPN h2) with the key
//! in metadata. Unary and server-streaming calls pass with their trailers;
//! rejections arrive as gRPC statuses (CONTRACT §9): 16, 7, 8.

use std::net::SocketAddr;

use keygate::config::UpstreamProtocol;
use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

use super::{Certs, tls_addr, with_tls};
use crate::harness::{StoreKind, TestConfig, key_spec};

const SERVICE: &str = "keygate.test";

/// A tonic health server on a free port; `keygate.test` is serving.
struct HealthUpstream {
    addr: SocketAddr,
    reporter: HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

impl HealthUpstream {
    async fn start() -> HealthUpstream {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(SERVICE, ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        HealthUpstream {
            addr,
            reporter,
            task,
        }
    }
}

impl Drop for HealthUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tonic channel to keygate's TLS listener, trusting the test CA.
async fn channel(certs: &Certs, addr: SocketAddr) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(certs.ca.cert_pem()))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("gRPC channel over TLS")
}

fn request(key: Option<&str>, service: &str) -> Request<HealthCheckRequest> {
    let mut req = Request::new(HealthCheckRequest {
        service: service.into(),
    });
    if let Some(k) = key {
        req.metadata_mut()
            .insert("x-api-key", k.parse().expect("ascii key"));
    }
    req
}

fn spec(scopes: &[&str], minute: Option<u64>) -> KeySpec {
    KeySpec {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        rate_limits: Limits {
            minute,
            ..Limits::default()
        },
        ..key_spec("grpc")
    }
}

/// The health service behind a route that needs `health:read`.
async fn grpc_config(up: &HealthUpstream, certs: &Certs) -> TestConfig {
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("g", &[up.addr], |u| {
            u.protocol = Some(UpstreamProtocol::H2.into());
        })
        .route("health", "/grpc.health.v1.Health/", "g", |r| {
            r.scopes = vec!["health:read".into()];
        });
    with_tls(cfg, &certs.pairs())
}

#[tokio::test]
async fn unary_and_streaming_calls_pass_with_trailers() {
    let certs = Certs::new();
    let mut up = HealthUpstream::start().await;
    let cfg = grpc_config(&up, &certs).await;
    let k = cfg
        .keys()
        .await
        .create(spec(&["health:read"], None), &"t".into())
        .await
        .expect("key");
    let key = Some(k.secret.expose());
    let gw = cfg.start().await;
    let mut client = HealthClient::new(channel(&certs, tls_addr(&gw)).await);

    let resp = client
        .check(request(key, SERVICE))
        .await
        .expect("unary call");
    assert_eq!(resp.get_ref().status, Wire::Serving as i32);
    assert!(
        resp.metadata().get("x-request-id").is_some(),
        "keygate's headers on the response"
    );
    // The upstream's own error status (a trailers-only response) passes through.
    let e = client
        .check(request(key, "nope"))
        .await
        .expect_err("unknown service");
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "service not registered")
    );

    let mut stream = client
        .watch(request(key, SERVICE))
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.expect("message").expect("one");
    assert_eq!(first.status, Wire::Serving as i32);
    up.reporter
        .set_service_status(SERVICE, ServingStatus::NotServing)
        .await;
    let second = stream.message().await.expect("message").expect("two");
    assert_eq!(second.status, Wire::NotServing as i32);
    // Clearing the status ends the server's stream: the trailers say OK.
    up.reporter.clear_service_status(SERVICE).await;
    assert!(stream.message().await.expect("clean end").is_none());
    assert!(
        stream.trailers().await.expect("trailers").is_some(),
        "trailers arrived"
    );
    gw.stop().await;
}

#[tokio::test]
async fn rejections_are_grpc_statuses() {
    let certs = Certs::new();
    let up = HealthUpstream::start().await;
    let cfg = grpc_config(&up, &certs).await;
    let keys = cfg.keys().await;
    let unscoped = keys
        .create(spec(&["other:read"], None), &"t".into())
        .await
        .expect("key");
    let limited = keys
        .create(spec(&["health:read"], Some(1)), &"t".into())
        .await
        .expect("key");
    let gw = cfg.start().await;
    let mut client = HealthClient::new(channel(&certs, tls_addr(&gw)).await);

    let cases = [
        (None, Code::Unauthenticated, "missing_key"),
        (
            Some("kg_not_a_real_key"),
            Code::Unauthenticated,
            "invalid_key",
        ),
        (
            Some(unscoped.secret.expose()),
            Code::PermissionDenied,
            "insufficient_scope",
        ),
    ];
    for (key, code, message) in cases {
        let e = client
            .check(request(key, SERVICE))
            .await
            .expect_err("refused");
        assert_eq!((e.code(), e.message()), (code, message), "{e:?}");
        assert!(e.metadata().get("x-request-id").is_some(), "{e:?}");
        // A streaming call is refused the same way, before any message.
        let e = client
            .watch(request(key, SERVICE))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), code);
    }
    let key = Some(limited.secret.expose());
    client
        .check(request(key, SERVICE))
        .await
        .expect("within the limit");
    let e = client
        .check(request(key, SERVICE))
        .await
        .expect_err("over the limit");
    assert_eq!(
        (e.code(), e.message()),
        (Code::ResourceExhausted, "rate_limited")
    );
    assert!(e.metadata().get("retry-after").is_some(), "{e:?}");
    // The channel survived every rejection.
    let ok = keys
        .create(spec(&["health:read"], None), &"t".into())
        .await
        .expect("key");
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(5), || {
            let mut c = client.clone();
            let k = ok.secret.expose().to_string();
            async move { c.check(request(Some(&k), SERVICE)).await.is_ok() }
        })
        .await
        .is_some(),
        "a new key is served on the same channel"
    );
    gw.stop().await;
}
