//! Helios-Starling (protocol `helios-starling`, version `1.0.0`) message builders and
//! [`Starling`], a client that keeps request/response bookkeeping out of the tests.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::node::Node;
use crate::ws::{WsClient, WsEvent, DEFAULT_TIMEOUT};

/// The `protocol` field.
pub const PROTOCOL: &str = "helios-starling";
/// The `version` field.
pub const VERSION: &str = "1.0.0";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_millis() as u64
}

fn base(kind: &str) -> Value {
    json!({ "protocol": PROTOCOL, "version": VERSION, "timestamp": now_ms(), "type": kind })
}

/// A request with a fresh UUID v4 `requestId`: `(request_id, message)`.
pub fn request(method: &str, payload: Value) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let mut msg = base("request");
    msg["requestId"] = json!(id);
    msg["method"] = json!(method);
    msg["payload"] = payload;
    (id, msg)
}

/// A successful response to `request_id`.
pub fn response_ok(request_id: &str, data: Value) -> Value {
    let mut msg = base("response");
    msg["requestId"] = json!(request_id);
    msg["success"] = json!(true);
    msg["data"] = data;
    msg
}

/// A failed response to `request_id`.
pub fn response_err(request_id: &str, code: &str, message: &str) -> Value {
    let mut msg = base("response");
    msg["requestId"] = json!(request_id);
    msg["success"] = json!(false);
    msg["error"] = json!({ "code": code, "message": message });
    msg
}

/// A notification with `topic` and `data`.
pub fn notification(topic: &str, data: Value) -> Value {
    let mut msg = base("notification");
    msg["notification"] = json!({ "topic": topic, "data": data });
    msg
}

/// `msg["type"]` as text ("" if absent).
pub fn kind(msg: &Value) -> &str {
    msg["type"].as_str().unwrap_or_default()
}

/// Whether `msg` is the response to `request_id`.
pub fn is_response_to(msg: &Value, request_id: &str) -> bool {
    kind(msg) == "response" && msg["requestId"] == request_id
}

/// A Helios-Starling client over [`WsClient`]. Messages read while waiting for something
/// else (notifications, server requests, unrelated responses) are queued, in order, and
/// served by later calls.
pub struct Starling {
    ws: WsClient,
    pending: VecDeque<Value>,
}

impl Starling {
    /// Connects to `node`'s `/starling` endpoint with a valid token for `user`; panics if the
    /// upgrade is refused.
    pub async fn connect(node: &Node, user: &str) -> Starling {
        let url = node.ws_url(&format!("/starling?token={}", crate::token(user)));
        Self::connect_url(&url).await
    }

    /// Connects with a valid token for `user` plus `recover=<recovery_token>` (Helios §2.1).
    pub async fn connect_recover(node: &Node, user: &str, recovery_token: &str) -> Starling {
        let query = format!("token={}&recover={recovery_token}", crate::token(user));
        Self::connect_url(&node.ws_url(&format!("/starling?{query}"))).await
    }

    /// Connects to any URL; panics if the upgrade is refused.
    pub async fn connect_url(url: &str) -> Starling {
        match WsClient::connect(url).await {
            Ok(ws) => Starling::from_ws(ws),
            Err((status, body)) => panic!("Starling connect to {url} refused: {status} {body}"),
        }
    }

    /// Wraps an already connected client.
    pub fn from_ws(ws: WsClient) -> Starling {
        Starling {
            ws,
            pending: VecDeque::new(),
        }
    }

    /// The underlying client (reading from it directly bypasses the queue).
    pub fn ws(&mut self) -> &mut WsClient {
        &mut self.ws
    }

    /// Unwraps into the client, dropping queued messages.
    pub fn into_ws(self) -> WsClient {
        self.ws
    }

    /// Messages read but not yet consumed.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    /// Sends a request without waiting; returns its `requestId`.
    pub async fn send_request(&mut self, method: &str, payload: Value) -> String {
        let (id, msg) = request(method, payload);
        self.ws.send_json(&msg).await;
        id
    }

