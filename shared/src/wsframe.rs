//! WebSocket frames (RFC 6455), server side: an incremental decoder that enforces every
//! limit as soon as a frame header is known, and the encoder of server frames.
//!
//! * [`Decoder::decode`] takes bytes as they arrive and yields whole messages
//!   (fragments reassembled, payloads unmasked, text checked for UTF-8). A frame or a
//!   reassembled message whose *declared* length is over the limit is refused when its
//!   header is read — before any of its payload is buffered — so a buffer never holds
//!   more than one header plus the limit.
//! * Errors say which close code they earn ([`FrameError::close_code`]): 1009 for a
//!   message over the limit, 1007 for text that is not UTF-8, 1008 for every other
//!   framing fault (reserved bits, unknown opcodes, unmasked client frames, control
//!   frame rules, continuation order, malformed close payloads).
//! * [`encode`] writes one unmasked server frame; [`encode_close`] a close frame whose
//!   reason is cut to fit 125 bytes on a character boundary.
//!
//! Pure functions over byte buffers: no I/O, fuzzable (`fuzz/fuzz_targets/wsframe.rs`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::close::CloseCode;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame: its code and reason, if it carried any.
    Close(Option<(u16, String)>),
}

/// Why the byte stream is not an acceptable WebSocket stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame or reassembled message declared `declared` bytes, over `limit`.
    TooBig { declared: u64, limit: usize },
    /// A text message that is not valid UTF-8.
    InvalidUtf8,
    /// RSV1–3 set (no extension was negotiated).
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// A client frame without a mask.
    Unmasked,
    /// A control frame that is fragmented or carries more than 125 bytes.
    BadControl,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    UnfinishedMessage,
    /// A close payload of 1 byte, a code that may not be sent, or a reason that is
    /// not UTF-8.
    BadClose,
}

impl FrameError {
    /// The close code the server answers this error with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooBig { .. } => CloseCode::MessageTooBig,
            FrameError::InvalidUtf8 => CloseCode::InvalidPayload,
            _ => CloseCode::PolicyViolation,
        }
    }

    /// The reason sent in the close frame.
    pub fn reason(&self) -> String {
        match self {
            FrameError::TooBig { limit, .. } => format!("message larger than {limit} bytes"),
            FrameError::InvalidUtf8 => "text message is not valid UTF-8".into(),
            FrameError::ReservedBits => "reserved bits set (no extension negotiated)".into(),
            FrameError::UnknownOpcode(op) => format!("unknown opcode {op:#x}"),
            FrameError::Unmasked => "client frames must be masked".into(),
            FrameError::BadControl => {
                "control frames must be unfragmented and at most 125 bytes".into()
            }
            FrameError::UnexpectedContinuation => "continuation frame without a message".into(),
            FrameError::UnfinishedMessage => {
                "new message before the fragmented one finished".into()
            }
            FrameError::BadClose => "malformed close frame".into(),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for FrameError {}

/// The most a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    data: BytesMut,
}

/// A frame header, parsed.
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header bytes (2 to 14).
    len: usize,
    payload: u64,
}

/// See the module docs. One per connection.
pub struct Decoder {
    limit: usize,
    partial: Option<Partial>,
}

