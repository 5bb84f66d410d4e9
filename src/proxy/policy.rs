//! Everything keygate decides about a request, and the headers it adds on the
//! way: one place for the request path's policy. [`Gate::decide`] is the one
//! decision (key, route, IP, scopes, rate limits) that the proxy and
//! `/v1/verify` both make.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use ipnetwork::IpNetwork;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::headers::{self, XFF};
use super::routing::Route;
use crate::auth::client_ip::{canonical, client_ip, is_trusted};
use crate::auth::{decide::decide, hash::KeyHasher, key};
use crate::clock::Clock;
use crate::config::{AuthMode, Config};
use crate::keys::{KeyEntry, KeyTable};
use crate::outcome::{Outcome, Rejection};
use crate::ratelimit::{Debit, Limiter, RateStatus};
use crate::routes::RouteId;
use crate::usage::UsageRecord;

pub const KEY_ID: &str = "x-keygate-key-id";
pub const OWNER_ID: &str = "x-keygate-owner-id";
pub const SCOPES: &str = "x-keygate-scopes";
/// The balance after this request, upstream (the client's is in `charge`).
pub const CREDITS_UPSTREAM: &str = "x-keygate-credits-remaining";

pub struct Gate {
    key_header: HeaderName,
    accept_bearer: bool,
    forward_key: bool,
    www_authenticate: HeaderValue,
    trusted_proxies: Vec<IpNetwork>,
    hasher: KeyHasher,
    keys: Arc<KeyTable>,
    limiter: Arc<Limiter>,
    clock: Clock,
    /// Webhook events the decisions raise (`None`: no endpoint wants them).
    signals: Option<crate::webhooks::signals::Signals>,
}

/// How the request presented its key.
enum Presented<'a> {
    None,
    Key { key: &'a str, bearer: bool },
    Unreadable,
    Ambiguous,
}

/// `Authorization: Bearer <key>`: `Some(Some(key))`, `Some(None)` when it is
/// unreadable or sent twice, `None` without one.
fn bearer(req: &RequestHeader) -> Option<Option<&str>> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let v = values.next()?;
    let Ok(text) = v.to_str() else {
        return Some(None);
    };
    let (scheme, key) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some((values.next().is_none()).then(|| key.trim()))
}

/// A key presented for a decision.
pub struct Attempt<'a> {
    pub key: &'a str,
    /// `None`: the verify API without a route (key limits only).
    pub route: Option<&'a Route>,
    /// Every scope the key must hold (the route's, and for verify any asked for).
    pub scopes: &'a [String],
    /// `None` fails a key that has an IP allowlist.
    pub client_ip: Option<IpAddr>,
}

/// What the gate decided.
pub struct Decision {
    /// The key, when it was identified (also when refused: usage names it).
    pub key: Option<Arc<KeyEntry>>,
    /// Rate-limit state for the response headers.
    pub rate: Option<RateStatus>,
    /// The credit balance after the request, and what it was charged.
    pub credits_remaining: Option<i64>,
    pub debit: Option<Debit>,
    pub verdict: Result<(), Rejection>,
}

/// The facts of a finished request that its usage record carries besides
/// the decision.
pub struct Served<'a> {
    pub request_id: &'a str,
    pub ts_ms: i64,
    pub method: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub upstream_latency_us: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: Option<IpAddr>,
}

