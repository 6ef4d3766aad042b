//! Helios-Starling input validation (CONTRACT §4): malformed messages get
//! `INVALID_MESSAGE_FORMAT` (as an error response when a `requestId` can be read, else as
//! a top-level `type:"error"` message), the connection stays usable, and the 1 MiB limit.

mod common;

use common::{
    assert_base, assert_error_response, assert_success, assert_top_level_error, now_ms, ping,
    raw_request, uuid, SOON,
};
use murmur_tests::wsframe::{OP_BINARY, OP_CONTINUATION, OP_TEXT};
use murmur_tests::{Node, Starling, WsEvent};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

/// Sends `text` and returns the next message from the server (asserting it is JSON text).
async fn send_and_read(s: &mut Starling, text: &str) -> Value {
    s.ws().send_text(text).await;
    s.ws().recv_json().await
}

/// Text without a readable requestId → the next message is a top-level error, and the
/// connection still answers a ping.
async fn expect_top_level(s: &mut Starling, text: &str) {
    let msg = send_and_read(s, text).await;
    assert_top_level_error(&msg);
    ping(s).await;
}

/// A request carrying a valid `requestId` but broken otherwise → the next message is an
/// `INVALID_MESSAGE_FORMAT` error response to that id; the connection stays usable.
async fn expect_error_response(s: &mut Starling, msg: &Value, what: &str) {
    let id = msg["requestId"].as_str().unwrap().to_string();
    let resp = send_and_read(s, &msg.to_string()).await;
    assert_eq!(
        resp["type"], "response",
        "{what}: expected an error response, got {resp}"
    );
    assert_error_response(&resp, &id, "INVALID_MESSAGE_FORMAT");
    ping(s).await;
}

/// A request with `field` set to `value` (or removed when `value` is `None`).
fn request_with(field: &str, value: Option<Value>) -> Value {
    let mut msg = raw_request(&uuid(), "math:add");
    match value {
        Some(v) => msg[field] = v,
        None => {
            msg.as_object_mut().unwrap().remove(field);
        }
    }
    msg
}

/// Invalid and truncated JSON, and JSON that is not an object, get a top-level error.
#[actix_rt::test]
async fn invalid_json_gets_a_top_level_error() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let valid = raw_request(&uuid(), "system:ping").to_string();
    let truncated = &valid[..valid.len() / 2];
    for text in [
        "{not json",
        truncated,
        "",
        "[]",
        "42",
        "\"a string\"",
        "null",
        "{}",
    ] {
        expect_top_level(&mut s, text).await;
    }
}

/// A requestId that is not a UUID (or not a string) cannot be echoed: top-level error.
#[actix_rt::test]
async fn unreadable_request_id_gets_a_top_level_error() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    for bad in [
        json!("not-a-uuid"),
        json!("12345678-1234-1234-1234-1234567890"),
        json!(""),
        json!(42),
        json!(null),
        json!({ "id": uuid() }),
    ] {
        let msg = request_with("requestId", Some(bad));
        expect_top_level(&mut s, &msg.to_string()).await;
    }
    let msg = request_with("requestId", None);
    expect_top_level(&mut s, &msg.to_string()).await;
}

/// An unknown or missing `type` without a requestId gets a top-level error; with a
/// readable requestId it gets an error response to that id.
#[actix_rt::test]
async fn unknown_type_is_rejected() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    for t in [
        Some(json!("bogus")),
        Some(json!("error")),
        Some(json!(1)),
        None,
    ] {
        let mut msg = request_with("type", t.clone());
        msg.as_object_mut().unwrap().remove("requestId");
        expect_top_level(&mut s, &msg.to_string()).await;
        let with_id = request_with("type", t);
        expect_error_response(&mut s, &with_id, "unknown type with a requestId").await;
    }
}

/// Broken base fields (protocol, version, timestamp) and wrongly typed fields of a
/// request with a valid requestId: error response to that id.
#[actix_rt::test]
async fn bad_base_fields_get_an_error_response() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("protocol", None),
        ("protocol", Some(json!("helios"))),
        ("protocol", Some(json!(1))),
        ("version", None),
        ("version", Some(json!("1.0"))),
        ("version", Some(json!("v1.0.0"))),
        ("version", Some(json!("1.0.0-beta"))),
        ("version", Some(json!("1..0"))),
        ("version", Some(json!(1))),
        ("timestamp", None),
        ("timestamp", Some(json!("1700000000000"))),
        ("timestamp", Some(json!(-1))),
        ("timestamp", Some(json!(null))),
        ("method", None),
        ("method", Some(json!(42))),
        ("method", Some(json!(["math:add"]))),
        ("timeoutMs", Some(json!(0))),
        ("timeoutMs", Some(json!(-5))),
        ("timeoutMs", Some(json!("300"))),
        ("timeoutMs", Some(json!(1.5))),
        ("~timing", Some(json!("soon"))),
    ];
    for (field, value) in cases {
        let what = format!("{field} = {value:?}");
        let msg = request_with(field, value);
        expect_error_response(&mut s, &msg, &what).await;
    }
}

