//! The Aries RFC 0032 `~timing` decorator and the RFC 0074 timestamp format.
//!
//! Timestamps: ISO 8601 date `YYYY-MM-DD`, then `T` or a space, `HH:MM`, optional
//! `:SS`, optional fraction (any number of digits; rounded to the microsecond, then
//! kept to the millisecond), and a zone: `Z`, `±HH:MM`, `±HHMM`, or none (= UTC).
//! [`format`] writes `YYYY-MM-DDTHH:MM:SS.sssZ`.
//!
//! [`Timing::parse`] reads the decorator (unknown fields are kept and passed through);
//! [`Timing::plan`] applies Murmuration's rules (CONTRACT §7): hold until the later of
//! `delay_milli` and `wait_until_time`, reject holds beyond ten minutes and messages
//! already expired, and report when the message expires or goes stale.

use std::fmt;

use serde_json::{Map, Value};

/// Longest hold: ten minutes (RFC 0032 recommends not honouring longer delays; the
/// broker rejects them rather than clamping).
pub const MAX_HOLD_MS: u64 = 600_000;

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range [`parse`] accepts,
/// the times [`format`] writes with a 4-digit year.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Why a timestamp or decorator is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimingError {
    /// Malformed: the protocol's invalid-message error.
    Invalid(String),
    /// `expires_time` already past on arrival.
    Expired,
    /// A hold longer than ten minutes.
    TooLong(String),
}

impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimingError::Invalid(m) => write!(f, "invalid ~timing: {m}"),
            TimingError::Expired => f.write_str("expired: ~timing.expires_time has passed"),
            TimingError::TooLong(m) => write!(f, "~timing hold too long: {m}"),
        }
    }
}

impl std::error::Error for TimingError {}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u64> {
    let part = s.get(at..at + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        part.iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u64) -> u64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 0074 timestamp into Unix milliseconds (UTC). Fractions are rounded to
/// the microsecond, then truncated to the millisecond.
pub fn parse(text: &str) -> Result<i64, TimingError> {
    let bad = || TimingError::Invalid(format!("not an ISO 8601 time: {:?}", short(text)));
    let s = text.trim().as_bytes();
    if s.len() < 16 || s.len() > 64 {
        return Err(bad());
    }
    let year = digits(s, 0, 4).ok_or_else(bad)? as i64;
    let month = digits(s, 5, 2).ok_or_else(bad)?;
    let day = digits(s, 8, 2).ok_or_else(bad)?;
    if s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ' || s[10] == b't') {
        return Err(bad());
    }
    let hour = digits(s, 11, 2).ok_or_else(bad)?;
    if s[13] != b':' {
        return Err(bad());
    }
    let minute = digits(s, 14, 2).ok_or_else(bad)?;
    let mut i = 16;
    let mut second = 0;
    let mut micros: u64 = 0;
    if s.get(i) == Some(&b':') {
        second = digits(s, i + 1, 2).ok_or_else(bad)?;
        i += 3;
        if s.get(i) == Some(&b'.') || s.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let frac = &s[start..i];
            if frac.is_empty() || frac.len() > 18 {
                return Err(bad());
            }
            // Round to microseconds.
            let mut value: u64 = 0;
            for (k, d) in frac.iter().enumerate().take(7) {
                let d = u64::from(d - b'0');
                if k < 6 {
                    value = value * 10 + d;
                } else if d >= 5 {
                    value += 1;
                }
            }
            for _ in frac.len()..6 {
                value *= 10;
            }
            micros = value;
        }
    }
    let offset_min: i64 = match &s[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [a, b, b':', c, d] => (digits(&[*a, *b], 0, 2), digits(&[*c, *d], 0, 2)),
                [a, b, c, d] => (digits(&[*a, *b], 0, 2), digits(&[*c, *d], 0, 2)),
                [a, b] => (digits(&[*a, *b], 0, 2), Some(0)),
                _ => (None, None),
            };
            let (h, m) = (h.ok_or_else(bad)?, m.ok_or_else(bad)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let total = (h * 60 + m) as i64;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_min * 60;
    let ms = secs * 1000 + (micros / 1000) as i64;
    // Zones and leap seconds can push a time out of years 0000–9999, which [`format`]
    // cannot write back.
    if !(MIN_MS..=MAX_MS).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// The `~timing` decorator. Unknown fields are kept in `raw` and passed through.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub in_time: Option<i64>,
    pub out_time: Option<i64>,
    pub stale_time: Option<i64>,
    pub expires_time: Option<i64>,
    pub delay_milli: Option<u64>,
    pub wait_until_time: Option<i64>,
    /// The decorator as received.
    pub raw: Map<String, Value>,
}

/// What the broker does with a message, decided on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Hold until then (Unix ms); `None`: deliver now.
    pub deliver_at: Option<i64>,
    /// Drop instead of delivering after this (Unix ms).
    pub expires_at: Option<i64>,
    /// Count as stale when delivered after this (Unix ms).
    pub stale_at: Option<i64>,
}

