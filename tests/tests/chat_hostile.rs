//! GradAgenda chat under hostile input: deep nesting, huge participant lists (the
//! documented limit of 256 participants per mutable session, the 4096-byte frame
//! limit), unknown and mistyped actions, oversized ids. Each gets its documented answer,
//! the node does not panic, and other connections are unaffected.

mod chat_common;

use chat_common::{
    assert_no_panic, create_action, has_cdid, is_info_for, kind, list_action, modify_action,
    participants, uniq, Bystanders, ChatClient, MAX_FRAME, MAX_PARTICIPANTS, QUIET,
};
use murmur_tests::Node;
use serde_json::{json, Value};

#[actix_rt::test]
async fn deeply_nested_json() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;

    // Moderate nesting inside an ignored field: an ordinary action.
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    let nested = format!("{}1{}", "[".repeat(50), "]".repeat(50));
    c.send_text(&format!(
        r#"{{"cdid":"n50","type":"request-mutable-session-listing","x":{nested}}}"#
    ))
    .await;
    c.expect_succeeded("n50").await;

    // Nesting far beyond any parser's depth limit, in a frame under 4096 bytes: refused
    // as not a (usable) JSON object, 1008.
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let text = format!(r#"{{"cdid":"deep","type":"request-mutable-session-listing","x":{deep}}}"#);
    assert!(text.len() <= MAX_FRAME);
    c.send_text(&text).await;
    c.expect_close_code(1008).await;
    by.still_fine().await;

    // A deeply nested array (not an object at all), before authentication.
    let mut c = ChatClient::connect(&node).await;
    c.send_text(&format!("{}{}", "[".repeat(2040), "]".repeat(2040)))
        .await;
    c.expect_close_code(1008).await;
    // Deeply nested objects.
    let mut c = ChatClient::connect(&node).await;
    let objects = format!("{}1{}", r#"{"a":"#.repeat(600), "}".repeat(600));
    assert!(objects.len() <= MAX_FRAME);
    c.send_text(&objects).await;
    c.expect_close_code(1008).await;
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn ten_thousand_participants_cannot_even_be_sent() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    let ids: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let frame = create_action("10k", &ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(frame.to_string().len() > MAX_FRAME);
    c.send(&frame).await;
    c.expect_close_code(1009).await;
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn participant_limit_on_creation() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let alice = uniq("alice");
    let mut a = ChatClient::login(&node, &alice, "dev").await;

    // 257 short ids fit one frame and are refused for the documented limit.
    let ids: Vec<Value> = (0..=MAX_PARTICIPANTS).map(|i| json!(i)).collect();
    let frame = json!({"cdid": "257", "type": "request-mutable-session-creation", "user-id": ids});
    assert!(frame.to_string().len() <= MAX_FRAME);
    a.send(&frame).await;
    let why = a.expect_failed("257").await;
    assert!(why.contains("too many participants"), "{why}");

    // A huge array (1000 ids, still under 4096 bytes): the same answer.
    let ids: Vec<Value> = (0..1000).map(|i| json!(i)).collect();
    let frame = json!({"cdid": "1000", "type": "request-mutable-session-creation",
                       "user-id": ids});
    assert!(
        frame.to_string().len() <= MAX_FRAME,
        "{}",
        frame.to_string().len()
    );
    a.send(&frame).await;
    let why = a.expect_failed("1000").await;
    assert!(why.contains("too many participants"), "{why}");

    // 256 others plus the creator make 257: refused too.
    let ids: Vec<Value> = (1000..1000 + MAX_PARTICIPANTS).map(|i| json!(i)).collect();
    let frame = json!({"cdid": "256+1", "type": "request-mutable-session-creation",
                       "user-id": ids});
    a.send(&frame).await;
    let why = a.expect_failed("256+1").await;
    assert!(why.contains("too many participants"), "{why}");
    // Nothing was created by the refusals.
    assert!(a.list().await.is_empty());

    // 255 others plus the creator: exactly the limit, accepted.
    let ids: Vec<Value> = (1000..1000 + MAX_PARTICIPANTS - 1)
        .map(|i| json!(i))
        .collect();
    let frame = json!({"cdid": "256", "type": "request-mutable-session-creation",
                       "user-id": ids});
    a.send(&frame).await;
    let info = a.expect_info("256").await;
    assert_eq!(participants(&info).len(), MAX_PARTICIPANTS);
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn participant_limit_on_modification() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&["1", "2"]).await;

    // 257 participants in a modification: refused, the group is unchanged.
    let mut ids: Vec<Value> = (0..MAX_PARTICIPANTS).map(|i| json!(i)).collect();
    ids.push(json!(alice));
    let frame = json!({"cdid": "m257", "type": "request-mutable-session-modification",
                       "session-id": sid, "user-id": ids});
    assert!(frame.to_string().len() <= MAX_FRAME);
    a.send(&frame).await;
    let why = a.expect_failed("m257").await;
    assert!(why.contains("too many participants"), "{why}");
    a.assert_none("a modified info", QUIET, |v| is_info_for(v, &sid))
        .await;
    let listed = a.list().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(participants(&listed[0]).len(), 3, "{}", listed[0]);

    // Exactly 256: accepted.
    let mut ids: Vec<Value> = (0..MAX_PARTICIPANTS - 1).map(|i| json!(i)).collect();
    ids.push(json!(alice));
    let frame = json!({"cdid": "m256", "type": "request-mutable-session-modification",
                       "session-id": sid, "user-id": ids});
    a.send(&frame).await;
    let info = a.expect_info("m256").await;
    assert_eq!(info["status"], "modified");
    assert_eq!(participants(&info).len(), MAX_PARTICIPANTS);
    assert_no_panic(&node);
}

/// A creation request that fits one frame, whose answer (the session info, with the
/// creator added, a session id and the info's own fields) would not: the server must
/// either refuse it or answer within the 4096-byte limit (CONTRACT §5).
#[actix_rt::test]
async fn creation_answer_near_the_frame_limit_stays_within_it() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    // Long ids, up to just under 4096 bytes of request.
    let mut ids: Vec<String> = Vec::new();
    loop {
        let next = format!("{:0>120}", ids.len());
        let mut with: Vec<&str> = ids.iter().map(String::as_str).collect();
        with.push(&next);
        if create_action("c", &with).to_string().len() > MAX_FRAME {
            break;
        }
        ids.push(next);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let frame = create_action("c", &refs);
    eprintln!("create request: {} bytes", frame.to_string().len());
    a.send(&frame).await;
    let v = a
        .expect("answer to the near-limit creation", |v| has_cdid(v, "c"))
        .await;
    if kind(&v) == "status-response" {
        assert_eq!(v["status"], "failed", "{v}");
    } else {
        assert_eq!(participants(&v).len(), ids.len() + 1, "{v}");
    }
    // Either way, listing stays within the limit too.
    a.send(&list_action("l")).await;
    a.expect_status("l").await;
    assert_no_panic(&node);
}

/// The same for a modification: request within 4096 bytes, the session info answer is
/// larger than the request by its extra fields.
#[actix_rt::test]
async fn modification_answer_near_the_frame_limit_stays_within_it() {
    let node = Node::start().await;
    let alice = uniq("alice");
    let mut a = ChatClient::login(&node, &alice, "dev").await;
    let (sid, _) = a.create_group(&[]).await;
    let mut ids: Vec<String> = vec![alice.clone()];
    loop {
        let next = format!("{:0>120}", ids.len());
        let mut with: Vec<&str> = ids.iter().map(String::as_str).collect();
        with.push(&next);
        if modify_action("m", &sid, &with).to_string().len() > MAX_FRAME {
            break;
        }
        ids.push(next);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let frame = modify_action("m", &sid, &refs);
    // Pad the last id so the request is as close to 4096 bytes as possible.
    let spare = MAX_FRAME - frame.to_string().len();
    let last = ids.len() - 1;
    ids[last] = format!("{}{}", ids[last], "x".repeat(spare.min(8)));
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let frame = modify_action("m", &sid, &refs);
    assert!(frame.to_string().len() <= MAX_FRAME);
    eprintln!("modify request: {} bytes", frame.to_string().len());
    a.send(&frame).await;
    let v = a
        .expect("answer to the near-limit modification", |v| {
            has_cdid(v, "m")
        })
        .await;
    if kind(&v) == "status-response" {
        assert_eq!(v["status"], "failed", "{v}");
    } else {
        assert_eq!(participants(&v).len(), ids.len(), "{v}");
    }
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn unknown_and_mistyped_actions_fail_with_their_cdid() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    let long = "i".repeat(129);
    let bad = [
        json!({"cdid": "t1", "type": "no-such-action"}),
        json!({"cdid": "t2", "type": 42}),
        json!({"cdid": "t3"}),
        json!({"cdid": "t4", "type": null}),
        json!({"cdid": "t5", "type": "request-direct-session-info", "user-id": {"id": "x"}}),
        json!({"cdid": "t6", "type": "request-direct-session-info", "user-id": ["x"]}),
        json!({"cdid": "t7", "type": "request-direct-session-info", "user-id": true}),
        json!({"cdid": "t8", "type": "request-direct-session-info", "user-id": long}),
        json!({"cdid": "t9", "type": "request-direct-session-info", "user-id": "a\u{0}b"}),
        json!({"cdid": "t10", "type": "request-mutable-session-creation", "user-id": "bob"}),
        json!({"cdid": "t11", "type": "request-mutable-session-creation",
               "user-id": [null, true]}),
        json!({"cdid": "t12", "type": "request-mutable-session-creation",
               "user-id": [["nested"]]}),
        json!({"cdid": "t13", "type": "request-mutable-session-modification",
               "session-id": ["s"], "user-id": ["a"]}),
        json!({"cdid": "t14", "type": "request-mutable-session-deletion", "session-id": 1.5}),
        json!({"cdid": "t15", "type": "request-mutable-session-deletion"}),
        json!({"cdid": "t16", "type": "request-sending-a-message", "session-id": {},
               "message": {"type": "text", "body": "x"}, "sender-timestamp": 1}),
        json!({"cdid": "t17", "type": "request-sending-a-message", "session-id": "s",
               "message": [1, 2], "sender-timestamp": 1}),
        json!({"cdid": "t18", "type": "request-sending-a-message", "session-id": "s",
               "message": {"type": 7, "body": "x"}, "sender-timestamp": 1}),
        json!({"cdid": "t19", "type": "request-mutable-session-creation",
               "user-id": ["ok", long]}),
        json!({"cdid": "t20", "type": "AUTHENTICATE"}),
        json!({"cdid": "t21", "type": "request-mutable-session-listing ", "x": 1}),
    ];
    for b in &bad {
        c.send(b).await;
    }
    // Each answered, in order (these are all answered at once).
    for i in 1..=bad.len() {
        let cdid = format!("t{i}");
        let v = c
            .expect("next answer", |v| kind(v) == "status-response")
            .await;
        assert_eq!(v["cdid"], cdid.as_str(), "answers in order: {v}");
        assert_eq!(v["status"], "failed", "{}: {v}", bad[i - 1]);
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a reason: {v}"
        );
    }
    let t1_reason = {
        c.send(&json!({"cdid": "again", "type": "no-such-action"}))
            .await;
        c.expect_failed("again").await
    };
    assert!(t1_reason.contains("unknown"), "{t1_reason}");
    // A cdid that is not an id: the failure still comes, without it.
    c.send(&json!({"cdid": {"x": 1}, "type": "no-such-action"}))
        .await;
    let v = c
        .expect("failure without a usable cdid", |v| {
            kind(v) == "status-response"
        })
        .await;
    assert_eq!(v["status"], "failed", "{v}");
    // The connection is fine.
    c.send(&list_action("fine")).await;
    c.expect_succeeded("fine").await;
    by.still_fine().await;
    assert_no_panic(&node);
}

#[actix_rt::test]
async fn hostile_ids_cannot_create_or_reach_sessions() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let mut c = ChatClient::login(&node, &uniq("u"), "dev").await;
    // Someone else's group id, guessed or stolen: not a participant.
    c.say_fails(&by.sid.clone(), "intrusion").await;
    c.send(&modify_action("steal", &by.sid.clone(), &[&c.user.clone()]))
        .await;
    c.expect_failed("steal").await;
    // Malformed "direct-" ids.
    for (i, sid) in ["direct-", "direct-!!!", "direct-AAAA", "direct-MTph"]
        .iter()
        .enumerate()
    {
        let cdid = format!("d{i}");
        c.send(&chat_common::send_action(&cdid, sid, "x")).await;
        c.expect_failed(&cdid).await;
    }
    by.still_fine().await;
    assert_no_panic(&node);
}

