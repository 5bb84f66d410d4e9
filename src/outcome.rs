//! How a request ended. One bounded set of values shared by responses, metrics
//! labels and usage records.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ratelimit::window::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    MissingKey,
    InvalidKey,
    ExpiredKey,
    RevokedKey,
    DisabledKey,
    InsufficientScope,
    IpNotAllowed,
    RouteNotAllowed,
    RouteNotFound,
    InvalidRequest,
    RateLimited,
    UpstreamUnavailable,
    UpstreamTimeout,
    AuthUnavailable,
    RateLimitUnavailable,
    /// The upstream failed after the response had started.
    UpstreamError,
    /// The client went away before the response was complete.
    ClientClosed,
    /// The key header sent twice, or a key in both the key header and `Authorization`.
    AmbiguousKey,
    /// A request head that does not parse (refused at the door).
    MalformedRequest,
    /// More header bytes or lines than `gateway.max_header_size` / `max_headers`.
    HeadersTooLarge,
    /// A request head not complete within `gateway.request_head_timeout`.
    RequestTimeout,
    /// The key's owner is disabled.
    OwnerDisabled,
    /// The key's (or its owner's) credits do not cover the route's cost.
    CreditsExhausted,
    /// The key's `allowed_hours` do not include now.
    OutsideAllowedHours,
}

