//! Sink events on one node (CONTRACT §6): device PUBLISH → ACK after acceptance and a
//! publication on `sink/<client>`; duplicates; malformed payloads; the device outbox
//! (offsets, ACK removes, redelivery after reconnect, NACK list, the in-flight window of
//! 32, `~timing`); the operations API's validation; metrics.

mod sink_common;

use std::time::{Duration, Instant};

use murmur_tests::{api_get, api_post, api_request, eventually, metrics, request, Method};
use serde_json::{json, Value};
use sink_common::*;

/// Asserts `got` (a PUBLISH to the device) carries the event queued with `body` and
/// `offset`.
fn assert_outbox_event(got: &Event, body: &Value, offset: u64) {
    assert_eq!(got.event_type_id, body["event_type_id"].as_u64().unwrap());
    assert_eq!(got.schema_version, body["schema_version"].as_u64().unwrap());
    assert_eq!(got.key, unb64(&body["key"]), "key decoded from base64");
    assert_eq!(
        got.data,
        unb64(&body["event_data"]),
        "event_data decoded from base64"
    );
    assert_eq!(got.offset, offset, "offset");
    match body["timestamp"].as_u64() {
        Some(ts) => assert_eq!(got.timestamp, ts),
        None => assert!(
            got.timestamp.abs_diff(now_secs()) <= 60,
            "timestamp defaults to now (Unix seconds): {}",
            got.timestamp
        ),
    }
}

#[actix_rt::test]
async fn a_device_publish_is_acked_with_its_id_and_published_on_its_channel() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    let client = dev_id(c);
    let mut watcher = watch(&node, &client).await;
    // A subscriber of another device's channel hears nothing.
    let mut bystander = watch(&node, &dev_id(c.wrapping_add(1))).await;

    let events: Vec<(u16, Event)> = [4094u16, 4095, 0, 1]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let e = Event {
                event_type_id: 7,
                schema_version: 2,
                key: vec![0, 1, 2, i as u8],
                offset: 100 + i as u64,
                timestamp: 1_700_000_000 + i as u64,
                data: format!("reading {i}").into_bytes(),
            };
            (*id, e)
        })
        .collect();
    for (id, e) in &events {
        d.send(&publish(*id, e)).await;
        d.expect_ack(*id).await;
        let data = next_event(&mut watcher, &client, SOON).await;
        assert_published(&data, &client, e);
    }
    // Empty key and data are fine.
    let empty = event(1, b"", 0, b"");
    d.send(&publish(9, &empty)).await;
    d.expect_ack(9).await;
    let data = next_event(&mut watcher, &client, SOON).await;
    assert_eq!(data["key"], "", "{data}");
    assert_eq!(data["event_data"], "", "{data}");

    // Pipelined: ten PUBLISHes in one write, ten ACKs in order.
    let mut batch = Vec::new();
    let mut sent = Vec::new();
    for i in 0..10u16 {
        let e = event(8, b"pipe", u64::from(i), &[i as u8]);
        batch.extend(prefixed(&encode(&publish(200 + i, &e))).unwrap());
        sent.push(e);
    }
    d.send_raw(&batch).await;
    for i in 0..10u16 {
        d.expect_ack(200 + i).await;
    }
    for e in &sent {
        let data = next_event(&mut watcher, &client, SOON).await;
        assert_published(&data, &client, e);
    }
    expect_no_event(&mut watcher).await;
    expect_no_event(&mut bystander).await;
    assert_eq!(sink_events(&node, "in", "accepted").await, 15.0);
}

