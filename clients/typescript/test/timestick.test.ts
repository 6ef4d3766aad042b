// TimeStickClient against one embedded node: START (URI or target) and START-ERRORs,
// posting, long-poll with at-least-once cursors, SSE resumed with Last-Event-ID, the
// receive loop, STOP and KILL.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { TimeStickClient, TimeStickError, type TimeStickMessage, type TimeStickSession } from "../src/index.js";
import { MurmurNode, stopAll, token, uniq, waitFor } from "./harness.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let node: MurmurNode;

function client(user: string): TimeStickClient {
  return new TimeStickClient({ baseUrl: node.publicUrl, token: () => token(user), backoff: { initialMs: 50, maxMs: 200 } });
}

/** Two sessions of two callers on one target. */
async function pair(): Promise<{ target: string; alice: string; bob: string; a: TimeStickSession; b: TimeStickSession }> {
  const target = uniq("room-");
  const [alice, bob] = [uniq("alice-"), uniq("bob-")];
  const a = await client(alice).start({ target });
  const b = await client(bob).start({ target });
  return { target, alice, bob, a, b };
}

function rejectsWith(p: Promise<unknown>, status: number, code: string, reason: string): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TimeStickError, String(e));
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    assert.equal(e.reason, reason);
    return true;
  });
}

before(async () => {
  node = await MurmurNode.start();
});

after(async () => {
  await stopAll();
});

describe("START", () => {
  test("from a timestick:// URI (the node is found from it) and from a target", async () => {
    const user = uniq("alice-");
    const target = uniq("room-");
    const noBase = new TimeStickClient({ token: () => token(user) });
    const s = await noBase.start({ uri: `timestick://127.0.0.1:${node.publicPort}/${target}` });
    assert.match(s.id, UUID);
    assert.equal(s.endpoint, `/timestick/session/${s.id}`);
    assert.equal(s.url, `${node.publicUrl}/timestick/session/${s.id}`);
    assert.deepEqual(s.capabilities, { max_message_size: 65535, supports_binary: false, supports_notifications: true, server_can_stop_anytime: true });

    const t = await client(user).start({ target }, { maxMessageSize: 512 });
    assert.equal(t.capabilities.max_message_size, 512);
    await rejectsWith(
      t.post({ type: "request", payload: "x".repeat(600) }),
      413,
      "MESSAGE_TOO_LARGE",
      "larger than the session's max_message_size (512 bytes)",
    );
  });

  test("refusals are START-ERRORs with the status and the broker's reason", async () => {
    const user = uniq("alice-");
    await rejectsWith(
      client(user).start({ target: "sink/dev-1" }),
      400,
      "START-ERROR",
      "targets `sink/…` and `@…` are broker-owned channels: they accept no publication",
    );
    await rejectsWith(client(user).start({ target: "room" }, { callerId: uniq("mallory-") }), 403, "START-ERROR", "caller_id does not match the token");
    await assert.rejects(client(user).start({ target: "room" }, { version: "9.9" }), (e: unknown) => {
      assert.ok(e instanceof TimeStickError);
      assert.equal(e.status, 400);
      assert.equal(e.reason, "Unsupported version");
      assert.deepEqual((e.details as { supported_versions: string[] }).supported_versions, ["0.1"]);
      return true;
    });
  });
});