/// Method names outside `^[a-zA-Z][a-zA-Z0-9_]*(:[a-zA-Z][a-zA-Z0-9_]*)+$`, 3..=128
/// characters, are rejected with an error response; the boundaries are accepted.
#[actix_rt::test]
async fn bad_method_names_are_rejected() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let too_long = format!("a:{}", "b".repeat(127));
    assert_eq!(too_long.len(), 129);
    for method in [
        "a:",
        "ab",
        too_long.as_str(),
        "1math:add",
        "_math:add",
        ":math",
        "mathadd",
        "math:add-one",
        "math:add one",
        "math.add",
        "math:ädd",
        "math::add",
        "math:add:",
        "math:1add",
        "math:_add",
        "",
    ] {
        let msg = raw_request(&uuid(), method);
        expect_error_response(&mut s, &msg, &format!("method {method:?}")).await;
    }

    // Valid at the boundaries: routed, and with no provider the answer is METHOD_NOT_FOUND.
    let longest = format!("a:{}", "b".repeat(126));
    assert_eq!(longest.len(), 128);
    for method in ["a:b", longest.as_str(), "Math_2:add_1:deep", "x:Y9"] {
        let id = s.send_request(method, json!({})).await;
        let resp = s.wait_response(&id, SOON).await;
        assert_error_response(&resp, &id, "METHOD_NOT_FOUND");
    }
}

/// Malformed responses and notifications from the client are rejected the same way
/// (error response when the requestId is readable, else top-level error); a valid
/// client notification is accepted silently (no answer at all).
#[actix_rt::test]
async fn malformed_responses_and_notifications_are_rejected() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let base = |kind: &str| {
        json!({ "protocol": "helios-starling", "version": "1.0.0",
                "timestamp": now_ms(), "type": kind })
    };
    let mut bad_success = base("response");
    bad_success["requestId"] = json!(uuid());
    bad_success["success"] = json!("yes");
    expect_error_response(&mut s, &bad_success, "success not a boolean").await;
    let mut no_error = base("response");
    no_error["requestId"] = json!(uuid());
    no_error["success"] = json!(false);
    expect_error_response(&mut s, &no_error, "failed response without error").await;

    let mut not_object = base("notification");
    not_object["notification"] = json!("text");
    expect_top_level(&mut s, &not_object.to_string()).await;
    let missing = base("notification");
    expect_top_level(&mut s, &missing.to_string()).await;

    // A well-formed notification is not answered: the next message is the ping's.
    let mut fine = base("notification");
    fine["requestId"] = json!(null);
    fine["notification"] = json!({ "topic": "client:hello", "data": { "x": 1 } });
    s.ws().send_json(&fine).await;
    let id = uuid();
    s.ws().send_json(&raw_request(&id, "system:ping")).await;
    let next = s.ws().recv_json().await;
    assert_success(&next, &id);
}

/// Unknown extra fields are ignored: a ping with extras is answered normally.
#[actix_rt::test]
async fn unknown_fields_are_ignored() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let id = uuid();
    let mut msg = raw_request(&id, "system:ping");
    msg["extra"] = json!({ "nested": [1, 2, 3] });
    msg["x-custom"] = json!("yes");
    let resp = send_and_read(&mut s, &msg.to_string()).await;
    assert_success(&resp, &id);
}

/// A binary frame gets a top-level error and the connection stays open.
#[actix_rt::test]
async fn binary_frame_gets_a_top_level_error() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let json = raw_request(&uuid(), "system:ping").to_string();
    s.ws().send_binary(json.into_bytes()).await;
    let msg = s.ws().recv_json().await;
    assert_top_level_error(&msg);
    ping(&mut s).await;
    s.ws()
        .send_frame(true, OP_BINARY, &[0xff, 0x00, 0x13])
        .await;
    let msg = s.ws().recv_json().await;
    assert_top_level_error(&msg);
    ping(&mut s).await;
}