#[actix_rt::test]
async fn duplicates_are_acked_but_published_once() {
    let node = dev_node().await;
    let (mut d, c, s) = dev_device(&node).await;
    let client = dev_id(c);
    let mut watcher = watch(&node, &client).await;

    let e = event(5, b"meter", 42, b"first");
    d.send(&publish(1, &e)).await;
    d.expect_ack(1).await;
    assert_published(&next_event(&mut watcher, &client, SOON).await, &client, &e);

    // Same (event_type_id, key, offset), another message id, other data and time: ACKed
    // (the device must stop resending), not published again.
    let mut again = e.clone();
    again.data = b"second".to_vec();
    again.timestamp += 10;
    d.send(&publish(2, &again)).await;
    d.expect_ack(2).await;
    expect_no_event(&mut watcher).await;

    // Also after a reconnect (the reference resends unacked events then).
    d.close().await;
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    d.send(&publish(3, &e)).await;
    d.expect_ack(3).await;
    expect_no_event(&mut watcher).await;

    // Any part of the identity differing makes a new event.
    let variants = [
        event(6, b"meter", 42, b"other type"),
        event(5, b"meteR", 42, b"other key"),
        event(5, b"meter", 43, b"other offset"),
    ];
    for (i, v) in variants.iter().enumerate() {
        d.send(&publish(10 + i as u16, v)).await;
        d.expect_ack(10 + i as u16).await;
        assert_published(&next_event(&mut watcher, &client, SOON).await, &client, v);
    }
    expect_no_event(&mut watcher).await;
    assert_eq!(sink_events(&node, "in", "accepted").await, 4.0);
    assert_eq!(sink_events(&node, "in", "duplicate").await, 2.0);
}