impl Outcome {
    pub const ALL: [Outcome; 25] = [
        Outcome::Ok,
        Outcome::MissingKey,
        Outcome::InvalidKey,
        Outcome::ExpiredKey,
        Outcome::RevokedKey,
        Outcome::DisabledKey,
        Outcome::InsufficientScope,
        Outcome::IpNotAllowed,
        Outcome::RouteNotAllowed,
        Outcome::RouteNotFound,
        Outcome::InvalidRequest,
        Outcome::RateLimited,
        Outcome::UpstreamUnavailable,
        Outcome::UpstreamTimeout,
        Outcome::AuthUnavailable,
        Outcome::RateLimitUnavailable,
        Outcome::UpstreamError,
        Outcome::ClientClosed,
        Outcome::AmbiguousKey,
        Outcome::MalformedRequest,
        Outcome::HeadersTooLarge,
        Outcome::RequestTimeout,
        Outcome::OwnerDisabled,
        Outcome::CreditsExhausted,
        Outcome::OutsideAllowedHours,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::MissingKey => "missing_key",
            Outcome::InvalidKey => "invalid_key",
            Outcome::ExpiredKey => "expired_key",
            Outcome::RevokedKey => "revoked_key",
            Outcome::DisabledKey => "disabled_key",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::RouteNotAllowed => "route_not_allowed",
            Outcome::RouteNotFound => "route_not_found",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::RateLimited => "rate_limited",
            Outcome::UpstreamUnavailable => "upstream_unavailable",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::AuthUnavailable => "auth_unavailable",
            Outcome::RateLimitUnavailable => "rate_limit_unavailable",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientClosed => "client_closed",
            Outcome::AmbiguousKey => "ambiguous_key",
            Outcome::MalformedRequest => "malformed_request",
            Outcome::HeadersTooLarge => "headers_too_large",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::OwnerDisabled => "owner_disabled",
            Outcome::CreditsExhausted => "credits_exhausted",
            Outcome::OutsideAllowedHours => "outside_allowed_hours",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The HTTP status keygate answers with when it rejects for this reason.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Ok => 200,
            Outcome::MissingKey
            | Outcome::InvalidKey
            | Outcome::ExpiredKey
            | Outcome::RevokedKey
            | Outcome::DisabledKey
            | Outcome::OwnerDisabled => 401,
            Outcome::CreditsExhausted => 402,
            Outcome::InsufficientScope
            | Outcome::IpNotAllowed
            | Outcome::RouteNotAllowed
            | Outcome::OutsideAllowedHours => 403,
            Outcome::RouteNotFound => 404,
            Outcome::InvalidRequest | Outcome::AmbiguousKey | Outcome::MalformedRequest => 400,
            Outcome::RequestTimeout => 408,
            Outcome::HeadersTooLarge => 431,
            Outcome::RateLimited => 429,
            Outcome::UpstreamUnavailable | Outcome::UpstreamError => 502,
            Outcome::AuthUnavailable | Outcome::RateLimitUnavailable => 503,
            Outcome::UpstreamTimeout => 504,
            // nginx's convention for "client closed request"; never sent.
            Outcome::ClientClosed => 499,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::MissingKey => "this route requires an API key",
            Outcome::InvalidKey => "the API key is not valid",
            Outcome::ExpiredKey => "the API key has expired",
            Outcome::RevokedKey => "the API key has been revoked",
            Outcome::DisabledKey => "the API key is disabled",
            Outcome::InsufficientScope => "the API key lacks a scope this route requires",
            Outcome::IpNotAllowed => "the API key may not be used from this IP address",
            Outcome::RouteNotAllowed => "the API key may not be used on this route",
            Outcome::RouteNotFound => "no route matches this request",
            Outcome::InvalidRequest => "the request path is not acceptable",
            Outcome::RateLimited => "rate limit exceeded",
            Outcome::UpstreamUnavailable => "the upstream service is unavailable",
            Outcome::UpstreamTimeout => "the upstream service did not answer in time",
            Outcome::AuthUnavailable => "authentication is temporarily unavailable",
            Outcome::RateLimitUnavailable => "rate limiting is temporarily unavailable",
            Outcome::UpstreamError => "the upstream response failed",
            Outcome::ClientClosed => "the client closed the connection",
            Outcome::AmbiguousKey => {
                "send the API key once: in one key header, not twice and not also in Authorization"
            }
            Outcome::MalformedRequest => "the request head is not valid HTTP",
            Outcome::HeadersTooLarge => "the request headers are too large or too many",
            Outcome::RequestTimeout => "the request head was not received in time",
            Outcome::OwnerDisabled => "the API key's owner is disabled",
            Outcome::CreditsExhausted => "the API key has no credits left for this request",
            Outcome::OutsideAllowedHours => "the API key may not be used at this time",
        }
    }

    /// The gRPC status a rejection maps to (for `application/grpc` requests):
    /// 16 UNAUTHENTICATED, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED,
    /// 14 UNAVAILABLE, and the nearest code for the rest.
    pub fn grpc_status(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::MissingKey
            | Outcome::InvalidKey
            | Outcome::ExpiredKey
            | Outcome::RevokedKey
            | Outcome::DisabledKey
            | Outcome::OwnerDisabled => 16,
            Outcome::InsufficientScope
            | Outcome::IpNotAllowed
            | Outcome::RouteNotAllowed
            | Outcome::OutsideAllowedHours => 7,
            Outcome::RateLimited | Outcome::CreditsExhausted => 8,
            Outcome::AuthUnavailable
            | Outcome::RateLimitUnavailable
            | Outcome::UpstreamUnavailable
            | Outcome::UpstreamError => 14,
            Outcome::UpstreamTimeout | Outcome::RequestTimeout => 4,
            Outcome::RouteNotFound => 12,
            Outcome::InvalidRequest
            | Outcome::AmbiguousKey
            | Outcome::MalformedRequest
            | Outcome::HeadersTooLarge => 3,
            Outcome::ClientClosed => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    None,
    ExpiredAt(DateTime<Utc>),
    RequiredScopes(Vec<String>),
    RateLimited {
        window: Window,
        retry_after: u64,
    },
    RetryAfter(u64),
    /// 402: what is left and what the request needed.
    Credits {
        remaining: i64,
        cost: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub outcome: Outcome,
    pub detail: Detail,
}

impl Rejection {
    pub fn new(outcome: Outcome) -> Rejection {
        Rejection {
            outcome,
            detail: Detail::None,
        }
    }

    pub fn status(&self) -> u16 {
        self.outcome.status()
    }

    /// `{"error": {"code", "message", "request_id", ...detail}}`
    pub fn body(&self, request_id: &str) -> Bytes {
        let mut error = json!({
            "code": self.outcome.as_str(),
            "message": self.outcome.message(),
            "request_id": request_id,
        });
        match &self.detail {
            Detail::None | Detail::RetryAfter(_) => {}
            Detail::ExpiredAt(t) => {
                error["expired_at"] = json!(t.to_rfc3339_opts(SecondsFormat::Secs, true));
            }
            Detail::RequiredScopes(s) => error["required_scopes"] = json!(s),
            Detail::RateLimited {
                window,
                retry_after,
            } => {
                error["window"] = json!(window.as_str());
                error["retry_after"] = json!(retry_after);
            }
            Detail::Credits { remaining, cost } => {
                error["credits_remaining"] = json!(remaining);
                error["cost"] = json!(cost);
            }
        }
        Bytes::from(json!({ "error": error }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_indexed() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
            let json = serde_json::to_string(o).expect("serializes");
            assert_eq!(json, format!("\"{}\"", o.as_str()));
        }
    }
}
