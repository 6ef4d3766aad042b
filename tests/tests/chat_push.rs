//! GradAgenda chat push for offline devices (extension, docs/chat.md "Push"): a message
//! reaching a participant with no device connected anywhere is pushed to the app
//! backend's webhook (a real HTTP server here) — batched, HMAC-signed, with the user's
//! devices, the session, the sender, a preview and the badge; online users get none,
//! nor do users back online by delivery time; a refused batch is retried with backoff;
//! the queue lives in the store, so a SIGKILLed node's pushes are delivered by another
//! node, once.

mod chat_common;

use std::time::Duration;

use chat_common::{message_id, uniq, ChatClient, CROSS, QUIET};
use hmac::{Hmac, Mac};
use murmur_tests::webhook::{Received, Webhook};
use murmur_tests::{eventually, metric_value, metrics, Cluster, NodeBuilder, Resp};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "push-test-secret-0123456789";
/// A push is delivered within this after its message (the worker polls every second;
/// retries back off 1 s, 2 s, 4 s …).
const PUSHED: Duration = Duration::from_secs(15);

fn with_push(b: NodeBuilder, hook: &Webhook) -> NodeBuilder {
    b.env("MURMUR_PUSH_WEBHOOK_URL", hook.url())
        .env("MURMUR_PUSH_WEBHOOK_SECRET", SECRET)
}

/// Checks the signature of a webhook request and returns its pushes.
fn pushes(r: &Received) -> Vec<Value> {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/push"));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let ts = r
        .headers
        .get("x-murmur-timestamp")
        .expect("x-murmur-timestamp");
    let sig = r
        .headers
        .get("x-murmur-signature")
        .expect("x-murmur-signature");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, &format!("sha256={want}"), "the body is signed");
    let v: Value = serde_json::from_slice(&r.body).expect("a JSON body");
    v["pushes"].as_array().expect("pushes").clone()
}

/// Every push the webhook was sent and answered 2xx.
fn delivered(hook: &Webhook) -> Vec<Value> {
    hook.received()
        .iter()
        .filter(|r| r.status < 300)
        .flat_map(pushes)
        .collect()
}

/// Waits until the webhook has taken a push of `message` for `user`.
async fn await_push(hook: &Webhook, user: &str, message: &str) -> Value {
    let what = format!("a push of {message} for {user}");
    eventually(&what, PUSHED, || async {
        delivered(hook)
            .into_iter()
            .find(|p| p["user-id"] == user && p["message-id"] == message)
    })
    .await
}

#[actix_rt::test]
async fn offline_participants_are_pushed_once_and_online_ones_never() {
    let hook = Webhook::start(200).await;
    let node = with_push(NodeBuilder::new(), &hook).spawn().await;
    let (alice, bob, carol, dave) = (uniq("alice"), uniq("bob"), uniq("carol"), uniq("dave"));
    // bob signed in once from his phone, then went away; dave never signed in.
    drop(ChatClient::login(&node, &bob, "bob-phone").await);
    let mut a = ChatClient::login(&node, &alice, "a").await;
    let mut c = ChatClient::login(&node, &carol, "c").await;
    let (sid, _) = a.create_group(&[&bob, &carol, &dave]).await;
    c.expect_within("the group", CROSS, |v| v["session-id"] == sid.as_str())
        .await;

    let m1 = message_id(&a.say(&sid, "dinner at 8?").await);
    let to_bob = await_push(&hook, &bob, &m1).await;
    assert_eq!(
        to_bob["devices"],
        serde_json::json!(["bob-phone"]),
        "{to_bob}"
    );
    assert_eq!(
        (
            &to_bob["session-id"],
            &to_bob["session-type"],
            &to_bob["sender-id"],
            &to_bob["preview"]
        ),
        (
            &Value::from(sid.as_str()),
            &Value::from("mutable"),
            &Value::from(alice.as_str()),
            &Value::from("dinner at 8?")
        ),
        "{to_bob}"
    );
    assert_eq!(
        (
            &to_bob["badge"],
            &to_bob["message-type"],
            &to_bob["attempt"]
        ),
        (&Value::from(1), &Value::from("text"), &Value::from(1))
    );
    let to_dave = await_push(&hook, &dave, &m1).await;
    assert_eq!(to_dave["devices"], serde_json::json!([]));

    // bob is back: his messages reach him live, no push. dave's push of the next
    // message is the barrier: nothing for bob came before it.
    let mut b = ChatClient::login(&node, &bob, "bob-phone").await;
    let m2 = message_id(&a.say(&sid, "see you").await);
    b.expect_broadcast(&sid, "see you").await;
    let second = await_push(&hook, &dave, &m2).await;
    assert_eq!(second["badge"], 2, "dave has two unread: {second}");
    let all = delivered(&hook);
    let about = |user: &str| all.iter().filter(|p| p["user-id"] == user).count();
    assert_eq!(
        (about(&bob), about(&dave), about(&carol), about(&alice)),
        (1, 2, 0, 0),
        "{all:?}"
    );
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "every push once");
    b.assert_quiet(QUIET).await;
    let m = metrics(&node).await;
    assert_eq!(
        metric_value(&m, "murmur_push_total", &[("outcome", "sent")]),
        Some(3.0)
    );
}

