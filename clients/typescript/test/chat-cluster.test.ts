// ChatClient on a 2-node cluster: the node a device is connected to is SIGKILLed, the
// client moves to the other node and catches up what was sent meanwhile (Redis keeps the
// history), once and in order.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";

import { ChatClient, type WebSocketConstructor } from "../src/index.js";
import { Cluster, Gate, type MurmurNode, next, record, stopAll, token, uniq, waitFor } from "./harness.js";

const WS = WebSocket as unknown as WebSocketConstructor;

let cluster: Cluster;
const open: ChatClient[] = [];

function chat(userId: string, url: string | string[], gate = new Gate()): ChatClient {
  const c = new ChatClient({
    url,
    userId,
    deviceId: uniq("dev-"),
    token: async () => {
      await gate.pass();
      return token(userId);
    },
    WebSocket: WS,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  open.push(c);
  return c;
}

before(async () => {
  cluster = await Cluster.start(2);
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

test("across nodes: bob's node is SIGKILLed, his client moves to the other node and catches up once, in order", async () => {
  const [a, b] = cluster.nodes as [MurmurNode, MurmurNode];
  const [alice, bob] = [uniq("alice-"), uniq("bob-")];
  const onB = chat(alice, b.wsUrl("/chat"));
  await onB.connect();
  const gate = new Gate();
  const bobs = chat(bob, [a.wsUrl("/chat"), b.wsUrl("/chat")], gate);
  await bobs.connect();
  const group = await onB.createSession([bob]);
  const got = record(bobs, "message");
  for (const t of ["m1", "m2"]) await onB.send(group.sessionId, t);
  await waitFor("bob to get m1, m2 live", () => got.length === 2);

  const caughtUp = next(bobs, "caughtUp", 30_000);
  gate.close();
  await a.kill();
  await waitFor("bob's client to wait for its token", () => gate.waiting === 1);
  for (const t of ["m3", "m4", "m5"]) await onB.send(group.sessionId, t);
  gate.open();

  assert.deepEqual((await caughtUp).sessions, { [group.sessionId]: 3 });
  assert.deepEqual(
    got.map((m) => m.message.body),
    ["m1", "m2", "m3", "m4", "m5"],
  );
  const live = await onB.send(group.sessionId, "m6");
  await waitFor("m6 live on the other node", () => got.some((m) => m.messageId === live.messageId));
  await bobs.history(group.sessionId, { limit: 1 });
  assert.deepEqual(
    got.map((m) => m.message.body),
    ["m1", "m2", "m3", "m4", "m5", "m6"],
  );
  assert.equal(new Set(got.map((m) => m.messageId)).size, 6);
});
