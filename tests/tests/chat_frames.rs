//! GradAgenda chat, frame level (CONTRACT §5): UTF-8 JSON text frames of at most 4096
//! bytes; larger → close 1009, binary → 1003, invalid UTF-8 → 1007, not a JSON object →
//! 1008, before and after authentication, without disturbing other connections; and the
//! WebSocket heartbeat (server pings, pongs to client pings).

mod chat_common;

use std::time::Duration;

use chat_common::{
    assert_no_panic, list_action, uniq, Bystanders, ChatClient, MAX_FRAME, QUIET, SOON,
};
use murmur_tests::wsframe::{OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use murmur_tests::Node;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A JSON object of exactly `len` bytes: a listing request padded with a filler field.
fn padded_listing(cdid: &str, len: usize) -> String {
    let base =
        json!({"cdid": cdid, "type": "request-mutable-session-listing", "pad": ""}).to_string();
    assert!(base.len() <= len);
    let text = json!({"cdid": cdid, "type": "request-mutable-session-listing",
                      "pad": "x".repeat(len - base.len())})
    .to_string();
    assert_eq!(text.len(), len);
    text
}

#[actix_rt::test]
async fn frame_of_exactly_4096_bytes_is_accepted_before_and_after_auth() {
    let node = Node::start().await;
    let mut c = ChatClient::connect(&node).await;
    c.send_text(&padded_listing("edge-1", MAX_FRAME)).await;
    let reason = c.expect_failed("edge-1").await;
    assert_eq!(reason, "not authenticated");

    let user = uniq("u");
    let reply = c
        .authenticate(&user, "dev", &murmur_tests::token(&user))
        .await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    c.send_text(&padded_listing("edge-2", MAX_FRAME)).await;
    c.expect_succeeded("edge-2").await;
}

#[actix_rt::test]
async fn oversized_frames_close_with_1009() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;

    // Before authentication: one byte over the limit.
    let mut c = ChatClient::connect(&node).await;
    c.send_text(&padded_listing("big", MAX_FRAME + 1)).await;
    c.expect_close_code(1009).await;
    by.still_fine().await;

    // After authentication.
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    c.send_text(&padded_listing("big", 20_000)).await;
    c.expect_close_code(1009).await;
    by.still_fine().await;

    // Fewer than 4096 characters, but more than 4096 bytes of UTF-8.
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    let euros = "€".repeat(1400);
    assert!(euros.chars().count() < MAX_FRAME && euros.len() > MAX_FRAME);
    c.send(&json!({"cdid": "e", "type": "request-mutable-session-listing", "pad": euros}))
        .await;
    c.expect_close_code(1009).await;
    by.still_fine().await;

    // A fragmented message whose parts are small but whose whole is too large.
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    let text = padded_listing("frag", 6000);
    let (first, rest) = text.as_bytes().split_at(3000);
    c.ws.send_frame(false, OP_TEXT, first).await;
    c.ws.send_frame(true, OP_CONTINUATION, rest).await;
    c.expect_close_code(1009).await;
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn fragmented_message_within_the_limit_is_one_action() {
    let node = Node::start().await;
    let user = uniq("u");
    let mut c = ChatClient::connect(&node).await;
    let text = chat_common::auth_action("frag-auth", &user, "dev", &murmur_tests::token(&user))
        .to_string();
    let bytes = text.as_bytes();
    let third = bytes.len() / 3;
    c.ws.send_frame(false, OP_TEXT, &bytes[..third]).await;
    c.ws.send_frame(false, OP_CONTINUATION, &bytes[third..2 * third])
        .await;
    c.ws.send_frame(true, OP_CONTINUATION, &bytes[2 * third..])
        .await;
    let reply = c.expect_status("frag-auth").await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    c.send(&list_action("l")).await;
    c.expect_succeeded("l").await;
}

#[actix_rt::test]
async fn binary_frames_close_with_1003() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;

    let mut c = ChatClient::connect(&node).await;
    c.ws.send_binary(br#"{"type":"authenticate"}"#.to_vec())
        .await;
    c.expect_close_code(1003).await;
    by.still_fine().await;

    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    c.ws.send_binary(list_action("bin").to_string().into_bytes())
        .await;
    c.expect_close_code(1003).await;
    by.still_fine().await;

    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    c.ws.send_binary(Vec::new()).await;
    c.expect_close_code(1003).await;
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn invalid_utf8_closes_with_1007() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let samples: [&[u8]; 3] = [
        b"{\"type\":\"\xff\"}",
        // A UTF-16 surrogate encoded as UTF-8 (not valid UTF-8).
        b"{\"cdid\":\"\xed\xa0\x80\",\"type\":\"request-mutable-session-listing\"}",
        // Truncated multi-byte sequence at the end.
        b"{\"a\":1}\xe2\x82",
    ];
    for (i, bad) in samples.iter().enumerate() {
        let mut c = ChatClient::connect(&node).await;
        c.ws.send_frame(true, OP_TEXT, bad).await;
        let (code, reason) = c.expect_close(SOON).await;
        assert_eq!(code, 1007, "sample {i} before auth ({reason:?})");

        let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
        c.ws.send_frame(true, OP_TEXT, bad).await;
        let (code, reason) = c.expect_close(SOON).await;
        assert_eq!(code, 1007, "sample {i} after auth ({reason:?})");
        by.still_fine().await;
    }
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn frames_that_are_not_json_objects_close_with_1008() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let samples = [
        "[]",
        "1",
        "\"authenticate\"",
        "null",
        "true",
        "not json",
        "{",
        "",
        "{\"type\":\"request-mutable-session-listing\"} {}",
        "[{\"type\":\"request-mutable-session-listing\"}]",
    ];
    for sample in samples {
        let mut c = ChatClient::connect(&node).await;
        c.send_text(sample).await;
        let (code, reason) = c.expect_close(SOON).await;
        assert_eq!(code, 1008, "{sample:?} before auth ({reason:?})");

        let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
        c.send_text(sample).await;
        let (code, reason) = c.expect_close(SOON).await;
        assert_eq!(code, 1008, "{sample:?} after auth ({reason:?})");
    }
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn client_close_is_answered_with_a_close() {
    let node = Node::start().await;
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    c.ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes())
        .await;
    let (code, reason) = c.expect_close(SOON).await;
    assert_eq!(code, 1000, "answer to a client close ({reason:?})");
    // Another connection works as before.
    let mut d = ChatClient::login(&node, &uniq("u"), "dev").await;
    d.send(&list_action("after")).await;
    d.expect_succeeded("after").await;
}

// ---- heartbeat, with a raw socket (the harness client swallows pings and pongs) ------------

/// A bare RFC 6455 client: the fixed handshake key of RFC 6455 §1.3 (whose accept value is
/// known), masked client frames, and every server frame surfaced, control frames included.
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    async fn connect(node: &Node) -> RawWs {
        let mut stream = TcpStream::connect(node.public_addr()).await.unwrap();
        let req = format!(
            "GET /chat HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            node.public_addr()
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = murmur_tests::within("chat handshake", SOON, async {
            loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return p + 4;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed during the handshake");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        buf.drain(..head_end);
        RawWs { stream, buf }
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126);
        let mask = [0x11u8, 0x22, 0x33, 0x44];
        let mut wire = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        wire.extend_from_slice(&mask);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&wire).await.unwrap();
    }

    /// The next server frame `(opcode, payload)`.
    async fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let b1 = self.buf[1];
                assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
                let (len, pos) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut be = [0u8; 8];
                        be.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(be) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= pos + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[pos..pos + len].to_vec();
                    self.buf.drain(..pos + len);
                    return (opcode, payload);
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed while waiting for a frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[actix_rt::test]
async fn heartbeat_server_pings_and_answers_pings() {
    let node = Node::start().await;
    let mut raw = RawWs::connect(&node).await;
    // The server pings on its own (the gateway's heartbeat interval is 20 s; the first
    // ping goes out when the connection starts).
    let (opcode, payload) =
        murmur_tests::within("a ping from the server", Duration::from_secs(25), async {
            loop {
                let (op, p) = raw.next().await;
                if op == OP_PING {
                    return (op, p);
                }
            }
        })
        .await;
    assert_eq!(opcode, OP_PING);
    raw.send(OP_PONG, &payload).await;

    // A client ping is answered with a pong echoing its payload.
    raw.send(OP_PING, b"hb-1").await;
    let pong = murmur_tests::within("the pong for hb-1", SOON, async {
        loop {
            let (op, p) = raw.next().await;
            if op == OP_PONG {
                return p;
            }
        }
    })
    .await;
    assert_eq!(pong, b"hb-1");

    // Pings do not count as actions: the connection is still unauthenticated and usable.
    let user = uniq("u");
    let auth = chat_common::auth_action("hb-auth", &user, "dev", &murmur_tests::token(&user));
    raw.send_text_long(&auth.to_string()).await;
    let reply = murmur_tests::within("the auth answer", SOON, async {
        loop {
            let (op, p) = raw.next().await;
            if op == OP_TEXT {
                return serde_json::from_slice::<serde_json::Value>(&p).unwrap();
            }
        }
    })
    .await;
    assert_eq!(reply["cdid"], "hb-auth", "{reply}");
    assert_eq!(reply["status"], "succeeded", "{reply}");
}

impl RawWs {
    /// A masked text frame of any length below 64 KiB.
    async fn send_text_long(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5au8, 0x01, 0x7f, 0x33];
        let mut wire = vec![0x80 | OP_TEXT];
        if payload.len() < 126 {
            wire.push(0x80 | payload.len() as u8);
        } else {
            wire.push(0x80 | 126);
            wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        wire.extend_from_slice(&mask);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&wire).await.unwrap();
    }
}

#[actix_rt::test]
async fn a_client_ping_between_actions_changes_nothing() {
    let node = Node::start().await;
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    c.ws.send_ping(b"x").await;
    c.send(&list_action("p1")).await;
    c.expect_succeeded("p1").await;
    c.assert_quiet(QUIET).await;
}
