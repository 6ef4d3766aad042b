//! RFC 0074 timestamps: `timing::parse` on any UTF-8 input, and `timing::format` of
//! integers taken from the input.
//!
//! Invariants: never panics; every accepted time formats (`YYYY-MM-DDTHH:MM:SS.sssZ`)
//! and parses back to the same millisecond; the formatted form is 24 bytes and is
//! accepted again; leading/trailing whitespace does not change the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::timing;

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range `format` writes with
/// a 4-digit year.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn check_format(ms: i64) {
    let text = timing::format(ms);
    if (MIN_MS..=MAX_MS).contains(&ms) {
        assert_eq!(text.len(), 24, "{text}");
        assert_eq!(timing::parse(&text), Ok(ms), "{ms} -> {text}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ms) = timing::parse(text) {
            let formatted = timing::format(ms);
            assert_eq!(
                timing::parse(&formatted),
                Ok(ms),
                "{text:?} -> {ms} -> {formatted} does not parse back"
            );
            assert_eq!(timing::parse(&format!(" {text}\n")), Ok(ms));
        }
    }
    for chunk in data.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let raw = i64::from_le_bytes(word);
        check_format(raw);
        // Mostly inside the 4-digit-year range, where the round trip must hold.
        check_format(raw % (MAX_MS + 1));
    }
});
