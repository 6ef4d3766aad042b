//! GradAgenda chat multimedia messages (the seed's "future updates", docs/chat.md
//! "Message types"): `image`, `audio`, `video`, `file` and `location` messages are
//! broadcast and kept in history exactly as sent, on one node and across nodes; a
//! malformed or unknown one is `failed` with its reason and reaches nobody; the
//! 4096-byte frame limit still holds.

mod chat_common;

use chat_common::{has_cdid, kind, now_ms, uniq, ChatClient, CROSS, QUIET};
use murmur_tests::{Cluster, Node};
use serde_json::{json, Value};

fn image(caption: &str) -> Value {
    json!({"type": "image", "body": {"url": "https://cdn.example.com/p/1.jpg?sig=ab%20c",
        "mime": "image/jpeg", "size": 482113, "width": 1280, "height": 960,
        "thumbnail": "/9j/4AAQSkZJRgABAQ==", "caption": caption}})
}

fn send(cdid: &str, session: &str, message: &Value) -> Value {
    json!({"cdid": cdid, "type": "request-sending-a-message", "session-id": session,
           "message": message, "sender-timestamp": now_ms()})
}

/// Sends `message` and returns the sender's copy of its broadcast.
async fn sent(c: &mut ChatClient, session: &str, message: &Value) -> Value {
    let cdid = c.cdid("media");
    c.send(&send(&cdid, session, message)).await;
    let v = c.expect("the own copy", |v| has_cdid(v, &cdid)).await;
    assert_eq!(kind(&v), "message-broadcast", "{}: {v}", c.label);
    assert_eq!(v["message"], *message, "passed through as sent: {v}");
    v
}

/// The broadcast of `message` as another device receives it.
async fn received(c: &mut ChatClient, session: &str, message: &Value) -> Value {
    let v = c
        .expect_within("the media broadcast", CROSS, |v| {
            kind(v) == "message-broadcast" && v["session-id"] == session
        })
        .await;
    assert_eq!(v["message"], *message, "{}: received as sent: {v}", c.label);
    v
}

/// Sends `message`, expects `failed` with exactly `reason`, and checks that `other`
/// received no broadcast (barrier after the quiet window).
async fn refused(
    c: &mut ChatClient,
    other: &mut ChatClient,
    session: &str,
    message: Value,
    reason: &str,
) {
    let cdid = c.cdid("bad");
    c.send(&send(&cdid, session, &message)).await;
    assert_eq!(c.expect_failed(&cdid).await, reason, "{message}");
    other
        .assert_none("a broadcast of a refused message", QUIET, |v| {
            kind(v) == "message-broadcast"
        })
        .await;
}

#[actix_rt::test]
async fn every_media_type_is_broadcast_and_kept_as_sent() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "a").await;
    let mut b = ChatClient::login(&node, &bob, "b").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect_within("the created group", CROSS, |v| {
        v["session-id"] == sid.as_str()
    })
    .await;

    let messages = [
        image("sunset"),
        json!({"type": "audio", "body": {"url": "https://cdn.example.com/v.ogg",
            "mime": "audio/ogg", "size": 20480, "duration-ms": 4200}}),
        json!({"type": "video", "body": {"url": "https://cdn.example.com/v.mp4",
            "mime": "video/mp4", "size": 9_000_000, "duration-ms": 61000, "width": 720,
            "height": 1280}}),
        json!({"type": "file", "body": {"url": "https://files.example.com/r",
            "mime": "application/pdf", "size": 3141, "name": "report.pdf"}}),
        json!({"type": "location", "body": {"latitude": 48.8809, "longitude": 2.3553,
            "accuracy-m": 15, "name": "Gare du Nord"}}),
    ];
    for m in &messages {
        sent(&mut a, &sid, m).await;
        received(&mut b, &sid, m).await;
    }
    let history = b.history(&sid, None, None).await;
    let kept: Vec<&Value> = history.iter().map(|v| &v["message"]).collect();
    assert_eq!(
        kept,
        messages.iter().collect::<Vec<_>>(),
        "history keeps them as sent"
    );
}

#[actix_rt::test]
async fn malformed_or_unknown_messages_are_refused_and_reach_nobody() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "a").await;
    let mut b = ChatClient::login(&node, &bob, "b").await;
    let sid = a.direct_id(&bob).await;

    let mut http = image("x");
    http["body"]["url"] = json!("http://cdn.example.com/1.jpg");
    refused(&mut a, &mut b, &sid, http, "`body.url` must use https").await;
    let mut script = image("x");
    script["body"]["url"] = json!("javascript:alert(1)");
    refused(
        &mut a,
        &mut b,
        &sid,
        script,
        "`body.url` must be an absolute URL",
    )
    .await;
    refused(
        &mut a,
        &mut b,
        &sid,
        json!({"type": "sticker", "body": "cat"}),
        "unknown message type \"sticker\" (known: text, image, audio, video, file, location)",
    )
    .await;
    let mut mime = image("x");
    mime["body"]["mime"] = json!("application/x-msdownload");
    refused(
        &mut a,
        &mut b,
        &sid,
        mime,
        "`body.mime` of a `image` message must be image/…",
    )
    .await;
    let mut huge = image("x");
    huge["body"]["size"] = json!(-5);
    refused(
        &mut a,
        &mut b,
        &sid,
        huge,
        "`body.size` must be an integer in 1..=9007199254740991",
    )
    .await;
    refused(
        &mut a,
        &mut b,
        &sid,
        json!({"type": "location", "body": {"latitude": 91, "longitude": 0}}),
        "`body.latitude` must be a number in -90..=90",
    )
    .await;

    // Each field within its own limit and the request itself a frame of 4060 bytes, but
    // its broadcast (sender, message id, server timestamp added) over 4096.
    let mut big = image(&"c".repeat(1024));
    big["body"]["thumbnail"] = json!("A".repeat(2048));
    let frame_len = |m: &Value| send("bad-7", &sid, m).to_string().len();
    let url = |n: usize| json!(format!("https://cdn.example.com/{}", "u".repeat(n)));
    big["body"]["url"] = url(0);
    big["body"]["url"] = url(4060 - frame_len(&big));
    assert_eq!(frame_len(&big), 4060);
    refused(
        &mut a,
        &mut b,
        &sid,
        big,
        "message too large for a broadcast frame",
    )
    .await;

    // The connection is still fine: a valid image goes through.
    let ok = image("fine");
    sent(&mut a, &sid, &ok).await;
    received(&mut b, &sid, &ok).await;
}

#[actix_rt::test]
async fn media_messages_cross_nodes() {
    let cluster = Cluster::start(3).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let mut b = ChatClient::login(cluster.node(2), &bob, "b").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect_within("the created group", CROSS, |v| {
        v["session-id"] == sid.as_str()
    })
    .await;
    let m = image("across");
    let own = sent(&mut a, &sid, &m).await;
    let theirs = received(&mut b, &sid, &m).await;
    assert_eq!(own["message-id"], theirs["message-id"], "{own} / {theirs}");
}
