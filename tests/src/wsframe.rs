//! RFC 6455 wire format for the test WebSocket client: frame encoding/decoding and the
//! handshake accept key (with a small SHA-1, RFC 3174).

use bytes::{Buf, Bytes, BytesMut};

/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest frame payload the client accepts from a server.
pub const MAX_FRAME_SIZE: usize = 64 * 1024 * 1024;

const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Bytes,
}

/// SHA-1 digest (only for `Sec-WebSocket-Accept`; not for security).
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (slot, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, hv) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&hv.to_be_bytes());
    }
    out
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub(crate) fn accept_key(key: &str) -> String {
    crate::b64::base64_encode(&sha1(format!("{key}{HANDSHAKE_GUID}").as_bytes()))
}

/// Encodes a frame; `mask` is `Some` for client→server frames.
pub(crate) fn encode_frame(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` if more bytes are needed.
pub(crate) fn parse_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let mut pos = 2;
    let len = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            u64::from(u16::from_be_bytes([buf[2], buf[3]]))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(be)
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME_SIZE as u64 {
        return Err(format!(
            "frame of {len} bytes exceeds the client limit of {MAX_FRAME_SIZE}"
        ));
    }
    let len = len as usize;
    let mask_len = if masked { 4 } else { 0 };
    if buf.len() < pos + mask_len + len {
        buf.reserve(pos + mask_len + len - buf.len());
        return Ok(None);
    }
    let mut key = [0u8; 4];
    if masked {
        key.copy_from_slice(&buf[pos..pos + 4]);
    }
    buf.advance(pos + mask_len);
    let mut payload = buf.split_to(len);
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: b0 & 0x0F,
        masked,
        payload: payload.freeze(),
    }))
}

/// Decodes a close frame payload: `None` when empty, `(code, reason)` otherwise.
pub(crate) fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, String> {
    match payload.len() {
        0 => Ok(None),
        1 => Err("close frame with a 1-byte payload".to_string()),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| "close reason is not valid UTF-8".to_string())?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc6455_frame_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(encode_frame(true, OP_TEXT, b"Hello", None), unmasked);
        // §5.7: a single-frame masked text message "Hello".
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let key = Some([0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(encode_frame(true, OP_TEXT, b"Hello", key), masked);

        let mut buf = BytesMut::from(&masked[..]);
        let frame = parse_frame(&mut buf).unwrap().unwrap();
        assert!(frame.fin && frame.masked);
        assert_eq!((frame.opcode, &frame.payload[..]), (OP_TEXT, &b"Hello"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn parses_extended_lengths_incrementally() {
        for len in [125usize, 126, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let wire = encode_frame(false, OP_BINARY, &payload, Some([1, 2, 3, 4]));
            let mut buf = BytesMut::new();
            for chunk in wire.chunks(7000) {
                assert_eq!(parse_frame(&mut buf).unwrap(), None);
                buf.extend_from_slice(chunk);
            }
            let frame = parse_frame(&mut buf).unwrap().unwrap();
            assert!(!frame.fin);
            assert_eq!(frame.payload.len(), len);
            assert_eq!(&frame.payload[..], &payload[..]);
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b"").unwrap(), None);
        assert_eq!(
            parse_close(&[0x03, 0xe9, b'b', b'y', b'e']).unwrap(),
            Some((1001, "bye".into()))
        );
        assert!(parse_close(&[0x03]).is_err());
    }
}
