//! The NATS client protocol over WebSocket (nats-server's `websocket { }` listener):
//! the server opens with `INFO {…}`; the client sends
//! `CONNECT {"verbose":false,"pedantic":false,"protocol":1}` (plus `auth_token` when the
//! server wants one) and `PING`, answered `PONG` (or `-ERR '…'` and a close). Then
//! `SUB <subject> <sid>`, `PUB <subject> <#bytes>\r\n<payload>`, deliveries
//! `MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n`, and the heartbeat: server
//! `PING` → client `PONG`.
//!
//! The WebSocket framing is independent of the protocol's: nats-server writes whatever
//! its outbound buffer holds as one binary frame, so a frame may carry several protocol
//! messages and a message may be split over frames. [`Parser`] keeps the unfinished tail
//! between frames.

use std::time::Duration;

use futures_util::StreamExt;
use memchr::memchr;
use serde_json::Value;

use super::ws::{self, classify, Incoming, Ws};
use crate::net::Sources;

const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest protocol line accepted (nats-server's own `max_control_line` for clients
/// is 4 KiB; an `INFO` listing many cluster URLs can be longer).
pub const MAX_LINE: usize = 64 * 1024;

/// The answer to a server `PING`.
pub const PONG: &str = "PONG\r\n";

/// `ws://host:port/` for a base URL (`http://`, `ws://`).
pub fn url(base: &str) -> String {
    let base = ws::ws_base(base);
    let has_path = base
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path {
        base
    } else {
        format!("{base}/")
    }
}

/// The `CONNECT` line; `token` (when not empty) goes in `auth_token`.
pub fn connect_line(token: &str) -> String {
    if token.is_empty() {
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n".into()
    } else {
        format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"auth_token\":{}}}\r\n",
            Value::from(token)
        )
    }
}

/// `SUB <subject> <sid>`.
pub fn sub(subject: &str, sid: u64) -> String {
    format!("SUB {subject} {sid}\r\n")
}

