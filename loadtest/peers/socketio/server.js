// Socket.IO 4.8 peer for murmur-load's side-by-side room fan-out benchmark.
//
// One process of a Socket.IO cluster: every process started with the same REDIS_URL
// shares rooms through @socket.io/redis-adapter. Events:
//   join(room, ack?)       -> socket.join(room), then ack({ok:true})
//   pub(room, data)        -> io.to(room).emit("msg", data)    (every process, via Redis)
// Environment: PORT (default 3000), HOST (default 127.0.0.1), REDIS_URL (required for a
// cluster; unset = a single process without the adapter).
// It prints "socketio-peer listening <host>:<port> pid=<pid>" once ready.
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";
const redisUrl = process.env.REDIS_URL;

async function main() {
  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const options = {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    maxHttpBufferSize: 1e6,
  };
  const io = new Server(httpServer, options);
  if (redisUrl) {
    const pubClient = createClient({ url: redisUrl });
    const subClient = pubClient.duplicate();
    pubClient.on("error", (e) => console.error("redis pub error", e.message));
    subClient.on("error", (e) => console.error("redis sub error", e.message));
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
  }
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("pub", (room, data) => {
      io.to(String(room)).emit("msg", data);
    });
  });
  httpServer.listen(port, host, () => {
    console.log(`socketio-peer listening ${host}:${port} pid=${process.pid}`);
  });
  const stop = () => {
    io.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
