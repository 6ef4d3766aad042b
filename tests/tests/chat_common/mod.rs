//! Helpers shared by the GradAgenda chat black-box test files (`chat_*.rs`; each test file
//! is its own crate and uses a subset, hence the `dead_code` and `unused_imports` allowance).
//!
//! [`ChatClient`] wraps a [`WsClient`] on `/chat` and deals in *actions*: a server frame
//! that is a `batch-mode-action` (the server may pack its own outgoing actions, CONTRACT
//! §5) is flattened into its inner actions, in order. Every frame the server sends is
//! checked against the contract on the way in: a UTF-8 text frame of at most 4096 bytes
//! holding a JSON object with a string `type`, server batches not nested.
#![allow(dead_code, unused_imports)]

use std::collections::VecDeque;
use std::time::Duration;

use murmur_tests::{token, Node, WsClient, WsEvent};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use serde_json::{json, Value};
use tokio::time::Instant;

/// The contract's frame limit (CONTRACT §5), both directions.
pub const MAX_FRAME: usize = 4096;
/// The documented participant limit of a mutable session.
pub const MAX_PARTICIPANTS: usize = 256;

pub use murmur_tests::uniq;

pub use murmur_tests::helios::now_ms;

// ---- client actions ------------------------------------------------------------------------

pub fn auth_action(cdid: &str, user: &str, device: &str, token: &str) -> Value {
    json!({"cdid": cdid, "type": "authenticate", "user-id": user, "device-id": device,
           "token": token})
}

pub fn direct_action(cdid: &str, other: &str) -> Value {
    json!({"cdid": cdid, "type": "request-direct-session-info", "user-id": other})
}

pub fn create_action(cdid: &str, users: &[&str]) -> Value {
    json!({"cdid": cdid, "type": "request-mutable-session-creation", "user-id": users})
}

pub fn modify_action(cdid: &str, session: &str, users: &[&str]) -> Value {
    json!({"cdid": cdid, "type": "request-mutable-session-modification",
           "session-id": session, "user-id": users})
}

pub fn delete_action(cdid: &str, session: &str) -> Value {
    json!({"cdid": cdid, "type": "request-mutable-session-deletion", "session-id": session})
}

pub fn list_action(cdid: &str) -> Value {
    json!({"cdid": cdid, "type": "request-mutable-session-listing"})
}

pub fn text_message(body: &str) -> Value {
    json!({"type": "text", "body": body})
}

pub fn send_action(cdid: &str, session: &str, body: &str) -> Value {
    json!({"cdid": cdid, "type": "request-sending-a-message", "session-id": session,
           "message": text_message(body), "sender-timestamp": now_ms()})
}

pub fn history_action(cdid: &str, session: &str, limit: Option<u64>, since: Option<&str>) -> Value {
    let mut v = json!({"cdid": cdid, "type": "request-message-history", "session-id": session});
    if let Some(l) = limit {
        v["limit"] = json!(l);
    }
    if let Some(s) = since {
        v["since-message-id"] = json!(s);
    }
    v
}

pub fn batch_action(cdid: &str, actions: Vec<Value>) -> Value {
    json!({"cdid": cdid, "type": "batch-mode-action", "actions": actions})
}

// ---- predicates and checks -------------------------------------------------------------------

pub fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or_default()
}

pub fn has_cdid(v: &Value, cdid: &str) -> bool {
    v.get("cdid").and_then(Value::as_str) == Some(cdid)
}

pub fn is_broadcast_of(v: &Value, session: &str, body: &str) -> bool {
    kind(v) == "message-broadcast" && v["session-id"] == session && v["message"]["body"] == body
}

pub fn is_info_for(v: &Value, session: &str) -> bool {
    kind(v) == "providing-session-info" && v["session-id"] == session
}

/// The `user-id` array of a `providing-session-info`, sorted.
pub fn participants(info: &Value) -> Vec<String> {
    let mut out: Vec<String> = info["user-id"]
        .as_array()
        .unwrap_or_else(|| panic!("`user-id` must be an array: {info}"))
        .iter()
        .map(|u| {
            u.as_str()
                .unwrap_or_else(|| panic!("user ids must be strings: {info}"))
                .to_string()
        })
        .collect();
    out.sort();
    out
}

pub fn sorted(users: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    v.sort();
    v
}