/// A direct session id naming the same user twice (the server refuses to hand one out:
/// a direct session is between two users), forged from the id format: the user's devices
/// must not get two copies of one message.
#[actix_rt::test]
async fn a_forged_self_direct_session_delivers_no_duplicates() {
    let node = Node::start().await;
    let me = uniq("me");
    let mut d1 = ChatClient::login(&node, &me, "d1").await;
    let mut d2 = ChatClient::login(&node, &me, "d2").await;
    d1.send(&chat_common::direct_action("self", &me)).await;
    let v = d1.expect("answer", |v| has_cdid(v, "self")).await;
    assert_eq!(
        kind(&v),
        "status-response",
        "no direct session with oneself: {v}"
    );
    assert_eq!(v["status"], "failed", "{v}");

    // The id format is a pure function of the pair (the product's own codec builds it).
    let forged = murmur_shared::chat::direct_session_id(&me, &me);
    d1.send(&chat_common::send_action("f", &forged, "echo"))
        .await;
    let answer = d1.expect("answer", |v| has_cdid(v, "f")).await;
    if kind(&answer) == "status-response" {
        assert_eq!(answer["status"], "failed", "{answer}");
    }
    for c in [&mut d1, &mut d2] {
        let mut copies = Vec::new();
        if c.device == "d1" && kind(&answer) == "message-broadcast" {
            copies.push(answer.clone());
        }
        while let Some(v) = c.next_action(QUIET).await {
            if chat_common::is_broadcast_of(&v, &forged, "echo") {
                copies.push(v);
            }
        }
        assert!(
            copies.len() <= 1,
            "{}: {} copies of one message: {copies:?}",
            c.label,
            copies.len()
        );
    }
    assert_no_panic(&node);
}

