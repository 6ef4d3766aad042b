//! Sink wire codec, byte-compatible with SparkMeter's reference implementation
//! (ORIGINS.md, Sink). Pure functions: [`decode`] never panics, whatever the bytes.
//!
//! Byte 0's high nibble is the frame type. CONNECTION_REQUEST's low nibble is the
//! protocol version and CONNECTION_RESPONSE's the code; types 3–7 use a 2-byte header
//! `type:4 | message_id:12`. Integers in payloads are unsigned LEB128 (at most 10
//! bytes, fitting u64); `chunk(x) = LEB128 len ‖ x`. Over TCP every frame is preceded by
//! its length as 2 big-endian bytes ([`FrameReader`], [`prefixed`]).

use std::fmt;

/// Largest frame (the 2-byte length prefix's range).
pub const MAX_FRAME: usize = 65_535;
/// Message ids are 12 bits.
pub const MAX_MESSAGE_ID: u16 = 0x0fff;
/// NACK machine code: the frame could not be decoded (the broker's, docs/errors.md).
pub const NACK_MALFORMED: u8 = 0x01;
/// NACK machine code: the event could not be stored now; send it again later.
pub const NACK_UNAVAILABLE: u8 = 0x02;

const T_CONN_REQUEST: u8 = 0;
const T_CONN_RESPONSE: u8 = 1;
const T_ACK: u8 = 3;
const T_PUBLISH: u8 = 4;
const T_PING: u8 = 5;
const T_PONG: u8 = 6;
const T_NACK: u8 = 7;

/// One event, identified by `(event_type_id, key, offset)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    pub event_type_id: u64,
    pub schema_version: u64,
    pub key: Vec<u8>,
    pub offset: u64,
    /// Unix seconds in the reference's examples.
    pub timestamp: u64,
    pub data: Vec<u8>,
}

/// The server's answer to a connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionResponse {
    /// 0: both sides are who the other expects.
    Connected,
    /// 1: accepted as a new client; carries the **server's** instance id.
    HelloNewClient(u32),
    /// 2: the instance ids do not match (closes).
    InstanceIdMismatch,
    /// 3: quarantined (closes): machine-readable and human-readable messages.
    Quarantined { machine: Vec<u8>, human: String },
    /// 4: protocol version not supported (closes).
    UnsupportedProtocolVersion,
    /// 5: application version not supported (closes).
    UnsupportedApplicationVersion,
}

impl ConnectionResponse {
    pub fn code(&self) -> u8 {
        match self {
            ConnectionResponse::Connected => 0,
            ConnectionResponse::HelloNewClient(_) => 1,
            ConnectionResponse::InstanceIdMismatch => 2,
            ConnectionResponse::Quarantined { .. } => 3,
            ConnectionResponse::UnsupportedProtocolVersion => 4,
            ConnectionResponse::UnsupportedApplicationVersion => 5,
        }
    }
}

/// One Sink frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `version` is the low nibble; only version 0's payload is parsed (others are
    /// answered "unsupported protocol version" and need no fields).
    ConnectionRequest {
        version: u8,
        application_version: String,
        client_instance_id: u32,
        server_instance_id: Option<u32>,
    },
    ConnectionResponse(ConnectionResponse),
    Ack {
        id: u16,
    },
    Publish {
        id: u16,
        event: Event,
    },
    Ping,
    Pong,
    Nack {
        id: u16,
        machine: Vec<u8>,
        human: String,
    },
}

/// Why bytes are not a frame. `id` is set when the header named a message id (so a
/// malformed PUBLISH can be NACKed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub id: Option<u16>,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for DecodeError {}

fn err(id: Option<u16>, reason: &'static str) -> DecodeError {
    DecodeError { id, reason }
}

/// Reads an unsigned LEB128 integer; `None` if truncated or wider than u64.
pub fn read_leb128(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        if i == 9 && part > 1 {
            return None; // would overflow u64
        }
        value |= part << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends an unsigned LEB128 integer.
pub fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A cursor over a frame's payload.
struct Reader<'a> {
    buf: &'a [u8],
    id: Option<u16>,
}

