//! Credits after the response: the cost a post-paid route's upstream
//! reported, what the usage record is charged, and the settlement of the
//! difference (in the background, never on the client's time).

use pingora_http::ResponseHeader;

use super::ctx::RequestCtx;
use super::policy::Gate;
use crate::credits::ChargedTo;

/// The balance after this request, to the client.
pub const CREDITS_CLIENT: &str = "x-credits-remaining";

/// `x-credits-remaining`: a post-paid request's reported cost is known by the
/// time its response head is sent (not yet settled), so it is included.
pub(super) fn client_header(
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
) -> pingora_error::Result<()> {
    if let Some(n) = ctx.credits_remaining {
        let extra = ctx
            .debit
            .as_ref()
            .map_or(0, |d| d.credits(ctx.reported_cost) - d.reserved);
        resp.insert_header(CREDITS_CLIENT, n.saturating_sub(extra).max(0))?;
    }
    Ok(())
}

impl Gate {
    /// A post-paid route: the cost the upstream reported in the route's
    /// `cost_header` (a whole number from 0 to 10^15; anything else is ignored).
    pub fn read_cost(&self, resp: &ResponseHeader, ctx: &mut RequestCtx) {
        let routing = &ctx.routing;
        let header = routing
            .get(ctx.route)
            .and_then(|r| r.cfg.cost_header.as_ref());
        if let Some(h) = header {
            ctx.reported_cost = resp
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| (0..=crate::credits::MAX_CREDITS).contains(n));
        }
    }

    /// After the response: what the request cost and whose balance paid,
    /// for its usage record; a post-paid difference is settled in the
    /// background (never on the client's time).
    pub fn finish_charge(&self, ctx: &RequestCtx) -> Option<(i64, ChargedTo)> {
        let debit = ctx.debit.as_ref()?;
        let credits = debit.credits(ctx.reported_cost);
        if credits != debit.reserved {
            let (limiter, debit) = (self.limiter().clone(), debit.clone());
            tokio::spawn(async move { limiter.settle(&debit, credits).await });
        }
        Some((credits, debit.charged_to.clone()))
    }
}
