// The chat extensions across a 2-node cluster on one Redis: read reports and read state,
// presence (a user is online while a device is connected on any node), typing and the
// inbox, with the users' devices on different nodes.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ChatClient, type ChatOptions } from "../src/index.js";
import { Cluster, type MurmurNode, closeAndWait, following, quiet, record, stopAll, uniq, waitFor, chatClient } from "./harness.js";

let cluster: Cluster;
let nodeA: MurmurNode;
let nodeB: MurmurNode;
const open: ChatClient[] = [];

async function connected(userId: string, node: MurmurNode, options: Partial<ChatOptions> = {}): Promise<ChatClient> {
  const c = chatClient(node, userId, open, options);
  await c.connect();
  return c;
}

before(async () => {
  cluster = await Cluster.start(2);
  [nodeA, nodeB] = cluster.nodes as [MurmurNode, MurmurNode];
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

test("across nodes: a mark on one node is reported on the other, the read position is the same everywhere", async () => {
  const [alice, bob] = [uniq("alice-"), uniq("bob-")];
  const a = await connected(alice, nodeA);
  const b = await connected(bob, nodeB);
  const b2 = await connected(bob, nodeA);
  const g = await a.createSession([bob]);
  await following(g.sessionId, [a, b, b2]);
  const aReads = record(a, "read");
  const b2Reads = record(b2, "read");

  const m1 = await a.send(g.sessionId, "m1");
  const m2 = await a.send(g.sessionId, "m2");
  await b.markRead(g.sessionId, m1.messageId);
  await waitFor("the report on node A", () => aReads.length === 1 && b2Reads.length === 1);
  assert.equal(aReads[0]!.sessionId, g.sessionId);
  assert.deepEqual(
    aReads[0]!.readBy.map((r) => [r.userId, r.messageId]),
    [[bob, m1.messageId]],
  );
  assert.deepEqual(b2Reads[0], aReads[0]);
  const expected = { sessionId: g.sessionId, readMessageId: m1.messageId, unread: 1, newestMessageId: m2.messageId };
  assert.deepEqual(await b.unreadCount(g.sessionId), expected);
  assert.deepEqual(await b2.unreadCount(g.sessionId), expected);
  // The inbox reads the same store from either node.
  const inbox = { items: [{ sessionId: g.sessionId, sessionType: "mutable", unread: 1, lastMessage: { messageId: m2.messageId, senderId: alice, serverTimestamp: m2.serverTimestamp, messageType: "text", preview: "m2" } }], nextCursor: null };
  assert.deepEqual(await b.inbox(), inbox);
  assert.deepEqual(await b2.inbox(), inbox);
});

test("across nodes: presence is the cluster's — bob is offline only once his devices on both nodes are gone", async () => {
  const [alice, bob] = [uniq("alice-"), uniq("bob-")];
  const a = await connected(alice, nodeA);
  const b = await connected(bob, nodeB);
  await a.createSession([bob]);
  assert.deepEqual(await a.watchPresence([bob]), [{ userId: bob, status: "online", lastSeen: null }]);
  const events = record(a, "presence");

  // A second device on the other node changes nothing; the first going changes nothing.
  const b2 = await connected(bob, nodeA);
  await closeAndWait(b);
  await quiet(a);
  assert.equal(events.length, 0);

  await closeAndWait(b2);
  await waitFor("bob offline", () => events.length === 1);
  assert.equal(events[0]!.userId, bob);
  assert.equal(events[0]!.status, "offline");
  assert.equal(typeof events[0]!.lastSeen, "number");

  await connected(bob, nodeB);
  await waitFor("bob online again, from node B", () => events.length === 2);
  assert.deepEqual(events[1], { userId: bob, status: "online", lastSeen: null });
});

test("across nodes: typing on node B reaches alice on node A", async () => {
  const [alice, bob] = [uniq("alice-"), uniq("bob-")];
  const a = await connected(alice, nodeA);
  const b = await connected(bob, nodeB);
  const g = await a.createSession([bob]);
  await following(g.sessionId, [a, b]);
  const typing = record(a, "typing");
  assert.equal(b.typing(g.sessionId), true);
  await waitFor("alice to see bob typing", () => typing.length === 1);
  assert.deepEqual(typing, [{ sessionId: g.sessionId, userId: bob, deviceId: b.deviceId }]);
});
