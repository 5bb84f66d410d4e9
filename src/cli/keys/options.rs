//! The key options `create` and `update` share, parsed into a [`KeyPatch`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::Args;

use super::CliError;
use crate::cli::credits::AccountOptions;
use crate::keys::hours::AllowedHours;
use crate::keys::model::KeyPatch;
use crate::keys::validate::{self as v, Errors};
use crate::ratelimit::window::{Limits, Window};

#[derive(Debug, Args)]
pub struct KeyOptions {
    /// A scope the key holds (repeatable); `orders:*` and `*` are wildcards.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// An IPv4/IPv6 CIDR the key may be used from (repeatable; none = any).
    #[arg(long = "cidr", value_name = "CIDR")]
    pub cidrs: Vec<String>,
    /// A rate limit, e.g. `minute=100` (repeatable).
    #[arg(long = "limit", value_name = "WINDOW=N")]
    pub limits: Vec<String>,
    /// A route the key may use (repeatable; none = all).
    #[arg(long = "route", value_name = "NAME")]
    pub routes: Vec<String>,
    /// Expire after this long, e.g. `30d`.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// Expire at this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub expires_at: Option<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long = "meta", value_name = "K=V")]
    pub meta: Vec<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Allowed hours: the IANA time zone, e.g. `Europe/Berlin` (with
    /// `--hours-from` and `--hours-to`); outside them the key is refused.
    #[arg(long, value_name = "ZONE", requires_all = ["hours_from", "hours_to"])]
    pub hours_tz: Option<String>,
    /// Allowed days, e.g. `mon,tue,wed,thu,fri` (default: every day).
    #[arg(long, value_name = "DAYS", requires = "hours_tz")]
    pub hours_days: Option<String>,
    /// Allowed from (local time, inclusive).
    #[arg(long, value_name = "HH:MM", requires = "hours_tz")]
    pub hours_from: Option<String>,
    /// Allowed until (local time, exclusive; at or before `--hours-from`: overnight).
    #[arg(long, value_name = "HH:MM", requires = "hours_tz")]
    pub hours_to: Option<String>,
    #[command(flatten)]
    pub account: AccountOptions,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `Some(list)` when given (a flag may repeat), else `None`.
fn given<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

impl KeyOptions {
    /// The fields these options set; absent options leave a field as it is.
    pub fn patch(&self) -> Result<KeyPatch, CliError> {
        let mut e = Errors::default();
        let cidrs = given(self.cidrs.clone()).map(|c| v::cidrs(&mut e, &c));
        if !e.0.is_empty() {
            return Err(CliError::Service(crate::service::ServiceError::Invalid(
                e.0,
            )));
        }
        Ok(KeyPatch {
            scopes: given(self.scopes.clone()),
            allowed_cidrs: cidrs,
            allowed_routes: given(self.routes.clone()),
            rate_limits: given(self.limits.clone()).map(|l| limits(&l)).transpose()?,
            metadata: given(self.meta.clone()).map(|m| meta(&m)).transpose()?,
            tags: given(self.tags.clone()),
            expires_at: time(&self.expires_at)?.map(Some),
            expires_in: self.expires_in.clone(),
            route_limits: self.account.route_limits()?,
            credits: self.account.credits()?.map(Some),
            allowed_hours: self.hours()?.map(Some),
            ..KeyPatch::default()
        })
    }

    /// `--hours-*` as allowed hours, checked as the API checks them.
    fn hours(&self) -> Result<Option<AllowedHours>, CliError> {
        let Some(tz) = &self.hours_tz else {
            return Ok(None);
        };
        let days: Vec<&str> = self
            .hours_days
            .as_deref()
            .map(|d| {
                d.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let json = serde_json::json!({
            "tz": tz, "days": days, "from": self.hours_from, "to": self.hours_to,
        });
        let hours: AllowedHours =
            serde_json::from_value(json).map_err(|e| CliError::Usage(format!("--hours-*: {e}")))?;
        match hours.problem() {
            Some(m) => Err(CliError::Usage(format!("--hours-*: {m}"))),
            None => Ok(Some(hours)),
        }
    }
}

fn limits(specs: &[String]) -> Result<Limits, CliError> {
    let mut l = Limits::default();
    for s in specs {
        let (w, n) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--limit {s:?}: use WINDOW=N, e.g. minute=100"))
        })?;
        let w = Window::parse(w).ok_or_else(|| {
            CliError::Usage(format!(
                "--limit {s:?}: window must be second, minute, hour, day or month"
            ))
        })?;
        let n = n
            .parse()
            .map_err(|_| CliError::Usage(format!("--limit {s:?}: N must be a whole number")))?;
        l.set(w, Some(n));
    }
    Ok(l)
}

fn meta(specs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    specs
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--meta {s:?}: use KEY=VALUE")))
        })
        .collect()
}

fn time(s: &Option<String>) -> Result<Option<DateTime<Utc>>, CliError> {
    s.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| CliError::Usage(format!("--expires-at {t:?} is not an RFC 3339 time")))
        })
        .transpose()
}
