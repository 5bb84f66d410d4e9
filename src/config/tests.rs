use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"), &|_| None)
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(e) => panic!("expected validation problems, got {e}"),
        Ok(_) => panic!("expected validation problems, config was accepted"),
    }
}

const MINIMAL: &str = r#"
[[upstream]]
name = "orders"
servers = ["127.0.0.1:9000"]

[[route]]
name = "orders"
path_prefix = "/orders"
upstream = "orders"
"#;

#[test]
fn minimal_file_gets_defaults() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.gateway.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.gateway.key_header.as_str(), "x-api-key");
    assert_eq!(c.routes[0].auth, AuthMode::Required, "secure by default");
    assert_eq!(c.routes[0].upstream, 0);
    assert_eq!(c.keys.default_prefix, "kg");
    assert_eq!(c.ratelimit.backend, RateLimitBackend::Memory);
    assert_eq!(c.store.url, StoreUrl::Sqlite("data/keygate.db".into()));
    assert_eq!(c.upstreams[0].connect_timeout, Duration::from_secs(1));
    assert!(c.admin.tokens.is_empty());
}

#[test]
fn contract_sketch_parses() {
    let text = r#"
[gateway]
listen = "0.0.0.0:8080"
threads = 2
key_header = "X-API-Key"
accept_bearer = false
trusted_proxies = ["10.0.0.0/8", "fd00::/8"]
forward_key = false
forward_metadata = ["plan"]

[keys]
default_prefix = "kg"
max_per_owner = 100

[store]
url = "postgres://keygate@127.0.0.1/keygate"
hash_secret_file = "data/hash.secret"

[ratelimit]
backend = "redis"
url = "redis://127.0.0.1:6379"
timeout = "50ms"
on_backend_error = "local"

[usage]
enabled = true
flush_interval = "1s"
spool_dir = "data/spool"

[admin]
listen = "127.0.0.1:8081"

[[upstream]]
name = "orders"
servers = ["127.0.0.1:9000", "orders.internal:9001"]
tls = false
connect_timeout = "1s"
read_timeout = "30s"

[[route]]
name = "orders-read"
host = "API.example.com"
path_prefix = "/orders"
methods = ["GET", "head"]
upstream = "orders"
auth = "required"
scopes = ["orders:read"]
rate_limits = { second = 20 }
"#;
    let c = load(text).expect("valid");
    assert_eq!(c.gateway.trusted_proxies.len(), 2);
    assert_eq!(c.gateway.key_header.as_str(), "x-api-key");
    assert!(matches!(c.store.url, StoreUrl::Postgres(_)));
    assert!(matches!(c.ratelimit.backend, RateLimitBackend::Redis(_)));
    assert_eq!(c.ratelimit.timeout, Duration::from_millis(50));
    let r = &c.routes[0];
    assert_eq!(r.host.as_deref(), Some("api.example.com"));
    assert_eq!(r.methods, vec![Method::GET, Method::HEAD]);
    assert_eq!(r.rate_limits.second, Some(20));
    assert_eq!(c.upstreams[0].sni, "127.0.0.1");
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"
[gateway]
listen = "nowhere"
trusted_proxies = ["10.0.0.0/33", "10.1.2.3/8"]
colour = "blue"

[ratelimit]
timeout = "fast"
on_backend_error = "panic"

[[upstream]]
name = "orders"
servers = []

[[upstream]]
name = "orders"
servers = ["localhost"]
connect_timeout = "-1s"

[[route]]
name = "a"
path_prefix = "/a"
upstream = "orders"

[[route]]
name = "a"
path_prefix = "b"
upstream = "ordrs"
methods = ["GE T"]
scopes = ["orders:*"]
rate_limits = { fortnight = 3, second = 0 }
unknown_thing = 1
"#;
    let got = problems(text);
    let expect = [
        "gateway.colour: unknown key",
        "route[1].unknown_thing: unknown key",
        "gateway.listen: invalid listen address \"nowhere\"; use ip:port",
        "gateway.trusted_proxies[0]: invalid CIDR",
        "gateway.trusted_proxies[1]: \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?",
        "ratelimit.timeout: invalid duration \"fast\"",
        "ratelimit.on_backend_error: \"panic\" must be",
        "upstream[0].servers: needs at least one server",
        "upstream[1].name: duplicate upstream name \"orders\"",
        "upstream[1].servers[0]: \"localhost\" must be host:port",
        "upstream[1].connect_timeout: invalid duration",
        "route[1].name: duplicate route name \"a\"",
        "route[1].upstream: no upstream named \"ordrs\"",
        "route[1].path_prefix: \"b\" must start with '/'",
        "route[1].methods[0]: \"GE T\" is not an HTTP method",
        "route[1].scopes[0]: scope \"orders:*\": a route cannot require a wildcard scope",
        "route[1].rate_limits.fortnight: unknown window",
        "route[1].rate_limits.second: must be 1 to 10^15",
    ];
    for e in expect {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in {got:#?}"
        );
    }
    assert_eq!(
        got.len(),
        expect.len(),
        "unexpected extra problems: {got:#?}"
    );
}