describe("messages", () => {
  test("post and long-poll: a request reaches the other session, a response comes back, duplicates are refused", async () => {
    const { alice, bob, a, b } = await pair();
    assert.deepEqual(await a.request({ text: "hi" }, { messageId: "m1" }), { messageId: "m1" });
    await rejectsWith(a.request({ text: "again" }, { messageId: "m1" }), 409, "DUPLICATE_MESSAGE", "this message_id was already received");

    const got = await b.poll({ wait: 5 });
    assert.deepEqual(got.messages, [
      {
        type: "request",
        session_id: b.id,
        message_id: `${a.id}.m1`,
        correlation_id: null,
        payload: { text: "hi" },
        from: { caller: alice, protocol: "timestick" },
      },
    ]);
    assert.equal(b.cursor, got.cursor);

    await b.respond(`${a.id}.m1`, { answer: 42 }, { messageId: "r1" });
    const answer = await a.poll({ wait: 5 });
    assert.equal(answer.messages.length, 1);
    const r = answer.messages[0]!;
    assert.equal(r.type, "response");
    assert.equal(r.correlation_id, "m1");
    assert.equal(r.message_id, `${b.id}.r1`);
    assert.deepEqual(r.payload, { answer: 42 });
    assert.deepEqual(r.from, { caller: bob, protocol: "timestick" });
  });

  test("long-poll is at-least-once: unconfirmed messages come again until a later cursor confirms them", async () => {
    const { a, b } = await pair();
    await a.request("once", { messageId: "m1" });
    const first = await b.poll({ wait: 5, after: null });
    assert.equal(first.messages.length, 1);
    const again = await b.poll({ wait: 0, after: null });
    assert.deepEqual(again.messages, first.messages);
    assert.equal(again.cursor, first.cursor);
    const confirmed = await b.poll({ wait: 0, after: first.cursor });
    assert.deepEqual(confirmed.messages, []);
    assert.deepEqual((await b.poll({ wait: 0, after: null })).messages, []);
  });

  test("SSE: events carry cursors as ids; a new stream with Last-Event-ID resumes after that event", async () => {
    const { a, b } = await pair();
    await a.request(1, { messageId: "m1" });
    await a.request(2, { messageId: "m2" });
    const events: { id: string; message: TimeStickMessage }[] = [];
    for await (const ev of b.stream({ lastEventId: null })) {
      events.push(ev);
      if (events.length === 2) break;
    }
    assert.deepEqual(
      events.map((e) => e.message.payload),
      [1, 2],
    );
    assert.notEqual(events[0]!.id, events[1]!.id);
    assert.equal(b.cursor, events[1]!.id);

    await a.request(3, { messageId: "m3" });
    const resumed: unknown[] = [];
    for await (const ev of b.stream({ lastEventId: events[0]!.id })) {
      resumed.push(ev.message.payload);
      if (resumed.length === 2) break;
    }
    assert.deepEqual(resumed, [2, 3]);
  });
});

describe("receive loops and the end of a session", () => {
  test("receive by SSE and by poll; the caller's STOP ends its loop with STOP-OK, then posts are 410", async () => {
    const { a, b } = await pair();
    const atB: TimeStickMessage[] = [];
    const atA: TimeStickMessage[] = [];
    let endA: { reason: string; status?: number; control?: TimeStickMessage } | null = null;
    const rb = b.receive({ onMessage: (m) => atB.push(m) }, { mode: "sse" });
    const ra = a.receive({ onMessage: (m) => atA.push(m), onEnd: (e) => (endA = e) }, { mode: "poll", wait: 5 });

    await a.request("to b", { messageId: "m1" });
    await waitFor("b's SSE loop to get m1", () => atB.length === 1);
    assert.equal(atB[0]!.message_id, `${a.id}.m1`);
    await b.respond(`${a.id}.m1`, "to a", { messageId: "r1" });
    await waitFor("a's poll loop to get r1", () => atA.length === 1);
    assert.equal(atA[0]!.correlation_id, "m1");

    await a.stop("done here");
    await ra.done;
    assert.equal(atA.length, 2);
    assert.equal(atA[1]!.type, "control");
    assert.deepEqual(atA[1]!.payload, { action: "STOP-OK", reason: "done here" });
    assert.equal(endA!.reason, "done here");
    assert.equal(endA!.control, atA[1]);
    await rejectsWith(a.request("late", { messageId: "m2" }), 410, "SESSION_STOPPED", "done here");
    rb.stop();
    await rb.done;
  });

  test("KILL level 1: the session's open stream ends and every later request is 410 SESSION_KILLED", async () => {
    const { a } = await pair();
    let end: { reason: string; status?: number } | null = null;
    const errors: unknown[] = [];
    const r = a.receive({ onMessage: () => {}, onEnd: (e) => (end = e), onError: (e) => errors.push(e) }, { mode: "sse" });
    await a.kill(1, "emergency-shutdown");
    await r.done;
    assert.deepEqual(end, { reason: "emergency-shutdown", status: 410 });
    await assert.rejects(a.request("x"), (e: unknown) => {
      assert.ok(e instanceof TimeStickError);
      assert.equal(e.status, 410);
      assert.equal(e.code, "SESSION_KILLED");
      assert.equal((e.details as { kill_level: number }).kill_level, 1);
      return true;
    });
    await rejectsWith(a.poll({ wait: 0 }), 410, "SESSION_KILLED", "emergency-shutdown");
  });
});