impl Timing {
    /// Reads a decorator value (must be an object; the six fields typed).
    pub fn parse(value: &Value) -> Result<Timing, TimingError> {
        let Value::Object(raw) = value else {
            return Err(TimingError::Invalid("~timing must be an object".into()));
        };
        let time = |name: &str| -> Result<Option<i64>, TimingError> {
            match raw.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => parse(s)
                    .map(Some)
                    .map_err(|_| TimingError::Invalid(format!("{name} is not an ISO 8601 time"))),
                Some(_) => Err(TimingError::Invalid(format!("{name} must be a string"))),
            }
        };
        let delay_milli = match raw.get("delay_milli") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                TimingError::Invalid("delay_milli must be a non-negative integer".into())
            })?),
        };
        Ok(Timing {
            in_time: time("in_time")?,
            out_time: time("out_time")?,
            stale_time: time("stale_time")?,
            expires_time: time("expires_time")?,
            delay_milli,
            wait_until_time: time("wait_until_time")?,
            raw: raw.clone(),
        })
    }

    /// Applies the rules at arrival time `now` (Unix ms).
    pub fn plan(&self, now: i64) -> Result<Plan, TimingError> {
        if self.expires_time.is_some_and(|e| e <= now) {
            return Err(TimingError::Expired);
        }
        if let Some(d) = self.delay_milli {
            if d > MAX_HOLD_MS {
                return Err(TimingError::TooLong(format!(
                    "delay_milli {d} exceeds 600000"
                )));
            }
        }
        if let Some(w) = self.wait_until_time {
            if w - now > MAX_HOLD_MS as i64 {
                return Err(TimingError::TooLong(
                    "wait_until_time is more than 10 minutes ahead".into(),
                ));
            }
        }
        let by_delay = self.delay_milli.filter(|d| *d > 0).map(|d| now + d as i64);
        let by_wait = self.wait_until_time.filter(|w| *w > now);
        let deliver_at = match (by_delay, by_wait) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(Plan {
            deliver_at,
            expires_at: self.expires_time,
            stale_at: self.stale_time,
        })
    }
}

/// Parses and plans an optional decorator in one step.
pub fn plan(value: Option<&Value>, now: i64) -> Result<Option<Plan>, TimingError> {
    value.map(|v| Timing::parse(v)?.plan(now)).transpose()
}

/// Whether a message carrying this decorator has expired at `now`. Malformed
/// decorators were rejected on arrival, so they never expire here.
pub fn expired(value: Option<&Value>, now: i64) -> bool {
    expiry(value).is_some_and(|e| e <= now)
}

/// Whether a message carrying this decorator is stale at `now`.
pub fn stale(value: Option<&Value>, now: i64) -> bool {
    value
        .and_then(|v| v.get("stale_time"))
        .and_then(Value::as_str)
        .and_then(|s| parse(s).ok())
        .is_some_and(|s| s <= now)
}