impl Decoder {
    /// A decoder refusing messages over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Decoder {
            limit,
            partial: None,
        }
    }

    /// The message size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Decodes the next whole message from the front of `buf`, consuming the bytes of
    /// every frame it uses. `Ok(None)`: more bytes are needed (whatever `buf` holds is a
    /// prefix of a frame that is within the limits). After an error the stream is
    /// unusable: close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        loop {
            let Some(header) = parse_header(buf)? else {
                return Ok(None);
            };
            self.check(&header)?;
            // Within the limits: `payload` fits in usize and the limit.
            let payload = header.payload as usize;
            if buf.len() < header.len + payload {
                return Ok(None);
            }
            buf.advance(header.len);
            let mut data = buf.split_to(payload);
            unmask(&mut data, header.mask);
            if let Some(msg) = self.frame(header.fin, header.opcode, data)? {
                return Ok(Some(msg));
            }
        }
    }

    /// The header's limits, checked before its payload is read.
    fn check(&self, h: &Header) -> Result<(), FrameError> {
        if h.opcode.is_control() {
            if !h.fin || h.payload > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::BadControl);
            }
            return Ok(());
        }
        let so_far = match (&self.partial, h.opcode) {
            (None, OpCode::Continuation) => return Err(FrameError::UnexpectedContinuation),
            (Some(_), OpCode::Text | OpCode::Binary) => return Err(FrameError::UnfinishedMessage),
            (Some(p), _) => p.data.len() as u64,
            (None, _) => 0,
        };
        let declared = so_far.saturating_add(h.payload);
        if declared > self.limit as u64 {
            return Err(FrameError::TooBig {
                declared,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// One frame's payload (unmasked); a message when it completes one.
    fn frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        data: BytesMut,
    ) -> Result<Option<Message>, FrameError> {
        match opcode {
            OpCode::Ping => Ok(Some(Message::Ping(data.freeze()))),
            OpCode::Pong => Ok(Some(Message::Pong(data.freeze()))),
            OpCode::Close => parse_close(&data).map(|c| Some(Message::Close(c))),
            OpCode::Text | OpCode::Binary if fin => {
                finish(opcode == OpCode::Text, data.freeze()).map(Some)
            }
            OpCode::Text | OpCode::Binary => {
                self.partial = Some(Partial {
                    text: opcode == OpCode::Text,
                    data,
                });
                Ok(None)
            }
            OpCode::Continuation => {
                // unwrap-free: `check` refused a continuation without a partial message.
                let Some(partial) = self.partial.as_mut() else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                partial.data.extend_from_slice(&data);
                if !fin {
                    return Ok(None);
                }
                let Some(Partial { text, data }) = self.partial.take() else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                finish(text, data.freeze()).map(Some)
            }
        }
    }
}

fn finish(text: bool, data: Bytes) -> Result<Message, FrameError> {
    if !text {
        return Ok(Message::Binary(data));
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    Ok(Message::Text(data))
}

/// Parses the header at the front of `buf` without consuming it; `None` if incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::UnknownOpcode(b0 & 0x0F))?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (payload, at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut n = [0u8; 8];
            n.copy_from_slice(b);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        len: at + 4,
        payload,
    }))
}

