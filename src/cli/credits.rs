//! Options keys and owners share: per-route cap overrides, credits and
//! their refill, and `credits --add N | --set N`.

use std::collections::BTreeMap;

use clap::Args;

use super::CliError;
use crate::credits::{CreditChange, CreditsInput, CreditsView, Interval, Refill};
use crate::ratelimit::window::{Limits, Window};

/// `--route-limit ROUTE:WINDOW=N` (repeatable), `--credits N`, `--refill SPEC`.
#[derive(Debug, Args, Default)]
pub struct AccountOptions {
    /// Replace a route's cap, e.g. `orders-write:minute=10` (repeatable).
    #[arg(long = "route-limit", value_name = "ROUTE:WINDOW=N")]
    pub route_limits: Vec<String>,
    /// Set the credit balance.
    #[arg(long, value_name = "N")]
    pub credits: Option<i64>,
    /// Refill the credits: `1000/day`, `1000/month` or `1000/month@15` (day of month).
    #[arg(long, value_name = "AMOUNT/day|AMOUNT/month[@DAY]")]
    pub refill: Option<String>,
}

impl AccountOptions {
    pub fn route_limits(&self) -> Result<Option<BTreeMap<String, Limits>>, CliError> {
        if self.route_limits.is_empty() {
            return Ok(None);
        }
        let mut out: BTreeMap<String, Limits> = BTreeMap::new();
        for s in &self.route_limits {
            let usage = || {
                CliError::Usage(format!(
                    "--route-limit {s:?}: use ROUTE:WINDOW=N, e.g. orders:minute=10"
                ))
            };
            let (route, rest) = s.rsplit_once(':').ok_or_else(usage)?;
            let (w, n) = rest.split_once('=').ok_or_else(usage)?;
            let w = Window::parse(w).ok_or_else(usage)?;
            let n = n.parse().map_err(|_| usage())?;
            out.entry(route.to_owned()).or_default().set(w, Some(n));
        }
        Ok(Some(out))
    }

    /// The credits these options set, if any.
    pub fn credits(&self) -> Result<Option<CreditsInput>, CliError> {
        let refill = self.refill.as_deref().map(refill).transpose()?;
        if self.credits.is_none() && refill.is_none() {
            return Ok(None);
        }
        Ok(Some(CreditsInput {
            remaining: self.credits,
            refill: refill.map(Some),
        }))
    }
}

fn refill(s: &str) -> Result<Refill, CliError> {
    let usage = || {
        CliError::Usage(format!(
            "--refill {s:?}: use AMOUNT/day, AMOUNT/month or AMOUNT/month@DAY"
        ))
    };
    let (amount, every) = s.split_once('/').ok_or_else(usage)?;
    let amount = amount.parse().map_err(|_| usage())?;
    let (interval, day) = match every.split_once('@') {
        None if every == "day" => (Interval::Day, None),
        None if every == "month" => (Interval::Month, None),
        Some(("month", d)) => (Interval::Month, Some(d.parse().map_err(|_| usage())?)),
        _ => return Err(usage()),
    };
    Ok(Refill {
        amount,
        interval,
        day_of_month: day,
    })
}

/// `credits ID --add N | --set N`.
#[derive(Debug, Args)]
pub struct CreditArgs {
    pub id: String,
    /// Top up the current period's balance.
    #[arg(long, conflicts_with = "set", required_unless_present = "set")]
    pub add: Option<i64>,
    /// Replace the balance.
    #[arg(long)]
    pub set: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

impl CreditArgs {
    pub fn change(&self) -> CreditChange {
        CreditChange {
            add: self.add,
            set: self.set,
        }
    }
}

/// `1200 left, refill 1000/month@1`.
pub fn describe(c: Option<&CreditsView>) -> String {
    let Some(c) = c else { return "-".into() };
    match &c.refill {
        None => format!("{} left", c.remaining),
        Some(r) => {
            let every = match (r.interval, r.day_of_month) {
                (Interval::Day, _) => "day".to_string(),
                (Interval::Month, d) => format!("month@{}", d.unwrap_or(1)),
            };
            format!("{} left, refill {}/{every}", c.remaining, r.amount)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let o = AccountOptions {
            route_limits: vec!["orders:minute=10".into(), "orders:day=100".into()],
            credits: None,
            refill: Some("50/month@15".into()),
        };
        let r = o.route_limits().ok().flatten().expect("limits");
        assert_eq!((r["orders"].minute, r["orders"].day), (Some(10), Some(100)));
        let c = o.credits().ok().flatten().expect("credits");
        assert_eq!(c.refill.flatten().map(|r| r.day_of_month), Some(Some(15)));
        assert!(refill("5/week").is_err() && refill("x/day").is_err());
    }
}