#[test]
fn public_routes_cannot_carry_key_policy() {
    let text = format!(
        "{MINIMAL}\n[[route]]\nname = \"p\"\nupstream = \"orders\"\nauth = \"public\"\nscopes = [\"a:b\"]\n"
    );
    let got = problems(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("route[1].auth: a public route"));
}

#[test]
fn syntax_errors_name_the_file() {
    match load("[gateway\nlisten=") {
        Err(ConfigError::Syntax { path, .. }) => assert_eq!(path, Path::new("test.toml")),
        other => panic!("expected syntax error, got {other:?}"),
    }
    match load("[gateway]\nthreads = \"two\"") {
        Err(ConfigError::Syntax { message, .. }) => {
            assert!(message.contains("threads"), "{message}")
        }
        other => panic!("expected type error, got {other:?}"),
    }
}

#[test]
fn environment_overrides_urls_and_secrets() {
    let text = r#"
[store]
url = "sqlite://x.db"
[ratelimit]
backend = "redis"
"#;
    let env = |name: &str| match name {
        env::DATABASE_URL => Some("postgres://u:pw@db/keygate".to_string()),
        env::REDIS_URL => Some("redis://cache:6379".to_string()),
        env::HASH_SECRET => Some("s3cret-s3cret-s3cret".to_string()),
        env::ADMIN_TOKEN => Some("tok1, tok2,".to_string()),
        _ => None,
    };
    let c = Config::from_toml(text, Path::new("t.toml"), &env).expect("valid");
    assert_eq!(
        c.store.url,
        StoreUrl::Postgres(Secret::new("postgres://u:pw@db/keygate"))
    );
    assert_eq!(
        c.ratelimit.backend,
        RateLimitBackend::Redis(RedisConfig {
            topology: RedisTopology::Standalone(Secret::new("redis://cache:6379")),
            tls_ca_file: None,
        })
    );
    assert!(matches!(c.store.hash_secret, HashSecretSource::Env(_)));
    assert_eq!(c.admin.tokens.len(), 2);
    let debug = format!("{c:?}");
    for secret in ["pw@db", "s3cret", "tok1", "cache:6379"] {
        assert!(!debug.contains(secret), "Debug output leaks {secret}");
    }
}

#[test]
fn sizes() {
    use super::validate::parse_size;
    assert_eq!(parse_size("64KiB"), Some(65_536));
    assert_eq!(parse_size("1GiB"), Some(1 << 30));
    assert_eq!(parse_size("500MB"), Some(500_000_000));
    assert_eq!(parse_size("1000"), Some(1000));
    assert_eq!(parse_size("1 TB"), None);
    let c = load(&format!("{MINIMAL}\n[usage]\nspool_max_size = \"2MiB\"\n")).expect("valid");
    assert_eq!(c.usage.spool_max_bytes, 2 << 20);
    let got = problems(&format!("{MINIMAL}\n[usage]\nspool_max_size = \"lots\"\n"));
    assert!(got[0].starts_with("usage.spool_max_size:"), "{got:?}");
}

