//! Sink binary frames: `sink::decode` on the input as one frame, and the input as a TCP
//! byte stream split by `sink::FrameReader` (fed in chunks whose sizes come from the
//! input), each frame decoded.
//!
//! Invariants: never panics; decode(encode(decode(x))) == decode(x); an error names a
//! message id exactly when the header carries one (types 3–7); the stream reader yields
//! exactly the length-prefixed frames of the stream, in order, and buffers less than
//! one frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::sink::{self, Frame};

fn check_frame(bytes: &[u8]) {
    match sink::decode(bytes) {
        Ok(frame) => {
            let encoded = sink::encode(&frame);
            // A NACK's human text is decoded lossily, so invalid UTF-8 may grow (U+FFFD);
            // only frames that still fit are required to round-trip.
            if encoded.len() <= sink::MAX_FRAME {
                assert_eq!(sink::decode(&encoded), Ok(frame.clone()), "{encoded:02x?}");
                assert_eq!(sink::encode(&frame), encoded, "encode is deterministic");
            }
            if let Frame::Ack { id } | Frame::Publish { id, .. } | Frame::Nack { id, .. } = frame {
                assert!(id <= sink::MAX_MESSAGE_ID);
            }
        }
        Err(e) => {
            let has_id = bytes.len() >= 2 && matches!(bytes[0] >> 4, 3..=7);
            if bytes.len() <= sink::MAX_FRAME {
                assert_eq!(e.id.is_some(), has_id, "{bytes:02x?}: {e:?}");
            }
            if let Some(id) = e.id {
                assert_eq!(id, (u16::from(bytes[0] & 0x0f) << 8) | u16::from(bytes[1]));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_frame(data);

    // The same bytes as a stream, fed in chunks of 1..=16 bytes (sizes from the data).
    let mut reader = sink::FrameReader::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut step = 0;
    while fed < data.len() {
        let n = 1 + usize::from(data[step % data.len()] & 0x0f);
        step += 1;
        let end = (fed + n).min(data.len());
        reader.extend(&data[fed..end]);
        fed = end;
        while let Some(frame) = reader.next_frame() {
            let len = usize::from(u16::from_be_bytes([data[consumed], data[consumed + 1]]));
            assert_eq!(frame.len(), len);
            assert_eq!(&data[consumed + 2..consumed + 2 + len], &frame[..]);
            consumed += 2 + len;
            let prefixed = sink::prefixed(&frame).expect("a frame fits its prefix");
            assert_eq!(&prefixed[2..], &frame[..]);
            check_frame(&frame);
        }
        assert_eq!(reader.buffered(), fed - consumed);
        assert!(reader.buffered() < 2 + sink::MAX_FRAME);
    }
    // Whatever is left is not a whole frame.
    let rest = &data[consumed..];
    if rest.len() >= 2 {
        assert!(rest.len() < 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]])));
    }
});