#[actix_rt::test]
async fn refused_batches_are_retried_and_a_killed_nodes_pushes_survive() {
    let hook = Webhook::start(500).await;
    let mut cluster = Cluster::start_with(3, |_, b| with_push(b, &hook)).await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let sid = a.direct_id(&bob).await;
    let m = message_id(&a.say(&sid, "are you there?").await);
    // Two refusals (500), one second apart: retried with backoff.
    eventually("two refused attempts", PUSHED, || async {
        (hook.received().len() >= 2).then_some(())
    })
    .await;
    let tried: Vec<Value> = hook.received().iter().flat_map(pushes).collect();
    assert_eq!(
        (&tried[0]["attempt"], &tried[1]["attempt"]),
        (&Value::from(1), &Value::from(2))
    );
    assert_eq!(tried[0]["id"], tried[1]["id"]);
    // Settled for a retry in 4 s (not under a claim): node 0 dies meanwhile.
    let redis = cluster.redis();
    let id = tried[0]["id"].as_str().unwrap().to_string();
    eventually("the push settled for its third attempt", CROSS, || async {
        let job = redis.cmd(&["HGET", "murmur:push:jobs", &id]).await;
        matches!(job, Resp::Bulk(Some(j)) if String::from_utf8_lossy(&j).contains("\"attempts\":2"))
            .then_some(())
    })
    .await;
    drop(a);
    cluster.node_mut(0).kill().await;
    hook.answer(200);
    let pushed = await_push(&hook, &bob, &m).await;
    assert_eq!(
        (
            &pushed["attempt"],
            &pushed["preview"],
            &pushed["session-type"]
        ),
        (
            &Value::from(3),
            &Value::from("are you there?"),
            &Value::from("direct")
        )
    );

    // Once: a later message's push is the barrier.
    let mut a2 = ChatClient::login(cluster.node(1), &alice, "a2").await;
    let later = message_id(&a2.say(&sid, "ping").await);
    await_push(&hook, &bob, &later).await;
    let all = delivered(&hook);
    assert_eq!(
        all.iter().filter(|p| p["message-id"] == m.as_str()).count(),
        1,
        "{all:?}"
    );
    // Nothing left queued, nothing dead-lettered.
    let node1 = cluster.node(1);
    eventually("an empty push queue", CROSS, || async {
        (metric_value(&metrics(node1).await, "murmur_push_queue", &[]) == Some(0.0)).then_some(())
    })
    .await;
    let m = metrics(node1).await;
    assert_eq!(
        metric_value(&m, "murmur_push_total", &[("outcome", "dead")]),
        None
    );
}

#[actix_rt::test]
async fn a_restarted_node_sends_what_was_queued_and_nothing_twice() {
    let hook = Webhook::start(200).await;
    let mut cluster = Cluster::start_with(1, |_, b| {
        with_push(b, &hook).env("MURMUR_DRAIN_DELAY", "0s")
    })
    .await;
    let (alice, bob) = (uniq("alice"), uniq("bob"));
    let mut a = ChatClient::login(cluster.node(0), &alice, "a").await;
    let sid = a.direct_id(&bob).await;
    let first = message_id(&a.say(&sid, "one").await);
    await_push(&hook, &bob, &first).await;

    // The webhook fails: the second push waits in Redis for its retry...
    hook.answer(503);
    let second = message_id(&a.say(&sid, "two").await);
    eventually("a refused attempt", PUSHED, || async {
        hook.received()
            .iter()
            .any(|r| r.status == 503)
            .then_some(())
    })
    .await;
    // ...while the node restarts (SIGTERM, then a new process with the same id).
    drop(a);
    let node = cluster.node_mut(0);
    let again = node.respawn_builder();
    node.terminate();
    assert!(
        node.wait_exit(Duration::from_secs(30)).await.is_some(),
        "the node exits"
    );
    *node = again.spawn().await;
    hook.answer(200);
    let pushed = await_push(&hook, &bob, &second).await;
    assert!(pushed["attempt"].as_u64() >= Some(2), "{pushed}");

    // Once each: the push of a third message is the barrier.
    let mut a = ChatClient::login(cluster.node(0), &alice, "a2").await;
    let third = message_id(&a.say(&sid, "three").await);
    await_push(&hook, &bob, &third).await;
    let all = delivered(&hook);
    let ids: Vec<&str> = all
        .iter()
        .map(|p| p["message-id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![first.as_str(), second.as_str(), third.as_str()],
        "{all:?}"
    );
}
