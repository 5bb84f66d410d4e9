//! Header hygiene: request ids, forwarded headers, and the `x-keygate-*`
//! namespace that only keygate may write.

use std::fmt::Write;
use std::net::IpAddr;

use pingora_http::RequestHeader;

pub const REQUEST_ID: &str = "x-request-id";
pub const XFF: &str = "x-forwarded-for";
pub const XF_PROTO: &str = "x-forwarded-proto";
pub const XF_HOST: &str = "x-forwarded-host";
pub const KEYGATE_PREFIX: &str = "x-keygate-";
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client-sent request id is kept when it is 1-128 visible characters from a
/// conservative set (so it is safe in logs, JSON and headers).
pub fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID_LEN
        && v.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// The client's request id if sane, else a fresh time-ordered UUID.
pub fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    match headers.get(REQUEST_ID) {
        Some(v) if is_sane_request_id(v.as_bytes()) => v.clone(),
        _ => crate::ids::uuid_header(crate::ids::uuid_v7()),
    }
}

/// Removes every client-sent `x-keygate-*` header (names are stored lowercase,
/// so `X-KeyGate-Key-Id` and `x-keygate-key-id` are the same header).
pub fn strip_keygate(req: &mut RequestHeader) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with(KEYGATE_PREFIX))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Appends the peer to `X-Forwarded-For` and sets `-Proto` (`https` when the
/// client's connection is TLS) / `-Host`. A trusted proxy's `-Proto`/`-Host`
/// are kept; an untrusted client's are replaced.
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    peer_trusted: bool,
    tls: bool,
) -> pingora_error::Result<()> {
    if let Some(peer) = peer {
        let mut xff = String::with_capacity(64);
        for v in req.headers.get_all(XFF) {
            if let Ok(s) = v.to_str() {
                if !xff.is_empty() {
                    xff.push_str(", ");
                }
                xff.push_str(s.trim());
            }
        }
        if !xff.is_empty() {
            xff.push_str(", ");
        }
        let _ = write!(xff, "{peer}");
        req.insert_header(XFF, xff)?;
    }
    if !peer_trusted || !req.headers.contains_key(XF_PROTO) {
        req.insert_header(XF_PROTO, if tls { "https" } else { "http" })?;
    }
    if !peer_trusted || !req.headers.contains_key(XF_HOST) {
        let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
        match host {
            Some(h) => req.insert_header(XF_HOST, h)?,
            None => {
                req.remove_header(XF_HOST);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).expect("request");
        for (k, v) in headers {
            r.append_header(*k, *v).expect("header");
        }
        r
    }

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id(b"abc-123_x.y:z"));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"quote\""));
        assert!(!is_sane_request_id(&[b'a'; 129]));
        assert_eq!(
            request_id(&req(&[("X-Request-Id", "keep-me")]).headers),
            "keep-me"
        );
        let fresh = request_id(&req(&[("x-request-id", "bad id")]).headers);
        assert_eq!(fresh.len(), 36);
        assert_ne!(fresh, "bad id");
        assert_ne!(fresh, request_id(&req(&[]).headers));
    }

    #[test]
    fn strips_every_casing() {
        let mut r = req(&[
            ("X-Keygate-Key-Id", "spoof"),
            ("x-keygate-owner-id", "spoof"),
            ("X-KEYGATE-META-PLAN", "spoof"),
            ("x-keep", "yes"),
        ]);
        strip_keygate(&mut r);
        assert_eq!(r.headers.len(), 1);
        assert!(r.headers.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_headers() {
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let mut r = req(&[
            ("host", "api.example.com"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut r, Some(peer), false, false).expect("ok");
        assert_eq!(r.headers["x-forwarded-for"], "1.1.1.1, 192.0.2.1");
        assert_eq!(
            r.headers["x-forwarded-proto"], "http",
            "untrusted peer cannot claim https"
        );
        let mut tls = req(&[("host", "h"), ("x-forwarded-proto", "http")]);
        set_forwarded(&mut tls, Some(peer), false, true).expect("ok");
        assert_eq!(
            tls.headers["x-forwarded-proto"], "https",
            "the client's TLS connection"
        );
        assert_eq!(r.headers["x-forwarded-host"], "api.example.com");

        let mut r = req(&[
            ("host", "h"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "orig"),
        ]);
        set_forwarded(&mut r, Some(peer), true, false).expect("ok");
        assert_eq!(r.headers["x-forwarded-for"], "192.0.2.1");
        assert_eq!(r.headers["x-forwarded-proto"], "https");
        assert_eq!(r.headers["x-forwarded-host"], "orig");
    }
}
