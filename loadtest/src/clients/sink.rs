//! Sink devices over dev plaintext TCP (`MURMUR_SINK_LISTEN`): 2-byte big-endian length
//! prefix per frame; the client id is `dev-<client_instance_id>`.

use std::time::Duration;

use murmur_shared::sink::{self as wire, ConnectionResponse, Event, Frame, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::net::{resolve, Sources};

/// A connected, accepted device.
pub struct Device {
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
    pub frames: FrameReader,
}

/// Connects and performs the handshake as a new client `client_instance_id`.
pub async fn connect(
    addr: &str,
    client_instance_id: u32,
    sources: &Sources,
) -> Result<Device, String> {
    let work = async {
        let sock = resolve(addr).await?;
        let stream = sources
            .connect(sock)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (reader, writer) = stream.into_split();
        let mut dev = Device {
            reader,
            writer,
            frames: FrameReader::new(),
        };
        let hello = Frame::ConnectionRequest {
            version: 0,
            application_version: "1.0.0".into(),
            client_instance_id,
            server_instance_id: None,
        };
        dev.write(&[hello]).await?;
        match dev.read().await? {
            Frame::ConnectionResponse(
                ConnectionResponse::Connected | ConnectionResponse::HelloNewClient(_),
            ) => Ok(dev),
            other => Err(format!("sink handshake refused: {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| format!("sink connect {addr}: timed out"))?
}

impl Device {
    /// Writes frames with their length prefixes in one write.
    pub async fn write(&mut self, frames: &[Frame]) -> Result<(), String> {
        let mut out = Vec::with_capacity(frames.len() * 64);
        for f in frames {
            let bytes = wire::encode(f);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        self.writer
            .write_all(&out)
            .await
            .map_err(|e| format!("sink write: {e}"))
    }

    /// Reads the next decoded frame.
    pub async fn read(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(f) = self.frames.next_frame() {
                return wire::decode(&f).map_err(|e| format!("sink decode: {e}"));
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the frame reader.
    pub async fn fill(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 * 1024];
        let n = self
            .reader
            .read(&mut buf)
            .await
            .map_err(|e| format!("sink read: {e}"))?;
        if n == 0 {
            return Err("sink connection closed by the server".into());
        }
        self.frames.extend(&buf[..n]);
        Ok(())
    }
}

/// A PUBLISH of one event with a fresh offset.
pub fn publish(id: u16, device: u32, offset: u64, data: &[u8]) -> Frame {
    Frame::Publish {
        id,
        event: Event {
            event_type_id: 1,
            schema_version: 1,
            key: format!("meter-{device}").into_bytes(),
            offset,
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            data: data.to_vec(),
        },
    }
}