    /// The first queued or incoming message satisfying `pred` within `timeout` (others are
    /// queued); `None` on timeout. Panics if the connection closes or sends non-JSON.
    pub async fn try_next_matching(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let event = self.ws.try_recv(remaining).await?;
            let msg = match event {
                WsEvent::Text(text) => serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: non-JSON text ({e}): {text:?}", self.ws.url())),
                other => panic!(
                    "{}: expected a Helios message, got {other:?} (queued: {:?})",
                    self.ws.url(),
                    self.pending
                ),
            };
            if pred(&msg) {
                return Some(msg);
            }
            self.pending.push_back(msg);
        }
    }

    async fn next_matching(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        match self.try_next_matching(timeout, pred).await {
            Some(msg) => msg,
            None => panic!(
                "timed out after {timeout:?} waiting for {what} on {} (queued: {:?})",
                self.ws.url(),
                self.pending
            ),
        }
    }

    /// Waits for the response to `request_id` (the whole message).
    pub async fn wait_response(&mut self, request_id: &str, timeout: Duration) -> Value {
        let what = format!("the response to request {request_id}");
        self.next_matching(&what, timeout, |m| is_response_to(m, request_id))
            .await
    }

    /// Sends a request and returns the whole response message (within 10 s), whatever its
    /// `success`.
    pub async fn call(&mut self, method: &str, payload: Value) -> Value {
        self.call_timeout(method, payload, DEFAULT_TIMEOUT).await
    }

    /// [`Starling::call`] with an explicit bound.
    pub async fn call_timeout(&mut self, method: &str, payload: Value, timeout: Duration) -> Value {
        let id = self.send_request(method, payload).await;
        self.wait_response(&id, timeout).await
    }

    /// Sends a request and returns its `data`; panics unless `success` is `true`.
    pub async fn call_ok(&mut self, method: &str, payload: Value) -> Value {
        let response = self.call(method, payload).await;
        assert_eq!(response["success"], true, "{method} failed: {response}");
        response["data"].clone()
    }

    /// The next notification (the whole message), queued or incoming, within `timeout`.
    pub async fn next_notification(&mut self, timeout: Duration) -> Value {
        self.next_matching("a notification", timeout, |m| kind(m) == "notification")
            .await
    }

    /// The next notification within `timeout`, or `None` (to assert that none arrives).
    pub async fn try_next_notification(&mut self, timeout: Duration) -> Option<Value> {
        self.try_next_matching(timeout, |m| kind(m) == "notification")
            .await
    }

    /// Asserts that nothing matching `pred` arrives: not within [`crate::QUIET`], and not
    /// on its way either: a `system:ping` round trip follows the window (the connection
    /// delivers in order, so whatever was queued for it before the pong comes first).
    pub async fn expect_none(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) {
        if let Some(m) = self.try_next_matching(crate::QUIET, &mut pred).await {
            panic!("{}: {what}: got {m}", self.ws.url());
        }
        let id = self
            .send_request("system:ping", Value::Object(Default::default()))
            .await;
        let barrier = self
            .try_next_matching(crate::SOON, |m| pred(m) || is_response_to(m, &id))
            .await;
        match barrier {
            Some(m) if is_response_to(&m, &id) => {}
            Some(m) => panic!("{}: {what}: got {m} (before the barrier)", self.ws.url()),
            None => panic!("{}: no answer to the barrier ping", self.ws.url()),
        }
    }

    /// [`expect_none`](Self::expect_none) for notifications.
    pub async fn expect_no_notification(&mut self, what: &str) {
        self.expect_none(what, |m| kind(m) == "notification").await
    }

    /// The next server→client request (the whole message), queued or incoming, within 10 s.
    pub async fn next_request(&mut self) -> Value {
        self.next_matching("a server request", DEFAULT_TIMEOUT, |m| {
            kind(m) == "request"
        })
        .await
    }

    /// Answers a server request successfully.
    pub async fn respond_ok(&mut self, request_id: &str, data: Value) {
        self.ws.send_json(&response_ok(request_id, data)).await;
    }

    /// Answers a server request with an error.
    pub async fn respond_err(&mut self, request_id: &str, code: &str, message: &str) {
        self.ws
            .send_json(&response_err(request_id, code, message))
            .await;
    }

    /// Sends a client→server notification.
    pub async fn notify(&mut self, topic: &str, data: Value) {
        self.ws.send_json(&notification(topic, data)).await;
    }

    /// Closes the connection normally.
    pub async fn close(&mut self) {
        self.ws.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_follow_the_spec() {
        let (id, req) = request("chat:send", json!({ "text": "hi" }));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(req["protocol"], PROTOCOL);
        assert_eq!(req["version"], VERSION);
        assert_eq!(req["type"], "request");
        assert_eq!(req["requestId"], id.as_str());
        assert_eq!(req["method"], "chat:send");
        assert_eq!(req["payload"]["text"], "hi");
        assert!(req["timestamp"].as_u64().unwrap() > 1_600_000_000_000);

        let ok = response_ok(&id, json!(1));
        assert!(is_response_to(&ok, &id));
        assert_eq!(
            (ok["success"].clone(), ok["data"].clone()),
            (json!(true), json!(1))
        );
        let err = response_err(&id, "METHOD_ERROR", "boom");
        assert_eq!(err["success"], false);
        assert_eq!(
            err["error"],
            json!({ "code": "METHOD_ERROR", "message": "boom" })
        );
        let note = notification("t", json!({ "x": 1 }));
        assert_eq!(kind(&note), "notification");
        assert_eq!(note["notification"]["topic"], "t");
    }

    #[actix_rt::test]
    async fn starling_queues_messages_that_arrive_during_a_call() {
        use crate::testutil::{read_client_frame, ws_server};
        use crate::wsframe::{encode_frame, OP_TEXT};
        use tokio::io::AsyncWriteExt;

        let url = ws_server(false, |mut sock, mut buf, _| async move {
            let frame = read_client_frame(&mut sock, &mut buf).await;
            let req: Value = serde_json::from_slice(&frame.payload).unwrap();
            assert_eq!(req["method"], "chat:join");
            let id = req["requestId"].as_str().unwrap().to_string();
            let (server_req_id, server_req) = request("client:ping", json!({}));
            for msg in [
                notification("room", json!(1)),
                server_req,
                response_ok("some-other-id", json!("stale")),
                notification("room", json!(2)),
                response_ok(&id, json!({ "joined": true })),
            ] {
                let wire = encode_frame(true, OP_TEXT, msg.to_string().as_bytes(), None);
                sock.write_all(&wire).await.unwrap();
            }
            let answer = read_client_frame(&mut sock, &mut buf).await;
            let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
            assert!(is_response_to(&answer, &server_req_id), "{answer}");
            assert_eq!(answer["data"], json!({ "pong": true }));
            let done = notification("done", json!(null)).to_string();
            let wire = encode_frame(true, OP_TEXT, done.as_bytes(), None);
            sock.write_all(&wire).await.unwrap();
        })
        .await;

        let mut starling = Starling::connect_url(&url).await;
        let data = starling.call_ok("chat:join", json!({ "room": "r" })).await;
        assert_eq!(data, json!({ "joined": true }));
        assert_eq!(starling.pending().len(), 4);
        let first = starling.next_notification(Duration::from_secs(1)).await;
        assert_eq!(first["notification"]["data"], 1);
        let server_req = starling.next_request().await;
        assert_eq!(server_req["method"], "client:ping");
        let second = starling.next_notification(Duration::from_secs(1)).await;
        assert_eq!(second["notification"]["data"], 2);
        let req_id = server_req["requestId"].as_str().unwrap();
        starling.respond_ok(req_id, json!({ "pong": true })).await;
        let done = starling.next_notification(Duration::from_secs(5)).await;
        assert_eq!(done["notification"]["topic"], "done");
        assert_eq!(
            starling.pending().len(),
            1,
            "only the stale response is left"
        );
    }
}
