//! `[admin]`: the admin API listener and its tokens: `[[admin.tokens]]`
//! (named, with a role, as a SHA-256 or an environment variable), and
//! `KEYGATE_ADMIN_TOKEN` (comma-separated, each an `admin` token).

use std::collections::HashSet;
use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use super::Env;
use super::checker::Checker;
use crate::config::file::{AdminSection, AdminTokenSection};
use crate::config::{AdminConfig, AdminToken, Role, env};

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            tokens: Vec::new(),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `KEYGATE_ADMIN_TOKEN`'s tokens are named by their digest's first 8 hex digits.
fn env_token(token: &str) -> AdminToken {
    let sha256 = digest(token);
    AdminToken {
        name: crate::audit::chain::to_hex(&sha256[..4]),
        role: Role::Admin,
        sha256,
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Checker {
    pub(super) fn admin(
        &mut self,
        a: AdminSection,
        env: Env<'_>,
        gateway: SocketAddr,
    ) -> AdminConfig {
        let d = AdminConfig::default();
        let listen = self.addr("admin.listen", a.listen.as_deref(), d.listen);
        if listen == gateway && listen.port() != 0 {
            self.problem("admin.listen", "must differ from gateway.listen");
        }
        let mut names = HashSet::new();
        let mut tokens: Vec<AdminToken> = Vec::new();
        for (i, t) in a.tokens.into_iter().enumerate() {
            let p = format!("admin.tokens[{i}]");
            if let Some(tok) = self.admin_token(&p, t, env, &mut names) {
                if tokens.iter().any(|o| o.sha256 == tok.sha256) {
                    self.problem(p, "the same token as an earlier entry");
                } else {
                    tokens.push(tok);
                }
            }
        }
        if let Some(v) = env(env::ADMIN_TOKEN) {
            let from_env = v.split(',').map(str::trim).filter(|t| !t.is_empty());
            tokens.extend(from_env.map(env_token));
        }
        AdminConfig { listen, tokens }
    }

    fn admin_token(
        &mut self,
        p: &str,
        t: AdminTokenSection,
        env: Env<'_>,
        names: &mut HashSet<String>,
    ) -> Option<AdminToken> {
        if !valid_name(&t.name) {
            self.problem(
                format!("{p}.name"),
                "required: 1-64 chars of [A-Za-z0-9-_.]",
            );
        } else if !names.insert(t.name.clone()) {
            self.problem(
                format!("{p}.name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
        let role = match t.role {
            Some(r) => self.parsed(&format!("{p}.role"), Some(r)),
            None => {
                let why = "required: \"read\", \"write\" or \"admin\"";
                self.problem(format!("{p}.role"), why);
                None
            }
        };
        let sha256 = match (t.token_sha256.as_deref(), t.token_env.as_deref()) {
            (Some(hex), None) => parse_hex(hex).or_else(|| {
                self.problem(
                    format!("{p}.token_sha256"),
                    "must be 64 hex digits (sha256sum of the token)",
                );
                None
            }),
            (None, Some(var)) => match env(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(digest(v.trim())),
                None => {
                    self.problem(
                        format!("{p}.token_env"),
                        format!("environment variable {var:?} is not set"),
                    );
                    None
                }
            },
            _ => {
                self.problem(p, "give token_sha256 or token_env (one of them)");
                None
            }
        };
        Some(AdminToken {
            name: t.name,
            role: role?,
            sha256: sha256?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests() {
        let d = digest("t");
        assert_eq!(parse_hex(&crate::audit::chain::to_hex(&d)), Some(d));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(env_token("t").role, Role::Admin);
        assert!(valid_name("ci-deploy.1") && !valid_name("a b"));
    }
}
