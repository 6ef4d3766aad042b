//! The incremental WebSocket frame decoder (`wsframe::Decoder::decode`) and the server
//! frame encoders (`wsframe::encode`, `wsframe::encode_close`).
//!
//! Input: byte 0 picks the message size limit, byte 1 the sizes of the chunks the rest
//! of the input (the client's byte stream) arrives in.
//!
//! Invariants: never panics; chunking does not matter (the messages and the final error
//! are the same whether the stream arrives at once or in pieces); every message is
//! within its limits (text is UTF-8, data within the limit, control payloads at most 125
//! bytes, close reasons at most 123 bytes with a sendable code); `Ok(None)` leaves less
//! than one header plus the limit buffered; every decoded message, re-encoded with the
//! server encoder and masked as a client would, decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use murmur_shared::wsframe::{self, Decoder, FrameError, Message, OpCode};

const LIMITS: [usize; 10] = [0, 1, 10, 125, 126, 1000, 4096, 65_535, 65_536, 1 << 20];
const MAX_HEADER: usize = 14;

/// Decodes `stream` fed in chunks of the given sizes (cycled; empty: all at once).
fn run(limit: usize, stream: &[u8], chunks: &[usize]) -> (Vec<Message>, Option<FrameError>) {
    let mut decoder = Decoder::new(limit);
    assert_eq!(decoder.limit(), limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut step = 0;
    while fed < stream.len() {
        let n = if chunks.is_empty() {
            stream.len()
        } else {
            chunks[step % chunks.len()]
        };
        step += 1;
        let end = (fed + n).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => {
                    check_message(limit, &m);
                    out.push(m);
                }
                Ok(None) => {
                    assert!(
                        buf.len() < MAX_HEADER + limit.max(wsframe::MAX_CONTROL_PAYLOAD),
                        "{} bytes buffered with a limit of {limit}",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    assert!(!e.reason().is_empty());
                    let _ = e.close_code();
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fn check_message(limit: usize, m: &Message) {
    match m {
        Message::Text(b) => {
            assert!(std::str::from_utf8(b).is_ok());
            assert!(b.len() <= limit);
        }
        Message::Binary(b) => assert!(b.len() <= limit),
        Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= wsframe::MAX_CONTROL_PAYLOAD),
        Message::Close(None) => {}
        Message::Close(Some((code, reason))) => {
            assert!(
                matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                "{code}"
            );
            assert!(reason.len() <= wsframe::MAX_CONTROL_PAYLOAD - 2);
        }
    }
}

/// A server frame turned into the client frame a browser would send (mask bit + key).
fn masked(server: &[u8], key: [u8; 4]) -> Vec<u8> {
    let len7 = server[1] & 0x7f;
    let at = match len7 {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = server[..at].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(server[at..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn reencode(m: &Message, key: [u8; 4]) {
    let mut out = BytesMut::new();
    let payload_len = match m {
        Message::Text(b) => {
            wsframe::encode(OpCode::Text, b, &mut out);
            b.len()
        }
        Message::Binary(b) => {
            wsframe::encode(OpCode::Binary, b, &mut out);
            b.len()
        }
        Message::Ping(b) => {
            wsframe::encode(OpCode::Ping, b, &mut out);
            b.len()
        }
        Message::Pong(b) => {
            wsframe::encode(OpCode::Pong, b, &mut out);
            b.len()
        }
        Message::Close(None) => {
            wsframe::encode(OpCode::Close, &[], &mut out);
            0
        }
        Message::Close(Some((code, reason))) => {
            wsframe::encode_close(*code, reason, &mut out);
            2 + reason.len()
        }
    };
    assert_eq!(out.len(), wsframe::header_len(payload_len) + payload_len);
    let client = masked(&out, key);
    let mut buf = BytesMut::from(&client[..]);
    let got = Decoder::new(payload_len).decode(&mut buf);
    assert_eq!(got, Ok(Some(m.clone())), "re-encoded {m:?}");
    assert!(buf.is_empty());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = LIMITS[usize::from(data[0]) % LIMITS.len()];
    let stream = &data[2..];
    let whole = run(limit, stream, &[]);
    let chunks: Vec<usize> = match data[1] {
        0 => vec![1],
        n => vec![usize::from(n & 0x0f) + 1, usize::from(n >> 4) + 1],
    };
    let pieces = run(limit, stream, &chunks);
    assert_eq!(
        whole, pieces,
        "chunking changed the result (chunks {chunks:?})"
    );

    let key = [data[0], data[1], 0x5a, 0xa5];
    for m in &whole.0 {
        reencode(m, key);
    }

    // Close frames from the encoder: any reason is cut to fit, on a character boundary.
    if let Ok(reason) = std::str::from_utf8(stream) {
        let code = 3000 + u16::from(data[1]);
        let mut out = BytesMut::new();
        wsframe::encode_close(code, reason, &mut out);
        let mut buf = BytesMut::from(&masked(&out, key)[..]);
        match Decoder::new(0).decode(&mut buf) {
            Ok(Some(Message::Close(Some((c, r))))) => {
                assert_eq!(c, code);
                assert!(reason.starts_with(&r) && r.len() <= 123);
                assert!(r.len() == reason.len() || r.len() + 4 > 123);
            }
            other => panic!("encode_close output decodes to {other:?}"),
        }
    }
});