/// A `cdid` that is not an id (an object, an array, a boolean, empty, 129 bytes, a
/// control character) is not silently dropped: the action is not carried out and is
/// answered `status-response` `failed` without a cdid (it has no usable one), with a
/// reason naming the cdid. Absent and `null` mean no cdid; a number is its text.
#[actix_rt::test]
async fn invalid_cdids_are_answered_failed_without_a_cdid() {
    let node = Node::start().await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let refused = json!({"type": "status-response", "status": "failed",
        "message": "`cdid` must be a string id of 1..=128 bytes without control characters"});
    let bad_cdids = [
        json!({"x": 1}),
        json!(["a"]),
        json!(true),
        json!(""),
        json!("x".repeat(129)),
        json!("a\u{1}b"),
        json!("line\nbreak"),
    ];

    // Before authentication: an authenticate with a bad cdid does not log in.
    let mut c = ChatClient::connect(&node).await;
    let token = murmur_tests::token(&alice);
    for cdid in &bad_cdids {
        c.send(
            &json!({"cdid": cdid, "type": "authenticate", "user-id": alice,
                        "device-id": "dev", "token": token}),
        )
        .await;
        let v = c
            .expect("an answer", |v| kind(v) == "status-response")
            .await;
        assert_eq!(v, refused, "authenticate with cdid {cdid}");
    }
    // Still not authenticated; a good cdid then works.
    c.send(&list_action("still-out")).await;
    assert_eq!(c.expect_failed("still-out").await, "not authenticated");
    let reply = c.authenticate(&alice, "dev", &token).await;
    assert_eq!(reply["status"], "succeeded", "{reply}");

    // Authenticated: every action refuses a bad cdid, and nothing is done.
    for cdid in &bad_cdids {
        c.send(
            &json!({"cdid": cdid, "type": "request-mutable-session-creation",
                        "user-id": [bob]}),
        )
        .await;
        let v = c
            .expect("an answer", |v| {
                matches!(kind(v), "status-response" | "providing-session-info")
            })
            .await;
        assert_eq!(v, refused, "create with cdid {cdid}");
    }
    assert!(c.list().await.is_empty(), "no group was created");

    // In a batch, only the entry with the bad cdid is refused, in order.
    c.send(
        &json!({"cdid": "b", "type": "batch-mode-action", "actions": [
            {"cdid": "one", "type": "request-direct-session-info", "user-id": bob},
            {"cdid": "x".repeat(129), "type": "request-direct-session-info", "user-id": bob},
            {"cdid": 3, "type": "request-direct-session-info", "user-id": bob},
            {"cdid": null, "type": "request-direct-session-info", "user-id": bob},
        ]}),
    )
    .await;
    let answers: Vec<Value> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(
                c.expect("a batch answer", |v| {
                    matches!(kind(v), "status-response" | "providing-session-info")
                })
                .await,
            );
        }
        out
    };
    assert!(is_info_for(
        &answers[0],
        answers[0]["session-id"].as_str().unwrap()
    ));
    assert!(has_cdid(&answers[0], "one"), "{}", answers[0]);
    assert_eq!(answers[1], refused);
    assert!(
        has_cdid(&answers[2], "3"),
        "a number is its text: {}",
        answers[2]
    );
    assert_eq!(
        kind(&answers[3]),
        "providing-session-info",
        "{}",
        answers[3]
    );
    assert!(
        answers[3].get("cdid").is_none(),
        "null is no cdid: {}",
        answers[3]
    );
    // The longest valid cdid is fine.
    let longest = "é".repeat(64);
    c.send(&list_action(&longest)).await;
    c.expect_succeeded(&longest).await;
}

