//! Bearer tokens for the admin API, compared in constant time, their roles,
//! and the request id every admin response carries.
//!
//! Roles: `read` may call every GET endpoint and `/v1/verify` (which counts
//! the key's limits and credits as a proxied request would: it is how an
//! application behind no proxy uses a key, not a change to anything);
//! `write` may also change keys, owners and credits; `admin` may do
//! everything, including endpoints reserved for it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use super::error::{ApiError, REQUEST_ID};
use crate::audit::Actor;
use crate::config::{AdminToken, Role};

/// A configured token, kept as its SHA-256 so that comparisons are of equal
/// length (no length leak) and the token itself is not kept around.
pub struct Token {
    digest: [u8; 32],
    /// `admin:<name>`: identifies the token in the audit log
    /// (`KEYGATE_ADMIN_TOKEN`'s are named by 8 hex digits of their digest).
    actor: Actor,
    role: Role,
}

impl Token {
    pub fn new(t: &AdminToken) -> Token {
        Token {
            digest: t.sha256,
            actor: format!("admin:{}", t.name),
            role: t.role,
        }
    }
}

/// Finds the presented token among the configured ones, looking at every one.
fn authenticate<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        if bool::from(t.digest.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found
}

/// The role a request needs: reading (and verifying) is `read`, any other
/// method on the API is a change (`write`).
fn required(method: &Method, path: &str) -> Role {
    if method == Method::GET || method == Method::HEAD || path == "/v1/verify" {
        Role::Read
    } else {
        Role::Write
    }
}

/// Requires `Authorization: Bearer <token>`; puts the [`Actor`] in the request.
pub async fn require_token(
    State(s): State<Arc<AdminState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if s.tokens.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_api_disabled",
            "the admin API is off: set KEYGATE_ADMIN_TOKEN or [[admin.tokens]] to enable it",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let token = presented
        .and_then(|t| authenticate(&s.tokens, t))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin token is required (Authorization: Bearer <token>)",
            )
        })?;
    let need = required(req.method(), req.uri().path());
    if token.role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token's role ({}) may not do this; it needs {}",
                token.role.as_str(),
                need.as_str()
            ),
        ));
    }
    req.extensions_mut().insert(token.actor.clone());
    Ok(next.run(req).await)
}

/// Gives every admin request an id (kept from a sane `x-request-id`), available
/// to error bodies and returned in the `x-request-id` header.
pub async fn request_id(req: Request, next: Next) -> Response {
    // The proxy's rule; sane ids are visible ASCII, so `to_str` keeps them.
    let id = crate::proxy::headers::request_id(req.headers());
    let text = id.to_str().unwrap_or_default().to_owned();
    let mut resp = REQUEST_ID.scope(text, next.run(req)).await;
    resp.headers_mut().insert("x-request-id", id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, role: Role) -> Token {
        Token::new(&AdminToken {
            name: name.into(),
            role,
            sha256: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    #[test]
    fn tokens_match_exactly() {
        let tokens = vec![
            token("a", "alpha-token", Role::Admin),
            token("ci", "beta-token", Role::Read),
        ];
        assert!(authenticate(&tokens, "alpha-token").is_some());
        let beta = authenticate(&tokens, "beta-token").map(|t| (t.actor.as_str(), t.role));
        assert_eq!(beta, Some(("admin:ci", Role::Read)));
        assert!(authenticate(&tokens, "alpha-toke").is_none());
        assert!(authenticate(&tokens, "").is_none());
    }

    #[test]
    fn roles_by_method() {
        assert_eq!(required(&Method::GET, "/v1/keys"), Role::Read);
        assert_eq!(required(&Method::POST, "/v1/verify"), Role::Read);
        assert_eq!(required(&Method::POST, "/v1/keys"), Role::Write);
        assert_eq!(required(&Method::DELETE, "/v1/owners/a"), Role::Write);
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
    }
}
