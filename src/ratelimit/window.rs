//! Rate-limit windows and per-window limits. Pure: no clocks, no I/O.

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// One rate-limit window. `Month` is the calendar month in UTC; the others are
/// fixed lengths aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub const ALL: [Window; 5] = [
        Window::Second,
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Month,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Fixed length in milliseconds; `None` for the calendar month.
    pub fn fixed_millis(self) -> Option<u64> {
        match self {
            Window::Second => Some(1_000),
            Window::Minute => Some(60_000),
            Window::Hour => Some(3_600_000),
            Window::Day => Some(86_400_000),
            Window::Month => None,
        }
    }

    /// The window's bucket that contains `now_ms` (Unix milliseconds).
    pub fn bucket(self, now_ms: u64) -> Bucket {
        match self.fixed_millis() {
            Some(len) => {
                let index = now_ms / len;
                Bucket {
                    index,
                    start_ms: index * len,
                    len_ms: len,
                }
            }
            None => month_bucket(now_ms),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span of one window: `[start_ms, start_ms + len_ms)`. `index` identifies it
/// (epoch-aligned count for fixed windows, `year * 12 + month0` for months).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub index: u64,
    pub start_ms: u64,
    pub len_ms: u64,
}

impl Bucket {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.len_ms
    }
}

fn month_start_ms(year: i32, month0: u32) -> u64 {
    let (y, m) = if month0 >= 12 {
        (year + 1, 0)
    } else {
        (year, month0)
    };
    Utc.with_ymd_and_hms(y, m + 1, 1, 0, 0, 0)
        .single()
        .map(|t| t.timestamp_millis().max(0) as u64)
        .unwrap_or(0)
}

fn month_bucket(now_ms: u64) -> Bucket {
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms as i64).unwrap_or_default();
    let (year, month0) = (now.year(), now.month0());
    let start_ms = month_start_ms(year, month0);
    let end_ms = month_start_ms(year, month0 + 1);
    Bucket {
        index: (year.max(0) as u64) * 12 + month0 as u64,
        start_ms,
        len_ms: end_ms.saturating_sub(start_ms).max(1),
    }
}

/// Maximum requests per window; `None` means no limit in that window.
/// Read only from an object (`{"minute": 100}`), never an array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub hour: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub day: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub month: Option<u64>,
}

/// A limit as written: a whole number, also when written `100.0`.
struct WholeNumber(u64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let n = serde_json::Number::deserialize(d)?;
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
            .map(WholeNumber)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number >= 0")))
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Limits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of windows (second, minute, hour, day, month) and limits")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Limits, A::Error> {
                use serde::de::Error;
                const NAMES: &[&str] = &["second", "minute", "hour", "day", "month"];
                let mut l = Limits::default();
                while let Some(k) = m.next_key::<String>()? {
                    let w = Window::parse(&k).ok_or_else(|| A::Error::unknown_field(&k, NAMES))?;
                    let v: Option<WholeNumber> = m.next_value()?;
                    l.set(w, v.map(|n| n.0));
                }
                Ok(l)
            }
        }
        d.deserialize_map(V)
    }
}

/// The largest limit: counts stay exact as doubles in Redis's Lua.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;

/// Whether `n` may be a limit (of a key or a route): 1 to [`MAX_LIMIT`].
pub fn valid_limit(n: u64) -> bool {
    (1..=MAX_LIMIT).contains(&n)
}

/// The error for a limit outside [`valid_limit`].
pub const LIMIT_RANGE: &str = "must be 1 to 10^15";

impl Limits {
    /// No limit in any window (for constants; `Limits::default()` elsewhere).
    pub const NONE: Limits = Limits {
        second: None,
        minute: None,
        hour: None,
        day: None,
        month: None,
    };

    pub fn get(&self, w: Window) -> Option<u64> {
        [self.second, self.minute, self.hour, self.day, self.month][w.index()]
    }

    pub fn set(&mut self, w: Window, value: Option<u64>) {
        let slot = match w {
            Window::Second => &mut self.second,
            Window::Minute => &mut self.minute,
            Window::Hour => &mut self.hour,
            Window::Day => &mut self.day,
            Window::Month => &mut self.month,
        };
        *slot = value;
    }

    pub fn is_empty(&self) -> bool {
        Window::ALL.iter().all(|w| self.get(*w).is_none())
    }

    /// The windows that carry a limit, shortest first.
    pub fn iter(&self) -> impl Iterator<Item = (Window, u64)> + '_ {
        Window::ALL
            .into_iter()
            .filter_map(|w| self.get(w).map(|l| (w, l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        Utc.with_ymd_and_hms(y, m, d, h, mi, s)
            .single()
            .map(|t| t.timestamp_millis() as u64)
            .unwrap_or_default()
    }

    #[test]
    fn fixed_buckets_align_to_epoch() {
        let b = Window::Minute.bucket(125_000);
        assert_eq!((b.index, b.start_ms, b.len_ms), (2, 120_000, 60_000));
        assert_eq!(b.end_ms(), 180_000);
    }

    #[test]
    fn month_bucket_is_calendar_month_utc() {
        let feb = Window::Month.bucket(ms(2024, 2, 29, 23, 59, 59));
        assert_eq!(feb.start_ms, ms(2024, 2, 1, 0, 0, 0));
        assert_eq!(feb.end_ms(), ms(2024, 3, 1, 0, 0, 0));
        let mar = Window::Month.bucket(ms(2024, 3, 1, 0, 0, 0));
        assert_eq!(mar.index, feb.index + 1);
        let dec = Window::Month.bucket(ms(2023, 12, 31, 12, 0, 0));
        assert_eq!(dec.end_ms(), ms(2024, 1, 1, 0, 0, 0));
        assert_eq!(
            dec.index + 1,
            Window::Month.bucket(ms(2024, 1, 1, 0, 0, 0)).index
        );
    }

    #[test]
    fn limits_are_read_from_objects_only() {
        let l: Limits = serde_json::from_str(r#"{"minute": 100.0, "day": null}"#).expect("limits");
        assert_eq!((l.minute, l.day), (Some(100), None));
        assert!(serde_json::from_str::<Limits>("[null, null]").is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"year": 1}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"minute": 1.5}"#).is_err());
    }

    #[test]
    fn limits_iterate_shortest_first() {
        let mut l = Limits::default();
        assert!(l.is_empty());
        l.set(Window::Day, Some(5));
        l.set(Window::Second, Some(1));
        let got: Vec<_> = l.iter().collect();
        assert_eq!(got, vec![(Window::Second, 1), (Window::Day, 5)]);
        assert_eq!(Window::parse("hour"), Some(Window::Hour));
        assert_eq!(Window::parse("year"), None);
    }
}
