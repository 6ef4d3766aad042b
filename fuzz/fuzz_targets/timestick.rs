//! TimeStick: the START body (`decode_start`), session messages (`decode_message`), the
//! `timestick://` URI mapping (`target_of_uri`, `http_url`), target rules
//! (`validate_target`), raw request paths (`percent_decode`, `target_of_path`) and poll
//! cursors (`Cursor::parse`), all on the same input.
//!
//! Invariants: never panics; every refusal is a 400; accepted ids and sizes are within
//! their limits; a validated target validates to itself; `http_url` succeeds exactly
//! when `target_of_uri` does and ends in `/timestick/<target>`; percent-decoding undoes
//! percent-encoding and a path's target is a valid target; a parsed cursor renders and
//! parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::channel;
use murmur_shared::timestick::{self, Cursor, Posted};
use serde_json::Value;

/// The session id the seeds use (`decode_message` rejects any other).
const SID: &str = "s1";

fn check_target(t: &str) {
    assert_eq!(
        timestick::validate_target(t).as_deref(),
        Ok(t),
        "not idempotent"
    );
    assert!(!t.starts_with('/') && !t.ends_with('/'));
    assert!(channel::validate(t).is_ok());
    assert!(!t.split('/').any(|s| s.is_empty() || s == "." || s == ".."));
}

/// Escapes every byte that is not unreserved (RFC 3986), upper- or lower-case hex.
fn percent_encode(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    match timestick::decode_start(data) {
        Ok(start) => {
            assert!(!start.caller_id.is_empty() && start.caller_id.len() <= 256);
            if let Some(t) = &start.requested_target {
                check_target(t);
            }
            assert!(start.max_message_size.is_none_or(|n| n >= 1));
        }
        Err(refusal) => assert_eq!(refusal.status, 400),
    }

    if let Ok(posted) = timestick::decode_message(data, SID) {
        let id = posted.message_id();
        assert!(!id.is_empty() && id.len() <= timestick::MAX_ID_LEN);
        match &posted {
            Posted::Request { timing, .. } => assert!(timing.as_ref().is_none_or(Value::is_object)),
            Posted::Response {
                correlation_id,
                timing,
                ..
            } => {
                assert!(
                    !correlation_id.is_empty() && correlation_id.len() <= timestick::MAX_ID_LEN
                );
                assert!(timing.as_ref().is_none_or(Value::is_object));
            }
            Posted::Stop { .. } => {}
            Posted::Kill { kill_level, .. } => assert!(*kill_level <= 3),
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = timestick::validate_target(text) {
        check_target(&t);
    }
    let target = timestick::target_of_uri(text);
    if let Ok(t) = &target {
        check_target(t);
    }
    for https in [false, true] {
        let url = timestick::http_url(text, https);
        assert_eq!(url.is_ok(), target.is_ok());
        if let (Ok(url), Ok(t)) = (&url, &target) {
            let scheme = if https { "https://" } else { "http://" };
            assert!(url.starts_with(scheme), "{url}");
            assert!(url.ends_with(&format!("/timestick/{t}")), "{url}");
        }
    }
    match timestick::percent_decode(text) {
        Ok(decoded) => {
            assert!(text.contains('%') || decoded == text);
            for upper in [false, true] {
                let encoded = percent_encode(&decoded, upper);
                assert_eq!(
                    timestick::percent_decode(&encoded).as_deref(),
                    Ok(&decoded[..])
                );
            }
            match timestick::target_of_path(text) {
                Ok(Some(t)) => check_target(&t),
                Ok(None) => assert_eq!(decoded, "/timestick/start"),
                Err(_) => {}
            }
        }
        Err(_) => assert!(timestick::target_of_path(text).is_err()),
    }
    let encoded = percent_encode(text, true);
    assert_eq!(timestick::percent_decode(&encoded).as_deref(), Ok(text));
    if let Some(c) = Cursor::parse(text) {
        assert_eq!(Cursor::parse(&c.render()), Some(c.clone()), "{text:?}");
    }
});
