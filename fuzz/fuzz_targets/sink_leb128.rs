//! Sink unsigned LEB128: `sink::read_leb128` at every offset of the input, and
//! `sink::write_leb128` of integers taken from the input.
//!
//! Invariants: never panics; a read consumes 1..=10 bytes ending at the first byte
//! without the continuation bit; rewriting the value gives the canonical (shortest)
//! encoding, which reads back to the same value, and equals the input bytes when those
//! were canonical; `None` only for truncated or wider-than-u64 input; every u64
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::sink;

fn reference(buf: &[u8]) -> Option<(u64, usize)> {
    // Independent decoder over u128: at most 10 bytes, value must fit u64.
    let mut value: u128 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u128::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u64::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn check_read(buf: &[u8]) {
    let got = sink::read_leb128(buf);
    assert_eq!(got, reference(buf), "{buf:02x?}");
    if let Some((value, n)) = got {
        assert!((1..=10).contains(&n) && n <= buf.len());
        assert_eq!(buf[n - 1] & 0x80, 0);
        assert!(buf[..n - 1].iter().all(|b| b & 0x80 != 0));
        let mut canonical = Vec::new();
        sink::write_leb128(&mut canonical, value);
        assert!(canonical.len() <= n);
        assert_eq!(
            sink::read_leb128(&canonical),
            Some((value, canonical.len()))
        );
        let is_canonical = n == 1 || buf[n - 1] != 0;
        if is_canonical {
            assert_eq!(&canonical[..], &buf[..n]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for start in 0..data.len().min(64) {
        check_read(&data[start..]);
    }
    check_read(data);

    for chunk in data.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        for value in [
            u64::from_le_bytes(word),
            u64::from_le_bytes(word) >> (chunk[0] & 63),
        ] {
            let mut out = vec![0xaa];
            sink::write_leb128(&mut out, value);
            let expected_len = (64 - value.leading_zeros() as usize).div_ceil(7).max(1);
            assert_eq!(out.len() - 1, expected_len);
            assert_eq!(sink::read_leb128(&out[1..]), Some((value, expected_len)));
            // Appended bytes are not consumed.
            out.push(0x7f);
            assert_eq!(sink::read_leb128(&out[1..]), Some((value, expected_len)));
        }
    }
});