/// Asserts the shape of a `message-broadcast` (CONTRACT §5): the seed's fields plus a
/// `message-id` and a `server-timestamp` (ms).
pub fn assert_broadcast(v: &Value, session: &str, sender: &str, body: &str) {
    assert_eq!(kind(v), "message-broadcast", "{v}");
    assert_eq!(v["session-id"], session, "session-id: {v}");
    assert_eq!(v["sender-id"], sender, "sender-id: {v}");
    assert_eq!(v["message"], text_message(body), "message: {v}");
    assert!(v["sender-timestamp"].is_number(), "sender-timestamp: {v}");
    let id = v["message-id"]
        .as_str()
        .unwrap_or_else(|| panic!("message-id must be a string: {v}"));
    assert!(!id.is_empty(), "message-id: {v}");
    let ts = v["server-timestamp"]
        .as_u64()
        .unwrap_or_else(|| panic!("server-timestamp must be ms since the epoch: {v}"));
    let now = now_ms();
    assert!(
        ts > now - 600_000 && ts <= now + 60_000,
        "server-timestamp {ts} is not close to now ({now}): {v}"
    );
}

/// `message-id` of a broadcast.
/// The `(user-id, device-id)` pairs an aggregated `message-delivered` covers
/// (`delivered-to`), checking that its top-level `user-id`/`device-id` name the first.
pub fn reported_devices(v: &Value) -> Vec<(String, String)> {
    let to = v["delivered-to"]
        .as_array()
        .unwrap_or_else(|| panic!("delivered-to: {v}"));
    assert!(!to.is_empty(), "a report covers at least one device: {v}");
    assert_eq!(v["user-id"], to[0]["user-id"], "{v}");
    assert_eq!(v["device-id"], to[0]["device-id"], "{v}");
    to.iter()
        .map(|d| {
            (
                d["user-id"].as_str().unwrap_or_default().to_string(),
                d["device-id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn message_id(v: &Value) -> String {
    v["message-id"]
        .as_str()
        .unwrap_or_else(|| panic!("message-id: {v}"))
        .to_string()
}

// ---- the client ------------------------------------------------------------------------------

/// A `/chat` connection that hands out individual server actions (see the module docs).
pub struct ChatClient {
    pub ws: WsClient,
    /// `user/device` once logged in, for messages.
    pub label: String,
    pub user: String,
    pub device: String,
    queue: VecDeque<Value>,
    /// Text frames received, batch frames among them, the largest one's size.
    pub frames: usize,
    pub batch_frames: usize,
    pub max_frame_len: usize,
    seq: u64,
}

impl ChatClient {
    /// Opens `/chat` on `node` without authenticating.
    pub async fn connect(node: &Node) -> ChatClient {
        let url = node.ws_url("/chat");
        let ws = WsClient::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("WebSocket upgrade of {url} refused: {e:?}"));
        ChatClient {
            ws,
            label: format!("unauthenticated client of {}", node.id()),
            user: String::new(),
            device: String::new(),
            queue: VecDeque::new(),
            frames: 0,
            batch_frames: 0,
            max_frame_len: 0,
            seq: 0,
        }
    }

    /// Connects and authenticates `user` from `device` with a valid token.
    pub async fn login(node: &Node, user: &str, device: &str) -> ChatClient {
        let mut c = ChatClient::connect(node).await;
        let reply = c.authenticate(user, device, &token(user)).await;
        assert_eq!(
            reply["status"], "succeeded",
            "authenticate {user}/{device}: {reply}"
        );
        c
    }

    /// Connects and authenticates `user` from `device`, opting into `extensions`.
    pub async fn login_with(
        node: &Node,
        user: &str,
        device: &str,
        extensions: &[&str],
    ) -> ChatClient {
        let mut c = ChatClient::connect(node).await;
        let mut auth = auth_action("auth-0", user, device, &token(user));
        auth["extensions"] = json!(extensions);
        let reply = c.authenticate_with(user, device, auth).await;
        assert_eq!(
            reply["status"], "succeeded",
            "authenticate {user}/{device}: {reply}"
        );
        c
    }

    /// Sends `authenticate` and returns its `status-response` (either outcome).
    pub async fn authenticate(&mut self, user: &str, device: &str, token: &str) -> Value {
        let action = auth_action("", user, device, token);
        self.authenticate_with(user, device, action).await
    }

    /// Sends the `authenticate` action `action` (its cdid replaced) and returns its
    /// `status-response`.
    async fn authenticate_with(&mut self, user: &str, device: &str, mut action: Value) -> Value {
        let cdid = self.cdid("auth");
        action["cdid"] = json!(cdid);
        self.send(&action).await;
        let reply = self.expect_status(&cdid).await;
        if reply["status"] == "succeeded" {
            self.user = user.to_string();
            self.device = device.to_string();
            self.label = format!("{user}/{device}");
        }
        reply
    }

    /// A fresh cdid with `prefix`, unique on this connection.
    pub fn cdid(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    pub async fn send(&mut self, action: &Value) {
        self.ws.send_json(action).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send_text(text).await;
    }

    /// Reads one frame within `timeout` and queues its actions; `false` on timeout.
    async fn read_frame(&mut self, timeout: Duration) -> bool {
        let Some(event) = self.ws.try_recv(timeout).await else {
            return false;
        };
        self.accept(event);
        true
    }

    /// Queues the actions of one frame the server sent.
    fn accept(&mut self, event: WsEvent) {
        let text = match event {
            WsEvent::Text(text) => text,
            other => panic!(
                "{}: expected a text frame, got {other:?} (queued: {:?})",
                self.label, self.queue
            ),
        };
        self.frames += 1;
        self.max_frame_len = self.max_frame_len.max(text.len());
        assert!(
            text.len() <= MAX_FRAME,
            "{}: the server sent a {}-byte frame, over the {MAX_FRAME}-byte limit of \
             CONTRACT §5: {}...",
            self.label,
            text.len(),
            text.chars().take(300).collect::<String>()
        );
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: server frame is not JSON ({e}): {text}", self.label));
        assert!(
            value.is_object() && value["type"].is_string(),
            "{}: server frame is not an action object: {text}",
            self.label
        );
        if kind(&value) == "batch-mode-action" {
            self.batch_frames += 1;
            let actions = value["actions"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: batch without `actions`: {text}", self.label));
            for a in actions {
                assert!(
                    a.is_object() && a["type"].is_string() && kind(a) != "batch-mode-action",
                    "{}: bad inner action of a server batch (must be a non-batch action): \
                     {text}",
                    self.label
                );
                self.queue.push_back(a.clone());
            }
        } else {
            self.queue.push_back(value);
        }
    }

    /// The next individual action within `timeout`, or `None`.
    pub async fn next_action(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.queue.pop_front() {
                return Some(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_frame(left).await {
                return None;
            }
        }
    }

    /// The first action (queued or arriving within `timeout`) that satisfies `pred`; the
    /// others stay queued in order. Panics naming `what` on timeout.
    pub async fn expect_within(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.queue.iter().position(&mut pred) {
            return self.queue.remove(i).expect("index from position");
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let before = self.queue.len();
            if left.is_zero() || !self.read_frame(left).await {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}; unmatched actions: \
                     {:?}",
                    self.label, self.queue
                );
            }
            if let Some(off) = self.queue.iter().skip(before).position(&mut pred) {
                return self
                    .queue
                    .remove(before + off)
                    .expect("index from position");
            }
        }
    }

    /// [`ChatClient::expect_within`] with [`SOON`].
    pub async fn expect(&mut self, what: &str, pred: impl FnMut(&Value) -> bool) -> Value {
        self.expect_within(what, SOON, pred).await
    }

    /// The `status-response` carrying `cdid`.
    pub async fn expect_status(&mut self, cdid: &str) -> Value {
        let what = format!("status-response with cdid {cdid:?}");
        self.expect(&what, |v| kind(v) == "status-response" && has_cdid(v, cdid))
            .await
    }

    /// Expects a `status-response` `failed` with `cdid` and a reason; returns the reason.
    pub async fn expect_failed(&mut self, cdid: &str) -> String {
        let v = self.expect_status(cdid).await;
        assert_eq!(
            v["status"], "failed",
            "{}: expected failed: {v}",
            self.label
        );
        v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a failure must carry a reason: {v}", self.label))
            .to_string()
    }

    /// Expects a `status-response` `succeeded` with `cdid`.
    pub async fn expect_succeeded(&mut self, cdid: &str) {
        let v = self.expect_status(cdid).await;
        assert_eq!(
            v["status"], "succeeded",
            "{}: expected succeeded: {v}",
            self.label
        );
    }

    /// The `providing-session-info` carrying `cdid`.
    pub async fn expect_info(&mut self, cdid: &str) -> Value {
        let what = format!("providing-session-info with cdid {cdid:?}");
        let v = self
            .expect(&what, |v| {
                has_cdid(v, cdid) && matches!(kind(v), "providing-session-info" | "status-response")
            })
            .await;
        assert_eq!(
            kind(&v),
            "providing-session-info",
            "{}: expected session info for {cdid}: {v}",
            self.label
        );
        v
    }

    /// Asserts that no action satisfying `pred` is queued, arrives within `timeout`, or
    /// was on its way (a ping barrier after the window); others are kept queued.
    pub async fn assert_none(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) {
        if let Some(v) = self.queue.iter().find(|v| pred(v)) {
            panic!("{}: unexpected {what}: {v}", self.label);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let before = self.queue.len();
            if left.is_zero() || !self.read_frame(left).await {
                break;
            }
            if let Some(v) = self.queue.iter().skip(before).find(|v| pred(v)) {
                panic!("{}: unexpected {what}: {v}", self.label);
            }
        }
        // The barrier: whatever the server had queued for this device comes before the
        // pong of a ping sent now.
        let before = self.queue.len();
        for event in self.ws.barrier(SOON).await {
            self.accept(event);
        }
        if let Some(v) = self.queue.iter().skip(before).find(|v| pred(v)) {
            panic!(
                "{}: unexpected {what} (before the barrier): {v}",
                self.label
            );
        }
    }

    /// Asserts that nothing at all is queued or arrives within `timeout`.
    pub async fn assert_quiet(&mut self, timeout: Duration) {
        self.assert_none("action (expected silence)", timeout, |_| true)
            .await;
    }

    /// Actions queued but not yet consumed.
    pub fn queued(&self) -> Vec<Value> {
        self.queue.iter().cloned().collect()
    }

    /// Drops the queued actions.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Waits for the server to close: `(code, reason)`; panics if the stream ends
    /// without a close frame.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let close = self.ws.expect_close_within(timeout).await;
        close.unwrap_or_else(|| {
            panic!(
                "{}: the connection ended without a close frame carrying a code",
                self.label
            )
        })
    }

    /// Asserts the server closes with `code`.
    pub async fn expect_close_code(&mut self, code: u16) {
        let (got, reason) = self.expect_close(SOON).await;
        assert_eq!(got, code, "{}: close code (reason {reason:?})", self.label);
    }

    // ---- higher-level requests ---------------------------------------------------------

    /// `request-direct-session-info` → the session info (checked: direct, unchanged).
    pub async fn direct(&mut self, other: &str) -> Value {
        let cdid = self.cdid("direct");
        self.send(&direct_action(&cdid, other)).await;
        let info = self.expect_info(&cdid).await;
        assert_eq!(info["session-type"], "direct", "{info}");
        assert_eq!(info["status"], "unchanged", "{info}");
        info
    }

    /// The direct session id with `other`.
    pub async fn direct_id(&mut self, other: &str) -> String {
        let info = self.direct(other).await;
        info["session-id"]
            .as_str()
            .unwrap_or_else(|| panic!("session-id: {info}"))
            .to_string()
    }

    /// Creates a group with `others` (the creator joins) → (session id, own info copy).
    pub async fn create_group(&mut self, others: &[&str]) -> (String, Value) {
        let cdid = self.cdid("create");
        self.send(&create_action(&cdid, others)).await;
        let info = self.expect_info(&cdid).await;
        assert_eq!(info["session-type"], "mutable", "{info}");
        assert_eq!(info["status"], "created", "{info}");
        let sid = info["session-id"]
            .as_str()
            .unwrap_or_else(|| panic!("session-id: {info}"))
            .to_string();
        assert!(!sid.is_empty(), "{info}");
        (sid, info)
    }

    /// Sends `body` to `session` and returns this connection's copy of the broadcast
    /// (checked: shape, cdid).
    pub async fn say(&mut self, session: &str, body: &str) -> Value {
        let cdid = self.cdid("say");
        self.send(&send_action(&cdid, session, body)).await;
        let what = format!("own broadcast / answer for {cdid}");
        let v = self
            .expect(&what, |v| {
                has_cdid(v, &cdid) && matches!(kind(v), "message-broadcast" | "status-response")
            })
            .await;
        assert_eq!(
            kind(&v),
            "message-broadcast",
            "{}: sending to {session} failed: {v}",
            self.label
        );
        let user = self.user.clone();
        assert_broadcast(&v, session, &user, body);
        v
    }

    /// Sends `body` to `session` and expects a failure; returns the reason.
    pub async fn say_fails(&mut self, session: &str, body: &str) -> String {
        let cdid = self.cdid("say");
        self.send(&send_action(&cdid, session, body)).await;
        let what = format!("answer for {cdid}");
        let v = self.expect(&what, |v| has_cdid(v, &cdid)).await;
        assert_eq!(kind(&v), "status-response", "{}: {v}", self.label);
        assert_eq!(v["status"], "failed", "{}: {v}", self.label);
        v["message"].as_str().unwrap_or_default().to_string()
    }

    /// The broadcast of `body` in `session` as received by this device.
    pub async fn expect_broadcast(&mut self, session: &str, body: &str) -> Value {
        let what = format!("broadcast {body:?} in {session}");
        self.expect_within(&what, CROSS, |v| is_broadcast_of(v, session, body))
            .await
    }

    /// `request-mutable-session-listing` → the session infos (each carrying the cdid),
    /// after which the closing `status-response succeeded` must come.
    pub async fn list(&mut self) -> Vec<Value> {
        let cdid = self.cdid("list");
        self.send(&list_action(&cdid)).await;
        self.collect_until_status(&cdid, "providing-session-info")
            .await
    }

    /// `request-message-history` → the history items, in order.
    pub async fn history(
        &mut self,
        session: &str,
        limit: Option<u64>,
        since: Option<&str>,
    ) -> Vec<Value> {
        let cdid = self.cdid("hist");
        self.send(&history_action(&cdid, session, limit, since))
            .await;
        let items = self.collect_until_status(&cdid, "message-broadcast").await;
        for item in &items {
            assert_eq!(item["history"], true, "history items are marked: {item}");
        }
        items
    }

    /// Collects the actions carrying `cdid` (all of type `item_kind`) until the
    /// `status-response` with `cdid`, which must be `succeeded`.
    pub async fn collect_until_status(&mut self, cdid: &str, item_kind: &str) -> Vec<Value> {
        let mut items = Vec::new();
        loop {
            let what = format!("{item_kind} / status-response with cdid {cdid:?}");
            let v = self.expect(&what, |v| has_cdid(v, cdid)).await;
            if kind(&v) == "status-response" {
                assert_eq!(
                    v["status"], "succeeded",
                    "{}: request {cdid} failed: {v}",
                    self.label
                );
                return items;
            }
            assert_eq!(kind(&v), item_kind, "{}: {v}", self.label);
            items.push(v);
        }
    }
}

/// The bodies of broadcasts, for order comparisons.
pub fn bodies(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| {
            v["message"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Asserts the node's log shows no panic.
pub fn assert_no_panic(node: &Node) {
    let log = node.log_contents();
    assert!(
        !log.contains("panicked"),
        "node {} panicked; log {}:\n{}",
        node.id(),
        node.log_path().display(),
        node.log_tail(40)
    );
}

/// Two logged-in users sharing a group, to show that hostile or broken traffic on another
/// connection leaves them alone.
pub struct Bystanders {
    pub a: ChatClient,
    pub b: ChatClient,
    pub sid: String,
    n: usize,
}

impl Bystanders {
    pub async fn new(node: &Node) -> Bystanders {
        let (ua, ub) = (uniq("alice"), uniq("bob"));
        let mut a = ChatClient::login(node, &ua, "phone").await;
        let mut b = ChatClient::login(node, &ub, "phone").await;
        let (sid, _) = a.create_group(&[&ub]).await;
        b.expect("created info", |v| is_info_for(v, &sid)).await;
        Bystanders { a, b, sid, n: 0 }
    }

    /// A message from a to b still goes through, and nothing else reached either of them.
    pub async fn still_fine(&mut self) {
        self.n += 1;
        let body = format!("still here {}", self.n);
        self.a.say(&self.sid, &body).await;
        self.b.expect_broadcast(&self.sid, &body).await;
        for c in [&mut self.a, &mut self.b] {
            let stray: Vec<Value> = c
                .queued()
                .into_iter()
                .filter(|v| kind(v) != "message-delivered" && kind(v) != "message-broadcast")
                .collect();
            assert!(stray.is_empty(), "{}: stray actions {stray:?}", c.label);
        }
    }
}