#[actix_rt::test]
async fn a_malformed_publish_is_nacked_and_the_connection_stays_usable() {
    let node = dev_node().await;
    let (mut d, c, _) = dev_device(&node).await;
    let mut watcher = watch(&node, &dev_id(c)).await;
    // event_data chunk claims 9 bytes, 1 present.
    d.send_bytes(&hex("44 56 01 06 02 02 03 04 ed 85 cc 83 06 09 05"))
        .await;
    match d.recv().await {
        Frame::Nack { id, machine, human } => {
            assert_eq!(id, 0x456);
            assert_eq!(machine, vec![0x01], "machine code 01 = malformed");
            assert!(!human.is_empty(), "a human message");
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    d.ping().await;
    let e = event(1, b"k", 1, b"fine");
    d.send(&publish(0x457, &e)).await;
    d.expect_ack(0x457).await;
    assert_published(
        &next_event(&mut watcher, &dev_id(c), SOON).await,
        &dev_id(c),
        &e,
    );
    expect_no_event(&mut watcher).await;
}

#[actix_rt::test]
async fn the_outbox_delivers_removes_on_ack_and_redelivers_after_a_reconnect() {
    let node = dev_node().await;
    let c = rand_u32();
    let client = dev_id(c);

    // Queued while the device is away; offsets assigned per key when absent.
    let bodies = [
        api_event(3, 1, b"k", b"one"),
        api_event(3, 1, b"k", b"two"),
        json!({"event_type_id": 4, "schema_version": 2, "key": b64(b"k"),
               "event_data": b64(&[0, 255, 10]), "timestamp": 1_650_000_000u64}),
    ];
    let mut seqs = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let r = queue(&node, &client, body.clone()).await;
        assert_eq!(r["client"], client.as_str(), "{r}");
        assert_eq!(r["offset"], i as u64 + 1, "offset per key: {r}");
        seqs.push(r["seq"].as_u64().unwrap_or_else(|| panic!("seq: {r}")));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Another key counts from 1; an explicit offset is kept.
    let other_key = api_event(3, 1, b"other", b"x");
    assert_eq!(queue(&node, &client, other_key.clone()).await["offset"], 1);
    let mut explicit = api_event(3, 1, b"k", b"explicit");
    explicit["offset"] = json!(77);
    assert_eq!(queue(&node, &client, explicit.clone()).await["offset"], 77);
    assert_eq!(outbox_depth(&node, &client).await, 5);
    assert_eq!(client_info(&node, &client).await["quarantined"], false);

    let mut d = Device::tcp(node.sink_addr()).await;
    let s = d.hello_new(c).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(d.expect_publish().await);
    }
    d.expect_silence().await;
    assert_outbox_event(&got[0].1, &bodies[0], 1);
    assert_outbox_event(&got[1].1, &bodies[1], 2);
    assert_outbox_event(&got[2].1, &bodies[2], 3);
    assert_outbox_event(&got[3].1, &other_key, 1);
    assert_outbox_event(&got[4].1, &explicit, 77);
    // Message ids increase by one (12-bit wrap) from a starting value.
    for w in got.windows(2) {
        assert_eq!(w[1].0, (w[0].0 + 1) & 0x0fff, "consecutive message ids");
    }

    // ACK all but the second; the ACKs are processed before the PONG.
    for i in [0usize, 2, 3, 4] {
        d.send(&Frame::Ack { id: got[i].0 }).await;
    }
    d.ping().await;
    assert_eq!(outbox_depth(&node, &client).await, 1);
    d.close().await;

    // Reconnect: only the unacked event comes again.
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    let (id, e) = d.expect_publish().await;
    assert_eq!(e, got[1].1, "the unacked event, unchanged");
    d.expect_silence().await;
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    assert_eq!(outbox_depth(&node, &client).await, 0);

    // Queued while connected: delivered at once.
    let live = api_event(9, 1, b"live", b"now");
    queue(&node, &client, live.clone()).await;
    let (id, e) = d.expect_publish().await;
    assert_outbox_event(&e, &live, 1);
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    d.close().await;

    // Nothing is left to redeliver.
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    d.expect_silence().await;
    assert_eq!(outbox_depth(&node, &client).await, 0);
}

#[actix_rt::test]
async fn a_nacked_event_moves_to_the_nack_list_and_is_not_redelivered() {
    let node = dev_node().await;
    let (mut d, c, s) = dev_device(&node).await;
    let client = dev_id(c);
    assert!(nacks(&node, &client).await.is_empty());

    let refused = json!({"event_type_id": 12, "schema_version": 9, "key": b64(b"cfg"),
                         "event_data": b64(b"\x01\x02"), "timestamp": 1_600_000_000u64});
    let fine = api_event(12, 1, b"cfg", b"ok");
    let r1 = queue(&node, &client, refused.clone()).await;
    queue(&node, &client, fine.clone()).await;
    let (id1, e1) = d.expect_publish().await;
    let (id2, _) = d.expect_publish().await;
    assert_outbox_event(&e1, &refused, 1);

    d.send(&Frame::Nack {
        id: id1,
        machine: vec![0x13, 0x37],
        human: "schema 9 unknown".into(),
    })
    .await;
    d.send(&Frame::Ack { id: id2 }).await;
    d.ping().await;

    let list = nacks(&node, &client).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let n = &list[0];
    let mut expected_event = event_json(&e1);
    expected_event["seq"] = r1["seq"].clone();
    assert_eq!(n["event"], expected_event, "{n}");
    assert_eq!(n["machine_message"], b64(&[0x13, 0x37]), "{n}");
    assert_eq!(n["human_message"], "schema 9 unknown", "{n}");
    let nacked_ms = n["nacked_ms"].as_u64().unwrap_or_else(|| panic!("{n}"));
    assert!(nacked_ms.abs_diff(now_secs() * 1000) < 60_000, "{n}");
    assert_eq!(outbox_depth(&node, &client).await, 0);

    // Neither is delivered again.
    d.close().await;
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    d.expect_silence().await;

    // NACKs with an empty human message, newest last.
    queue(&node, &client, api_event(1, 1, b"z", b"z")).await;
    let (id, _) = d.expect_publish().await;
    d.send(&Frame::Nack {
        id,
        machine: vec![],
        human: String::new(),
    })
    .await;
    d.ping().await;
    let list = nacks(&node, &client).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[1]["machine_message"], "", "{list:?}");
    assert_eq!(list[1]["human_message"], "", "{list:?}");
    assert_eq!(list[1]["event"]["key"], b64(b"z"));
}

