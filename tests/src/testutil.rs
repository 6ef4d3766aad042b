//! Scripted WebSocket servers for the harness's own unit tests.

use std::future::Future;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wsframe::{accept_key, parse_frame, Frame};

/// Accepts one connection on a fresh port, answers the upgrade (or refuses it with 401 and a
/// JSON body when `refuse`), then runs `script` with the socket, any buffered bytes and the
/// request head. Returns a `ws://` URL for it.
pub(crate) async fn ws_server<F, Fut>(refuse: bool, script: F) -> String
where
    F: FnOnce(TcpStream, BytesMut, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break String::from_utf8(buf.split_to(pos + 4).to_vec()).unwrap();
            }
            sock.read_buf(&mut buf).await.unwrap();
        };
        if refuse {
            let body = r#"{"error":"unauthorized"}"#;
            let resp = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
            return;
        }
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_string();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
        script(sock, buf, head).await;
    });
    format!("ws://{addr}/starling?token=abc")
}

/// Reads one client frame (asserting it is masked).
pub(crate) async fn read_client_frame(sock: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    loop {
        if let Some(frame) = parse_frame(buf).unwrap() {
            assert!(frame.masked, "client frames must be masked");
            return frame;
        }
        assert!(sock.read_buf(buf).await.unwrap() > 0, "client hung up");
    }
}
