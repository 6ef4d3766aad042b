//! TimeStick across a 3-node cluster on a real redis-server (CONTRACT §3: "any of these
//! requests may land on any node"; the issue: session state and queued messages live in
//! the Store, a session survives the loss of the node that created it). START on A, POST
//! on B, poll on C; responses and SSE resumption across nodes; duplicate `message_id`s
//! landing on different nodes; a stolen session id on another node; STOP / KILL levels /
//! quarantine decided on one node and enforced on the others; the per-caller limit
//! cluster-wide; SIGKILL of the node that started a session; Helios subscribers on another
//! node; the idle timeout claimed by exactly one node.

mod timestick_common;

use std::time::Duration;

use futures_util::future::join_all;
use murmur_tests::{api_post, eventually, token, within, Cluster, Resp, Starling};
use serde_json::json;
use timestick_common::{
    admin, assert_accepted, assert_control, assert_delivered_request, assert_error, assert_killed,
    assert_start_error, assert_start_ok, assert_stopped, kill_msg, parse_poll, request_msg,
    start_body, start_json, uniq, uri, Session, Sse, CROSS, MAX_MESSAGE_SIZE, SESSIONS_PER_CALLER,
};
use tokio::time::Instant;

/// Redis subscribers of session `id`'s wake channel (`murmur:ch:@ts/<id>`): a long-poll
/// parked on a node of the cluster holds one.
async fn wake_subscribers(cluster: &Cluster, id: &str) -> i64 {
    let key = format!("murmur:ch:@ts/{id}");
    match cluster.redis().cmd(&["PUBSUB", "NUMSUB", &key]).await {
        Resp::Array(Some(items)) if items.len() == 2 => items[1]
            .as_int()
            .unwrap_or_else(|| panic!("PUBSUB NUMSUB count: {items:?}")),
        other => panic!("PUBSUB NUMSUB {key}: {other:?}"),
    }
}

