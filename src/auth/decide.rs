//! The authorization decision for a known key on a route. Pure: the caller
//! supplies the time and the client address.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::auth::scope;
use crate::keys::KeyEntry;
use crate::outcome::{Detail, Outcome, Rejection};
use crate::routes::RouteId;

/// Checks, in order: revoked, expired, disabled, owner disabled, route
/// allowed, IP allowed, scopes, allowed hours (the caller's rate limits come
/// after, so a refused request consumes no counter).
/// State comes first so that a revoked key is reported as revoked wherever it is used.
///
/// `route`: `None` skips the route check (the verify API without a route).
/// `RouteId`s are stable across reloads (see [`crate::routes`]).
/// `client_ip`: `None` (the verify API without an address) fails a key that has
/// an allowlist: an unknown address is not an allowed one.
pub fn decide(
    key: &KeyEntry,
    route: Option<RouteId>,
    required_scopes: &[String],
    client_ip: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    if key.revoked {
        return Err(Rejection::new(Outcome::RevokedKey));
    }
    if let Some(at) = key.expires_at.filter(|t| *t <= now) {
        return Err(Rejection {
            outcome: Outcome::ExpiredKey,
            detail: Detail::ExpiredAt(at),
        });
    }
    if !key.enabled {
        return Err(Rejection::new(Outcome::DisabledKey));
    }
    if !key.owner.state.load().enabled {
        return Err(Rejection::new(Outcome::OwnerDisabled));
    }
    if route.is_some_and(|r| !key.policy.allowed_routes.contains(r)) {
        return Err(Rejection::new(Outcome::RouteNotAllowed));
    }
    let ip_ok = match client_ip {
        Some(ip) => key.ip_allowed(ip),
        None => key.policy.allowed_cidrs.is_empty(),
    };
    if !ip_ok {
        return Err(Rejection::new(Outcome::IpNotAllowed));
    }
    if scope::first_missing(key.scopes(), required_scopes).is_some() {
        return Err(Rejection {
            outcome: Outcome::InsufficientScope,
            detail: Detail::RequiredScopes(required_scopes.to_vec()),
        });
    }
    if key.hours.is_some_and(|h| !h.allows(now)) {
        return Err(Rejection::new(Outcome::OutsideAllowedHours));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash::KeyHash;
    use crate::keys::model::{KeyRow, KeySpec};
    use crate::keys::{EntryContext, Interner};
    use crate::ratelimit::window::Limits;
    use chrono::Duration;
    use uuid::Uuid;

    fn row() -> KeyRow {
        KeyRow {
            id: Uuid::nil(),
            hash: KeyHash([0; 32]),
            lineage_id: Uuid::nil(),
            revoked: false,
            rotated_to: None,
            rotated_at: None,
            spec: KeySpec {
                owner_id: "o".into(),
                scopes: vec!["orders:*".into()],
                allowed_cidrs: vec![
                    "10.0.0.0/8".parse().expect("cidr"),
                    "2001:db8::/32".parse().expect("cidr"),
                ],
                allowed_routes: vec!["r0".into(), "r1".into()],
                rate_limits: Limits::default(),
                ..KeySpec::default()
            },
            credits: None,
        }
    }

    fn entry(r: KeyRow) -> KeyEntry {
        let ids = crate::routes::RouteIds::default();
        for r in ["r0", "r1", "r2"] {
            ids.id(r);
        }
        let ctx = EntryContext {
            route_ids: std::sync::Arc::new(ids),
            forward_metadata: vec![],
        };
        Interner::new(ctx).entry(r)
    }

    fn key() -> KeyEntry {
        entry(row())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn code(r: Result<(), Rejection>) -> Option<Outcome> {
        r.err().map(|e| e.outcome)
    }

    #[test]
    fn valid_key_passes() {
        let now = Utc::now();
        let scopes = vec!["orders:read".to_string()];
        assert_eq!(
            code(decide(
                &key(),
                Some(RouteId(0)),
                &scopes,
                Some(ip("10.1.2.3")),
                now
            )),
            None
        );
        assert_eq!(
            code(decide(
                &key(),
                Some(RouteId(1)),
                &[],
                Some(ip("2001:db8::5")),
                now
            )),
            None
        );
    }

    #[test]
    fn each_rejection() {
        let now = Utc::now();
        let none: Vec<String> = vec![];
        let good_ip = ip("10.0.0.1");

        let mut k = key();
        k.revoked = true;
        k.enabled = false;
        assert_eq!(
            code(decide(&k, Some(RouteId(0)), &none, Some(good_ip), now)),
            Some(Outcome::RevokedKey)
        );

        let mut k = key();
        k.expires_at = Some(now - Duration::seconds(1));
        let r = decide(&k, Some(RouteId(0)), &none, Some(good_ip), now).expect_err("expired");
        assert_eq!(r.outcome, Outcome::ExpiredKey);
        assert_eq!(r.detail, Detail::ExpiredAt(now - Duration::seconds(1)));
        k.expires_at = Some(now + Duration::seconds(1));
        assert_eq!(
            code(decide(&k, Some(RouteId(0)), &none, Some(good_ip), now)),
            None,
            "not yet expired"
        );

        let mut k = key();
        k.enabled = false;
        assert_eq!(
            code(decide(&k, Some(RouteId(0)), &none, Some(good_ip), now)),
            Some(Outcome::DisabledKey)
        );

        assert_eq!(
            code(decide(&key(), Some(RouteId(2)), &none, Some(good_ip), now)),
            Some(Outcome::RouteNotAllowed)
        );
        assert_eq!(
            code(decide(
                &key(),
                Some(RouteId(0)),
                &none,
                Some(ip("192.0.2.1")),
                now
            )),
            Some(Outcome::IpNotAllowed)
        );
        assert_eq!(
            code(decide(
                &key(),
                Some(RouteId(0)),
                &none,
                Some(ip("2001:db9::1")),
                now
            )),
            Some(Outcome::IpNotAllowed)
        );

        let want = vec!["users:read".to_string()];
        let r = decide(&key(), Some(RouteId(0)), &want, Some(good_ip), now).expect_err("scope");
        assert_eq!(r.detail, Detail::RequiredScopes(want));
    }

    #[test]
    fn no_route_skips_the_route_check_and_no_ip_fails_an_allowlist() {
        let now = Utc::now();
        assert_eq!(
            code(decide(&key(), None, &[], Some(ip("10.0.0.1")), now)),
            None
        );
        assert_eq!(
            code(decide(&key(), None, &[], None, now)),
            Some(Outcome::IpNotAllowed)
        );
        let mut open = row();
        open.spec.allowed_cidrs = vec![];
        let open = entry(open);
        assert_eq!(code(decide(&open, None, &[], None, now)), None);
    }

    #[test]
    fn outside_allowed_hours_comes_after_scopes() {
        let mut r = row();
        r.spec.allowed_hours = Some(
            serde_json::from_str(r#"{"tz":"Europe/Berlin","from":"08:00","to":"18:00"}"#)
                .expect("hours"),
        );
        let k = entry(r);
        let ok_ip = Some(ip("10.0.0.1"));
        // 2026-01-05 12:00Z is 13:00 in Berlin; 20:00Z is 21:00.
        let noon = "2026-01-05T12:00:00Z".parse().expect("time");
        let night = "2026-01-05T20:00:00Z".parse().expect("time");
        assert_eq!(code(decide(&k, Some(RouteId(0)), &[], ok_ip, noon)), None);
        assert_eq!(
            code(decide(&k, Some(RouteId(0)), &[], ok_ip, night)),
            Some(Outcome::OutsideAllowedHours)
        );
        let o = Outcome::OutsideAllowedHours;
        assert_eq!((o.status(), o.grpc_status()), (403, 7), "PERMISSION_DENIED");
        let want = vec!["users:read".to_string()];
        assert_eq!(
            code(decide(&k, Some(RouteId(0)), &want, ok_ip, night)),
            Some(Outcome::InsufficientScope),
            "the scope check comes first"
        );
    }

    #[test]
    fn empty_cidrs_allow_any_address() {
        let mut k = row();
        k.spec.allowed_cidrs = vec![];
        let k = entry(k);
        assert_eq!(
            code(decide(
                &k,
                Some(RouteId(0)),
                &[],
                Some(ip("198.51.100.1")),
                Utc::now()
            )),
            None
        );
    }
}
