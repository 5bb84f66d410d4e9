//! Validation of key fields from the CLI or the admin API. Pure; every problem
//! is reported with its field path.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::Serialize;

use super::model::KeyPatch;
use crate::auth::{key, scope};
use crate::config::validate_cidr;
use crate::credits::{CreditChange, CreditOp, CreditsInput, Interval, MAX_CREDITS};
use crate::ratelimit::window::Limits;

pub const MAX_OWNER_LEN: usize = 128;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_LIST: usize = 100;
pub const MAX_META_VALUE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

pub fn owner_id(e: &mut Errors, v: &str) {
    if v.is_empty() || v.len() > MAX_OWNER_LEN || !printable(v) {
        e.add(
            "owner_id",
            format!("must be 1-{MAX_OWNER_LEN} printable ASCII characters"),
        );
    }
}

pub fn name(e: &mut Errors, v: &str) {
    if v.chars().count() > MAX_NAME_LEN || v.chars().any(char::is_control) {
        e.add(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters without control characters"),
        );
    }
}

pub fn prefix(e: &mut Errors, v: &str) {
    if key::validate_prefix(v).is_err() {
        e.add("prefix", "must be 1-24 chars: [a-z][a-z0-9]*(_[a-z0-9]+)*");
    }
}

fn list_len(e: &mut Errors, field: &str, n: usize) {
    if n > MAX_LIST {
        e.add(field, format!("at most {MAX_LIST} entries"));
    }
}

pub fn scopes(e: &mut Errors, v: &[String]) {
    list_len(e, "scopes", v.len());
    for (i, s) in v.iter().enumerate() {
        if let Err(err) = scope::validate(s, true) {
            e.add(format!("scopes[{i}]"), err.to_string());
        }
    }
}

pub fn cidrs(e: &mut Errors, v: &[String]) -> Vec<IpNetwork> {
    list_len(e, "allowed_cidrs", v.len());
    v.iter()
        .enumerate()
        .filter_map(|(i, c)| match validate_cidr(c) {
            Ok(n) => Some(n),
            Err(m) => {
                e.add(format!("allowed_cidrs[{i}]"), m);
                None
            }
        })
        .collect()
}

/// Networks given as values (the API's JSON): `10.0.0.1/8` is almost always a
/// typo for `10.0.0.0/8`, so host bits are refused rather than guessed away.
pub fn networks(e: &mut Errors, v: &[IpNetwork]) {
    list_len(e, "allowed_cidrs", v.len());
    for (i, net) in v.iter().enumerate() {
        if let Err(m) = validate_cidr(&net.to_string()) {
            e.add(format!("allowed_cidrs[{i}]"), m);
        }
    }
}

/// Every field a patch (or a creation) carries; `routes` are the gateway's.
pub fn patch(e: &mut Errors, p: &KeyPatch, routes: &HashSet<String>) {
    if let Some(v) = &p.owner_id {
        owner_id(e, v);
    }
    if let Some(v) = &p.name {
        name(e, v);
    }
    if let Some(v) = &p.prefix {
        prefix(e, v);
    }
    if let Some(v) = &p.scopes {
        scopes(e, v);
    }
    if let Some(v) = &p.allowed_cidrs {
        networks(e, v);
    }
    if let Some(v) = &p.allowed_routes {
        self::routes(e, v, routes);
    }
    if let Some(v) = &p.rate_limits {
        limits(e, v);
    }
    if let Some(v) = &p.metadata {
        metadata(e, v);
    }
    if let Some(v) = &p.tags {
        tags(e, v);
    }
    if let Some(v) = &p.route_limits {
        route_limits(e, v, routes);
    }
    if let Some(Some(c)) = &p.credits {
        credits(e, c);
    }
    if let Some(m) = p.allowed_hours.as_ref().and_then(|h| h.as_ref()?.problem()) {
        e.add("allowed_hours", m);
    }
}

/// `route_limits`: route names from the configuration, valid limits.
pub fn route_limits(e: &mut Errors, v: &BTreeMap<String, Limits>, known: &HashSet<String>) {
    list_len(e, "route_limits", v.len());
    for (r, l) in v {
        if !known.contains(r) {
            e.add(
                format!("route_limits.{r}"),
                format!("no route named {r:?} in the configuration"),
            );
        }
        for (w, n) in l.iter() {
            if !crate::ratelimit::window::valid_limit(n) {
                e.add(
                    format!("route_limits.{r}.{w}"),
                    crate::ratelimit::window::LIMIT_RANGE,
                );
            }
        }
    }
}

fn credit_amount(e: &mut Errors, field: &str, n: i64, min: i64) {
    if !(min..=MAX_CREDITS).contains(&n) {
        e.add(field, format!("must be {min} to 10^15"));
    }
}

/// `credits`: a balance of 0 to 10^15; a refill of 1 to 10^15, monthly on
/// day 1 to 28 (a daily refill has no day).
pub fn credits(e: &mut Errors, c: &CreditsInput) {
    if let Some(n) = c.remaining {
        credit_amount(e, "credits.remaining", n, 0);
    }
    if let Some(Some(r)) = &c.refill {
        credit_amount(e, "credits.refill.amount", r.amount, 1);
        match (r.interval, r.day_of_month) {
            (Interval::Day, Some(_)) => e.add(
                "credits.refill.day_of_month",
                "only a monthly refill has a day of the month",
            ),
            (Interval::Month, Some(d)) if !(1..=28).contains(&d) => {
                e.add("credits.refill.day_of_month", "must be 1 to 28")
            }
            _ => {}
        }
    }
}

