//! Allowed hours: a key may be used only on some weekdays between two local
//! times in an IANA time zone, e.g. Mon–Fri 08:00–18:00 Europe/Berlin.
//! Evaluated in the zone's local time at the moment of the request, so
//! daylight-saving switches move the window with the clock on the wall.
//!
//! `from` is inclusive, `to` exclusive. A window that ends at or before it
//! starts (`22:00`–`06:00`) runs overnight: it opens on the listed days and
//! closes the next morning.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// As written in the API and stored: `{"tz", "days", "from", "to"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedHours {
    /// IANA zone, e.g. `Europe/Berlin`.
    #[schema(value_type = String)]
    pub tz: Zone,
    /// `mon` … `sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<Day>,
    /// `HH:MM`, local time, inclusive.
    #[schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub from: Clock,
    /// `HH:MM`, local time, exclusive; at or before `from`: the window runs overnight.
    #[schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub to: Clock,
}

/// An IANA time zone by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Zone(pub Tz);

/// A wall-clock time of day, minutes precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Clock(pub NaiveTime);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl AllowedHours {
    /// The form the request path checks: no allocation, no parsing.
    pub fn compile(&self) -> HoursCheck {
        let days = if self.days.is_empty() {
            0x7f
        } else {
            self.days.iter().fold(0u8, |m, d| m | d.bit())
        };
        HoursCheck {
            tz: self.tz.0,
            days,
            from: minutes(self.from.0),
            to: minutes(self.to.0),
        }
    }

    /// Whether `now` falls in the window.
    pub fn allows(&self, now: DateTime<Utc>) -> bool {
        self.compile().allows(now)
    }

    /// What is wrong with hours that parse (zone, days and times are
    /// checked by parsing): an empty window, a day listed twice.
    pub fn problem(&self) -> Option<&'static str> {
        if self.from == self.to {
            return Some("from and to must differ (22:00-06:00 runs overnight)");
        }
        let mut seen = 0u8;
        for d in &self.days {
            if seen & d.bit() != 0 {
                return Some("a day is listed twice");
            }
            seen |= d.bit();
        }
        None
    }
}

fn minutes(t: NaiveTime) -> u16 {
    // At most 23 * 60 + 59.
    (t.hour() * 60 + t.minute()) as u16
}

/// A key's allowed hours, precomputed when the key table is built: the zone,
/// the days as bits (Monday = bit 0) and the times as minutes of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoursCheck {
    tz: Tz,
    days: u8,
    from: u16,
    to: u16,
}

impl HoursCheck {
    fn on(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    /// Whether `now` falls in the window, in the zone's local time.
    pub fn allows(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let time = minutes(local.time());
        let (from, to) = (self.from, self.to);
        if from < to {
            return self.on(local.weekday()) && from <= time && time < to;
        }
        // Overnight: the evening of a listed day, or the morning after one.
        (time >= from && self.on(local.weekday())) || (time < to && self.on(local.weekday().pred()))
    }
}

/// `mon,tue 08:00-18:00 Europe/Berlin`, or `every day ...`.
impl fmt::Display for AllowedHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days.is_empty() {
            f.write_str("every day")?;
        }
        for (i, d) in self.days.iter().enumerate() {
            let name = serde_json::to_value(d).ok();
            let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
            write!(f, "{}{name}", if i == 0 { "" } else { "," })?;
        }
        let (from, to) = (self.from.0.format("%H:%M"), self.to.0.format("%H:%M"));
        write!(f, " {from}-{to} {}", self.tz)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Tz::from_str(&name).map(Zone).map_err(|_| {
            serde::de::Error::custom(format!(
                "{name:?} is not an IANA time zone, e.g. \"Europe/Berlin\""
            ))
        })
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.format("%H:%M").to_string())
    }
}

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map(Clock)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a time HH:MM")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hours(json: &str) -> AllowedHours {
        serde_json::from_str(json).expect("hours")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn office_hours_follow_berlin_across_daylight_saving() {
        let h = hours(
            r#"{"tz":"Europe/Berlin","days":["mon","tue","wed","thu","fri"],"from":"08:00","to":"18:00"}"#,
        );
        // Winter (UTC+1): Friday 2026-03-27 07:00Z is 08:00 local.
        assert!(h.allows(utc(2026, 3, 27, 7, 0)));
        assert!(!h.allows(utc(2026, 3, 27, 6, 59)));
        // Clocks go forward on Sunday 2026-03-29; Monday 03-30 is UTC+2:
        // 08:00 local is 06:00Z, and 07:00Z (09:00 local) is inside.
        assert!(h.allows(utc(2026, 3, 30, 6, 0)));
        assert!(!h.allows(utc(2026, 3, 30, 5, 59)));
        assert!(!h.allows(utc(2026, 3, 30, 16, 0)), "18:00 local is closed");
        // Back to UTC+1 after Sunday 2026-10-25: Monday 10-26 08:00 local = 07:00Z.
        assert!(!h.allows(utc(2026, 10, 26, 6, 30)));
        assert!(h.allows(utc(2026, 10, 26, 7, 0)));
        // Weekends are closed.
        assert!(!h.allows(utc(2026, 3, 28, 10, 0)));
    }

    #[test]
    fn overnight_windows_close_the_next_morning() {
        let h = hours(r#"{"tz":"UTC","days":["fri"],"from":"22:00","to":"06:00"}"#);
        assert!(h.allows(utc(2026, 3, 27, 23, 0)), "Friday night");
        assert!(
            h.allows(utc(2026, 3, 28, 5, 59)),
            "Saturday morning, after Friday"
        );
        assert!(!h.allows(utc(2026, 3, 28, 6, 0)));
        assert!(
            !h.allows(utc(2026, 3, 28, 23, 0)),
            "Saturday night is not listed"
        );
    }

    #[test]
    fn compiled_checks_match_and_empty_windows_are_problems() {
        let h = hours(r#"{"tz":"Asia/Kolkata","days":["sun"],"from":"09:30","to":"10:00"}"#);
        // 2026-03-29 is a Sunday; 04:00Z is 09:30 in Kolkata (UTC+5:30).
        assert!(h.compile().allows(utc(2026, 3, 29, 4, 0)));
        assert!(!h.compile().allows(utc(2026, 3, 29, 3, 59)));
        assert_eq!(h.problem(), None);
        let empty = hours(r#"{"tz":"UTC","from":"08:00","to":"08:00"}"#);
        assert!(empty.problem().is_some());
        let twice = hours(r#"{"tz":"UTC","days":["mon","mon"],"from":"08:00","to":"09:00"}"#);
        assert!(twice.problem().is_some());
        let e = serde_json::from_str::<AllowedHours>(
            r#"{"tz":"UTC","days":["monday"],"from":"08:00","to":"09:00"}"#,
        )
        .expect_err("day");
        assert!(e.to_string().contains("mon"), "{e}");
    }

    #[test]
    fn bad_values_name_the_problem() {
        let e = serde_json::from_str::<AllowedHours>(
            r#"{"tz":"Mars/Base","from":"08:00","to":"18:00"}"#,
        )
        .expect_err("zone");
        assert!(e.to_string().contains("IANA"), "{e}");
        let e = serde_json::from_str::<AllowedHours>(r#"{"tz":"UTC","from":"8am","to":"18:00"}"#)
            .expect_err("time");
        assert!(e.to_string().contains("HH:MM"), "{e}");
    }
}
