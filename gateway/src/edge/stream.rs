//! Sink's length-prefixed frames over a byte stream (TCP or TLS): the read side as an
//! [`Input`] and a writer task that drains the connection's [`SendBuffer`] into the
//! stream. The loop is [`super::conn::serve`], as for every connection.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::sink::FrameReader;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::buffer::{self, Framing, OutboundBody, OutboundBudget, OutboundLimits, SendBuffer};
use super::conn::{Incoming, Input};
use super::Data;
use crate::ws::CLOSE_LINGER;

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 4096;

/// The read side: bytes in, whole frames out. The read buffer is let go whenever it is
/// empty, as on a WebSocket.
pub struct StreamInput<R> {
    read: R,
    buf: BytesMut,
    frames: FrameReader,
    done: bool,
}

impl<R: AsyncRead + Unpin> Input for StreamInput<R> {
    async fn recv(&mut self) -> Option<Result<Incoming, CloseReason>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(frame) = self.frames.next_frame() {
                if frame.is_empty() {
                    self.done = true;
                    return Some(Err(CloseReason::new(
                        CloseCode::PolicyViolation,
                        "zero-length frame",
                    )));
                }
                return Some(Ok(Incoming::Data(Data::Binary(Bytes::from(frame)))));
            }
            self.buf.reserve(READ_CHUNK);
            // Cancel-safe: bytes read are in `buf` until moved into the frame reader.
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    self.frames.extend(&self.buf);
                    self.buf = BytesMut::new();
                }
            }
        }
    }
}

/// Splits a stream into its input and its send buffer; the writer task runs until the
/// connection's close has been written (or the client has not read for
/// [`CLOSE_LINGER`] after it), then shuts the stream down.
pub fn split<S>(
    stream: S,
    limits: OutboundLimits,
    budget: &std::sync::Arc<OutboundBudget>,
) -> (StreamInput<tokio::io::ReadHalf<S>>, SendBuffer)
where
    S: AsyncRead + AsyncWrite + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (buf, body) = buffer::channel(Framing::LengthPrefixed, limits, budget.clone());
    actix_rt::spawn(write_out(body, write));
    let input = StreamInput {
        read,
        buf: BytesMut::new(),
        frames: FrameReader::new(),
        done: false,
    };
    (input, buf)
}

async fn write_out<W: AsyncWrite + Unpin>(mut body: OutboundBody, mut write: W) {
    loop {
        body.gather().await;
        let Some(Ok(chunk)) = body.next().await else {
            break;
        };
        let written = tokio::select! {
            r = async {
                write.write_all(&chunk).await?;
                write.flush().await
            } => r.is_ok(),
            _ = body.closed_for(CLOSE_LINGER) => false,
        };
        if !written {
            return;
        }
    }
    drop(body);
    let _ = tokio::time::timeout(CLOSE_LINGER, write.shutdown()).await;
}
