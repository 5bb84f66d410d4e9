//! Route choice: the longest matching `path_prefix` (on segment boundaries) wins;
//! among equal prefixes a route with a `host` beats one without, then file order.

use http::Method;

use crate::config::RouteConfig;

struct Entry {
    /// Index into the configuration's routes.
    route: usize,
    host: Option<Box<str>>,
    prefix: Box<str>,
    methods: Box<[Method]>,
}

pub struct Router {
    /// Sorted so that the first match is the winner.
    entries: Vec<Entry>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| Entry {
                route: i,
                host: r.host.as_deref().map(Into::into),
                prefix: r.path_prefix.as_str().into(),
                methods: r.methods.clone().into(),
            })
            .collect();
        entries.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
                .then(a.route.cmp(&b.route))
        });
        Router { entries }
    }

    /// The index of the chosen route. `host` may carry a port; it is ignored.
    pub fn route(&self, host: Option<&str>, path: &str, method: &Method) -> Option<usize> {
        let host = host.map(strip_port);
        self.entries
            .iter()
            .find(|e| {
                prefix_matches(&e.prefix, path)
                    && e.host
                        .as_deref()
                        .is_none_or(|h| host.is_some_and(|got| got.eq_ignore_ascii_case(h)))
                    && (e.methods.is_empty() || e.methods.contains(method))
            })
            .map(|e| e.route)
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

/// Whether a request path is safe to route by prefix: it must start with `/`
/// and have no `.` or `..` segments, literal or percent-encoded, because an
/// upstream that normalises `/public/../admin` would serve a route the gateway
/// never authorised.
pub fn path_is_routable(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    path.split('/').all(|seg| !is_dot_segment(seg))
}

fn is_dot_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() > 6 || b.is_empty() {
        return false;
    }
    let mut dots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%' && i + 2 < b.len() && b[i + 1] == b'2' && (b[i + 2] | 0x20) == b'e' {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots <= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;
    use crate::ratelimit::window::Limits;

    fn route(name: &str, host: Option<&str>, prefix: &str, methods: &[Method]) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.into(),
            methods: methods.to_vec(),
            upstream: 0,
            auth: AuthMode::Public,
            scopes: vec![],
            rate_limits: Limits::default(),
            cost: 1,
            cost_header: None,
        }
    }

    fn router() -> Router {
        Router::new(&[
            route("root", None, "/", &[]),
            route("orders", None, "/orders", &[]),
            route("orders-items", None, "/orders/items", &[]),
            route("orders-host", Some("api.example.com"), "/orders", &[]),
            route("orders-read", None, "/orders", &[Method::GET]),
            route("slash", None, "/v1/", &[]),
            route("writes", None, "/w", &[Method::POST]),
        ])
    }

    #[test]
    fn prefix_on_segment_boundary() {
        let r = router();
        let g = &Method::POST;
        assert_eq!(r.route(None, "/orders", g), Some(1));
        assert_eq!(r.route(None, "/orders/", g), Some(1));
        assert_eq!(r.route(None, "/orders/42", g), Some(1));
        assert_eq!(r.route(None, "/ordersX", g), Some(0));
        assert_eq!(r.route(None, "/v1/x", g), Some(5));
        assert_eq!(r.route(None, "/v1", g), Some(0));
    }

    #[test]
    fn longest_wins() {
        let r = router();
        assert_eq!(r.route(None, "/orders/items/7", &Method::POST), Some(2));
        assert_eq!(r.route(None, "/orders/itemsX", &Method::POST), Some(1));
    }

    #[test]
    fn host_beats_none_then_file_order() {
        let r = router();
        assert_eq!(
            r.route(Some("api.example.com"), "/orders", &Method::POST),
            Some(3)
        );
        assert_eq!(
            r.route(Some("API.Example.com:8080"), "/orders", &Method::POST),
            Some(3)
        );
        assert_eq!(
            r.route(Some("other.example.com"), "/orders", &Method::POST),
            Some(1)
        );
        // "orders" (file order 1) beats the equally long, host-less "orders-read" (4).
        assert_eq!(r.route(None, "/orders", &Method::GET), Some(1));
    }

    #[test]
    fn methods_filter() {
        let r = Router::new(&[
            route("reads", None, "/orders", &[Method::GET, Method::HEAD]),
            route("writes", None, "/orders", &[Method::POST]),
        ]);
        assert_eq!(r.route(None, "/orders/1", &Method::GET), Some(0));
        assert_eq!(r.route(None, "/orders/1", &Method::POST), Some(1));
        assert_eq!(r.route(None, "/orders/1", &Method::DELETE), None);
    }

    #[test]
    fn no_route() {
        let r = Router::new(&[route("a", None, "/a", &[])]);
        assert_eq!(r.route(None, "/b", &Method::GET), None);
        let empty = Router::new(&[]);
        assert_eq!(empty.route(None, "/", &Method::GET), None);
    }

    #[test]
    fn ports_and_v6_hosts() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }

    #[test]
    fn dot_segments_are_refused() {
        for bad in [
            "/public/../admin",
            "/a/./b",
            "/..",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/a/%2E",
            "x",
            "",
        ] {
            assert!(!path_is_routable(bad), "{bad}");
        }
        for ok in [
            "/",
            "/a/b",
            "/a/...",
            "/a/.hidden",
            "/a/b.c",
            "/a//b",
            "/%2e%2e%2e",
        ] {
            assert!(path_is_routable(ok), "{ok}");
        }
    }
}