impl<'a> Reader<'a> {
    fn leb(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let (v, n) = read_leb128(self.buf).ok_or(err(self.id, what))?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    fn chunk(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.leb(what)?;
        let len = usize::try_from(len).map_err(|_| err(self.id, what))?;
        if len > self.buf.len() {
            return Err(err(self.id, what));
        }
        let (chunk, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(chunk)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(err(self.id, what));
        }
        let (b, rest) = self.buf.split_at(4);
        self.buf = rest;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Decodes one frame (without the TCP length prefix).
pub fn decode(frame: &[u8]) -> Result<Frame, DecodeError> {
    let Some(&b0) = frame.first() else {
        return Err(err(None, "empty frame"));
    };
    if frame.len() > MAX_FRAME {
        return Err(err(None, "frame longer than 65535 bytes"));
    }
    let kind = b0 >> 4;
    let low = b0 & 0x0f;
    match kind {
        T_CONN_REQUEST => {
            if low != 0 {
                return Ok(Frame::ConnectionRequest {
                    version: low,
                    application_version: String::new(),
                    client_instance_id: 0,
                    server_instance_id: None,
                });
            }
            let mut r = Reader {
                buf: &frame[1..],
                id: None,
            };
            let app = r.chunk("truncated application version")?;
            let application_version = String::from_utf8(app.to_vec())
                .map_err(|_| err(None, "application version is not UTF-8"))?;
            let client_instance_id = r.u32("truncated client instance id")?;
            let server_instance_id = match r.buf.len() {
                0 => None,
                4 => Some(r.u32("truncated server instance id")?),
                _ => return Err(err(None, "trailing bytes in connection request")),
            };
            Ok(Frame::ConnectionRequest {
                version: 0,
                application_version,
                client_instance_id,
                server_instance_id,
            })
        }
        T_CONN_RESPONSE => {
            let mut r = Reader {
                buf: &frame[1..],
                id: None,
            };
            let resp = match low {
                0 => ConnectionResponse::Connected,
                1 => ConnectionResponse::HelloNewClient(r.u32("truncated server instance id")?),
                2 => ConnectionResponse::InstanceIdMismatch,
                3 => {
                    let machine = r.chunk("truncated machine message")?.to_vec();
                    let human = String::from_utf8_lossy(r.rest()).into_owned();
                    return Ok(Frame::ConnectionResponse(ConnectionResponse::Quarantined {
                        machine,
                        human,
                    }));
                }
                4 => ConnectionResponse::UnsupportedProtocolVersion,
                5 => ConnectionResponse::UnsupportedApplicationVersion,
                _ => return Err(err(None, "unknown connection response code")),
            };
            if !r.buf.is_empty() {
                return Err(err(None, "trailing bytes in connection response"));
            }
            Ok(Frame::ConnectionResponse(resp))
        }
        T_ACK | T_PUBLISH | T_PING | T_PONG | T_NACK => {
            if frame.len() < 2 {
                return Err(err(None, "truncated header"));
            }
            let id = (u16::from(low) << 8) | u16::from(frame[1]);
            let mut r = Reader {
                buf: &frame[2..],
                id: Some(id),
            };
            match kind {
                T_ACK | T_PING | T_PONG => {
                    if !r.buf.is_empty() {
                        return Err(err(Some(id), "trailing bytes"));
                    }
                    Ok(match kind {
                        T_ACK => Frame::Ack { id },
                        T_PING => Frame::Ping,
                        _ => Frame::Pong,
                    })
                }
                T_PUBLISH => {
                    let event_type_id = r.leb("bad event_type_id")?;
                    let schema_version = r.leb("bad schema_version")?;
                    let key = r.chunk("bad key")?.to_vec();
                    let offset = r.leb("bad offset")?;
                    let timestamp = r.leb("bad timestamp")?;
                    let data = r.chunk("bad event_data")?.to_vec();
                    if !r.buf.is_empty() {
                        return Err(err(Some(id), "trailing bytes after event_data"));
                    }
                    Ok(Frame::Publish {
                        id,
                        event: Event {
                            event_type_id,
                            schema_version,
                            key,
                            offset,
                            timestamp,
                            data,
                        },
                    })
                }
                _ => {
                    let machine = r.chunk("bad machine message")?.to_vec();
                    let human = String::from_utf8_lossy(r.rest()).into_owned();
                    Ok(Frame::Nack { id, machine, human })
                }
            }
        }
        _ => Err(err(None, "unknown frame type")),
    }
}

fn header(kind: u8, id: u16, out: &mut Vec<u8>) {
    let id = id & MAX_MESSAGE_ID;
    out.push((kind << 4) | (id >> 8) as u8);
    out.push((id & 0xff) as u8);
}

fn chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    write_leb128(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes one frame (without the TCP length prefix).
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    match frame {
        Frame::ConnectionRequest {
            version,
            application_version,
            client_instance_id,
            server_instance_id,
        } => {
            out.push(version & 0x0f);
            chunk(&mut out, application_version.as_bytes());
            out.extend_from_slice(&client_instance_id.to_be_bytes());
            if let Some(s) = server_instance_id {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        Frame::ConnectionResponse(resp) => {
            out.push((T_CONN_RESPONSE << 4) | resp.code());
            match resp {
                ConnectionResponse::HelloNewClient(id) => out.extend_from_slice(&id.to_be_bytes()),
                ConnectionResponse::Quarantined { machine, human } => {
                    chunk(&mut out, machine);
                    out.extend_from_slice(human.as_bytes());
                }
                _ => {}
            }
        }
        Frame::Ack { id } => header(T_ACK, *id, &mut out),
        Frame::Ping => header(T_PING, 0, &mut out),
        Frame::Pong => header(T_PONG, 0, &mut out),
        Frame::Publish { id, event } => {
            header(T_PUBLISH, *id, &mut out);
            write_leb128(&mut out, event.event_type_id);
            write_leb128(&mut out, event.schema_version);
            chunk(&mut out, &event.key);
            write_leb128(&mut out, event.offset);
            write_leb128(&mut out, event.timestamp);
            chunk(&mut out, &event.data);
        }
        Frame::Nack { id, machine, human } => {
            header(T_NACK, *id, &mut out);
            chunk(&mut out, machine);
            out.extend_from_slice(human.as_bytes());
        }
    }
    out
}

/// A frame with its 2-byte big-endian length prefix (TCP); `None` if over 65535 bytes.
pub fn prefixed(frame: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(frame.len()).ok()?;
    let mut out = Vec::with_capacity(frame.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    Some(out)
}

/// Splits a TCP byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered. A zero-length frame is returned as
    /// an empty vector (for the caller to reject).
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if self.buf.len() < 2 + len {
            return None;
        }
        let frame = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(frame)
    }

    /// Bytes buffered but not yet a whole frame (at most one frame's worth + 2).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The next message id after `id` (12-bit wrap 4095 → 0).
pub fn next_id(id: u16) -> u16 {
    (id + 1) & MAX_MESSAGE_ID
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn round_trip(frame: Frame, bytes: &str) {
        assert_eq!(encode(&frame), hex(bytes), "encode {frame:?}");
        assert_eq!(decode(&hex(bytes)), Ok(frame), "decode {bytes}");
    }

    #[test]
    fn reference_vectors_byte_for_byte() {
        round_trip(
            Frame::ConnectionRequest {
                version: 0,
                application_version: "v1.0.0".into(),
                client_instance_id: 1,
                server_instance_id: Some(2),
            },
            "00 06 76 31 2e 30 2e 30 00 00 00 01 00 00 00 02",
        );
        round_trip(
            Frame::ConnectionRequest {
                version: 0,
                application_version: "v1.0.0".into(),
                client_instance_id: 1,
                server_instance_id: None,
            },
            "00 06 76 31 2e 30 2e 30 00 00 00 01",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::Connected),
            "10",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::HelloNewClient(4_294_967_295)),
            "11 ff ff ff ff",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::InstanceIdMismatch),
            "12",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::UnsupportedProtocolVersion),
            "14",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::UnsupportedApplicationVersion),
            "15",
        );
        round_trip(
            Frame::ConnectionResponse(ConnectionResponse::Quarantined {
                machine: vec![1, 2],
                human: "maintenance".into(),
            }),
            "13 02 01 02 6d 61 69 6e 74 65 6e 61 6e 63 65",
        );
        round_trip(Frame::Ack { id: 0 }, "30 00");
        round_trip(Frame::Ack { id: 4095 }, "3f ff");
        round_trip(Frame::Ping, "50 00");
        round_trip(Frame::Pong, "60 00");
        round_trip(
            Frame::Publish {
                id: 4095,
                event: Event {
                    event_type_id: 1,
                    schema_version: 6,
                    key: vec![2, 3],
                    offset: 4,
                    timestamp: 1_618_150_125,
                    data: vec![5],
                },
            },
            "4f ff 01 06 02 02 03 04 ed 85 cc 83 06 01 05",
        );
        round_trip(
            Frame::Nack {
                id: 291,
                machine: vec![0x01, 0xf4],
                human: "bad".into(),
            },
            "71 23 02 01 f4 62 61 64",
        );
        assert_eq!(prefixed(&encode(&Frame::Ping)), Some(hex("00 02 50 00")));
    }