#[actix_rt::test]
async fn at_most_32_publishes_await_an_ack() {
    let node = dev_node().await;
    let c = rand_u32();
    let client = dev_id(c);
    for i in 0..100u8 {
        queue(&node, &client, api_event(1, 1, b"w", &[i])).await;
    }
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_new(c).await;

    let mut inflight = Vec::new();
    for _ in 0..32 {
        inflight.push(d.expect_publish().await);
    }
    d.expect_silence().await;

    // One ACK frees one slot: exactly one more.
    let (id, first) = inflight.remove(0);
    assert_eq!(first.offset, 1);
    d.send(&Frame::Ack { id }).await;
    inflight.push(d.expect_publish().await);
    d.expect_silence().await;
    // A NACK frees a slot too.
    let (id, _) = inflight.remove(0);
    d.send(&Frame::Nack {
        id,
        machine: vec![1],
        human: "no".into(),
    })
    .await;
    inflight.push(d.expect_publish().await);
    d.expect_silence().await;
    assert_eq!(inflight.len(), 32);

    // ACK as they come: all 100, in offset order, never more than 32 outstanding.
    let mut offsets: Vec<u64> = vec![1, 2];
    while let Some((id, e)) = (!inflight.is_empty()).then(|| inflight.remove(0)) {
        offsets.push(e.offset);
        d.send(&Frame::Ack { id }).await;
        if offsets.len() + inflight.len() < 100 {
            inflight.push(d.expect_publish().await);
        }
        assert!(inflight.len() <= 32);
    }
    d.expect_silence().await;
    assert_eq!(offsets, (1..=100).collect::<Vec<u64>>());
    assert_eq!(outbox_depth(&node, &client).await, 0);
    assert_eq!(nacks(&node, &client).await.len(), 1);
}

#[actix_rt::test]
async fn outbox_events_honour_timing() {
    let node = dev_node().await;
    let c = rand_u32();
    let client = dev_id(c);
    let now = murmur_tests::helios::now_ms() as i64;

    // Already expired on arrival: refused, not queued.
    let mut past = api_event(1, 1, b"t", b"late");
    past["~timing"] = json!({"expires_time": murmur_shared::timing::format(now - 60_000)});
    let (status, body) = api_post(
        &node,
        &format!("/api/v1/sink/clients/{client}/events"),
        past,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "EXPIRED", "{body}");
    // Malformed ~timing: 400.
    let mut bad = api_event(1, 1, b"t", b"bad");
    bad["~timing"] = json!({"expires_time": "yesterday-ish"});
    let (status, body) =
        api_post(&node, &format!("/api/v1/sink/clients/{client}/events"), bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(outbox_depth(&node, &client).await, 0);

    // Expires while waiting in the outbox: dropped, never delivered; the next one is.
    let expires_at = now + 1_000;
    let mut short = api_event(1, 1, b"t", b"short-lived");
    short["~timing"] = json!({"expires_time": murmur_shared::timing::format(expires_at)});
    queue(&node, &client, short).await;
    let keep = api_event(1, 1, b"t", b"kept");
    queue(&node, &client, keep.clone()).await;
    eventually("the expires_time to pass", SOON, || async {
        (murmur_tests::helios::now_ms() as i64 > expires_at + 50).then_some(())
    })
    .await;
    let mut d = Device::tcp(node.sink_addr()).await;
    let s = d.hello_new(c).await;
    let (id, e) = d.expect_publish().await;
    assert_outbox_event(&e, &keep, 2);
    d.expect_silence().await;
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    assert_eq!(outbox_depth(&node, &client).await, 0);
    assert_eq!(
        metric(
            &node,
            "murmur_timing_total",
            &[("protocol", "sink"), ("event", "expired")]
        )
        .await,
        1.0
    );

    // delay_milli: held, then delivered.
    let mut held = api_event(1, 1, b"h", b"held");
    held["~timing"] = json!({"delay_milli": 700});
    let start = Instant::now();
    let r = queue(&node, &client, held.clone()).await;
    assert!(r["deliverAt"].is_string(), "{r}");
    let (id, e) = d.expect_publish().await;
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "held for delay_milli: {:?}",
        start.elapsed()
    );
    assert_outbox_event(&e, &held, 1);
    d.send(&Frame::Ack { id }).await;
    d.ping().await;
    d.close().await;
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    d.expect_silence().await;
}