/// Every extension action with wrong types, huge counts and other users' sessions: each
/// is `failed` with its exact reason, nothing reaches anybody, the connection stays
/// open and other connections are unaffected.
#[actix_rt::test]
async fn hostile_extension_actions_are_refused_one_by_one() {
    let node = Node::start().await;
    let mut by = Bystanders::new(&node).await;
    let (mallory, alice, bob) = (uniq("mallory"), uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(&node, &alice, "a").await;
    let mut b = ChatClient::login(&node, &bob, "b").await;
    let mut m = ChatClient::login(&node, &mallory, "m").await;
    let (sid, _) = a.create_group(&[&bob]).await;
    b.expect_within("the group", chat_common::CROSS, |v| {
        v["session-id"] == sid.as_str()
    })
    .await;
    a.say(&sid, "private").await;
    let many: Vec<String> = (0..=MAX_PARTICIPANTS).map(|i| format!("u{i}")).collect();
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"type": "request-marking-read", "session-id": sid, "message-id": 5}),
            "`message-id` must be a message id (`<ms>-<n>`)".into(),
        ),
        (
            json!({"type": "request-marking-read", "session-id": sid, "message-id": "1-0"}),
            "not a participant of this session".into(),
        ),
        (
            json!({"type": "request-unread-count", "session-id": sid}),
            "not a participant of this session".into(),
        ),
        (
            json!({"type": "request-unread-count", "session-id": {"$gt": ""}}),
            "`session-id` must be a string id of 1..=128 bytes".into(),
        ),
        (
            json!({"type": "request-inbox", "limit": "all"}),
            "`limit` must be an integer in 1..=100".into(),
        ),
        (
            json!({"type": "request-inbox", "limit": 1_000_000_000u64}),
            "`limit` must be an integer in 1..=100".into(),
        ),
        (
            json!({"type": "request-inbox", "cursor": ["x"]}),
            "`cursor` must be a `next-cursor` of this listing".into(),
        ),
        (
            json!({"type": "request-presence", "user-id": alice}),
            "`user-id` must be an array of user ids".into(),
        ),
        (
            json!({"type": "request-presence", "user-id": many}),
            "too many participants (at most 256)".into(),
        ),
        (
            json!({"type": "request-presence", "user-id": [alice]}),
            format!("{alice:?} shares no session with you"),
        ),
        (
            json!({"type": "request-presence", "user-id": [bob], "watch": "yes"}),
            "`watch` must be a boolean".into(),
        ),
        (
            json!({"type": "request-typing", "session-id": sid}),
            "not a participant of this session".into(),
        ),
        (
            json!({"type": "request-typing"}),
            "`session-id` must be a string id of 1..=128 bytes".into(),
        ),
        (
            json!({"type": "request-leaving-mutable-session", "session-id": sid}),
            "not a participant of this session".into(),
        ),
        (
            json!({"type": "request-mutable-session-roles", "session-id": sid, "owner": mallory}),
            "not a participant of this session".into(),
        ),
        (
            json!({"type": "request-mutable-session-roles", "session-id": sid, "admins": many}),
            "`admins` must be an array of at most 256 user ids".into(),
        ),
        (
            json!({"type": "request-mutable-session-roles", "session-id": sid, "admins": [7, {}]}),
            "`admins` entries must be user ids".into(),
        ),
        (
            json!({"type": "request-sending-a-message", "session-id": sid, "sender-timestamp": 1,
                "message": {"type": "image", "body": {"url": "https://x.io/a", "mime": "image/png", "size": 1, "width": -3}}}),
            "`body.width` must be an integer in 1..=65535".into(),
        ),
        (
            json!({"type": "authenticate", "user-id": mallory, "device-id": "d", "token": "t", "extensions": "all"}),
            "`extensions` must be an array of at most 16 names".into(),
        ),
    ];
    for (i, (mut action, reason)) in cases.into_iter().enumerate() {
        let cdid = format!("h{i}");
        action["cdid"] = json!(cdid);
        m.send(&action).await;
        assert_eq!(m.expect_failed(&cdid).await, reason, "{action}");
    }
    // The group is untouched and nobody heard of mallory.
    for c in [&mut a, &mut b] {
        c.assert_none("anything caused by mallory", QUIET, |v| {
            is_info_for(v, &sid) || kind(v) == "message-read" || kind(v) == "typing"
        })
        .await;
    }
    let listed = b.list().await;
    let info: Vec<&Value> = listed.iter().filter(|v| is_info_for(v, &sid)).collect();
    assert_eq!(participants(info[0]).len(), 2, "{listed:?}");
    m.send(&list_action("still-open")).await;
    m.expect_succeeded("still-open").await;
    by.still_fine().await;
    assert_no_panic(&node);
}