/// Waits until session `id`'s wake channel has exactly `n` Redis subscribers.
async fn wait_wake_subscribers(cluster: &Cluster, id: &str, n: i64) {
    let what = format!("{n} subscriber(s) of the wake channel of {id}");
    eventually(&what, CROSS, || async {
        (wake_subscribers(cluster, id).await == n).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn start_on_a_post_on_b_poll_on_c() {
    let cluster = Cluster::start(3).await;
    let (na, nb, nc) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let target = uniq("x-node-");
    let alice = Session::open(na, &uniq("alice-"), &target).await;
    let bob = Session::open(nb, &uniq("bob-"), &target).await;

    // alice (started on A) posts through B; bob (started on B) polls on C.
    alice.at(nb).send("q1", json!({"n": 1})).await;
    let (msgs, bob_cursor) = bob.at(nc).collect_within(1, None, CROSS).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_delivered_request(
        &msgs[0],
        &bob.id,
        &alice.id,
        &alice.user,
        "q1",
        &json!({"n": 1}),
    );

    // bob answers through A; alice polls on C and then on B.
    bob.at(na)
        .reply("r1", &format!("{}.q1", alice.id), json!("answer"))
        .await;
    let (msgs, alice_cursor) = alice.at(nc).collect_within(1, None, CROSS).await;
    assert_eq!(msgs[0]["type"], "response", "{msgs:?}");
    assert_eq!(msgs[0]["correlation_id"], "q1");
    assert_eq!(msgs[0]["message_id"], format!("{}.r1", bob.id));
    // Confirmed on B: the cursor from C is understood everywhere.
    alice.at(nb).expect_quiet(Some(&alice_cursor)).await;
    alice.at(na).expect_quiet(None).await;
    bob.at(na).expect_quiet(Some(&bob_cursor)).await;

    // A long-poll parked on C is woken by a POST on A.
    let (bob_c, alice_a) = (bob.at(nc), alice.at(na));
    let poll = bob_c.poll(20, Some(&bob_cursor));
    let send = alice_a.send("q2", json!({"n": 2}));
    let (reply, ()) = within("a poll on C woken by a POST on A", CROSS, async {
        tokio::join!(poll, send)
    })
    .await;
    let (msgs, _) = parse_poll(&reply);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["message_id"], format!("{}.q2", alice.id));

    // A backend publish on C reaches a session polled on A.
    let (status, body) = api_post(
        nc,
        "/api/v1/publish",
        json!({"channel": target, "data": "from the backend"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (msgs, _) = alice
        .at(na)
        .collect_within(1, Some(&alice_cursor), CROSS)
        .await;
    assert_eq!(msgs[0]["payload"], "from the backend", "{msgs:?}");
    assert_eq!(msgs[0]["from"]["protocol"], "api");
}

#[actix_rt::test]
async fn sse_resumes_on_another_node_after_a_dropped_stream() {
    let cluster = Cluster::start(3).await;
    let (na, nb, nc) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let target = uniq("sse-x-");
    let alice = Session::open(na, &uniq("alice-"), &target).await;
    let bob = Session::open(na, &uniq("bob-"), &target).await;

    let mut sse = Sse::open(&bob.at(nb), None).await;
    for i in 0..3 {
        alice.at(nc).send(&format!("m{i}"), json!({"n": i})).await;
    }
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(
            sse.try_next(CROSS)
                .await
                .expect("an SSE event on B for a POST on C"),
        );
    }
    let ns: Vec<_> = first
        .iter()
        .map(|e| e.data["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(0), json!(1), json!(2)]);
    drop(sse);
    for i in 3..5 {
        alice.at(nb).send(&format!("m{i}"), json!({"n": i})).await;
    }
    // Resume on C after the second event: the third again (never confirmed) and the rest.
    let mut sse = Sse::open(&bob.at(nc), Some(&first[1].id)).await;
    let mut resumed = Vec::new();
    for _ in 0..3 {
        resumed.push(sse.try_next(CROSS).await.expect("resumed SSE event on C"));
    }
    assert_eq!(resumed[0], first[2], "same event, same id");
    let ns: Vec<_> = resumed
        .iter()
        .map(|e| e.data["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(2), json!(3), json!(4)]);
    assert!(sse.try_next(Duration::from_millis(500)).await.is_none());
}

#[actix_rt::test]
async fn duplicates_and_stolen_ids_are_refused_on_every_node() {
    let cluster = Cluster::start(3).await;
    let nodes = cluster.nodes();
    let target = uniq("dup-x-");
    let alice = Session::open(&nodes[0], &uniq("alice-"), &target).await;
    let bob = Session::open(&nodes[2], &uniq("bob-"), &target).await;

    alice.at(&nodes[0]).send("once", json!(1)).await;
    for n in &nodes[1..] {
        let reply = alice
            .at(n)
            .post(&request_msg(&alice.id, "once", json!(2)))
            .await;
        assert_error(&reply, 409, "DUPLICATE_MESSAGE");
    }
    // The same id on all three nodes at the same moment: exactly one wins.
    let replies = join_all(nodes.iter().flat_map(|n| {
        let s = alice.at(n);
        (0..3).map(move |i| {
            let s = s.clone();
            async move { s.post(&request_msg(&s.id, "race", json!(i))).await }
        })
    }))
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        8,
        "{statuses:?}"
    );
    // bob received "once" and "race" exactly once each.
    let (msgs, cursor) = bob.at(&nodes[1]).collect_within(2, None, CROSS).await;
    let ids: Vec<_> = msgs.iter().map(|m| m["message_id"].clone()).collect();
    assert_eq!(
        ids,
        vec![
            json!(format!("{}.once", alice.id)),
            json!(format!("{}.race", alice.id))
        ]
    );
    bob.at(&nodes[0]).expect_quiet(Some(&cursor)).await;

    // A stolen session id with another caller's token, on every node: 403, no effect.
    let thief_token = token(&uniq("mallory-"));
    for n in nodes {
        let thief = alice.at(n).with_token(&thief_token);
        assert_error(
            &thief.post(&request_msg(&alice.id, "t", json!(1))).await,
            403,
            "FORBIDDEN",
        );
        assert_error(&thief.poll(0, None).await, 403, "FORBIDDEN");
        let kill = kill_msg(&alice.id, "t-kill", 3, None);
        assert_error(&thief.post(&kill).await, 403, "FORBIDDEN");
        let anonymous = alice.at(n).with_token("");
        assert_error(&anonymous.poll(0, None).await, 401, "UNAUTHORIZED");
    }
    bob.at(&nodes[2]).expect_quiet(Some(&cursor)).await;
    // Alice's session is intact.
    alice.at(&nodes[1]).send("t", json!("mine")).await;
    let (msgs, _) = bob
        .at(&nodes[0])
        .collect_within(1, Some(&cursor), CROSS)
        .await;
    assert_eq!(msgs[0]["payload"], "mine");
}

#[actix_rt::test]
async fn stop_and_kill_decided_on_one_node_hold_on_all() {
    let cluster = Cluster::start(3).await;
    let (na, nb, nc) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let target = uniq("end-x-");
    let alice = Session::open(na, &uniq("alice-"), &target).await;
    let bob = Session::open(nb, &uniq("bob-"), &target).await;

    // Receiver STOP through the admin API of C while bob's poll is open on B; a message
    // queued before it comes first.
    alice.at(nc).send("before", json!("before the stop")).await;
    let (msgs, cursor) = bob.at(nb).collect_within(1, None, CROSS).await;
    assert_eq!(msgs[0]["payload"], "before the stop");
    alice.at(na).send("queued", json!("queued")).await;
    let (msgs_waiting, _) = bob.at(nb).collect_within(1, Some(&cursor), CROSS).await;
    assert_eq!(msgs_waiting[0]["payload"], "queued");
    let bob_b = bob.at(nb);
    let poll = bob_b.poll(30, Some(&cursor));
    let stop = async {
        // The poll above returns the queued message at once; the STOP follows it.
        let (status, body) = admin(nc, &bob.id, "stop", json!({"reason": "maintenance"})).await;
        assert_eq!(status, 200, "{body}");
    };
    let (reply, ()) = within("poll + admin stop", CROSS, async {
        tokio::join!(poll, stop)
    })
    .await;
    let (mut got, mut cur) = parse_poll(&reply);
    while !got.iter().any(|m| m["type"] == "control") {
        let (more, next) = bob.at(na).collect_within(1, Some(&cur), CROSS).await;
        got.extend(more);
        cur = next;
    }
    assert_eq!(got[0]["payload"], "queued", "{got:?}");
    let stop = assert_control(got.last().unwrap(), &bob.id, "STOP");
    assert_eq!(stop["reason"], "maintenance");
    assert_stopped(&bob.at(nc).poll(0, Some(&cur)).await, "maintenance");
    assert_stopped(
        &bob.at(na)
            .post(&request_msg(&bob.id, "late", json!(1)))
            .await,
        "maintenance",
    );

    // KILL 1 posted on C answers alice's open poll on B with 410. The KILL is sent once
    // the poll is parked (B subscribed to the session's wake channel in Redis); a KILL
    // racing the poll's start is `kill_races_polls_opening_on_other_nodes`.
    let (_, cursor) = alice.at(na).poll_ok(0, None).await;
    wait_wake_subscribers(&cluster, &alice.id, 0).await;
    let alice_b = alice.at(nb);
    let poll = alice_b.poll(30, Some(&cursor));
    let kill = async {
        wait_wake_subscribers(&cluster, &alice.id, 1).await;
        let reply = alice
            .at(nc)
            .post(&kill_msg(&alice.id, "k1", 1, Some("now")))
            .await;
        assert_accepted(&reply, "k1");
    };
    let (reply, ()) = within(
        "an open poll on B answered after KILL 1 on C",
        CROSS,
        async { tokio::join!(poll, kill) },
    )
    .await;
    assert_killed(&reply, 1, "now");
    assert_killed(&alice.at(na).poll(0, None).await, 1, "now");

    // KILL 2 on A ends the caller's sessions started on every node.
    let mallory = uniq("mallory-");
    let ms: Vec<Session> = join_all(
        cluster
            .nodes()
            .iter()
            .map(|n| Session::open(n, &mallory, &target)),
    )
    .await;
    let carol = Session::open(nc, &uniq("carol-"), &target).await;
    assert_accepted(
        &ms[0].post(&kill_msg(&ms[0].id, "k2", 2, Some("all"))).await,
        "k2",
    );
    for (s, n) in ms.iter().zip(cluster.nodes().iter().rev()) {
        assert_killed(&s.at(n).poll(0, None).await, 2, "all");
    }
    let (msgs, _) = carol.at(na).poll_ok(0, None).await;
    assert!(msgs.is_empty(), "{msgs:?}");

    // KILL 3 through the admin API of B quarantines the caller on every node (the
    // quarantine is kept in the Store).
    let eve = uniq("eve-");
    let e1 = Session::open(nc, &eve, &target).await;
    let (status, body) = admin(
        nb,
        &e1.id,
        "kill",
        json!({"kill_level": 3, "reason": "banned"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for n in cluster.nodes() {
        let reply = start_json(
            &n.public_url(),
            "start",
            Some(&token(&eve)),
            &start_body(&eve, Some(&uri(&target))),
        )
        .await;
        let err = assert_start_error(&reply, 403);
        assert!(
            err["reason"].as_str().unwrap().contains("quarantine"),
            "{err}"
        );
        assert_killed(&e1.at(n).poll(0, None).await, 3, "banned");
    }
    // carol may still start sessions anywhere.
    Session::open(na, &carol.user, &target).await;
}

#[actix_rt::test]
async fn a_session_survives_sigkill_of_the_node_that_started_it() {
    let mut cluster = Cluster::start(3).await;
    let target = uniq("survive-");
    let (alice, bob) = {
        let na = cluster.node(0);
        let alice = Session::open(na, &uniq("alice-"), &target).await;
        let bob = Session::open(na, &uniq("bob-"), &target).await;
        // Traffic queued for alice before the crash: a request and a response.
        bob.at(na).send("q", json!("question")).await;
        let (_, _) = alice.at(na).collect_within(1, None, CROSS).await;
        alice.at(na).send("aq", json!("alice asks")).await;
        let (msgs, _) = bob.at(na).collect_within(1, None, CROSS).await;
        bob.at(na)
            .reply(
                "ar",
                msgs[0]["message_id"].as_str().unwrap(),
                json!("bob answers"),
            )
            .await;
        (alice, bob)
    };
    cluster.node_mut(0).kill().await;
    let (nb, nc) = (cluster.node(1), cluster.node(2));

    // Everything still works through B and C.
    let (msgs, cursor) = alice.at(nb).collect_within(2, None, CROSS).await;
    let kinds: Vec<_> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"request") && kinds.contains(&"response"),
        "{msgs:?}"
    );
    let response = msgs.iter().find(|m| m["type"] == "response").unwrap();
    assert_eq!(response["payload"], "bob answers");
    alice.at(nc).send("after-crash", json!("still here")).await;
    let (msgs, _) = bob.at(nb).collect_within(2, None, CROSS).await;
    assert_eq!(msgs.last().unwrap()["payload"], "still here", "{msgs:?}");
    // The duplicate record survived too.
    let reply = alice
        .at(nb)
        .post(&request_msg(&alice.id, "aq", json!(1)))
        .await;
    assert_error(&reply, 409, "DUPLICATE_MESSAGE");
    alice.at(nc).expect_quiet(Some(&cursor)).await;
    // And the session can be ended from a surviving node.
    let reply = alice
        .at(nc)
        .post(&timestick_common::stop_msg(&alice.id, "s", None))
        .await;
    assert_accepted(&reply, "s");
    let (msgs, _) = alice.at(nb).collect_within(1, Some(&cursor), CROSS).await;
    assert_control(&msgs[0], &alice.id, "STOP-OK");
}

#[actix_rt::test]
async fn the_session_limit_holds_across_nodes() {
    let cluster = Cluster::start(3).await;
    let user = uniq("flood-");
    let tok = token(&user);
    let body = start_body(&user, Some(&uri(&uniq("flood-room-"))));
    let bases: Vec<String> = cluster.nodes().iter().map(|n| n.public_url()).collect();
    let attempts = 150;
    let replies = join_all((0..attempts).map(|i| {
        let (base, tok, body) = (bases[i % 3].clone(), tok.clone(), body.clone());
        async move { start_json(&base, "start", Some(&tok), &body).await }
    }))
    .await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (ok, limited),
        (SESSIONS_PER_CALLER, attempts - SESSIONS_PER_CALLER),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &replies {
        if r.status == 200 {
            assert_start_ok(r, MAX_MESSAGE_SIZE);
        } else {
            assert_start_error(r, 429);
        }
    }
    for base in &bases {
        assert_start_error(&start_json(base, "start", Some(&tok), &body).await, 429);
    }
}

#[actix_rt::test]
async fn helios_subscribers_on_another_node_receive_requests() {
    let cluster = Cluster::start(3).await;
    let (na, nc) = (cluster.node(0), cluster.node(2));
    let target = uniq("helios-x-");
    let mut starling = Starling::connect(nc, &uniq("watcher-")).await;
    starling
        .call_ok("broker:subscribe", json!({"channel": target}))
        .await;
    // Control: a backend publish on A reaches the subscriber on C.
    let (status, body) = api_post(
        na,
        "/api/v1/publish",
        json!({"channel": target, "data": "control"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let note = starling.next_notification(CROSS).await;
    assert_eq!(note["notification"]["data"], "control", "{note}");

    let alice = Session::open(na, &uniq("alice-"), &target).await;
    alice.send("hello", json!({"text": "hi Helios"})).await;
    let note = starling
        .try_next_notification(CROSS)
        .await
        .unwrap_or_else(|| {
            panic!(
                "a Helios subscriber of {target:?} on another node must receive the TimeStick \
                 request (CONTRACT §3 routing); nothing arrived within {CROSS:?}"
            )
        });
    assert_eq!(note["notification"]["topic"], target.as_str(), "{note}");
    assert_eq!(
        note["notification"]["data"],
        json!({"text": "hi Helios"}),
        "{note}"
    );
}

#[actix_rt::test]
async fn idle_sessions_are_stopped_once_in_a_cluster() {
    let cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_TIMESTICK_IDLE", "1s")).await;
    let (na, nb, nc) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let target = uniq("idle-x-");
    let s = Session::open(na, &uniq("alice-"), &target).await;
    // A long-poll on B (activity once, at its start) gets the idle STOP.
    let (msgs, cursor) = within("the idle STOP", CROSS, s.at(nb).poll_ok(20, None)).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let stop = assert_control(&msgs[0], &s.id, "STOP");
    assert_eq!(stop["reason"], "idle-timeout");
    // Exactly one node stopped it: unconfirmed, the queue holds that one STOP only.
    let (again, _) = s.at(nc).poll_ok(1, None).await;
    assert_eq!(again, msgs, "exactly one STOP");
    assert_stopped(&s.at(na).poll(0, Some(&cursor)).await, "idle-timeout");
}

/// CONTRACT §3: KILL level 1 answers *open* polls with 410 at once. Rounds of 100
/// sessions, each with a long-poll (wait=3) sent to one node and, at the same moment, its
/// KILL 1 sent to another: every poll must be answered 410 promptly after its KILL was
/// accepted (a poll the server loaded before the KILL was open when the KILL happened; one
/// loaded after it gets 410 straight away). A correct receiver passes every round; the
/// rounds only make a lost wake-up likely to show.
#[actix_rt::test]
async fn kill_races_polls_opening_on_other_nodes() {
    let cluster = Cluster::start(3).await;
    let nodes = cluster.nodes();
    let target = uniq("race-");
    for round in 0..5 {
        let users: Vec<String> = (0..100).map(|_| uniq("racer-")).collect();
        let sessions = join_all(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| Session::open(&nodes[i % 3], u, &target)),
        )
        .await;
        let started = Instant::now();
        let outcomes = join_all(sessions.iter().enumerate().map(|(i, s)| {
            let poller = s.at(&nodes[(i + 1) % 3]);
            let killer = s.at(&nodes[(i + 2) % 3]);
            async move {
                let poll = async {
                    let reply = poller.poll(3, None).await;
                    (reply, started.elapsed())
                };
                let kill = async {
                    let reply = killer
                        .post(&kill_msg(&killer.id, "k", 1, Some("race")))
                        .await;
                    assert_accepted(&reply, "k");
                    started.elapsed()
                };
                let ((reply, polled_at), killed_at) = tokio::join!(poll, kill);
                (s.id.clone(), reply, polled_at, killed_at)
            }
        }))
        .await;
        let mut late = Vec::new();
        for (id, reply, polled_at, killed_at) in &outcomes {
            assert_killed(reply, 1, "race");
            if polled_at.saturating_sub(*killed_at) > Duration::from_millis(1500) {
                late.push(format!(
                    "{id}: KILL accepted at {killed_at:?}, its open poll answered only at \
                     {polled_at:?}"
                ));
            }
        }
        assert!(
            late.is_empty(),
            "round {round}: {} of {} open polls were not answered promptly after KILL 1 \
             (only when their wait=3 ran out):\n{}",
            late.len(),
            outcomes.len(),
            late.join("\n")
        );
    }
}

/// CONTRACT §3: after KILL "POSTs get 410". Rounds of 100 sessions that each have a
/// channel message to confirm: a poll confirming it (`after` = its cursor) and a KILL 1
/// are sent at the same moment to two different nodes. Whatever the interleaving, once
/// both are answered the session is dead: a POST gets 410 and so does a poll.
#[actix_rt::test]
async fn a_confirming_poll_racing_a_kill_does_not_revive_the_session() {
    let cluster = Cluster::start(3).await;
    let nodes = cluster.nodes();
    for round in 0..5 {
        let target = uniq("revive-");
        let users: Vec<String> = (0..100).map(|_| uniq("u-")).collect();
        let sessions = join_all(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| Session::open(&nodes[i % 3], u, &target)),
        )
        .await;
        let (status, body) = api_post(
            &nodes[0],
            "/api/v1/publish",
            json!({"channel": target, "data": 1}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let cursors = join_all(
            sessions
                .iter()
                .map(|s| async move { s.collect_within(1, None, CROSS).await.1 }),
        )
        .await;
        let outcomes = join_all(
            sessions
                .iter()
                .zip(&cursors)
                .enumerate()
                .map(|(i, (s, c))| {
                    let poller = s.at(&nodes[(i + 1) % 3]);
                    let killer = s.at(&nodes[(i + 2) % 3]);
                    async move {
                        let poll = poller.poll(0, Some(c));
                        let kill_body = kill_msg(&killer.id, "k", 1, Some("dead"));
                        let kill = killer.post(&kill_body);
                        let (_, killed) = tokio::join!(poll, kill);
                        assert_accepted(&killed, "k");
                        let post = s.post(&request_msg(&s.id, "after-kill", json!(1))).await;
                        (s.id.clone(), post)
                    }
                }),
        )
        .await;
        let revived: Vec<String> = outcomes
            .iter()
            .filter(|(_, post)| post.status != 410)
            .map(|(id, post)| format!("{id}: POST after KILL 1 → {} {}", post.status, post.text()))
            .collect();
        assert!(
            revived.is_empty(),
            "round {round}: {} of {} killed sessions accept messages again:\n{}",
            revived.len(),
            outcomes.len(),
            revived.join("\n")
        );
        for (_, post) in &outcomes {
            assert_killed(post, 1, "dead");
        }
    }
}

/// Marks `message_id` of session `id` as recorded but never settled at `since_ms`, in
/// the cluster's Redis: what a node leaves behind when it dies between recording a
/// POSTed message and publishing it (docs/timestick.md, "Cluster behaviour").
async fn leave_unsettled(cluster: &Cluster, id: &str, message_id: &str, since_ms: i64) {
    let (seen, unsettled) = (
        format!("murmur:ts:seen:{id}"),
        format!("murmur:ts:unsettled:{id}"),
    );
    let since = since_ms.to_string();
    let redis = cluster.redis();
    assert_eq!(
        redis.cmd(&["SADD", &seen, message_id]).await.as_int(),
        Some(1)
    );
    assert_eq!(
        redis
            .cmd(&["HSET", &unsettled, message_id, &since])
            .await
            .as_int(),
        Some(1)
    );
}

#[actix_rt::test]
async fn a_retry_carries_out_a_message_its_dead_node_recorded_but_never_published() {
    let cluster = Cluster::start(2).await;
    let nodes = cluster.nodes();
    let target = uniq("unsettled-");
    let alice = Session::open(&nodes[0], &uniq("alice-"), &target).await;
    let bob = Session::open(&nodes[1], &uniq("bob-"), &target).await;
    let now = murmur_shared::ids::now_ms() as i64;

    // Left behind long ago (its lease has run out): the retry is accepted at once,
    // delivered once, and from then on a duplicate.
    leave_unsettled(&cluster, &alice.id, "lost", now - 60_000).await;
    alice.at(&nodes[1]).send("lost", json!("again")).await;
    // Left behind just now: the retry waits out the lease of the POST that recorded it
    // (5 s), then carries it out.
    leave_unsettled(&cluster, &alice.id, "fresh", now).await;
    let started = Instant::now();
    alice.at(&nodes[0]).send("fresh", json!("late")).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "the lease is waited out, not cut short: {waited:?}"
    );
    for n in nodes {
        for id in ["lost", "fresh"] {
            let reply = alice
                .at(n)
                .post(&request_msg(&alice.id, id, json!(3)))
                .await;
            assert_error(&reply, 409, "DUPLICATE_MESSAGE");
        }
    }
    let (msgs, cursor) = bob.at(&nodes[0]).collect_within(2, None, CROSS).await;
    let got: Vec<_> = msgs
        .iter()
        .map(|m| (m["message_id"].clone(), m["payload"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(format!("{}.lost", alice.id)), json!("again")),
            (json!(format!("{}.fresh", alice.id)), json!("late")),
        ]
    );
    bob.at(&nodes[1]).expect_quiet(Some(&cursor)).await;
}
