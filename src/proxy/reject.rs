//! Rejections: the JSON error body and headers keygate answers with when it
//! refuses or fails a request.

use http::HeaderValue;
use pingora_http::ResponseHeader;

use crate::outcome::Outcome;

pub use crate::outcome::{Detail, Rejection};

/// HTTP rendering of a rejection.
pub trait RejectionHttp {
    fn header(
        &self,
        request_id: &HeaderValue,
        len: usize,
        www_authenticate: &HeaderValue,
    ) -> pingora_error::Result<ResponseHeader>;

    /// A gRPC "trailers-only" response: HTTP 200, `grpc-status` and
    /// `grpc-message` (the code), no body; the stream ends with it.
    fn grpc_header(&self, request_id: &HeaderValue) -> pingora_error::Result<ResponseHeader>;
}

/// Whether a request is gRPC (`content-type: application/grpc[+proto|...]`).
pub fn is_grpc(req: &pingora_http::RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl RejectionHttp for Rejection {
    /// Status line and headers for this rejection with a body of `len` bytes.
    fn header(
        &self,
        request_id: &HeaderValue,
        len: usize,
        www_authenticate: &HeaderValue,
    ) -> pingora_error::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(self.status(), Some(6))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", len)?;
        h.insert_header("cache-control", "no-store")?;
        h.insert_header(super::headers::REQUEST_ID, request_id.clone())?;
        match self.detail {
            Detail::RateLimited { retry_after, .. } | Detail::RetryAfter(retry_after) => {
                h.insert_header("retry-after", retry_after)?;
            }
            _ => {}
        }
        if self.outcome == Outcome::MissingKey {
            h.insert_header("www-authenticate", www_authenticate.clone())?;
        }
        Ok(h)
    }

    fn grpc_header(&self, request_id: &HeaderValue) -> pingora_error::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(200, Some(5))?;
        h.insert_header("content-type", "application/grpc")?;
        h.insert_header("grpc-status", u16::from(self.outcome.grpc_status()))?;
        h.insert_header("grpc-message", self.outcome.as_str())?;
        h.insert_header(super::headers::REQUEST_ID, request_id.clone())?;
        if let Detail::RateLimited { retry_after, .. } | Detail::RetryAfter(retry_after) =
            self.detail
        {
            h.insert_header("retry-after", retry_after)?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::window::Window;
    use bytes::Bytes;

    fn parse(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn bodies_carry_code_message_and_details() {
        let r = Rejection::new(Outcome::RouteNotFound);
        let v = parse(&r.body("rid-1"));
        assert_eq!(v["error"]["code"], "route_not_found");
        assert_eq!(v["error"]["request_id"], "rid-1");
        assert!(v["error"]["message"].is_string());

        let r = Rejection {
            outcome: Outcome::RateLimited,
            detail: Detail::RateLimited {
                window: Window::Minute,
                retry_after: 7,
            },
        };
        let v = parse(&r.body("x"));
        assert_eq!(v["error"]["window"], "minute");
        assert_eq!(v["error"]["retry_after"], 7);
        let h = r
            .header(
                &HeaderValue::from_static("x"),
                10,
                &HeaderValue::from_static(""),
            )
            .expect("header");
        assert_eq!(h.status.as_u16(), 429);
        assert_eq!(h.headers["retry-after"], "7");

        let r = Rejection {
            outcome: Outcome::InsufficientScope,
            detail: Detail::RequiredScopes(vec!["a:b".into()]),
        };
        assert_eq!(parse(&r.body("x"))["error"]["required_scopes"][0], "a:b");
    }

    #[test]
    fn missing_key_challenges() {
        let h = Rejection::new(Outcome::MissingKey)
            .header(
                &HeaderValue::from_static("x"),
                1,
                &HeaderValue::from_static("ApiKey"),
            )
            .expect("header");
        assert_eq!(h.status.as_u16(), 401);
        assert!(h.headers.contains_key("www-authenticate"));
        assert_eq!(h.headers["content-type"], "application/json");
    }
}