/// XORs `data` with the 4-byte mask, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// A close payload: empty, or a code and a UTF-8 reason.
fn parse_close(data: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match data.len() {
        0 => Ok(None),
        1 => Err(FrameError::BadClose),
        _ => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            let reason = std::str::from_utf8(&data[2..]).map_err(|_| FrameError::BadClose)?;
            if !sendable {
                return Err(FrameError::BadClose);
            }
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// Bytes of the header of a server frame carrying `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Appends one unmasked, final server frame.
pub fn encode(opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
    out.reserve(header_len(payload.len()) + payload.len());
    out.put_u8(0x80 | opcode.bits());
    match payload.len() {
        n @ 0..=125 => out.put_u8(n as u8),
        n @ 126..=65535 => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to 123 bytes on a char boundary).
pub fn encode_close(code: u16, reason: &str, out: &mut BytesMut) {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(OpCode::Close, &payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(limit: usize, bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::new(limit);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn text_binary_and_control_frames_decode() {
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x82, &[0, 1, 2, 255]));
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x88, &[0x03, 0xE8, b'o', b'k']));
        let got = decode_all(1024, &bytes).unwrap();
        assert_eq!(
            got,
            vec![
                Message::Text(Bytes::from_static(b"hello")),
                Message::Binary(Bytes::from_static(&[0, 1, 2, 255])),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong(Bytes::new()),
                Message::Close(Some((1000, "ok".into()))),
            ]
        );
    }

    #[test]
    fn every_payload_length_form_and_long_unmasking() {
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let got = decode_all(1 << 20, &client_frame(0x82, &payload)).unwrap();
            assert_eq!(
                got,
                vec![Message::Binary(Bytes::from(payload))],
                "len {len}"
            );
        }
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut bytes = client_frame(0x01, b"hel");
        bytes.extend(client_frame(0x89, b"x"));
        bytes.extend(client_frame(0x00, b"lo "));
        bytes.extend(client_frame(0x80, "wörld".as_bytes()));
        let got = decode_all(1024, &bytes).unwrap();
        assert_eq!(
            got,
            vec![
                Message::Ping(Bytes::from_static(b"x")),
                Message::Text(Bytes::from("hello wörld".as_bytes().to_vec())),
            ]
        );
    }

    #[test]
    fn byte_by_byte_arrival_gives_the_same_messages() {
        let mut bytes = client_frame(0x01, b"ab");
        bytes.extend(client_frame(0x80, b"cd"));
        bytes.extend(client_frame(0x82, &[9; 300]));
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in bytes {
            buf.put_u8(b);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                Message::Text(Bytes::from_static(b"abcd")),
                Message::Binary(Bytes::from(vec![9; 300])),
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_huge_declared_length_is_refused_from_the_header_alone() {
        // 2^40 bytes declared, no payload sent: refused at once.
        let header = [0x81, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut d = Decoder::new(4096);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooBig {
                declared: 1 << 40,
                limit: 4096
            })
        );
        // Even before the mask arrives.
        let mut buf = BytesMut::from(&header[..10]);
        assert!(matches!(
            Decoder::new(4096).decode(&mut buf),
            Ok(None) | Err(FrameError::TooBig { .. })
        ));
        // The largest u64 does not wrap around.
        let mut max = vec![0x82, 0xFF];
        max.extend_from_slice(&u64::MAX.to_be_bytes());
        max.extend_from_slice(&[1, 2, 3, 4]);
        let mut buf = BytesMut::from(&max[..]);
        assert!(matches!(
            Decoder::new(4096).decode(&mut buf),
            Err(FrameError::TooBig { .. })
        ));
    }

    #[test]
    fn the_limit_is_exact_and_counts_every_fragment() {
        assert!(decode_all(10, &client_frame(0x81, &[b'a'; 10])).is_ok());
        assert_eq!(
            decode_all(10, &client_frame(0x81, &[b'a'; 11])),
            Err(FrameError::TooBig {
                declared: 11,
                limit: 10
            })
        );
        let mut bytes = client_frame(0x01, &[b'a'; 6]);
        bytes.extend(client_frame(0x80, &[b'a'; 5]));
        // The second fragment's header already makes 11: refused before its payload.
        let mut d = Decoder::new(10);
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 5]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooBig {
                declared: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn framing_faults_are_policy_violations() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (client_frame(0xC1, b"x"), FrameError::ReservedBits),
            (client_frame(0xA1, b"x"), FrameError::ReservedBits),
            (client_frame(0x83, b"x"), FrameError::UnknownOpcode(3)),
            (vec![0x81, 0x01, b'x'], FrameError::Unmasked),
            (client_frame(0x09, b"x"), FrameError::BadControl),
            (client_frame(0x89, &[0; 126]), FrameError::BadControl),
            (client_frame(0x80, b"x"), FrameError::UnexpectedContinuation),
            (client_frame(0x88, &[3]), FrameError::BadClose),
            (client_frame(0x88, &[0x03, 0xED]), FrameError::BadClose),
            (
                client_frame(0x88, &[0x03, 0xE8, 0xFF]),
                FrameError::BadClose,
            ),
        ];
        for (bytes, want) in cases {
            let got = decode_all(1024, &bytes).unwrap_err();
            assert_eq!(got, want);
            assert_eq!(got.close_code(), CloseCode::PolicyViolation);
        }
        let mut two = client_frame(0x01, b"a");
        two.extend(client_frame(0x81, b"b"));
        assert_eq!(decode_all(1024, &two), Err(FrameError::UnfinishedMessage));
    }

    #[test]
    fn invalid_utf8_text_is_1007_even_across_fragments() {
        let err = decode_all(1024, &client_frame(0x81, &[0xFF, 0xFE])).unwrap_err();
        assert_eq!(err, FrameError::InvalidUtf8);
        assert_eq!(err.close_code(), CloseCode::InvalidPayload);
        // "é" split between two fragments is fine.
        let mut bytes = client_frame(0x01, &[0xC3]);
        bytes.extend(client_frame(0x80, &[0xA9]));
        assert_eq!(
            decode_all(1024, &bytes).unwrap(),
            vec![Message::Text(Bytes::from("é".as_bytes().to_vec()))]
        );
    }

    #[test]
    fn server_frames_encode_every_length_form() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut out = BytesMut::new();
            encode(OpCode::Binary, &vec![7; len], &mut out);
            assert_eq!(out.len(), header + len);
            assert_eq!(header_len(len), header);
            assert_eq!(out[0], 0x82);
        }
        let mut out = BytesMut::new();
        encode(OpCode::Text, b"hi", &mut out);
        assert_eq!(&out[..], &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn close_frames_cut_long_reasons_on_a_char_boundary() {
        let mut out = BytesMut::new();
        encode_close(4001, &"é".repeat(100), &mut out);
        assert_eq!(out[0], 0x88);
        let len = out[1] as usize;
        assert!(len <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&out[2..4], &4001u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