/// `PUB <subject> <#bytes>` and the payload.
pub fn publish(subject: &str, payload: &str) -> String {
    let mut s = String::with_capacity(subject.len() + payload.len() + 16);
    s.push_str("PUB ");
    s.push_str(subject);
    s.push(' ');
    s.push_str(&payload.len().to_string());
    s.push_str("\r\n");
    s.push_str(payload);
    s.push_str("\r\n");
    s
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The header block of an `HMSG` (empty for `MSG`).
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// One server protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// `INFO` and its JSON.
    Info(&'a [u8]),
    Msg(Msg<'a>),
    Ping,
    Pong,
    Ok,
    /// `-ERR` and its text, quotes removed.
    Err(&'a [u8]),
}

/// Incremental parser of the server's byte stream.
#[derive(Debug, Default)]
pub struct Parser {
    /// The unfinished tail of what was fed so far.
    buf: Vec<u8>,
}

impl Parser {
    /// Feeds bytes and calls `f` with every complete message, in order. The tail of an
    /// unfinished message is kept for the next call. A protocol error resets the
    /// parser (the stream cannot be resynchronised; the caller should give up on it).
    pub fn feed(&mut self, data: &[u8], mut f: impl FnMut(Op<'_>)) -> Result<(), String> {
        let r = if self.buf.is_empty() {
            // The common case: whole messages in one frame, no copy.
            parse_all(data, &mut f).map(|used| self.buf.extend_from_slice(&data[used..]))
        } else {
            self.buf.extend_from_slice(data);
            parse_all(&self.buf, &mut f).map(|used| {
                self.buf.drain(..used);
            })
        };
        if r.is_err() {
            self.buf.clear();
        }
        r
    }

    /// Bytes of an unfinished message held back.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn parse_all(b: &[u8], f: &mut impl FnMut(Op<'_>)) -> Result<usize, String> {
    let mut at = 0;
    while let Some((op, used)) = parse_one(&b[at..])? {
        f(op);
        at += used;
    }
    Ok(at)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()
}

fn number(b: &[u8], line: &[u8]) -> Result<usize, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad size in {:?}", lossy(line)))
}

/// One message at the start of `b` and the bytes it used; `None` if incomplete.
fn parse_one(b: &[u8]) -> Result<Option<(Op<'_>, usize)>, String> {
    let Some(nl) = memchr(b'\n', b) else {
        if b.len() > MAX_LINE {
            return Err(format!(
                "no line end within {MAX_LINE} bytes: {:?}",
                lossy(b)
            ));
        }
        return Ok(None);
    };
    let line = b[..nl].strip_suffix(b"\r").unwrap_or(&b[..nl]);
    let after = nl + 1;
    let (name, rest) = match line.iter().position(|c| *c == b' ' || *c == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let op = if is(b"MSG") || is(b"HMSG") {
        return parse_msg(b, line, rest, name.len() == 4, after);
    } else if is(b"PING") {
        Op::Ping
    } else if is(b"PONG") {
        Op::Pong
    } else if is(b"+OK") {
        Op::Ok
    } else if is(b"-ERR") {
        let t = rest.trim_ascii();
        let t = t
            .strip_prefix(b"'")
            .and_then(|t| t.strip_suffix(b"'"))
            .unwrap_or(t);
        Op::Err(t)
    } else if is(b"INFO") {
        Op::Info(rest.trim_ascii())
    } else {
        return Err(format!("unknown protocol line {:?}", lossy(line)));
    };
    Ok(Some((op, after)))
}

/// `[H]MSG <subject> <sid> [reply-to] [<#header bytes>] <#total bytes>` (`line`, whose
/// arguments are `rest`), its payload starting at `after`; `None` while the payload is
/// incomplete.
fn parse_msg<'a>(
    b: &'a [u8],
    line: &'a [u8],
    rest: &'a [u8],
    hmsg: bool,
    after: usize,
) -> Result<Option<(Op<'a>, usize)>, String> {
    let mut args: [&[u8]; 5] = [&[]; 5];
    let mut n = 0;
    for a in rest
        .split(|c| *c == b' ' || *c == b'\t')
        .filter(|a| !a.is_empty())
    {
        if n == args.len() {
            return Err(format!("bad MSG line {:?}", lossy(line)));
        }
        args[n] = a;
        n += 1;
    }
    let (subject, sid, reply, hdr, total) = match (hmsg, n) {
        (false, 3) => (args[0], args[1], None, 0, number(args[2], line)?),
        (false, 4) => (args[0], args[1], Some(args[2]), 0, number(args[3], line)?),
        (true, 4) => (
            args[0],
            args[1],
            None,
            number(args[2], line)?,
            number(args[3], line)?,
        ),
        (true, 5) => (
            args[0],
            args[1],
            Some(args[2]),
            number(args[3], line)?,
            number(args[4], line)?,
        ),
        _ => return Err(format!("bad MSG line {:?}", lossy(line))),
    };
    if hdr > total {
        return Err(format!("header size over total in {:?}", lossy(line)));
    }
    let end = after + total;
    if b.len() < end + 2 {
        return Ok(None);
    }
    if &b[end..end + 2] != b"\r\n" {
        return Err(format!("payload of {:?} not followed by CRLF", lossy(line)));
    }
    let msg = Msg {
        subject,
        sid,
        reply,
        headers: &b[after..after + hdr],
        payload: &b[after + hdr..end],
    };
    Ok(Some((Op::Msg(msg), end + 2)))
}

/// A connected, accepted client: its socket, the parser holding what followed the last
/// setup answer, and the server's `INFO`.
pub struct Conn {
    pub ws: Ws,
    pub parser: Parser,
    pub info: Value,
}

/// Reads frames until `want` returns `Some` for an op, within the setup timeout;
/// server PINGs are answered. Other ops of the same frame are dropped (nothing is
/// published during setup).
async fn read_until<T>(
    ws: &mut Ws,
    parser: &mut Parser,
    what: &str,
    mut want: impl FnMut(&Op<'_>) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let work = async {
        loop {
            let data = match classify(ws.next().await) {
                Incoming::Text(t) => bytes::Bytes::from(t),
                Incoming::Binary(b) => b,
                Incoming::Other => continue,
                Incoming::Closed(why) => return Err(format!("{what}: {why}")),
            };
            let mut found = None;
            let mut pongs = 0;
            parser
                .feed(&data, |op| {
                    if op == Op::Ping {
                        pongs += 1;
                    }
                    if found.is_none() {
                        found = want(&op);
                    }
                })
                .map_err(|e| format!("{what}: {e}"))?;
            if pongs > 0 {
                ws::send_text(ws, PONG.repeat(pongs)).await?;
            }
            if let Some(r) = found {
                return r;
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, work)
        .await
        .map_err(|_| format!("{what}: no answer within {SETUP_TIMEOUT:?}"))?
}

fn refused(what: &str, op: &Op<'_>) -> Option<String> {
    match op {
        Op::Err(e) => Some(format!("{what}: -ERR {}", lossy(e))),
        _ => None,
    }
}

/// Connects: waits for `INFO`, sends `CONNECT` and `PING`, waits for the `PONG`.
pub async fn connect(base: &str, token: &str, sources: &Sources) -> Result<Conn, String> {
    let mut ws = ws::connect(&url(base), sources).await?;
    let mut parser = Parser::default();
    let info = read_until(&mut ws, &mut parser, "nats INFO", |op| match op {
        Op::Info(j) => Some(serde_json::from_slice(j).map_err(|e| format!("nats INFO: {e}"))),
        other => refused("nats INFO", other).map(Err),
    })
    .await?;
    ws::send_text(&mut ws, format!("{}PING\r\n", connect_line(token))).await?;
    read_until(&mut ws, &mut parser, "nats CONNECT", |op| match op {
        Op::Pong => Some(Ok(())),
        other => refused("nats CONNECT", other).map(Err),
    })
    .await?;
    Ok(Conn { ws, parser, info })
}

/// `SUB` then `PING`; resolves when the `PONG` shows the server has the subscription.
pub async fn subscribe(c: &mut Conn, subject: &str, sid: u64) -> Result<(), String> {
    ws::send_text(&mut c.ws, format!("{}PING\r\n", sub(subject, sid))).await?;
    read_until(&mut c.ws, &mut c.parser, "nats SUB", |op| match op {
        Op::Pong => Some(Ok(())),
        other => refused("nats SUB", other).map(Err),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every op of `chunks` fed one after the other, as owned debug strings.
    fn ops(p: &mut Parser, chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |op| {
                out.push(match op {
                    Op::Msg(m) => format!(
                        "MSG {} {} {} [{}] {}",
                        String::from_utf8_lossy(m.subject),
                        String::from_utf8_lossy(m.sid),
                        m.reply
                            .map_or("-".into(), |r| String::from_utf8_lossy(r).into_owned()),
                        String::from_utf8_lossy(m.headers),
                        String::from_utf8_lossy(m.payload)
                    ),
                    Op::Info(j) => format!("INFO {}", String::from_utf8_lossy(j)),
                    Op::Err(e) => format!("ERR {}", String::from_utf8_lossy(e)),
                    other => format!("{other:?}"),
                })
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn several_messages_in_one_frame() {
        let mut p = Parser::default();
        let frame = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n+OK\r\nMSG a.b 1 5\r\nhello\r\nPING\r\nMSG a.b 1 0\r\n\r\nPONG\r\n";
        assert_eq!(
            ops(&mut p, &[frame]),
            [
                "INFO {\"server_id\":\"x\",\"max_payload\":1048576}",
                "Ok",
                "MSG a.b 1 - [] hello",
                "Ping",
                "MSG a.b 1 - [] ",
                "Pong"
            ]
        );
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn messages_split_across_frames() {
        let whole = b"MSG g.1 7 11\r\n{\"__lt\":42}\r\nMSG g.1 7 3\r\nabc\r\nPING\r\n";
        // Every split point, and one byte per frame.
        for cut in 1..whole.len() {
            let mut p = Parser::default();
            let got = ops(&mut p, &[&whole[..cut], &whole[cut..]]);
            assert_eq!(
                got,
                ["MSG g.1 7 - [] {\"__lt\":42}", "MSG g.1 7 - [] abc", "Ping"],
                "cut at {cut}"
            );
            assert_eq!(p.pending(), 0);
        }
        let mut p = Parser::default();
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(ops(&mut p, &bytes).len(), 3);
        // A payload that holds CRLF and a PING-looking line is taken by its size.
        let mut p = Parser::default();
        assert_eq!(
            ops(&mut p, &[b"MSG s 1 8\r\nPI\r\nNG\r\n\r\n"]),
            ["MSG s 1 - [] PI\r\nNG\r\n"]
        );
    }

    #[test]
    fn msg_with_reply_subject_and_hmsg() {
        let mut p = Parser::default();
        assert_eq!(
            ops(&mut p, &[b"MSG req.x 12 _INBOX.abc 2\r\nhi\r\n"]),
            ["MSG req.x 12 _INBOX.abc [] hi"]
        );
        let h = b"NATS/1.0\r\nA: b\r\n\r\n";
        let mut frame = format!("HMSG s 3 r.1 {} {}\r\n", h.len(), h.len() + 4).into_bytes();
        frame.extend_from_slice(h);
        frame.extend_from_slice(b"body\r\nhmsg s 3 12 12\r\nNATS/1.0\r\n\r\n\r\n");
        let got = ops(&mut p, &[&frame]);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("MSG s 3 r.1 [NATS/1.0"), "{got:?}");
        assert!(got[0].ends_with("] body"), "{got:?}");
        assert_eq!(got[1], "MSG s 3 - [NATS/1.0\r\n\r\n] ");
    }

    #[test]
    fn ping_err_and_case() {
        let mut p = Parser::default();
        assert_eq!(
            ops(
                &mut p,
                &[b"ping\r\n-ERR 'Authorization Violation'\r\n-ERR 'Slow Consumer'\r\n"]
            ),
            ["Ping", "ERR Authorization Violation", "ERR Slow Consumer"]
        );
        // A bare LF is accepted too.
        assert_eq!(ops(&mut p, &[b"PING\n"]), ["Ping"]);
    }

    #[test]
    fn protocol_errors() {
        let mut p = Parser::default();
        assert!(p.feed(b"WHAT\r\n", |_| {}).is_err());
        assert_eq!(p.pending(), 0, "an error resets the parser");
        assert!(p.feed(b"MSG a 1 x\r\n", |_| {}).is_err());
        assert!(p.feed(b"MSG a\r\n", |_| {}).is_err());
        assert!(p.feed(b"MSG a 1 2\r\nabcd\r\n", |_| {}).is_err());
        assert!(p.feed(&[b'x'; MAX_LINE + 1], |_| {}).is_err());
        // An incomplete line is not an error.
        assert!(p.feed(b"MSG a 1 5\r\nhel", |_| {}).is_ok());
        assert_eq!(p.pending(), 14);
    }

    #[test]
    fn client_lines() {
        assert_eq!(
            connect_line(""),
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n"
        );
        let c = connect_line("t\"k");
        let json: Value = serde_json::from_str(
            c.strip_prefix("CONNECT ")
                .and_then(|c| c.strip_suffix("\r\n"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["auth_token"], "t\"k");
        assert_eq!(json["protocol"], 1);
        assert_eq!(sub("g.1", 3), "SUB g.1 3\r\n");
        assert_eq!(publish("g.1", "{\"a\":1}"), "PUB g.1 7\r\n{\"a\":1}\r\n");
        assert_eq!(url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/");
        assert_eq!(url("ws://h:1/x"), "ws://h:1/x");
    }

    #[test]
    fn a_published_message_parses_back() {
        let payload = crate::payload::json(77, 1, 10);
        let out = publish("s", &payload);
        let delivered = out.replacen("PUB s", "MSG s 9", 1);
        let mut p = Parser::default();
        let mut seen = None;
        p.feed(delivered.as_bytes(), |op| {
            if let Op::Msg(m) = op {
                seen = crate::payload::Scanner::default().first(m.payload);
            }
        })
        .unwrap();
        assert_eq!(seen, Some(77));
    }
}