#[actix_rt::test]
async fn the_sink_api_validates_its_input() {
    let node = dev_node().await;
    let path = |client: &str| format!("/api/v1/sink/clients/{client}/events");
    let ok = api_event(1, 1, b"k", b"d");

    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            path("c1"),
            json!({"event_type_id": 1, "schema_version": 1, "key": "not base64!",
                            "event_data": ""}),
            400,
            "BAD_REQUEST",
        ),
        (
            path("c1"),
            json!({"event_type_id": 1, "schema_version": 1, "key": "",
                            "event_data": "%%%"}),
            400,
            "BAD_REQUEST",
        ),
        (
            path("c1"),
            json!({"schema_version": 1, "key": "", "event_data": ""}),
            400,
            "BAD_REQUEST",
        ),
        (
            path("c1"),
            json!({"event_type_id": -1, "schema_version": 1, "key": "",
                            "event_data": ""}),
            400,
            "BAD_REQUEST",
        ),
        (path("c%20d"), ok.clone(), 400, "BAD_REQUEST"),
        (path(&"x".repeat(129)), ok.clone(), 400, "BAD_REQUEST"),
        (
            path("c1"),
            json!({"event_type_id": 1, "schema_version": 1, "key": "",
                            "event_data": b64(&vec![0u8; 65_535])}),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            path("c1"),
            {
                let mut b = ok.clone();
                b["~timing"] = json!("soon");
                b
            },
            400,
            "BAD_REQUEST",
        ),
    ];
    for (p, body, status, code) in cases {
        let (got, reply) = api_post(&node, &p, body.clone()).await;
        assert_eq!(got, status, "POST {p} {body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert!(reply["error"]["message"].is_string(), "{reply}");
    }

    // The largest event that fits one frame is accepted.
    let data_len = 65_535 - 64 - 1;
    let big = json!({"event_type_id": 1, "schema_version": 1, "key": b64(b"k"),
                     "event_data": b64(&vec![7u8; data_len])});
    queue(&node, "c1", big).await;

    // Quarantine input.
    let q = "/api/v1/sink/quarantine/c1";
    let bad_b64 = json!({"machine_message": "***", "human_message": "x"});
    let (status, reply) = api_request(&node, Method::PUT, q, Some(&bad_b64)).await;
    assert_eq!(status, 400, "{reply}");
    let huge = json!({"machine_message": "", "human_message": "x".repeat(5000)});
    let (status, reply) = api_request(&node, Method::PUT, q, Some(&huge)).await;
    assert_eq!(status, 413, "{reply}");
    let no_human = json!({"machine_message": b64(&[1])});
    let (status, reply) = api_request(&node, Method::PUT, q, Some(&no_human)).await;
    assert_eq!(status, 200, "human_message defaults to empty: {reply}");
    assert_eq!(client_info(&node, "c1").await["quarantined"], true);

    // GET shapes.
    let info = client_info(&node, "c1").await;
    assert_eq!(
        info,
        json!({"client": "c1", "outbox_depth": 1, "quarantined": true})
    );
    let (status, reply) = api_get(&node, "/api/v1/sink/clients/nobody/nacks").await;
    assert_eq!(
        (status, reply),
        (200, json!({"client": "nobody", "nacks": []}))
    );

    // Without the API key: 401.
    let url = format!("{}{}", node.internal_url(), path("c1"));
    let reply = request(Method::POST, &url, &[], Some(&ok)).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let url = format!("{}{q}", node.internal_url());
    let reply = request(Method::DELETE, &url, &[], None).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
}

/// Sum of `murmur_sink_events_total` series whose outcome mentions `word`.
fn sink_events_matching(text: &str, word: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("murmur_sink_events_total{") && l.contains(word))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