impl Gate {
    pub fn new(
        config: &Config,
        hasher: KeyHasher,
        keys: Arc<KeyTable>,
        limiter: Arc<Limiter>,
        clock: Clock,
    ) -> Gate {
        let g = &config.gateway;
        let mut challenge = format!("ApiKey header=\"{}\"", g.key_header.as_str());
        if g.accept_bearer {
            challenge.push_str(", Bearer realm=\"keygate\"");
        }
        Gate {
            key_header: g.key_header.clone(),
            accept_bearer: g.accept_bearer,
            forward_key: g.forward_key,
            www_authenticate: HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("ApiKey")),
            trusted_proxies: g.trusted_proxies.clone(),
            hasher,
            keys,
            limiter,
            clock,
            signals: None,
        }
    }

    /// Raises `ratelimit.exceeded` and `credits.low` through `signals`.
    pub fn with_signals(mut self, signals: Option<crate::webhooks::signals::Signals>) -> Gate {
        self.signals = signals;
        self
    }

    /// The rate limiter (its background work runs beside the proxy).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub fn www_authenticate(&self) -> &HeaderValue {
        &self.www_authenticate
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
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
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

    /// The key the request presents. Sent twice (the same header twice, or
    /// the key header and `Authorization: Bearer` both) it is ambiguous and
    /// refused: picking one would let a proxy in front and keygate disagree.
    fn presented<'a>(&self, req: &'a RequestHeader) -> Presented<'a> {
        let mut headers = req.headers.get_all(&self.key_header).iter();
        let header = headers.next().filter(|v| !v.is_empty());
        if headers.next().is_some() {
            return Presented::Ambiguous;
        }
        let bearer = if self.accept_bearer {
            bearer(req)
        } else {
            None
        };
        match (header, bearer) {
            (Some(_), Some(_)) => Presented::Ambiguous,
            (Some(v), None) => match v.to_str() {
                Ok(key) => Presented::Key {
                    key: key.trim(),
                    bearer: false,
                },
                Err(_) => Presented::Unreadable,
            },
            (None, Some(Some(key))) => Presented::Key { key, bearer: true },
            (None, Some(None)) => Presented::Unreadable,
            (None, None) => Presented::None,
        }
    }

    /// The key part of the decision: shape and checksum, the in-memory lookup
    /// (no I/O), then key state, route, IP and scopes. On refusal the entry is
    /// returned too when the key was identified.
    pub fn check_key(
        &self,
        key: &str,
        route: Option<RouteId>,
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

    /// The one decision: the key (see [`Self::check_key`]), then its rate
    /// limits, which an admitted request counts.
    pub async fn decide(&self, a: &Attempt<'_>) -> Decision {
        let entry = match self.check_key(a.key, a.route.map(|r| r.id), a.scopes, a.client_ip) {
            Ok(entry) => entry,
            Err((rejection, key)) => {
                return Decision {
                    key,
                    rate: None,
                    credits_remaining: None,
                    debit: None,
                    verdict: Err(rejection),
                };
            }
        };
        let owner = entry.owner.state.load();
        let route = a.route.map(Route::limits);
        let (limited, verdict) = match self.limiter.check(&entry, &owner, route).await {
            Ok(l) => (l, Ok(())),
            Err((rejection, l)) => (l, Err(rejection)),
        };
        drop(owner);
        if let Some(s) = &self.signals {
            let debit = limited.credits.as_ref().and_then(|c| c.debit.as_ref());
            s.observe(&entry, &verdict, debit, self.clock.now_ms());
        }
        let (credits_remaining, debit) = match limited.credits {
            Some(c) => (Some(c.remaining), c.debit),
            None => (None, None),
        };
        Decision {
            key: Some(entry),
            rate: limited.rate,
            credits_remaining,
            debit,
            verdict,
        }
    }

    /// Routing (on the request's configuration snapshot) and, where the
    /// route requires it, the decision for one request.
    pub async fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let routing = ctx.routing.clone();
        let index = routing.find(req)?;
        ctx.route = Some(index);
        let route = routing.route(index);
        if route.cfg.auth == AuthMode::Public {
            return Ok(());
        }
        let key = match self.presented(req) {
            Presented::None => return Err(Rejection::new(Outcome::MissingKey)),
            Presented::Unreadable => return Err(Rejection::new(Outcome::InvalidKey)),
            Presented::Ambiguous => return Err(Rejection::new(Outcome::AmbiguousKey)),
            Presented::Key { key, bearer } => {
                ctx.key_from_bearer = bearer;
                key
            }
        };
        let attempt = Attempt {
            key,
            route: Some(route),
            scopes: &route.cfg.scopes,
            client_ip: ctx.client_ip,
        };
        let d = self.decide(&attempt).await;
        ctx.key = d.key;
        ctx.rate = d.rate;
        ctx.credits_remaining = d.credits_remaining;
        ctx.debit = d.debit;
        d.verdict
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
        headers::set_forwarded(req, ctx.peer_ip, ctx.peer_trusted, ctx.tls)?;
        req.insert_header(headers::REQUEST_ID, ctx.request_id.clone())?;
        if let Some(key) = &ctx.key {
            req.insert_header(KEY_ID, key.key_id_header())?;
            req.insert_header(OWNER_ID, key.owner.header.clone())?;
            req.insert_header(SCOPES, key.policy.scopes_header.clone())?;
            // The owner's forwarded metadata, then the key's (which wins).
            for (name, value) in key.owner.state.load().metadata_headers.iter() {
                req.insert_header(name.clone(), value.clone())?;
            }
            for (name, value) in key.policy.metadata_headers.iter() {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        if let Some(n) = ctx.credits_remaining {
            req.insert_header(CREDITS_UPSTREAM, n)?;
        }
        Ok(())
    }

    /// Headers keygate adds to every response it sends or relays: rate limits
    /// (IETF draft and `X-RateLimit-*`), and for a rotated key in its grace
    /// period `Deprecation` (RFC 9745) and `Sunset` (RFC 8594).
    pub fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) -> pingora_error::Result<()> {
        if let Some(r) = &ctx.rate {
            resp.insert_header("x-ratelimit-limit", r.limit)?;
            resp.insert_header("x-ratelimit-remaining", r.remaining)?;
            resp.insert_header("x-ratelimit-reset", r.reset_secs)?;
            resp.insert_header("ratelimit-policy", r.policy.as_str())?;
            resp.insert_header("ratelimit", r.current.as_str())?;
        }
        super::charge::client_header(resp, ctx)?;
        if let Some(d) = ctx.key.as_ref().and_then(|k| k.deprecation.as_deref()) {
            resp.insert_header("deprecation", format!("@{}", d.since.timestamp()))?;
            resp.insert_header(
                "sunset",
                d.sunset.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            )?;
        }
        Ok(())
    }

    /// The usage record of a decided request (proxied, refused or verified).
    pub fn usage_record(
        &self,
        key: Option<&KeyEntry>,
        route: Option<&Route>,
        outcome: Outcome,
        s: Served<'_>,
    ) -> UsageRecord {
        UsageRecord {
            id: crate::ids::uuid_v7(),
            request_id: s.request_id.to_owned(),
            ts_ms: s.ts_ms,
            key_id: key.map(|k| k.id),
            owner_id: key.map(|k| k.owner_id().clone()),
            route: route.map(|r| r.name.clone()),
            method: s.method.to_owned(),
            status: s.status,
            outcome,
            latency_us: s.latency_us,
            upstream_latency_us: s.upstream_latency_us,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            client_ip: s.client_ip,
            deprecated_key: key.is_some_and(|k| k.deprecation.is_some()),
            credits: 0,
            charged_to: None,
        }
    }
}

impl Decision {
    /// The outcome a usage record and the metrics report.
    pub fn outcome(&self) -> Outcome {
        match &self.verdict {
            Ok(()) => Outcome::Ok,
            Err(r) => r.outcome,
        }
    }
}
