//! keygate's Pingora service. The whole request lifecycle, in hook order:
//!
//! 1. [`new_ctx`](Proxy::new_ctx): a request head has been read; the request counts as in flight.
//! 2. [`request_filter`](Proxy::request_filter): route, authenticate, authorize, rate-limit.
//!    A rejection is answered here and the request ends. So is a report to
//!    the secret-scanning endpoint, before routing ([`super::scan`]).
//! 3. [`upstream_peer`](Proxy::upstream_peer): choose a server of the route's upstream.
//!    [`fail_to_connect`](Proxy::fail_to_connect) marks a dead server and retries the next.
//! 4. [`upstream_request_filter`](Proxy::upstream_request_filter): header hygiene and identity.
//! 5. [`response_filter`](Proxy::response_filter): response headers (request id, rate limits).
//! 6. [`fail_to_proxy`](Proxy::fail_to_proxy): an upstream failure becomes a JSON 502/504.
//! 7. [`logging`](Proxy::logging): metrics and the usage record, off the response path.
//!
//! Each hook is a few lines; the decisions live in [`super::policy`] ([`super::policy::Gate`]).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use super::ProxyState;
use super::ctx::RequestCtx;
use super::headers::REQUEST_ID;
use super::policy::Served;
use super::reject::{RejectionHttp, is_grpc};
use crate::outcome::{Outcome, Rejection};
use pingora_core::protocols::http::HttpTask;

pub struct Proxy {
    pub state: Arc<ProxyState>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    /// A request head has been read. The context's guard counts it in flight until dropped.
    fn new_ctx(&self) -> RequestCtx {
        let routing = self.state.routing.load_full();
        let mut ctx = RequestCtx::new(&self.state.metrics.inflight, routing);
        ctx.start_ms = self.state.clock.now_ms();
        ctx
    }

    /// No downstream modules: keygate does not compress responses (Pingora's
    /// default adds a disabled compression module that still runs per request).
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    /// Runs keygate's policy. `Ok(true)`: we answered with a rejection and the
    /// request ends; `Ok(false)`: forward upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let s = &self.state;
        s.gate.identify(session, ctx);
        if let Some(scanner) = s
            .scanner
            .as_ref()
            .filter(|sc| sc.serves(session.req_header()))
        {
            ctx.scan = true;
            super::scan::serve(scanner, session, ctx, &s.metrics).await;
            return Ok(true);
        }
        let verdict = s.gate.admit(session.req_header(), ctx).await;
        let now = Instant::now();
        ctx.policy_done = Some(now);
        s.metrics
            .auth_duration
            .observe((now - ctx.start).as_secs_f64());
        match verdict {
            Ok(()) => Ok(false),
            Err(rejection) => {
                self.reject(session, ctx, rejection).await;
                Ok(true)
            }
        }
    }

    /// Picks the next untried server of the route's upstream (round-robin, healthy first).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
        let upstream = ctx.routing.route(route).cfg.upstream;
        let routing = ctx.routing.clone();
        let pool = routing.upstream(upstream);
        let server = pool.pick(ctx.tried).ok_or_else(|| {
            Error::explain(ErrorType::ConnectNoRoute, "no upstream server left to try")
        })?;
        ctx.tried.add(server);
        ctx.upstream = Some(upstream);
        ctx.server = Some(server);
        let mut peer = pool.peer(server);
        if session.is_upgrade_req() {
            // A WebSocket is quiet between messages: the upstream's read
            // timeout (meant for a response) must not cut it.
            peer.options.read_timeout = None;
            peer.options.write_timeout = None;
        }
        Ok(peer)
    }

    /// A connection attempt failed: skip that server for a while and retry on
    /// another one if any is left.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(u), Some(s)) = (ctx.upstream, ctx.server) {
            let pool = ctx.routing.upstream(u);
            pool.mark_down(s);
            tracing::warn!(upstream = %pool.name, server = %pool.server(s).addr, error = ?e.etype(), "upstream server failed to connect; skipping it");
            e.set_retry(ctx.tried.count() < pool.len());
        }
        e
    }

    /// Strips client-sent `x-keygate-*` and the key, adds identity and forwarding headers.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        self.state.gate.upstream_headers(req, ctx)
    }

    /// The upstream's response head arrived (for the upstream latency).
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_answered.get_or_insert_with(Instant::now);
        self.state.gate.read_cost(resp, ctx);
        Ok(())
    }

    /// Adds the request id and rate-limit headers to the upstream's response.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID, ctx.request_id.clone())?;
        self.state.gate.response_headers(resp, ctx)
    }

    /// Pingora's own per-request error log is replaced by metrics and usage records.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// The request failed after keygate let it through: answer 502/504 as JSON
    /// if nothing has been sent yet.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let outcome = classify(e);
        tracing::debug!(request_id = ctx.request_id(), error = %e, outcome = outcome.as_str(), "proxy failure");
        ctx.outcome = outcome;
        let error_code = if session.response_written().is_some() || outcome == Outcome::ClientClosed
        {
            0
        } else {
            self.reject(session, ctx, Rejection::new(outcome)).await;
            outcome.status()
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// The response is finished (or abandoned): record metrics and usage.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.scan {
            return;
        }
        if e.is_some() && ctx.outcome == Outcome::Ok {
            ctx.outcome = Outcome::UpstreamError;
        }
        let elapsed = ctx.start.elapsed();
        let s = &self.state;
        let route = ctx.routing.get(ctx.route);
        s.metrics.request(
            route.map(|r| &r.metrics),
            ctx.outcome,
            elapsed.as_secs_f64(),
        );
        let charge = s.gate.finish_charge(ctx);
        let Some(usage) = &s.usage else { return };
        let served = Served {
            request_id: ctx.request_id(),
            ts_ms: ctx.start_ms,
            method: session.req_header().method.as_str(),
            status: session.response_written().map_or(0, |h| h.status.as_u16()),
            latency_us: elapsed.as_micros() as u64,
            upstream_latency_us: ctx.upstream_latency_us(),
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            client_ip: ctx.client_ip,
        };
        let mut record = s
            .gate
            .usage_record(ctx.key.as_deref(), route, ctx.outcome, served);
        if let Some((credits, to)) = charge {
            (record.credits, record.charged_to) = (credits, Some(to));
        }
        usage.record(record);
    }
}

