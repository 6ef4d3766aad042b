//! HTTP helpers over awc (need an actix runtime, i.e. `#[actix_rt::test]`): plain requests,
//! the bearer-authenticated internal API, and Prometheus metrics scraping.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::node::Node;
use crate::API_KEY;

pub use awc::http::Method;

/// Per-request timeout of [`http`] (long enough for long-polls).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(70);

/// Largest response body the helpers read.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// An awc client with a 70 s timeout that does not follow redirects.
pub fn http() -> awc::Client {
    awc::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Headers as (lower-case name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON: `Null` if empty, a JSON string holding the raw text if it is not
    /// JSON.
    pub fn json(&self) -> Value {
        body_to_json(&self.body)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn body_to_json(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Sends `method url` with extra `headers` and an optional JSON body; panics on transport
/// errors (connection refused, timeout), never on HTTP error statuses.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> HttpReply {
    try_request(&http(), method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`request`] over `client` (whose keep-alive connections it reuses) that reports a
/// transport error (connection refused or reset, timeout) as `Err(why)` instead of
/// panicking: for load drivers that keep going while a node fails.
pub async fn try_request(
    client: &awc::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<HttpReply, String> {
    exchange(client, method, url, headers, body.map(Payload::Json)).await
}

/// [`request`] with an optional raw body, sent as is (no content type added).
pub async fn request_raw(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> HttpReply {
    exchange(&http(), method, url, headers, body.map(Payload::Raw))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

enum Payload<'a> {
    Json(&'a Value),
    Raw(Vec<u8>),
}

async fn exchange(
    client: &awc::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Payload<'_>>,
) -> Result<HttpReply, String> {
    let mut req = client.request(method.clone(), url);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let sent = match body {
        Some(Payload::Json(json)) => req.send_json(json).await,
        Some(Payload::Raw(bytes)) => req.send_body(bytes).await,
        None => req.send().await,
    };
    let mut res = sent.map_err(|e| format!("{method} {url} failed: {e}"))?;
    let body = res
        .body()
        .limit(BODY_LIMIT)
        .await
        .map_err(|e| format!("{method} {url}: reading the body failed: {e}"))?;
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(HttpReply {
        status: res.status().as_u16(),
        headers,
        body,
    })
}

/// `GET url` → `(status, body text)`.
pub async fn get(url: &str) -> (u16, String) {
    let reply = request(Method::GET, url, &[], None).await;
    (reply.status, reply.text())
}

/// A request to the node's internal API (`internal_url() + path`) with
/// `Authorization: Bearer API_KEY` → `(status, JSON body)` (body as in [`HttpReply::json`]).
pub async fn api_request(
    node: &Node,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", node.internal_url());
    let auth = format!("Bearer {API_KEY}");
    let reply = request(method, &url, &[("Authorization", &auth)], body).await;
    (reply.status, reply.json())
}

/// `GET` on the internal API with the API key.
pub async fn api_get(node: &Node, path: &str) -> (u16, Value) {
    api_request(node, Method::GET, path, None).await
}

/// `POST` JSON on the internal API with the API key.
pub async fn api_post(node: &Node, path: &str, json: Value) -> (u16, Value) {
    api_request(node, Method::POST, path, Some(&json)).await
}

/// `DELETE` on the internal API with the API key.
pub async fn api_delete(node: &Node, path: &str) -> (u16, Value) {
    api_request(node, Method::DELETE, path, None).await
}

/// The node's `/metrics` text; panics unless it answers 200.
pub async fn metrics(node: &Node) -> String {
    let (status, text) = get(&format!("{}/metrics", node.internal_url())).await;
    assert_eq!(
        status,
        200,
        "GET /metrics on {} answered {status}: {text}",
        node.id()
    );
    text
}

/// Sum of the series of metric `name` with `labels` on `node`'s `/metrics` (as in
/// [`metric_value`]); 0 when no series matches (a counter not incremented yet).
pub async fn metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&metrics(node).await, name, labels).unwrap_or(0.0)
}

/// Sends `n` identical POSTs of the JSON text `body` to the internal API's `path` at once
/// over `client` (e.g. one [`http()`] per flood, so connections are reused) with
/// `Authorization: Bearer API_KEY`, and returns their statuses; panics on a transport
/// error. For floods: the body is encoded once.
pub async fn api_post_many(
    client: &awc::Client,
    node: &Node,
    path: &str,
    body: &Bytes,
    n: usize,
) -> Vec<u16> {
    let url = format!("{}{path}", node.internal_url());
    let auth = format!("Bearer {API_KEY}");
    let sends = (0..n).map(|_| {
        client
            .post(&url)
            .insert_header(("Authorization", auth.as_str()))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.clone())
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|res| {
            res.unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
                .status()
                .as_u16()
        })
        .collect()
}

/// Sum of all series of metric `name` in Prometheus text `text` whose labels include all of
/// `labels`; `None` if no series matches. E.g.
/// `metric_value(&text, "murmur_ws_closed_total", &[("reason", "slow_consumer")])`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, series_labels, value)) = parse_series(line) else {
            continue;
        };
        let matches = series == name
            && labels
                .iter()
                .all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v));
        if matches {
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// `name{k="v",...} value [timestamp]` → parts.
fn parse_series(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let (start, c) = chars.next()?;
            if c == '}' {
                break start + 1;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key.trim().to_string(), value));
        };
        rest = &body[end..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# HELP murmur_ws_closed_total Closed sockets.
# TYPE murmur_ws_closed_total counter
murmur_ws_closed_total{node="a",reason="slow_consumer"} 3
murmur_ws_closed_total{node="b",reason="slow_consumer"} 2
murmur_ws_closed_total{node="a",reason="normal"} 7
murmur_sessions 4
murmur_weird{path="/a,b}\"c"} 1.5
"#;

    #[test]
    fn metric_value_sums_matching_series() {
        let reason = [("reason", "slow_consumer")];
        assert_eq!(
            metric_value(SAMPLE, "murmur_ws_closed_total", &reason),
            Some(5.0)
        );
        let both = [("reason", "slow_consumer"), ("node", "a")];
        assert_eq!(
            metric_value(SAMPLE, "murmur_ws_closed_total", &both),
            Some(3.0)
        );
        assert_eq!(
            metric_value(SAMPLE, "murmur_ws_closed_total", &[]),
            Some(12.0)
        );
        assert_eq!(metric_value(SAMPLE, "murmur_sessions", &[]), Some(4.0));
        assert_eq!(
            metric_value(SAMPLE, "murmur_weird", &[("path", "/a,b}\"c")]),
            Some(1.5)
        );
        assert_eq!(metric_value(SAMPLE, "murmur_ws_closed", &[]), None);
        assert_eq!(
            metric_value(SAMPLE, "murmur_sessions", &[("node", "a")]),
            None
        );
    }

    #[test]
    fn body_to_json_variants() {
        assert_eq!(body_to_json(b""), Value::Null);
        assert_eq!(body_to_json(br#"{"a":1}"#), serde_json::json!({ "a": 1 }));
        assert_eq!(body_to_json(b"nope"), Value::String("nope".into()));
    }

    #[actix_rt::test]
    async fn get_reads_status_and_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8_lossy(&buf).to_lowercase();
            let body =
                if request.contains(&format!("authorization: bearer {}", API_KEY.to_lowercase())) {
                    "authorized"
                } else {
                    "anonymous"
                };
            let resp = format!(
                "HTTP/1.1 418 I'm a teapot\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
        });
        assert_eq!(
            get(&format!("http://{addr}/x")).await,
            (418, "anonymous".to_string())
        );
    }
}
