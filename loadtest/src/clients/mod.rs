//! Protocol clients: just enough of each protocol to drive it at load.
//!
//! | module | protocol |
//! |---|---|
//! | [`ws`] | WebSocket connect from a chosen source address, small buffers |
//! | [`helios`] | Helios-Starling JSON messages over `/starling` |
//! | [`chat`] | GradAgenda chat actions over `/chat` |
//! | [`http`] | a minimal HTTP/1.1 keep-alive client (TimeStick) |
//! | [`timestick`] | TimeStick START, POST, long-poll |
//! | [`sink`] | Sink binary frames over dev plaintext TCP |
//! | [`socketio`] | Engine.IO v4 / Socket.IO v4 over WebSocket |
//! | [`nats`] | the NATS client protocol over WebSocket (nats-server `websocket {}`) |
//! | [`resp`] | a minimal Redis (RESP2) client for the PUBLISH→SUBSCRIBE probe |

pub mod chat;
pub mod helios;
pub mod http;
pub mod nats;
pub mod resp;
pub mod sink;
pub mod socketio;
pub mod timestick;
pub mod ws;