/// A message of exactly 1 MiB (a `broker:publish` with big data) is accepted; a
/// subscriber receives the data intact.
#[actix_rt::test]
async fn message_of_one_mib_is_accepted() {
    let node = Node::start().await;
    let mut publisher = Starling::connect(&node, "alice").await;
    let mut subscriber = Starling::connect(&node, "bob").await;
    let channel = common::uniq("big-");
    common::subscribe(&mut subscriber, &channel).await;

    let id = uuid();
    let mut msg = raw_request(&id, "broker:publish");
    msg["payload"] = json!({ "channel": channel, "data": "" });
    let overhead = msg.to_string().len();
    let data = "x".repeat(MIB - overhead);
    msg["payload"]["data"] = json!(data);
    let text = msg.to_string();
    assert_eq!(text.len(), MIB);

    publisher.ws().send_text(&text).await;
    let resp = publisher.wait_response(&id, SOON).await;
    assert_success(&resp, &id);
    let got = common::expect_notification(&mut subscriber, &channel).await;
    assert_eq!(got.as_str().map(str::len), Some(data.len()));
    assert!(got == json!(data), "data must arrive intact");
}

/// A single frame larger than 1 MiB closes the connection with 1009.
#[actix_rt::test]
async fn frame_larger_than_one_mib_closes_1009() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let id = uuid();
    let mut msg = raw_request(&id, "broker:publish");
    msg["payload"] = json!({ "channel": "big", "data": "" });
    let overhead = msg.to_string().len();
    msg["payload"]["data"] = json!("x".repeat(MIB + 1 - overhead));
    let text = msg.to_string();
    assert_eq!(text.len(), MIB + 1);
    // The server may close before it has read the whole frame; a failed write is fine.
    let _ = s.ws().try_send_frame(true, OP_TEXT, text.as_bytes()).await;
    let close = s.ws().expect_close().await;
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(1009),
        "{close:?}"
    );
}

/// A message larger than 1 MiB sent in fragments (each small enough) closes with 1009.
#[actix_rt::test]
async fn fragmented_message_larger_than_one_mib_closes_1009() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let half = vec![b'x'; MIB / 2 + 1];
    let _ = s.ws().try_send_frame(false, OP_TEXT, &half).await;
    let _ = s.ws().try_send_frame(true, OP_CONTINUATION, &half).await;
    let close = s.ws().expect_close().await;
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(1009),
        "{close:?}"
    );
}

/// A message sent in several fragments within the limit is reassembled and served.
#[actix_rt::test]
async fn fragmented_message_is_reassembled() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    let id = uuid();
    let text = raw_request(&id, "system:ping").to_string();
    let (a, rest) = text.as_bytes().split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    s.ws().send_frame(false, OP_TEXT, a).await;
    s.ws().send_frame(false, OP_CONTINUATION, b).await;
    s.ws().send_frame(true, OP_CONTINUATION, c).await;
    let resp = s.ws().recv_json().await;
    assert_success(&resp, &id);
}

/// A text frame that is not valid UTF-8 fails the connection with 1007 (RFC 6455 §8.1,
/// §7.4.1; the gateway's close-code catalogue: 1007 = "a text frame that is not valid
/// UTF-8").
#[actix_rt::test]
async fn invalid_utf8_text_closes_1007() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    s.ws()
        .send_frame(true, OP_TEXT, &[b'{', 0xff, 0xfe, b'}'])
        .await;
    let close = s.ws().expect_close().await;
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(1007),
        "{close:?}"
    );
}

/// Invalid messages do not end the session: after a burst of garbage, the connection
/// still serves requests, and nothing else was sent in between (one answer per input).
#[actix_rt::test]
async fn one_answer_per_invalid_message() {
    let node = Node::start().await;
    let mut s = Starling::connect(&node, "alice").await;
    for text in ["{", "[1]", "{\"type\":\"request\"}"] {
        s.ws().send_text(text).await;
    }
    for _ in 0..3 {
        let msg = s.ws().recv_json().await;
        assert_top_level_error(&msg);
    }
    let id = uuid();
    let ping = json!({
        "protocol": "helios-starling",
        "version": "1.0.0",
        "timestamp": now_ms(),
        "type": "request",
        "requestId": id,
        "method": "system:ping",
    });
    s.ws().send_json(&ping).await;
    let resp = s.ws().recv_json().await;
    assert_base(&resp);
    assert_success(&resp, &id);
    assert_eq!(s.ws().try_recv(common::QUIET).await, None::<WsEvent>);
}