    #[test]
    fn leb128_edges() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_leb128(&mut out, v);
            assert_eq!(read_leb128(&out), Some((v, out.len())));
        }
        assert_eq!(read_leb128(&[0x80]), None, "truncated");
        assert_eq!(read_leb128(&[]), None);
        assert_eq!(read_leb128(&[0xff; 10]), None, "10-byte overflow");
        assert_eq!(
            read_leb128(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]),
            None
        );
        assert_eq!(read_leb128(&[0xff; 11]), None);
        let mut max = Vec::new();
        write_leb128(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x20, 0x00], // type 2 unused
            vec![0x80, 0x00], // types 8–15 unknown
            vec![0xf0],
            vec![0x30],                               // truncated header
            vec![0x30, 0x00, 0x01],                   // ack with trailing bytes
            vec![0x00],                               // truncated request
            vec![0x00, 0x05, b'a'],                   // app version chunk too short
            vec![0x00, 0x01, b'a', 0, 0],             // truncated client id
            vec![0x00, 0x01, b'a', 0, 0, 0, 1, 0, 0], // half a server id
            vec![0x00, 0x01, 0xff, 0, 0, 0, 1],       // app version not UTF-8
            vec![0x11, 0xff],                         // truncated hello
            vec![0x16],                               // unknown response code
            vec![0x10, 0x00],                         // trailing bytes
            vec![0x13, 0x05, 0x01],                   // truncated machine message
            vec![0x70, 0x01],                         // nack without machine chunk
        ];
        for c in &cases {
            assert!(decode(c).is_err(), "{c:02x?}");
        }
        // A malformed PUBLISH still tells which message id to NACK.
        let e = decode(&hex("4a bc 01 06 05 02")).unwrap_err();
        assert_eq!(e.id, Some(0xabc));
        let mut overflow = hex("40 07");
        overflow.extend([0xff; 10]);
        assert_eq!(decode(&overflow).unwrap_err().id, Some(7));
        let trailing = hex("4f ff 01 06 02 02 03 04 ed 85 cc 83 06 01 05 00");
        assert!(decode(&trailing).is_err());
        // Other protocol versions are recognised without parsing their payload.
        assert!(matches!(
            decode(&[0x03, 0xff]),
            Ok(Frame::ConnectionRequest { version: 3, .. })
        ));
        assert!(decode(&vec![0u8; MAX_FRAME + 1]).is_err());
    }

    #[test]
    fn every_byte_pattern_of_short_frames_decodes_without_panic() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = decode(&[a, b]);
                let _ = decode(&[a, b, 0x80, 0x01]);
            }
        }
    }

    #[test]
    fn the_stream_reader_splits_frames() {
        let mut r = FrameReader::new();
        let mut stream = prefixed(&encode(&Frame::Ping)).unwrap();
        stream.extend(prefixed(&encode(&Frame::Ack { id: 7 })).unwrap());
        stream.extend([0x00, 0x00]); // a zero-length frame
        r.extend(&stream[..3]);
        assert_eq!(r.next_frame(), None);
        r.extend(&stream[3..]);
        assert_eq!(r.next_frame(), Some(encode(&Frame::Ping)));
        assert_eq!(r.next_frame(), Some(encode(&Frame::Ack { id: 7 })));
        assert_eq!(r.next_frame(), Some(vec![]));
        assert_eq!(r.next_frame(), None);
        assert_eq!(r.buffered(), 0);
        assert_eq!(prefixed(&vec![0; MAX_FRAME + 1]), None);
    }

    #[test]
    fn ids_wrap_at_twelve_bits() {
        assert_eq!(next_id(4094), 4095);
        assert_eq!(next_id(4095), 0);
        assert_eq!(
            encode(&Frame::Ack { id: 0x1fff }),
            hex("3f ff"),
            "ids are masked"
        );
    }
}
