//! The Aries `~timing` decorator: `Timing::parse` on any JSON value, then
//! `Timing::plan`, `timing::plan`, `timing::expired` and `timing::stale` at an arrival
//! time taken from the first 8 bytes (bounded to ±2^50 ms, a realistic clock).
//!
//! Invariants: never panics; unknown fields are kept verbatim; a plan never holds a
//! message in the past or more than ten minutes ahead, and only succeeds for unexpired
//! messages; the one-step `plan` agrees with parse + plan; `expired`/`stale` agree with
//! the parsed times.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::timing::{self, Timing, TimingError};
use serde_json::Value;

const BOUND: i64 = 1 << 50;

fuzz_target!(|data: &[u8]| {
    let (now, json) = if data.len() >= 8 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&data[..8]);
        (i64::from_le_bytes(word) % BOUND, &data[8..])
    } else {
        (1_558_126_279_000, data)
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let parsed = Timing::parse(&value);
    let planned = parsed.clone().and_then(|t| t.plan(now));
    assert_eq!(
        timing::plan(Some(&value), now),
        planned.clone().map(Some),
        "one-step plan disagrees"
    );
    match &parsed {
        Err(e) => assert!(matches!(e, TimingError::Invalid(_)), "{e:?}"),
        Ok(t) => {
            assert_eq!(Some(&t.raw), value.as_object());
            assert_eq!(
                timing::expired(Some(&value), now),
                t.expires_time.is_some_and(|e| e <= now)
            );
            assert_eq!(
                timing::stale(Some(&value), now),
                t.stale_time.is_some_and(|s| s <= now)
            );
            match &planned {
                Ok(p) => {
                    assert!(t.expires_time.is_none_or(|e| e > now));
                    assert_eq!(p.expires_at, t.expires_time);
                    assert_eq!(p.stale_at, t.stale_time);
                    if let Some(at) = p.deliver_at {
                        assert!(at > now && at - now <= timing::MAX_HOLD_MS as i64, "{p:?}");
                    }
                }
                Err(TimingError::Expired) => {
                    assert!(t.expires_time.is_some_and(|e| e <= now))
                }
                Err(TimingError::TooLong(_)) => {}
                Err(e @ TimingError::Invalid(_)) => panic!("plan after parse: {e:?}"),
            }
        }
    }
});