/// `POST .../credits`: `add` (1 to 10^15) or `set` (0 to 10^15), not both.
pub fn credit_change(e: &mut Errors, c: &CreditChange) -> Option<CreditOp> {
    match (c.add, c.set) {
        (Some(n), None) => {
            credit_amount(e, "add", n, 1);
            Some(CreditOp::Add(n))
        }
        (None, Some(n)) => {
            credit_amount(e, "set", n, 0);
            Some(CreditOp::Set(n))
        }
        _ => {
            e.add("", "give add or set (one of them)");
            None
        }
    }
}

/// `known`: the gateway's route names; a key naming a route that does not exist
/// would silently grant nothing, so it is refused.
pub fn routes(e: &mut Errors, v: &[String], known: &HashSet<String>) {
    list_len(e, "allowed_routes", v.len());
    for (i, r) in v.iter().enumerate() {
        if !known.contains(r) {
            e.add(
                format!("allowed_routes[{i}]"),
                format!("no route named {r:?} in the configuration"),
            );
        }
    }
}

pub fn limits(e: &mut Errors, v: &Limits) {
    for (w, n) in v.iter() {
        if !crate::ratelimit::window::valid_limit(n) {
            e.add(
                format!("rate_limits.{w}"),
                crate::ratelimit::window::LIMIT_RANGE,
            );
        }
    }
}

pub fn metadata(e: &mut Errors, v: &BTreeMap<String, String>) {
    list_len(e, "metadata", v.len());
    for (k, val) in v {
        if !crate::config::is_metadata_field(k) {
            e.add(
                format!("metadata.{k}"),
                "keys must be 1-64 chars of [a-z0-9_-]",
            );
        }
        if val.len() > MAX_META_VALUE || !printable(val) {
            e.add(
                format!("metadata.{k}"),
                format!("values must be at most {MAX_META_VALUE} printable ASCII characters"),
            );
        }
    }
}

pub fn tags(e: &mut Errors, v: &[String]) {
    list_len(e, "tags", v.len());
    for (i, t) in v.iter().enumerate() {
        if t.is_empty()
            || t.len() > 64
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            e.add(
                format!("tags[{i}]"),
                "tags must be 1-64 chars of [A-Za-z0-9-_.:]",
            );
        }
    }
}

pub fn expires_at(e: &mut Errors, field: &str, v: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if v.is_some_and(|t| t <= now) {
        e.add(field, "must be in the future");
    }
}

/// `expires_in` or `expires_at`, not both. `None`: neither given;
/// `Some(None)`: cleared (an update's `expires_at: null`).
pub fn expiry(
    e: &mut Errors,
    expires_in_: Option<&str>,
    expires_at_: Option<Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
) -> Option<Option<DateTime<Utc>>> {
    match (expires_in_, expires_at_) {
        (Some(_), Some(_)) => {
            e.add("expires_in", "give expires_at or expires_in, not both");
            None
        }
        (Some(d), None) => expires_in(e, d, now).map(Some),
        (None, Some(at)) => {
            expires_at(e, "expires_at", at, now);
            Some(at)
        }
        (None, None) => None,
    }
}

/// The reason given when revoking a key.
pub fn reason(e: &mut Errors, v: &str) {
    if v.chars().count() > 500 || v.chars().any(char::is_control) {
        e.add(
            "reason",
            "at most 500 characters without control characters",
        );
    }
}

/// Parses `expires_in` ("30d", "12h") into an absolute time.
pub fn expires_in(e: &mut Errors, v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match humantime::parse_duration(v)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        Some(d) if d > chrono::Duration::zero() => now.checked_add_signed(d),
        _ => {
            e.add(
                "expires_in",
                format!("{v:?} is not a positive duration such as \"30d\" or \"12h\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_field_with_its_path() {
        let mut e = Errors::default();
        owner_id(&mut e, "");
        scopes(&mut e, &["ok:read".into(), "Bad".into()]);
        let parsed = cidrs(
            &mut e,
            &["10.0.0.0/8".into(), "nope".into(), "::1/128".into()],
        );
        routes(
            &mut e,
            &["r1".into(), "missing".into()],
            &HashSet::from(["r1".to_string()]),
        );
        let l = Limits {
            minute: Some(0),
            ..Limits::default()
        };
        limits(&mut e, &l);
        metadata(
            &mut e,
            &BTreeMap::from([
                ("Plan".to_string(), "x".to_string()),
                ("ok".to_string(), "\n".to_string()),
            ]),
        );
        tags(&mut e, &["fine".into(), "".into()]);
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "owner_id",
                "scopes[1]",
                "allowed_cidrs[1]",
                "allowed_routes[1]",
                "rate_limits.minute",
                "metadata.Plan",
                "metadata.ok",
                "tags[1]"
            ]
        );
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn expiry() {
        let now = Utc::now();
        let mut e = Errors::default();
        assert!(expires_in(&mut e, "2h", now).is_some_and(|t| t > now));
        assert!(expires_in(&mut e, "soon", now).is_none());
        expires_at(&mut e, "expires_at", Some(now), now);
        assert_eq!(e.0.len(), 2);
    }
}