impl Proxy {
    /// Answers with a rejection's JSON body and headers.
    async fn reject(&self, session: &mut Session, ctx: &mut RequestCtx, rejection: Rejection) {
        ctx.outcome = rejection.outcome;
        if is_grpc(session.req_header()) {
            return self.reject_grpc(session, ctx, rejection).await;
        }
        let body = rejection.body(ctx.request_id());
        let header = rejection
            .header(
                &ctx.request_id,
                body.len(),
                self.state.gate.www_authenticate(),
            )
            .and_then(|mut h| self.state.gate.response_headers(&mut h, ctx).map(|_| h));
        let Ok(header) = header else { return };
        // An unread request body would be taken for the next request: do not reuse.
        if !session.is_body_done() {
            session.set_keepalive(None);
        }
        if session
            .write_response_header(Box::new(header), false)
            .await
            .is_ok()
        {
            let _ = session.write_response_body(Some(body), true).await;
        }
    }

    /// A gRPC client gets a gRPC error it understands (`UNAUTHENTICATED`,
    /// `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, ...), not an HTTP error
    /// body; the header frame ends the stream.
    async fn reject_grpc(&self, session: &mut Session, ctx: &mut RequestCtx, r: Rejection) {
        let header = r
            .grpc_header(&ctx.request_id)
            .and_then(|mut h| self.state.gate.response_headers(&mut h, ctx).map(|_| h));
        let Ok(header) = header else { return };
        if !session.is_body_done() {
            session.set_keepalive(None);
        }
        let _ = session
            .write_response_tasks(vec![HttpTask::Header(Box::new(header), true)])
            .await;
    }
}

/// Maps a proxy failure to the outcome keygate reports.
fn classify(e: &Error) -> Outcome {
    match (e.esource(), e.etype()) {
        (ErrorSource::Downstream, _) => Outcome::ClientClosed,
        (_, ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            Outcome::UpstreamTimeout
        }
        (ErrorSource::Upstream, _) => Outcome::UpstreamUnavailable,
        (_, ErrorType::ConnectNoRoute | ErrorType::ConnectRefused | ErrorType::ConnectError) => {
            Outcome::UpstreamUnavailable
        }
        _ => Outcome::UpstreamError,
    }
}
