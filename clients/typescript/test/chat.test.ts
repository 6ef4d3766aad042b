// ChatClient against one embedded node: authentication, direct and group sessions, sending
// (resolved with the broadcast), batches, history, delivery reports, and the catch-up after
// a reconnect (no gap, no duplicate).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ChatClient, ChatError, type ChatMessage, type ChatOptions } from "../src/index.js";
import { Gate, MurmurNode, next, record, stopAll, token, uniq, waitFor, chatClient } from "./harness.js";

const MESSAGE_ID = /^\d+-\d+$/;

let node: MurmurNode;
const open: ChatClient[] = [];

function chat(userId: string, options: Partial<ChatOptions> = {}): ChatClient {
  return chatClient(node, userId, open, options);
}

async function connected(userId: string, options?: Partial<ChatOptions>): Promise<ChatClient> {
  const c = chat(userId, options);
  await c.connect();
  return c;
}

const bodies = (ms: ChatMessage[]) => ms.map((m) => m.message.body);

before(async () => {
  node = await MurmurNode.start();
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

describe("authentication", () => {
  test("a valid token connects; a token of another user is AUTH_FAILED with the broker's reason", async () => {
    const alice = uniq("alice-");
    const c = chat(alice);
    const ev = next(c, "connected");
    await c.connect();
    assert.deepEqual(await ev, { reconnect: false });
    assert.equal(c.state, "connected");

    const bad = chat(alice, { token: () => token(uniq("mallory-")) });
    await assert.rejects(bad.connect(), (e: unknown) => {
      assert.ok(e instanceof ChatError);
      assert.equal(e.code, "AUTH_FAILED");
      assert.equal(e.reason, "authentication failed: user-id does not match the token");
      return true;
    });
    assert.equal(bad.state, "closed");
  });
});

describe("sessions", () => {
  test("a direct session has one id for both users; none with oneself", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const s = await a.directSession(bob);
    assert.equal(s.type, "direct");
    assert.equal(s.status, "unchanged");
    assert.ok(s.sessionId.startsWith("direct-"), s.sessionId);
    assert.deepEqual([...s.participants].sort(), [alice, bob].sort());
    assert.equal((await b.directSession(alice)).sessionId, s.sessionId);
    await assert.rejects(a.directSession(alice), { code: "FAILED", message: "a direct session needs another user" });
    await assert.rejects(a.deleteSession(s.sessionId), { code: "FAILED", message: "direct sessions are immutable" });
  });

  test("groups: create, list, modify, delete; every participant's device is told", async () => {
    const [alice, bob, carol] = [uniq("alice-"), uniq("bob-"), uniq("carol-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const c = await connected(carol);
    const bobSessions = record(b, "session");
    const carolSessions = record(c, "session");

    const g = await a.createSession([bob]);
    assert.equal(g.type, "mutable");
    assert.equal(g.status, "created");
    assert.deepEqual([...g.participants].sort(), [alice, bob].sort());
    await waitFor("bob to be told of the group", () => bobSessions.length === 1);
    assert.deepEqual(bobSessions[0], g);

    const listed = await b.listSessions();
    assert.deepEqual(
      listed.map((s) => [s.sessionId, s.status]),
      [[g.sessionId, "unchanged"]],
    );

    const m = await a.modifySession(g.sessionId, [alice, carol]);
    assert.equal(m.status, "modified");
    assert.deepEqual([...m.participants].sort(), [alice, carol].sort());
    await waitFor("bob and carol to be told of the change", () => bobSessions.length === 2 && carolSessions.length === 1);
    assert.equal(bobSessions[1]!.status, "modified");
    assert.equal(carolSessions[0]!.status, "modified");
    // Bob is out: he may no longer send there.
    await assert.rejects(b.send(g.sessionId, "let me in"), { code: "FAILED", message: "not a participant of this session" });

    // Only the owner (the creator) and admins may delete it (docs/chat.md, Roles).
    await assert.rejects(c.deleteSession(g.sessionId), {
      code: "FAILED",
      message: "only the session's owner and admins may change its participants or delete it",
    });
    const d = await a.deleteSession(g.sessionId);
    assert.equal(d.status, "deleted");
    await waitFor("carol to be told of the deletion", () => carolSessions.length === 2);
    assert.equal(carolSessions[1]!.status, "deleted");
    assert.deepEqual(await a.listSessions(), []);
    await assert.rejects(a.send(g.sessionId, "anyone?"), { code: "FAILED", message: "no such session" });
  });
});

describe("messages", () => {
  test("send resolves with the broadcast; the other user and the sender's other device get it once; a delivery report follows", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const a2 = await connected(alice);
    const bobDevice = uniq("bob-phone-");
    const b = await connected(bob, { deviceId: bobDevice });
    const dm = (await a.directSession(bob)).sessionId;
    const aMessages = record(a, "message");
    const a2Messages = record(a2, "message");
    const bMessages = record(b, "message");
    const reports = record(a, "delivered");

    const sent = await a.send(dm, "hello bob", { senderTimestamp: 1700000000000 });
    assert.match(sent.messageId, MESSAGE_ID);
    assert.equal(sent.sessionId, dm);
    assert.equal(sent.senderId, alice);
    assert.deepEqual(sent.message, { type: "text", body: "hello bob" });
    assert.equal(sent.senderTimestamp, 1700000000000);
    assert.equal(sent.own, true);
    assert.equal(sent.history, false);
    assert.equal(typeof sent.serverTimestamp, "number");

    await waitFor("bob and alice's other device to get it", () => bMessages.length === 1 && a2Messages.length === 1);
    assert.deepEqual(bMessages[0], { ...sent, own: false });
    assert.deepEqual(a2Messages[0], { ...sent, own: false });
    assert.deepEqual(aMessages, [sent]);

    await waitFor("the delivery report", () => reports.length >= 1);
    assert.equal(reports[0]!.sessionId, dm);
    assert.equal(reports[0]!.messageId, sent.messageId);
    assert.deepEqual(reports[0]!.devices, [{ userId: bob, deviceId: bobDevice }]);
  });

  test("history: the last messages, or those after a message id, oldest first", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const dm = (await a.directSession(bob)).sessionId;
    const sent: ChatMessage[] = [];
    for (const t of ["m1", "m2", "m3", "m4"]) sent.push(await a.send(dm, t));

    const last2 = await a.history(dm, { limit: 2 });
    assert.deepEqual(bodies(last2), ["m3", "m4"]);
    assert.ok(last2.every((m) => m.history && !m.own));
    assert.deepEqual(
      last2.map((m) => m.messageId),
      sent.slice(2).map((m) => m.messageId),
    );
    assert.deepEqual(bodies(await a.history(dm, { sinceMessageId: sent[0]!.messageId })), ["m2", "m3", "m4"]);
    assert.deepEqual(bodies(await a.history(dm)), ["m1", "m2", "m3", "m4"]);

    const b = await connected(bob);
    assert.deepEqual(bodies(await b.history(dm)), ["m1", "m2", "m3", "m4"]);
    const stranger = await connected(uniq("eve-"));
    await assert.rejects(stranger.history(dm), { code: "FAILED", message: "not a participant of this session" });
  });

  test("a batch: each action answered as if sent alone, one failure does not stop the others", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const bMessages = record(b, "message");
    const dm = (await a.directSession(bob)).sessionId;

    const batch = a.batch();
    const one = batch.send(dm, "one");
    const two = batch.send(dm, "two");
    const nowhere = batch.send("no-such-session", "lost");
    const session = batch.directSession(bob);
    const hist = batch.history(dm, { limit: 2 });
    batch.commit();

    const [m1, m2] = await Promise.all([one, two]);
    assert.deepEqual([m1.message.body, m2.message.body], ["one", "two"]);
    assert.ok(m1.own && m2.own);
    await assert.rejects(nowhere, { code: "FAILED", message: "no such session" });
    assert.equal((await session).sessionId, dm);
    assert.deepEqual(
      (await hist).map((m) => m.messageId),
      [m1.messageId, m2.messageId],
    );
    await waitFor("bob to get both", () => bMessages.length === 2);
    assert.deepEqual(bodies(bMessages), ["one", "two"]);
    assert.throws(() => batch.send(dm, "late"), { code: "INVALID_ARGUMENT", message: "the batch was already committed" });
  });
});