fn expiry(value: Option<&Value>) -> Option<i64> {
    value?
        .get("expires_time")?
        .as_str()
        .and_then(|s| parse(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2019-05-17T20:51:19Z in Unix ms.
    const BASE: i64 = 1_558_126_279_000;

    #[test]
    fn aca_py_vectors() {
        assert_eq!(parse("2019-05-17 20:51:19.519437Z"), Ok(BASE + 519));
        assert_eq!(parse("2019-05-17 20:51:19.519437001Z"), Ok(BASE + 519));
        assert_eq!(parse("2019-05-17 20:51:19Z"), Ok(BASE));
        assert_eq!(parse("2019-05-17 20:51Z"), Ok(BASE - 19_000));
        assert_eq!(parse("2019-11-15T22:37:14"), Ok(1_573_857_434_000));
        assert_eq!(
            parse("2019-05-17 20:51:19.519437+01:00"),
            Ok(BASE + 519 - 3_600_000)
        );
        assert_eq!(parse("2019-05-17T20:51:19.519437+0000"), Ok(BASE + 519));
        assert!(parse("BAD_DATE").is_err());
    }

    #[test]
    fn the_seeds_own_examples_parse() {
        for s in [
            "2019-01-23 18:03:27.123Z",
            "2019-01-24 18:25Z",
            "2019-01-25 18:25Z",
            "2019-01-24 00:00Z",
        ] {
            assert!(parse(s).is_ok(), "{s}");
        }
        assert_eq!(
            parse("2019-01-23 18:03:27.123Z").map(format),
            Ok("2019-01-23T18:03:27.123Z".into())
        );
    }

    #[test]
    fn fractions_round_to_the_microsecond_then_truncate_to_the_millisecond() {
        assert_eq!(
            parse("1970-01-01T00:00:00.0009995Z"),
            Ok(1),
            "rounds up to 1000 µs"
        );
        assert_eq!(parse("1970-01-01T00:00:00.0009994Z"), Ok(0));
        assert_eq!(parse("1970-01-01T00:00:00.5Z"), Ok(500));
        assert_eq!(parse("1970-01-01T00:00:00,25Z"), Ok(250));
    }

    #[test]
    fn offsets_and_zones() {
        assert_eq!(parse("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse("1970-01-01T01:00:00+0100"), Ok(0));
        assert_eq!(parse("1970-01-01T00:00:00-01:30"), Ok(5_400_000));
        assert_eq!(parse("1970-01-01T00:00:00+01"), Ok(-3_600_000));
        assert_eq!(parse("1969-12-31T23:59:59.999Z"), Ok(-1));
    }

    #[test]
    fn malformed_times_are_rejected() {
        for bad in [
            "",
            "2019",
            "2019-05-17",
            "2019-05-17X20:51Z",
            "2019-13-01 00:00Z",
            "2019-02-30 00:00Z",
            "2019-05-17 24:00Z",
            "2019-05-17 20:60Z",
            "2019-05-17 20:51:19.Z",
            "2019-05-17 20:51:19+25:00",
            "2019-05-17 20:51:19+01:7",
            "2019-05-17 20:51:19 Z",
            "２０１９-05-17 20:51Z",
            "2019-05-17 20:51:19Zjunk",
            &"9".repeat(100),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("2020-02-29 00:00Z").is_ok(), "leap day");
        assert!(parse("2100-02-29 00:00Z").is_err(), "not a leap year");
    }

    #[test]
    fn format_then_parse_is_identity_to_the_millisecond() {
        // A deterministic pseudo-random walk over ±300 years, with every millisecond value.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = (x % 19_000_000_000_000) as i64 - 9_500_000_000_000 + i;
            assert_eq!(parse(&format(ms)), Ok(ms), "{ms} → {}", format(ms));
        }
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn decorators_parse_and_keep_unknown_fields() {
        let v = json!({"in_time": "2019-01-23 18:03:27.123Z", "out_time": "2019-01-23 18:03:27.123Z",
            "stale_time": "2019-01-24 18:25Z", "expires_time": "2019-01-25 18:25Z",
            "delay_milli": 12345, "wait_until_time": "2019-01-24 00:00Z", "x-custom": [1]});
        let t = Timing::parse(&v).unwrap();
        assert_eq!(t.delay_milli, Some(12345));
        assert_eq!(t.raw.get("x-custom"), Some(&json!([1])));
        for bad in [
            json!([]),
            json!({"delay_milli": -1}),
            json!({"delay_milli": "5"}),
            json!({"expires_time": 5}),
            json!({"stale_time": "tomorrow"}),
        ] {
            assert!(
                matches!(Timing::parse(&bad), Err(TimingError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn plans_follow_the_contract() {
        let now = BASE;
        let t = |v: Value| Timing::parse(&v).unwrap().plan(now);
        assert_eq!(
            t(json!({})),
            Ok(Plan {
                deliver_at: None,
                expires_at: None,
                stale_at: None
            })
        );
        assert_eq!(
            t(json!({"delay_milli": 1000})).unwrap().deliver_at,
            Some(now + 1000)
        );
        assert_eq!(
            t(json!({"delay_milli": 600_000})).unwrap().deliver_at,
            Some(now + 600_000)
        );
        assert!(matches!(
            t(json!({"delay_milli": 600_001})),
            Err(TimingError::TooLong(_))
        ));
        let in_5s = format(now + 5000);
        let in_11m = format(now + 660_000);
        assert_eq!(
            t(json!({"wait_until_time": in_5s})).unwrap().deliver_at,
            Some(now + 5000)
        );
        assert!(matches!(
            t(json!({"wait_until_time": in_11m})),
            Err(TimingError::TooLong(_))
        ));
        assert_eq!(
            t(json!({"wait_until_time": in_5s, "delay_milli": 9000}))
                .unwrap()
                .deliver_at,
            Some(now + 9000),
            "both: the later"
        );
        let past = format(now - 1);
        assert_eq!(t(json!({"expires_time": past})), Err(TimingError::Expired));
        assert_eq!(
            t(json!({"wait_until_time": past})).unwrap().deliver_at,
            None,
            "already due"
        );
        let p = t(json!({"expires_time": in_5s, "stale_time": past})).unwrap();
        assert_eq!(p.expires_at, Some(now + 5000));
        assert!(stale(Some(&json!({"stale_time": past})), now));
        assert!(expired(Some(&json!({"expires_time": past})), now));
        assert!(!expired(Some(&json!({"expires_time": in_5s})), now));
        assert!(!expired(None, now));
    }

    #[test]
    fn fuzz_regression_times_outside_four_digit_years_are_rejected() {
        // fuzz/timing_timestamp: accepted, then formatted as year 10000 / -001, which does
        // not parse back.
        for bad in [
            &b"9999-12-31 00:00:60-23:59"[..],
            b"9999-12-31T23:59:59.9999995Z",
            b"9999-12-31T23:59-00:01",
            b"0000-01-01T00:00+00:01",
        ] {
            let text = std::str::from_utf8(bad).unwrap();
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(parse("0000-01-01T00:00Z"), Ok(MIN_MS));
        assert_eq!(parse("9999-12-31T23:59:59.999Z"), Ok(MAX_MS));
        for ms in [MIN_MS, MAX_MS] {
            assert_eq!(parse(&format(ms)), Ok(ms));
        }
    }
}
