//! Allowed hours in `Europe/Berlin` across both DST switches of 2026, with an
//! injected clock, through the proxy and `/v1/verify`; overnight windows;
//! no counter consumed outside the hours; validation in the API and the CLI.

use chrono::{DateTime, TimeZone, Utc};
use keygate::BuildOptions;
use keygate::clock::Clock;
use keygate::keys::hours::AllowedHours;
use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;
use serde_json::json;

use super::*;
use crate::harness::{StoreKind, binary, get_with_key, key_spec};

const TOKEN: &str = "admin-token-hours";

fn utc(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, min, 0)
        .single()
        .expect("time")
}

fn hours(json: Value) -> Option<AllowedHours> {
    Some(serde_json::from_value(json).expect("hours"))
}

/// The proxy's status and code, and `/v1/verify`'s `valid` and code.
async fn both(gw: &TestGateway, key: &str) -> (u16, String, bool, String) {
    let resp = get_with_key(gw, key).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("ok").to_string();
    let v: Value = gw
        .client
        .post(gw.admin_url("/v1/verify"))
        .bearer_auth(TOKEN)
        .json(&json!({"key": key, "route": "r"}))
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    let valid = v["valid"].as_bool().unwrap_or(false);
    (status, code, valid, v["code"].as_str().unwrap_or("").into())
}

async fn open(gw: &TestGateway, key: &str) -> bool {
    match both(gw, key).await {
        (200, _, true, _) => true,
        (403, c, false, v) if c == "outside_allowed_hours" && v == c => false,
        other => panic!("proxy and verify disagree or refuse otherwise: {other:?}"),
    }
}

/// Three keys on a Postgres gateway with a manual clock: office hours
/// (Mon–Fri 08:00–18:00, two requests a day), every night 01:00–03:00 (the
/// hour clocks skip or repeat), Saturday 22:00–06:00 (overnight).
async fn berlin_keys(clock: &Clock) -> (TestGateway, [String; 3], Upstream) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(StoreKind::Postgres)
        .await
        .env("KEYGATE_ADMIN_TOKEN", TOKEN)
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let s = cfg.services().await;
    let windows = [
        json!({"tz": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
            "from": "08:00", "to": "18:00"}),
        json!({"tz": "Europe/Berlin", "from": "01:00", "to": "03:00"}),
        json!({"tz": "Europe/Berlin", "days": ["sat"], "from": "22:00", "to": "06:00"}),
    ];
    let mut secrets = Vec::new();
    for (i, w) in windows.into_iter().enumerate() {
        let day = Some(2).filter(|_| i == 0);
        let spec = KeySpec {
            allowed_hours: hours(w),
            rate_limits: Limits {
                day,
                ..Limits::default()
            },
            ..key_spec("o")
        };
        let k = s.keys.create(spec, &"t".into()).await.expect("key");
        secrets.push(k.secret.expose().to_string());
    }
    let gw = cfg
        .start_with(BuildOptions {
            clock: clock.clone(),
        })
        .await;
    let keys = secrets.try_into().expect("three keys");
    (gw, keys, up)
}

#[tokio::test]
async fn allowed_hours_follow_berlin_across_both_dst_switches() {
    let clock = Clock::manual(utc(3, 27, 6, 59));
    let (gw, [office, night, overnight], _up) = berlin_keys(&clock).await;
    let (office, night, overnight) = (office.as_str(), night.as_str(), overnight.as_str());

    // Friday 2026-03-27, CET (UTC+1): 08:00 local is 07:00Z.
    for _ in 0..5 {
        assert!(!open(&gw, office).await, "07:59 Berlin");
    }
    clock.set(utc(3, 27, 7, 0));
    assert!(open(&gw, office).await, "08:00 Berlin");
    // Two a day: the refused requests above (and verify's) consumed nothing.
    let third = gw.get("/x").header("x-api-key", office).send().await;
    let third = third.expect("send").status().as_u16();
    assert_eq!(third, 429, "the limit still counts admitted ones");

    let cases = [
        // Spring forward, Sunday 2026-03-29: 02:00 CET is 03:00 CEST at 01:00Z.
        (utc(3, 29, 0, 0), night, true, "01:00 CET"),
        (utc(3, 29, 0, 59), night, true, "01:59 CET"),
        (
            utc(3, 29, 1, 0),
            night,
            false,
            "03:00 CEST: the window lost an hour",
        ),
        // Monday 2026-03-30, CEST (UTC+2): 08:00 local is 06:00Z.
        (utc(3, 30, 5, 59), office, false, "07:59 CEST"),
        (utc(3, 30, 6, 0), office, true, "08:00 CEST"),
        (utc(3, 30, 16, 0), office, false, "18:00 CEST"),
        // Fall back, Sunday 2026-10-25: 03:00 CEST is 02:00 CET at 01:00Z.
        (utc(10, 24, 22, 59), night, false, "00:59 CEST"),
        (utc(10, 24, 23, 0), night, true, "01:00 CEST"),
        (utc(10, 25, 0, 59), night, true, "02:59 CEST"),
        (
            utc(10, 25, 1, 0),
            night,
            true,
            "02:00 CET: the hour repeats",
        ),
        (utc(10, 25, 1, 59), night, true, "02:59 CET"),
        (utc(10, 25, 2, 0), night, false, "03:00 CET"),
        // Monday 2026-10-26, CET again: 08:00 local is 07:00Z.
        (utc(10, 26, 6, 30), office, false, "07:30 CET"),
        (utc(10, 26, 7, 0), office, true, "08:00 CET"),
        // Saturday 22:00 to Sunday 06:00, across midnight.
        (utc(10, 31, 20, 59), overnight, false, "Saturday 21:59 CET"),
        (utc(10, 31, 21, 0), overnight, true, "Saturday 22:00 CET"),
        (utc(11, 1, 4, 59), overnight, true, "Sunday 05:59 CET"),
        (utc(11, 1, 5, 0), overnight, false, "Sunday 06:00 CET"),
        (
            utc(11, 1, 21, 0),
            overnight,
            false,
            "Sunday 22:00: not a listed day",
        ),
    ];
    for (t, key, want, what) in cases {
        clock.set(t);
        assert_eq!(open(&gw, key).await, want, "{what} ({t})");
    }
    gw.stop().await;
}