#[actix_rt::test]
async fn metrics_count_sink_connections_and_events() {
    let node = dev_node().await;
    assert_eq!(sink_connections(&node).await, 0.0);
    let (mut d, c, s) = dev_device(&node).await;
    let client = dev_id(c);
    eventually("one sink connection", SOON, || async {
        (sink_connections(&node).await == 1.0).then_some(())
    })
    .await;

    d.send(&publish(1, &event(1, b"k", 1, b"a"))).await;
    d.expect_ack(1).await;
    d.send(&publish(2, &event(1, b"k", 1, b"a"))).await;
    d.expect_ack(2).await;
    d.send_bytes(&hex("40 03 80")).await;
    let _ = d.recv().await;
    queue(&node, &client, api_event(1, 1, b"o", b"1")).await;
    queue(&node, &client, api_event(1, 1, b"o", b"2")).await;
    let (a, _) = d.expect_publish().await;
    let (b, _) = d.expect_publish().await;
    d.send(&Frame::Ack { id: a }).await;
    d.send(&Frame::Nack {
        id: b,
        machine: vec![],
        human: String::new(),
    })
    .await;
    d.ping().await;
    d.close().await;

    let mut again = Device::tcp(node.sink_addr()).await;
    again.hello_known(c, s).await;
    again.ping().await;
    again.close().await;

    eventually("no sink connection", SOON, || async {
        (sink_connections(&node).await == 0.0).then_some(())
    })
    .await;
    let expect = [
        ("in", "accepted", 1.0),
        ("in", "duplicate", 1.0),
        ("in", "malformed", 1.0),
        ("out", "queued", 2.0),
        ("out", "sent", 2.0),
        ("out", "acked", 1.0),
        ("out", "nacked", 1.0),
        ("handshake", "hello_new_client", 1.0),
        ("handshake", "connected", 1.0),
    ];
    for (direction, outcome, value) in expect {
        assert_eq!(
            sink_events(&node, direction, outcome).await,
            value,
            "murmur_sink_events_total{{direction={direction:?},outcome={outcome:?}}}"
        );
    }
    let text = metrics(&node).await;
    assert_eq!(
        murmur_tests::metric_value(&text, "murmur_connections_total", &[("protocol", "sink")]),
        Some(2.0)
    );
    assert_eq!(
        murmur_tests::metric_value(&text, "murmur_sink_outbox_depth_count", &[]),
        Some(2.0),
        "outbox depth observed at each accepted connection"
    );
    assert_eq!(
        murmur_tests::metric_value(
            &text,
            "murmur_deliveries_total",
            &[("protocol", "sink"), ("outcome", "acked")]
        ),
        Some(1.0)
    );
}

/// Each refused handshake of a quarantined device counts once.
#[actix_rt::test]
async fn quarantine_rejections_are_counted_once_each() {
    let node = dev_node().await;
    let c = rand_u32();
    quarantine(&node, &dev_id(c), &[1], "no").await;
    for _ in 0..2 {
        let mut d = Device::tcp(node.sink_addr()).await;
        assert!(matches!(
            d.hello(APP, c, None).await,
            ConnectionResponse::Quarantined { .. }
        ));
        d.expect_closed(SOON).await;
    }
    assert_eq!(
        sink_events(&node, "handshake", "quarantined").await,
        2.0,
        "two quarantine rejections"
    );
}

/// The issue lists "redelivered" among the Sink metrics: an outbox event sent again after
/// a reconnect must be counted.
#[actix_rt::test]
async fn redeliveries_are_counted() {
    let node = dev_node().await;
    let (mut d, c, s) = dev_device(&node).await;
    queue(&node, &dev_id(c), api_event(1, 1, b"r", b"again")).await;
    let (_, first) = d.expect_publish().await;
    d.close().await;
    let mut d = Device::tcp(node.sink_addr()).await;
    d.hello_known(c, s).await;
    let (_, second) = d.expect_publish().await;
    assert_eq!(first, second);
    let text = metrics(&node).await;
    assert_eq!(
        sink_events_matching(&text, "redeliver"),
        1.0,
        "a murmur_sink_events_total series counting redeliveries:\n{}",
        text.lines()
            .filter(|l| l.starts_with("murmur_sink_events_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
