//! The inter-node envelope: `Envelope::from_bytes` (serde JSON from the bus) and
//! `Envelope::from_channel_payload` (`<stream id> <seq> <epoch> <JSON>` or `- <JSON>`)
//! on any input; `ChannelSeq::continued_by` on what they decode; `Envelope::seq_after`
//! and `Envelope::seq_before` on the input split at the first NUL.
//!
//! Invariants: never panics; a decoded envelope re-encodes (`to_bytes` must not panic)
//! and decodes to an equal envelope, and the re-encoding is a fixed point; a channel
//! payload re-built from what it decoded to decodes the same; `seq_after` is a strict
//! order (irreflexive, asymmetric) and `seq_before(p)` is before `p`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::envelope::{ChannelSeq, Envelope};

fn check_envelope(env: &Envelope) -> Vec<u8> {
    let bytes = env.to_bytes();
    let back = Envelope::from_bytes(&bytes).unwrap_or_else(|e| {
        panic!(
            "re-encoded envelope does not decode: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let mut expected = env.clone();
    expected.seq = None;
    expected.chan_seq = None;
    assert_eq!(back, expected, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(back.to_bytes(), bytes, "encoding is not a fixed point");
    bytes
}

fn check_chan_seq(c: &ChannelSeq) {
    assert!(!c.continued_by(c), "{c:?} continues itself");
    let first = ChannelSeq {
        seq: 1,
        epoch: format!("{}+", c.epoch),
    };
    assert!(c.continued_by(&first), "a new epoch starts at 1");
    if let Some(seq) = c.seq.checked_add(1) {
        let next = ChannelSeq {
            seq,
            epoch: c.epoch.clone(),
        };
        assert!(c.continued_by(&next));
        assert!(!next.continued_by(c));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_bytes(data) {
        assert!(
            env.seq.is_none() && env.chan_seq.is_none(),
            "never deserialized"
        );
        check_envelope(&env);
    }

    if let Some(env) = Envelope::from_channel_payload(data) {
        let json = check_envelope(&env);
        let rebuilt = match (&env.seq, &env.chan_seq) {
            (None, None) => [&b"- "[..], &json].concat(),
            (Some(id), Some(c)) => {
                assert!(!id.is_empty() && !id.contains(' '));
                assert!(c.seq >= 1 && !c.epoch.is_empty() && !c.epoch.contains(' '));
                check_chan_seq(c);
                [format!("{id} {} {} ", c.seq, c.epoch).as_bytes(), &json].concat()
            }
            other => panic!("seq and chan_seq are set together: {other:?}"),
        };
        let again = Envelope::from_channel_payload(&rebuilt).expect("re-built payload decodes");
        assert_eq!(again.seq, env.seq);
        assert_eq!(again.chan_seq, env.chan_seq);
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let (a, b) = text.split_once('\0').unwrap_or((text, "0-0"));
        assert!(!Envelope::seq_after(a, a));
        assert!(!(Envelope::seq_after(a, b) && Envelope::seq_after(b, a)));
        let before = Envelope::seq_before(a);
        if Envelope::seq_after(a, "0-0") {
            assert!(
                Envelope::seq_after(a, &before),
                "{before} is not before {a}"
            );
        } else {
            assert_eq!(before, "0-0");
        }
    }
});