describe("~timing", () => {
  test("a held message is acknowledged as scheduled and broadcast when due; an expired one is refused", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const got: { m: ChatMessage; at: number }[] = [];
    b.on("message", (m) => got.push({ m, at: Date.now() }));
    const dm = (await a.directSession(bob)).sessionId;

    const t0 = Date.now();
    const ack = await a.schedule(dm, "later", { delay_milli: 300 });
    assert.equal(ack.scheduled, true);
    assert.match(ack.note, /^scheduled for \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await waitFor("the held message", () => got.length === 1);
    assert.ok(got[0]!.at - t0 >= 300, `broadcast after ${got[0]!.at - t0} ms`);
    assert.equal(got[0]!.m.message.body, "later");
    assert.deepEqual(got[0]!.m.timing, { delay_milli: 300 });

    await assert.rejects(a.send(dm, "too late", { timing: { expires_time: "2019-01-25T18:25:00.000Z" } }), { code: "FAILED", message: "expired" });
  });
});

describe("reconnect", () => {
  test("after the socket is cut, the catch-up delivers what was sent meanwhile, once and in order, also in a group created meanwhile", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const gate = new Gate();
    const b = await connected(bob, {
      token: async () => {
        await gate.pass();
        return token(bob);
      },
    });
    const dm = (await a.directSession(bob)).sessionId;
    const got = record(b, "message");
    for (const t of ["d1", "d2", "d3"]) await a.send(dm, t);
    await waitFor("bob to get d1..d3", () => got.length === 3);

    const caughtUp = next(b, "caughtUp", 20_000);
    const reconnected = next(b, "connected", 20_000);
    gate.close();
    b.dropConnection();
    await waitFor("bob's client to wait for its token", () => gate.waiting === 1);
    for (const t of ["d4", "d5", "d6", "d7"]) await a.send(dm, t);
    const group = await a.createSession([bob]);
    for (const t of ["g1", "g2"]) await a.send(group.sessionId, t);
    gate.open();

    const counts = await caughtUp;
    assert.deepEqual(counts.sessions, { [dm]: 4, [group.sessionId]: 2 });
    assert.deepEqual(await reconnected, { reconnect: true });
    const inDm = got.filter((m) => m.sessionId === dm);
    assert.deepEqual(bodies(inDm), ["d1", "d2", "d3", "d4", "d5", "d6", "d7"]);
    assert.deepEqual(
      inDm.slice(3).map((m) => m.history),
      [true, true, true, true],
    );
    assert.deepEqual(bodies(got.filter((m) => m.sessionId === group.sessionId)), ["g1", "g2"]);

    // Live again, still once.
    const live = await a.send(dm, "d8");
    await waitFor("d8", () => got.some((m) => m.messageId === live.messageId));
    await b.history(dm, { limit: 1 }); // barrier on bob's connection
    assert.equal(got.filter((m) => m.messageId === live.messageId).length, 1);
    assert.equal(got.length, 10);
  });

  test("an action made while disconnected waits and is sent after the reconnect", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const gate = new Gate();
    const a = await connected(alice, {
      token: async () => {
        await gate.pass();
        return token(alice);
      },
    });
    const b = await connected(bob);
    const got = record(b, "message");
    const dm = (await a.directSession(bob)).sessionId;
    gate.close();
    a.dropConnection();
    await waitFor("alice's client to wait for its token", () => gate.waiting === 1);
    const sending = a.send(dm, "queued while away");
    gate.open();
    const sent = await sending;
    assert.equal(sent.message.body, "queued while away");
    await waitFor("bob to get it", () => got.length === 1);
    assert.equal(got[0]!.messageId, sent.messageId);
  });
});