#[test]
fn redis_backend_needs_a_url() {
    let got = problems("[ratelimit]\nbackend = \"redis\"\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("ratelimit.url: required"));
}

#[test]
fn secret_in_bad_url_is_not_echoed() {
    let got = problems("[store]\nurl = \"mysql://root:hunter2@db/x\"\n");
    assert!(!got[0].contains("hunter2"), "{got:?}");
}

#[test]
fn a_file_built_as_values_validates_like_its_toml() {
    let mut file = FileConfig::default();
    file.gateway.accept_bearer = Some(true);
    file.ratelimit.on_backend_error = Some(OnBackendError::Deny.into());
    file.ratelimit.timeout = Some("250ms".into());
    file.upstream.push(file::UpstreamSection {
        name: "orders".into(),
        servers: vec!["127.0.0.1:9000".into()],
        read_timeout: Some(Duration::from_millis(1500).into()),
        ..Default::default()
    });
    file.route.push(file::RouteSection {
        name: "orders".into(),
        upstream: "orders".into(),
        auth: Some(AuthMode::Public.into()),
        ..Default::default()
    });
    let text = toml::to_string(&file).expect("serializes");
    let env = |_: &str| None;
    let typed = Config::from_file(file, Path::new("t"), &env).expect("valid");
    let parsed = load(&text).expect("its TOML is valid");
    assert_eq!(format!("{typed:?}"), format!("{parsed:?}"), "{text}");
    assert!(typed.gateway.accept_bearer);
    assert_eq!(typed.ratelimit.on_backend_error, OnBackendError::Deny);
    assert_eq!(typed.upstreams[0].read_timeout, Duration::from_millis(1500));
    assert_eq!(typed.routes[0].auth, AuthMode::Public);
}

#[test]
fn a_file_built_as_values_reports_problems_with_paths() {
    let mut file = FileConfig::default();
    file.ratelimit.on_backend_error = Some("panic".into());
    file.keys.sync_interval = Some(Duration::ZERO.into());
    let err = Config::from_file(file, Path::new("t"), &|_| None).expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected problems, got {err}");
    };
    let got: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        got,
        [
            "keys.sync_interval: duration must be greater than zero",
            "ratelimit.on_backend_error: \"panic\" must be \"local\", \"allow\" or \"deny\"",
        ]
    );
}

#[test]
fn every_value_survives_a_toml_round_trip() {
    let text = r#"
[gateway]
listen = "127.0.0.1:1"
accept_bearer = true
trusted_proxies = ["10.0.0.0/8"]
shutdown_grace = "1m 30s"
[ratelimit]
backend = "redis"
url = "redis://h:1"
mode = "batched"
batch_interval = "5ms"
on_backend_error = "allow"
[log]
format = "json"
[[upstream]]
name = "u"
servers = ["127.0.0.1:9"]
tls = true
[[route]]
name = "r"
upstream = "u"
methods = ["GET"]
rate_limits = { second = 2, day = 9 }
"#;
    let file: FileConfig = toml::from_str(text).expect("parses");
    let again = toml::to_string(&file).expect("serializes");
    assert_eq!(
        format!("{:?}", load(text).expect("valid")),
        format!("{:?}", load(&again).expect("valid")),
        "{again}"
    );
}

#[test]
fn lease_is_1_to_4096_and_only_for_exact_redis() {
    let with = |extra: &str| format!("[ratelimit]\n{extra}\n{MINIMAL}");
    let redis = "backend = \"redis\"\nurl = \"redis://h:1\"";
    let c = load(&with(redis)).expect("valid");
    assert_eq!(c.ratelimit.lease, 64, "on by default");
    let c = load(&with(&format!("{redis}\nlease = 1"))).expect("valid");
    assert_eq!(c.ratelimit.lease, 1);
    let bad = "ratelimit.lease: must be 1 (no leases) to 4096";
    assert_eq!(problems(&with(&format!("{redis}\nlease = 0"))), [bad]);
    assert_eq!(problems(&with(&format!("{redis}\nlease = 4097"))), [bad]);
    let only = "ratelimit.lease: only applies with backend = \"redis\" and mode = \"exact\"";
    assert_eq!(problems(&with("lease = 8")), [only]);
    let batched = format!("{redis}\nmode = \"batched\"\nlease = 8");
    assert_eq!(problems(&with(&batched)), [only]);
}
