//! Helios-Starling text frames: `helios::decode` on any UTF-8 input.
//!
//! Invariants: never panics; an error always has at least one violation and only ever
//! echoes a canonical UUID; a decoded frame re-encoded with the matching encoder decodes
//! to the same frame (`timeoutMs` aside: the encoder does not write it); the error
//! response built from a decode error is itself a well-formed response; the name
//! validators agree with the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::helios::{self, Frame};

const NOW: u64 = 1_704_700_800_000;

fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn reencode(frame: &Frame) -> String {
    match frame {
        Frame::Request(r) => helios::encode_request(
            &r.request_id,
            &r.method,
            r.payload.as_ref(),
            r.timing.as_ref(),
            NOW,
        ),
        Frame::Response(r) => match &r.outcome {
            Ok(data) => {
                helios::encode_success_timed(&r.request_id, data.as_ref(), r.timing.as_ref(), NOW)
            }
            Err(e) => helios::encode_error_timed(&r.request_id, e, r.timing.as_ref(), NOW),
        },
        Frame::Notification(n) => helios::encode_notification(
            n.request_id.as_deref(),
            n.topic.as_deref(),
            &n.data,
            n.timing.as_ref(),
            NOW,
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match helios::decode(text) {
        Ok(frame) => {
            if let Frame::Request(r) = &frame {
                assert!(helios::validate_method(&r.method).is_ok(), "{:?}", r.method);
                assert!(r.timeout_ms.is_none_or(|ms| ms > 0));
            }
            if let Some(id) = frame.request_id() {
                assert!(is_canonical_uuid(id), "request id {id:?}");
            }
            let text2 = reencode(&frame);
            let again = helios::decode(&text2)
                .unwrap_or_else(|e| panic!("re-encoded frame does not decode: {e}\n{text2}"));
            let mut expected = frame;
            if let Frame::Request(r) = &mut expected {
                r.timeout_ms = None;
            }
            assert_eq!(
                again, expected,
                "decode(encode(decode(x))) != decode(x)\n{text2}"
            );
        }
        Err(e) => {
            assert!(!e.violations.is_empty());
            if let Some(id) = &e.request_id {
                assert!(is_canonical_uuid(id), "echoed request id {id:?}");
                // The error response the server sends back must itself be valid.
                let reply = helios::encode_error(id, &e.to_wire_error(), NOW);
                match helios::decode(&reply) {
                    Ok(Frame::Response(r)) => assert!(r.outcome.is_err()),
                    other => panic!("error response does not decode: {other:?}\n{reply}"),
                }
            } else {
                let reply = helios::encode_protocol_error(
                    helios::ErrorCode::InvalidMessageFormat,
                    "Invalid message format",
                    &e.violations,
                    NOW,
                );
                let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
                assert_eq!(v["type"], "error");
                assert!(helios::decode(&reply).is_err());
            }
        }
    }
    // The name validators never panic, and a valid method has a non-empty namespace.
    if helios::validate_method(text).is_ok() {
        let ns = helios::namespace(text);
        assert!(!ns.is_empty() && ns.len() < text.len());
        assert!(text.len() <= helios::MAX_METHOD_LEN);
    }
    if helios::validate_namespace(text).is_ok() {
        assert!(!text.is_empty() && !text.contains(':'));
        let _ = helios::is_reserved_namespace(text);
    }
});
