//! Bearer tokens for the admin API, compared in constant time, and the request
//! id every admin response carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use super::error::{ApiError, REQUEST_ID};
use crate::audit::Actor;
use crate::config::Secret;

/// A configured token, kept as its SHA-256 so that comparisons are of equal
/// length (no length leak) and the token itself is not kept around.
pub struct Token {
    digest: [u8; 32],
    /// `admin:<first 8 hex of the digest>`: identifies the token in the audit log.
    actor: Actor,
}

impl Token {
    pub fn new(secret: &Secret) -> Token {
        let digest: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        let actor = format!("admin:{}", crate::audit::chain::to_hex(&digest[..4]));
        Token { digest, actor }
    }
}

/// Finds the presented token among the configured ones, looking at every one.
fn authenticate<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Actor> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        if bool::from(t.digest.ct_eq(&digest)) {
            found = Some(&t.actor);
        }
    }
    found
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
            "the admin API is off: set KEYGATE_ADMIN_TOKEN to enable it",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let actor = presented
        .and_then(|t| authenticate(&s.tokens, t))
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin token is required (Authorization: Bearer <token>)",
            )
        })?;
    req.extensions_mut().insert(actor);
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

    #[test]
    fn tokens_match_exactly() {
        let tokens = vec![
            Token::new(&Secret::new("alpha-token")),
            Token::new(&Secret::new("beta-token")),
        ];
        assert!(authenticate(&tokens, "alpha-token").is_some());
        assert_eq!(authenticate(&tokens, "beta-token"), Some(&tokens[1].actor));
        assert!(authenticate(&tokens, "alpha-toke").is_none());
        assert!(authenticate(&tokens, "").is_none());
        assert!(tokens[0].actor.starts_with("admin:") && !tokens[0].actor.contains("alpha"));
    }
}
