//! Everything keygate decides about a request before it goes upstream, and the
//! headers it adds on the way: one place for the request path's policy.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use ipnetwork::IpNetwork;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::headers::{self, XFF};
use super::router::{self, Router};
use crate::auth::client_ip::{canonical, client_ip, is_trusted};
use crate::auth::{decide::decide, hash::KeyHasher, key};
use crate::clock::Clock;
use crate::config::{AuthMode, Config, RouteConfig};
use crate::keys::{KeyEntry, KeyTable};
use crate::outcome::{Outcome, Rejection};

pub const KEY_ID: &str = "x-keygate-key-id";
pub const OWNER_ID: &str = "x-keygate-owner-id";
pub const SCOPES: &str = "x-keygate-scopes";

pub struct Policy {
    key_header: HeaderName,
    accept_bearer: bool,
    forward_key: bool,
    pub www_authenticate: HeaderValue,
    trusted_proxies: Vec<IpNetwork>,
    hasher: KeyHasher,
    keys: Arc<KeyTable>,
    router: Router,
    routes: Vec<RouteConfig>,
    clock: Clock,
}

/// How the request presented its key.
enum Presented<'a> {
    None,
    Key { key: &'a str, bearer: bool },
    Unreadable,
}

impl Policy {
    pub fn new(config: &Config, hasher: KeyHasher, keys: Arc<KeyTable>, clock: Clock) -> Policy {
        let g = &config.gateway;
        let mut challenge = format!("ApiKey header=\"{}\"", g.key_header.as_str());
        if g.accept_bearer {
            challenge.push_str(", Bearer realm=\"keygate\"");
        }
        Policy {
            key_header: g.key_header.clone(),
            accept_bearer: g.accept_bearer,
            forward_key: g.forward_key,
            www_authenticate: HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("ApiKey")),
            trusted_proxies: g.trusted_proxies.clone(),
            hasher,
            keys,
            router: Router::new(&config.routes),
            routes: config.routes.clone(),
            clock,
        }
    }

    pub fn route_config(&self, i: usize) -> &RouteConfig {
        &self.routes[i]
    }

    /// Sets the request id and the client address.
    pub fn identify(&self, session: &Session, ctx: &mut RequestCtx) {
        let req = session.req_header();
        ctx.request_id = headers::request_id(&req.headers);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| canonical(a.ip()));
        ctx.peer_ip = peer;
        if let Some(peer) = peer {
            ctx.peer_trusted = is_trusted(peer, &self.trusted_proxies);
            // Only a trusted peer's X-Forwarded-For is read at all.
            ctx.client_ip = Some(if ctx.peer_trusted {
                let xff = req.headers.get_all(XFF).iter().map(|v| v.as_bytes());
                client_ip(peer, xff, &self.trusted_proxies)
            } else {
                peer
            });
        }
    }

    /// The route for this request, or why there is none.
    pub fn route(&self, req: &RequestHeader) -> Result<usize, Rejection> {
        let path = req.uri.path();
        if !router::path_is_routable(path) {
            return Err(Rejection::new(Outcome::InvalidRequest));
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host());
        self.router
            .route(host, path, &req.method)
            .ok_or_else(|| Rejection::new(Outcome::RouteNotFound))
    }

    fn presented<'a>(&self, req: &'a RequestHeader) -> Presented<'a> {
        if let Some(v) = req.headers.get(&self.key_header) {
            return match v.to_str() {
                Ok("") => Presented::None,
                Ok(key) => Presented::Key {
                    key: key.trim(),
                    bearer: false,
                },
                Err(_) => Presented::Unreadable,
            };
        }
        if self.accept_bearer {
            if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
                let Ok(v) = v.to_str() else {
                    return Presented::Unreadable;
                };
                if let Some((scheme, key)) = v.split_once(' ') {
                    if scheme.eq_ignore_ascii_case("bearer") {
                        return Presented::Key {
                            key: key.trim(),
                            bearer: true,
                        };
                    }
                }
            }
        }
        Presented::None
    }

    /// The key decision, shared by the proxy and the verify API: shape and
    /// checksum, the in-memory lookup (no I/O), then key state, route, IP and
    /// scopes. On refusal the entry is returned too when the key was identified.
    pub fn check_key(
        &self,
        key: &str,
        route: Option<usize>,
        scopes: &[String],
        ip: Option<IpAddr>,
    ) -> Result<Arc<KeyEntry>, (Rejection, Option<Arc<KeyEntry>>)> {
        if key::parse(key).is_err() {
            return Err((Rejection::new(Outcome::InvalidKey), None));
        }
        let Some(entry) = self.keys.get(&self.hasher.hash(key)) else {
            // Before the first load an unknown key may be a valid one we have not seen.
            let outcome = if self.keys.is_ready() {
                Outcome::InvalidKey
            } else {
                Outcome::AuthUnavailable
            };
            return Err((Rejection::new(outcome), None));
        };
        match decide(&entry, route, scopes, ip, self.clock.now()) {
            Ok(()) => Ok(entry),
            Err(r) => Err((r, Some(entry))),
        }
    }

    /// Authenticates and authorizes the key for an `auth = "required"` route.
    pub fn authenticate(
        &self,
        req: &RequestHeader,
        route: usize,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<KeyEntry>, Rejection> {
        let (key, bearer) = match self.presented(req) {
            Presented::None => return Err(Rejection::new(Outcome::MissingKey)),
            Presented::Unreadable => return Err(Rejection::new(Outcome::InvalidKey)),
            Presented::Key { key, bearer } => (key, bearer),
        };
        ctx.key_from_bearer = bearer;
        match self.check_key(key, Some(route), &self.routes[route].scopes, ctx.client_ip) {
            Ok(entry) => Ok(entry),
            Err((rejection, entry)) => {
                // Identified but refused: usage records still name the key.
                ctx.key = entry;
                Err(rejection)
            }
        }
    }

    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }

    /// Routing and, where required, authentication for one request.
    pub fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let route = self.route(req)?;
        ctx.route = Some(route);
        if self.routes[route].auth == AuthMode::Required {
            ctx.key = Some(self.authenticate(req, route, ctx)?);
        }
        Ok(())
    }

    /// Rewrites the upstream request: strips spoofable and secret headers, adds
    /// the forwarding and identity headers.
    pub fn upstream_headers(
        &self,
        req: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora_error::Result<()> {
        headers::strip_keygate(req);
        if !self.forward_key {
            req.remove_header(&self.key_header);
            if ctx.key_from_bearer {
                req.remove_header(&http::header::AUTHORIZATION);
            }
        }
        headers::set_forwarded(req, ctx.peer_ip, ctx.peer_trusted)?;
        req.insert_header(headers::REQUEST_ID, ctx.request_id.clone())?;
        if let Some(key) = &ctx.key {
            req.insert_header(KEY_ID, key.key_id_header())?;
            req.insert_header(OWNER_ID, key.owner.header.clone())?;
            req.insert_header(SCOPES, key.policy.scopes_header.clone())?;
            for (name, value) in key.policy.metadata_headers.iter() {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }
}
