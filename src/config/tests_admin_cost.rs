//! `[[admin.tokens]]` and `route[].cost` / `cost_header`: every problem with its path.

use std::path::Path;

use super::*;

const ROUTE: &str = r#"
[[upstream]]
name = "u"
servers = ["127.0.0.1:9000"]

[[route]]
name = "r"
upstream = "u"
cost = 3
cost_header = "x-cost"
"#;

fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"), env)
}

#[test]
fn tokens_and_costs() {
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "[[admin.tokens]]\nname = \"dash\"\nrole = \"read\"\ntoken_sha256 = \"{sha}\"\n\
         [[admin.tokens]]\nname = \"ci\"\nrole = \"write\"\ntoken_env = \"CI_TOKEN\"\n{ROUTE}"
    );
    let env = |k: &str| match k {
        "CI_TOKEN" => Some("s3cret".to_string()),
        "KEYGATE_ADMIN_TOKEN" => Some("root".to_string()),
        _ => None,
    };
    let c = load(&text, &env).expect("valid");
    let roles: Vec<(&str, Role)> = c
        .admin
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.role))
        .collect();
    assert_eq!(roles[..2], [("dash", Role::Read), ("ci", Role::Write)]);
    assert_eq!(
        roles[2].1,
        Role::Admin,
        "KEYGATE_ADMIN_TOKEN is an admin token"
    );
    assert!(!format!("{:?}", c.admin.tokens).contains("s3cret"));
    assert_eq!(
        (
            c.routes[0].cost,
            c.routes[0].cost_header.as_ref().map(|h| h.as_str())
        ),
        (3, Some("x-cost"))
    );
}

#[test]
fn every_problem_has_its_path() {
    let text = r#"
[[admin.tokens]]
name = "a b"
role = "root"
token_sha256 = "abc"
[[admin.tokens]]
name = "x"
token_env = "NOT_SET"
[[admin.tokens]]
name = "y"
role = "read"

[[upstream]]
name = "u"
servers = ["127.0.0.1:9000"]
[[route]]
name = "r"
upstream = "u"
cost_header = "bad header"
[[route]]
name = "p"
upstream = "u"
auth = "public"
cost = 2
"#;
    let problems = match load(text, &|_| None) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {:?}", other.map(|_| ())),
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "admin.tokens[0].name",
        "admin.tokens[0].role",
        "admin.tokens[0].token_sha256",
        "admin.tokens[1].role",
        "admin.tokens[1].token_env",
        "admin.tokens[2]",
        "route[0].cost_header",
        "route[1].auth",
    ] {
        assert!(paths.contains(&want), "{want} missing in {paths:?}");
    }
}
