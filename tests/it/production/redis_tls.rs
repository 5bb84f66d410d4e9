//! Rate limits on a TLS-only Redis (`rediss://`) with an ACL user and the
//! default user off: verified with `tls_ca_file`, exact; a wrong CA leaves
//! the gateway serving degraded (as an unreachable Redis does), with a
//! start-up warning that names the cause and the setting to check.

use std::time::Duration;

use keygate::config::file::BackendName;

use super::{BACKEND_ERRORS, blocking, burst, exact, hourly, key, ready_field, routed, strict};
use crate::harness::binary::{self, Process};
use crate::harness::gateway::HASH_SECRET;
use crate::harness::pg::fresh_db;
use crate::harness::procs::ScratchDir;
use crate::harness::redis_tls::{self, RedisTls};
use crate::harness::tls::{TestCa, install_crypto_provider};
use crate::harness::{TestConfig, Upstream, eventually};

async fn tls_redis() -> RedisTls {
    install_crypto_provider();
    blocking(|| RedisTls::start(&TestCa::new("keygate redis CA"))).await
}

#[tokio::test]
async fn rediss_with_an_acl_user_and_a_ca_file_counts_exactly() {
    let redis = tls_redis().await;
    let up = Upstream::start("a").await;
    let ca = redis.ca_path().display().to_string();
    let cfg = routed(TestConfig::pg().await, &up)
        .redis(&redis.url())
        .ratelimit(|r| {
            r.tls_ca_file = Some(ca);
            strict(r);
        });
    let k = key(&cfg.keys().await, hourly(20)).await;
    let gw = cfg.start().await;
    assert_eq!(ready_field(&gw, "ratelimit").await, "healthy");
    assert_eq!(
        burst(&[&gw], k.secret.expose(), 60, 16).await,
        exact(20, 60)
    );
    assert_eq!(gw.metric(BACKEND_ERRORS).await, 0.0);
    // Counted in that Redis, as the ACL user.
    let pattern = format!("kg:{{{}}}:k:hour:*", k.key.lineage_id);
    let stored = redis.cmd(&["KEYS", &pattern]).expect("KEYS over TLS");
    assert!(
        matches!(&stored, redis::Value::Array(v) if v.len() == 1),
        "{stored:?}"
    );
    let clients = redis.cmd(&["CLIENT", "LIST"]).expect("CLIENT LIST");
    let clients = crate::harness::redis_node::text(&clients);
    assert!(
        clients.contains(&format!("user={}", redis_tls::USER)),
        "{clients}"
    );
    gw.stop().await;
}

/// `keygate serve` with a CA that did not sign Redis's certificate: it
/// serves, `/readyz` says `degraded_local`, and the start-up warning says
/// the certificate is not signed by a trusted CA, naming `tls_ca_file`.
#[tokio::test]
async fn a_wrong_ca_starts_degraded_and_the_warning_names_the_cause() {
    let redis = tls_redis().await;
    let dir = ScratchDir::new("redis-wrong-ca");
    let other = TestCa::new("unrelated CA").write_ca(&dir, "other.crt");
    let up = Upstream::start("a").await;
    let mut file = binary::serving_config(&fresh_db().await, up.addr);
    file.ratelimit.backend = Some(BackendName::Redis.into());
    file.ratelimit.url = Some(redis.url());
    file.ratelimit.tls_ca_file = Some(other.display().to_string());
    let config = dir.path().join("keygate.toml");
    binary::write_config(&config, &file);
    let (path, cfg) = (dir.path().to_owned(), config.clone());
    let gw = blocking(move || Process::serve(&path, &cfg, &[("KEYGATE_HASH_SECRET", HASH_SECRET)]))
        .await;

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let ready: serde_json::Value = client
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ratelimit"], "degraded_local", "{ready}");
    let served = client
        .get(format!("http://{}/x", gw.proxy))
        .send()
        .await
        .expect("request");
    assert_eq!(served.status().as_u16(), 200);
    let warned = eventually(Duration::from_secs(3), || async {
        gw.logs().iter().any(|l| {
            l.contains("TLS to Redis failed")
                && l.contains("not signed by a trusted CA")
                && l.contains("ratelimit.tls_ca_file")
        })
    })
    .await;
    assert!(
        warned.is_some(),
        "no clear TLS warning in:\n{}",
        gw.logs().join("\n")
    );
    drop(gw);
}