#[tokio::test]
async fn bad_hours_are_refused_by_the_api() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .env("KEYGATE_ADMIN_TOKEN", TOKEN)
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let gw = cfg.start().await;
    let post = |hours: Value| {
        let gw = &gw;
        async move {
            let resp = gw
                .client
                .post(gw.admin_url("/v1/keys"))
                .bearer_auth(TOKEN)
                .json(&json!({"owner_id": "o", "allowed_hours": hours}))
                .send()
                .await
                .expect("post");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            (status, body)
        }
    };
    let cases = [
        (
            json!({"tz": "Mars/Olympus", "from": "08:00", "to": "18:00"}),
            "IANA",
        ),
        (
            json!({"tz": "UTC", "days": ["funday"], "from": "08:00", "to": "18:00"}),
            "funday",
        ),
        (json!({"tz": "UTC", "from": "8am", "to": "18:00"}), "HH:MM"),
        (
            json!({"tz": "UTC", "from": "08:00", "to": "25:00"}),
            "HH:MM",
        ),
        (
            json!({"tz": "UTC", "from": "08:00", "to": "08:00"}),
            "differ",
        ),
        (json!({"tz": "UTC", "from": "08:00"}), "to"),
    ];
    for (hours, says) in cases {
        let (status, body) = post(hours.clone()).await;
        assert_eq!(status, 422, "{hours} -> {body}");
        let detail = body.to_string();
        assert!(detail.contains("allowed_hours"), "{detail}");
        assert!(detail.contains(says), "{hours}: {detail}");
    }
    let (status, body) = post(json!({"tz": "Europe/Berlin", "days": ["sat", "sun"],
        "from": "22:00", "to": "06:00"}))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"]["allowed_hours"]["to"], "06:00");
    let id = body["key"]["id"].as_str().expect("id").to_string();
    let cleared: Value = gw
        .client
        .patch(gw.admin_url(&format!("/v1/keys/{id}")))
        .bearer_auth(TOKEN)
        .json(&json!({"allowed_hours": null}))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["allowed_hours"], Value::Null, "{cleared}");
    gw.stop().await;
}

#[tokio::test]
async fn the_cli_checks_sets_shows_and_clears_hours() {
    let cfg = TestConfig::new(StoreKind::Sqlite).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = binary::store_config(cfg.db_url());
    let path = dir.path().join("keygate.toml");
    binary::write_config(&path, &file);
    let env = [("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)];
    let create = |extra: &[&str]| {
        let mut args = vec!["keys", "create", "--owner", "o", "--name", "n", "--json"];
        args.extend_from_slice(extra);
        binary::run(&path, &args, &env)
    };
    let (code, _, err) = create(&[
        "--hours-tz",
        "Mars/Olympus",
        "--hours-from",
        "08:00",
        "--hours-to",
        "18:00",
    ]);
    assert!(code != 0 && err.contains("IANA"), "{err}");
    let (code, _, err) = create(&[
        "--hours-tz",
        "UTC",
        "--hours-days",
        "mon,xyz",
        "--hours-from",
        "08:00",
        "--hours-to",
        "18:00",
    ]);
    assert!(code != 0 && err.contains("xyz"), "{err}");
    let (code, _, err) = create(&["--hours-tz", "UTC", "--hours-from", "08:00"]);
    assert!(code != 0 && err.contains("hours-to"), "{err}");
    let (code, out, err) = create(&[
        "--hours-tz",
        "Europe/Berlin",
        "--hours-days",
        "mon,fri",
        "--hours-from",
        "08:00",
        "--hours-to",
        "18:00",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["key"]["allowed_hours"]["days"], json!(["mon", "fri"]));
    let id = v["key"]["id"].as_str().expect("id");
    let (code, out, err) = binary::run(&path, &["keys", "show", id], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mon,fri 08:00-18:00 Europe/Berlin"), "{out}");
    let (code, out, err) = binary::run(
        &path,
        &["keys", "update", id, "--clear", "hours", "--json"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["allowed_hours"], Value::Null);
}
