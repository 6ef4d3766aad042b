// HeliosClient against one embedded node: requests, providers, progress, timeouts,
// cancellation, publish/subscribe, notifications, backend requests and ~timing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";

import { HeliosClient, HeliosError, type HeliosOptions, type Publication, type WebSocketConstructor } from "../src/index.js";
import { MurmurNode, next, record, stopAll, token, uniq, waitFor } from "./harness.js";

const WS = WebSocket as unknown as WebSocketConstructor;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let node: MurmurNode;
const open: HeliosClient[] = [];

function helios(user = uniq("u"), options: Partial<HeliosOptions> = {}): HeliosClient {
  const c = new HeliosClient({ url: node.wsUrl("/starling"), token: () => token(user), WebSocket: WS, heartbeatMs: 0, ...options });
  open.push(c);
  return c;
}

async function connected(user?: string, options?: Partial<HeliosOptions>): Promise<HeliosClient> {
  const c = helios(user, options);
  await c.connect();
  return c;
}

/** A pending promise and its resolver (providers that answer when the test says so). */
function held<T = unknown>(): { promise: Promise<T>; release: (v: T) => void } {
  let release!: (v: T) => void;
  const promise = new Promise<T>((r) => (release = r));
  return { promise, release };
}

before(async () => {
  node = await MurmurNode.start();
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

describe("requests", () => {
  test("a built-in method resolves with its data; unknown methods reject with the broker's code and message", async () => {
    const c = await connected();
    assert.equal(c.state, "connected");
    assert.match(c.starlingId ?? "", UUID);
    const pong = await c.request<{ pong: boolean; timestamp: number }>("system:ping");
    assert.equal(pong.pong, true);
    assert.equal(typeof pong.timestamp, "number");

    await assert.rejects(c.request("nobody:home"), (e: unknown) => {
      assert.ok(e instanceof HeliosError);
      assert.equal(e.code, "METHOD_NOT_FOUND");
      assert.equal(e.reason, 'no provider for "nobody:home"');
      return true;
    });
    await assert.rejects(c.request("system:nothing"), { code: "METHOD_NOT_FOUND", message: 'no method "system:nothing"' });
  });

  test("a request made before connect() waits for the connection and is then answered", async () => {
    const c = helios();
    assert.equal(c.state, "idle");
    const pong = await c.request<{ pong: boolean }>("system:ping");
    assert.equal(pong.pong, true);
    assert.equal(c.state, "connected");
  });
});

describe("providers", () => {
  test("handlers return values, throw typed errors with custom codes and details; other throws are METHOD_ERROR", async () => {
    const ns = uniq("calc");
    const provider = await connected();
    const seen: { requestId: string; method: string }[] = [];
    await provider.provide(ns, {
      add: (p, ctx) => {
        seen.push({ requestId: ctx.requestId, method: ctx.method });
        const { a, b } = p as { a: number; b: number };
        return { sum: a + b };
      },
      later: async () => {
        await Promise.resolve();
        return [1, 2, 3];
      },
      busy: () => {
        throw new HeliosError("BUSY", "try later", { retryInMs: 50 });
      },
      boom: () => {
        throw new Error("kaput");
      },
      nothing: () => undefined,
    });
    const caller = await connected();

    assert.deepEqual(await caller.request(`${ns}:add`, { a: 2, b: 3 }), { sum: 5 });
    assert.equal(seen.length, 1);
    assert.match(seen[0]!.requestId, UUID);
    assert.equal(seen[0]!.method, `${ns}:add`);
    assert.deepEqual(await caller.request(`${ns}:later`), [1, 2, 3]);
    assert.equal(await caller.request(`${ns}:nothing`), null);
    await assert.rejects(caller.request(`${ns}:busy`), (e: unknown) => {
      assert.ok(e instanceof HeliosError);
      assert.equal(e.code, "BUSY");
      assert.equal(e.reason, "try later");
      assert.deepEqual(e.details, { retryInMs: 50 });
      return true;
    });
    await assert.rejects(caller.request(`${ns}:boom`), { code: "METHOD_ERROR", message: "kaput" });
    await assert.rejects(caller.request(`${ns}:nope`), { code: "METHOD_NOT_FOUND", message: `no handler for "${ns}:nope"` });

    await provider.unprovide(ns);
    await assert.rejects(caller.request(`${ns}:add`, { a: 1, b: 1 }), { code: "METHOD_NOT_FOUND", message: `no provider for "${ns}:add"` });
  });

  test("a reserved namespace cannot be provided", async () => {
    const c = await connected();
    await assert.rejects(c.provide("system", {}), { code: "VALIDATION_ERROR", message: 'namespace "system" is reserved' });
  });

  test("progress notifications reach the caller's onProgress in order, before the answer", async () => {
    const ns = uniq("job");
    const provider = await connected();
    await provider.provide(ns, {
      run: (_p, ctx) => {
        ctx.progress({ pct: 50 });
        ctx.progress({ pct: 100 }, "done");
        return "finished";
      },
    });
    const caller = await connected();
    const progress: [unknown, string | null][] = [];
    const result = await caller.request(`${ns}:run`, null, { onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(result, "finished");
    assert.deepEqual(progress, [
      [{ pct: 50 }, "progress"],
      [{ pct: 100 }, "done"],
    ]);
  });

  test("timeoutMs: no answer in time is the broker's REQUEST_TIMEOUT, and the late answer is dropped", async () => {
    const ns = uniq("slow");
    const answer = held<string>();
    let calls = 0;
    const provider = await connected();
    await provider.provide(ns, {
      wait: () => {
        calls++;
        return answer.promise;
      },
    });
    const caller = await connected();
    const errors = record(caller, "error");
    const t0 = Date.now();
    await assert.rejects(caller.request(`${ns}:wait`, null, { timeoutMs: 300 }), {
      code: "REQUEST_TIMEOUT",
      message: "the provider did not answer in time",
    });
    assert.ok(Date.now() - t0 >= 300, `rejected after ${Date.now() - t0} ms`);
    assert.equal(calls, 1);
    answer.release("too late");
    // Barrier: the provider's late response has been handled before its next answer.
    assert.equal((await provider.request<{ pong: boolean }>("system:ping")).pong, true);
    assert.equal((await caller.request<{ pong: boolean }>("system:ping")).pong, true);
    assert.deepEqual(errors, []);
  });

  test("AbortSignal: the provider has the call, aborting sends system:cancel and the broker answers REQUEST_CANCELLED", async () => {
    const ns = uniq("cancel");
    const answer = held<string>();
    const received: unknown[] = [];
    const provider = await connected();
    await provider.provide(ns, {
      wait: (payload) => {
        received.push(payload);
        return answer.promise;
      },
    });
    const caller = await connected();
    const ac = new AbortController();
    const call = caller.request(`${ns}:wait`, { job: 7 }, { signal: ac.signal });
    await waitFor("the provider to receive the call", () => received.length === 1);
    ac.abort();
    // REQUEST_CANCELLED comes from the broker only (the SDK's own fallback is ABORTED).
    await assert.rejects(call, { code: "REQUEST_CANCELLED", message: "cancelled by the caller" });
    assert.deepEqual(received, [{ job: 7 }]);
    answer.release("ignored");
    assert.equal((await caller.request<{ pong: boolean }>("system:ping")).pong, true);

    const already = new AbortController();
    already.abort();
    await assert.rejects(caller.request(`${ns}:wait`, null, { signal: already.signal }), { code: "ABORTED", message: "aborted before it was sent" });
    assert.equal(received.length, 1);
  });
});

describe("publish/subscribe and notifications", () => {
  test("a publication reaches every handler with seq and epoch; unsubscribing stops it", async () => {
    const ch = uniq("news-");
    const barrier = uniq("barrier-");
    const sub = await connected();
    const pub = await connected();
    const h1: Publication[] = [];
    const h2: Publication[] = [];
    const bar: Publication[] = [];
    const s1 = await sub.subscribe(ch, (p) => h1.push(p));
    const s2 = await sub.subscribe(ch, (p) => h2.push(p));
    await sub.subscribe(barrier, (p) => bar.push(p));
    const notifications = record(sub, "notification");

    const r = await pub.publish(ch, { n: 1 });
    assert.equal(r.channel, ch);
    assert.match(r.messageId, UUID);
    await waitFor("both handlers to get n=1", () => h1.length === 1 && h2.length === 1);
    const first = h1[0]!;
    assert.equal(first.channel, ch);
    assert.deepEqual(first.data, { n: 1 });
    assert.equal(first.seq, 1);
    assert.equal(typeof first.epoch, "string");
    assert.deepEqual(h2[0], first);

    // The backend publishes too.
    await node.publish(ch, { n: 2 });
    await waitFor("n=2", () => h1.length === 2 && h2.length === 2);
    assert.deepEqual(h1[1], { channel: ch, data: { n: 2 }, seq: 2, epoch: first.epoch });

    await s1.unsubscribe();
    await pub.publish(ch, { n: 3 });
    await waitFor("h2 to get n=3", () => h2.length === 3);
    assert.equal(h1.length, 2);

    await s2.unsubscribe();
    await pub.publish(ch, { n: 4 });
    await pub.publish(barrier, "after n=4");
    await waitFor("the barrier publication", () => bar.length === 1);
    assert.deepEqual(
      h2.map((p) => p.data),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    );
    assert.equal(h1.length, 2);
    assert.deepEqual(notifications, []);
  });

  test("subscribing to a reserved channel or publishing on a broker-owned one is the broker's VALIDATION_ERROR", async () => {
    const c = await connected();
    await assert.rejects(
      c.subscribe("@internal", () => {}),
      { code: "VALIDATION_ERROR", message: "channel names starting with '@' are reserved" },
    );
    await assert.rejects(c.publish("sink/dev-1", 1), {
      code: "VALIDATION_ERROR",
      message: 'channel "sink/dev-1" is owned by the broker: clients cannot publish on sink/… or @… channels',
    });
  });

  test("a notification the app has no handler for (a raw broker:subscribe) is the notification event", async () => {
    const ch = uniq("raw-");
    const c = await connected();
    await c.request("broker:subscribe", { channel: ch });
    const got = next(c, "notification");
    await node.publish(ch, { hello: "world" });
    assert.deepEqual(await got, { topic: ch, data: { hello: "world" }, requestId: null });
  });
});

describe("server-initiated requests", () => {
  test("the backend calls a method the client handles and gets its answer or its error", async () => {
    const c = await connected();
    c.handle("device:reboot", (payload) => ({ ok: true, delay: (payload as { delay: number }).delay }));
    c.handle("device:busy", () => {
      throw new HeliosError("BUSY", "try later");
    });
    const path = `/starlings/${c.starlingId}/requests`;

    const ok = await node.api("POST", path, { method: "device:reboot", payload: { delay: 5 }, timeoutMs: 5000 });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { success: true, data: { ok: true, delay: 5 } });

    const busy = await node.api("POST", path, { method: "device:busy", timeoutMs: 5000 });
    assert.equal(busy.status, 200);
    assert.deepEqual(busy.body, { success: false, error: { code: "BUSY", message: "try later" } });

    const none = await node.api("POST", path, { method: "device:nope", timeoutMs: 5000 });
    assert.equal(none.status, 200);
    assert.deepEqual(none.body, { success: false, error: { code: "METHOD_NOT_FOUND", message: 'no handler for "device:nope"' } });
  });
});

describe("~timing", () => {
  test("a held publish resolves with deliverAt and arrives when due with its decorator", async () => {
    const ch = uniq("held-");
    const c = await connected();
    const got: { p: Publication; at: number }[] = [];
    await c.subscribe(ch, (p) => got.push({ p, at: Date.now() }));
    const t0 = Date.now();
    const r = await c.publish(ch, "later", { timing: { delay_milli: 400 } });
    assert.match(r.deliverAt ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await waitFor("the held publication", () => got.length === 1);
    assert.ok(got[0]!.at - t0 >= 400, `delivered after ${got[0]!.at - t0} ms`);
    assert.equal(got[0]!.p.data, "later");
    assert.deepEqual(got[0]!.p.timing, { delay_milli: 400 });
  });

  test("an expired request is EXPIRED; a provider sees the caller's ~timing", async () => {
    const c = await connected();
    await assert.rejects(c.request("system:ping", null, { timing: { expires_time: "2019-01-25T18:25:00.000Z" } }), {
      code: "EXPIRED",
      message: "expired: ~timing.expires_time has passed",
    });
    const ns = uniq("timed");
    const timings: unknown[] = [];
    const provider = await connected();
    await provider.provide(ns, { echo: (_p, ctx) => void timings.push(ctx.timing) });
    const timing = { stale_time: "2999-01-01T00:00:00.000Z" };
    assert.equal(await c.request(`${ns}:echo`, null, { timing }), null);
    assert.deepEqual(timings, [timing]);
  });

  test("a held call reaches the provider when due", async () => {
    const ns = uniq("later");
    const provider = await connected();
    let calledAt = 0;
    await provider.provide(ns, {
      now: () => {
        calledAt = Date.now();
        return "now";
      },
    });
    const c = await connected();
    const t0 = Date.now();
    assert.equal(await c.request(`${ns}:now`, null, { timing: { delay_milli: 300 } }), "now");
    assert.ok(calledAt - t0 >= 300, `the provider was called after ${calledAt - t0} ms`);
  });
});

describe("connection", () => {
  test("state events, a token asked at every connect, close rejects what is pending with CLOSED", async () => {
    const user = uniq("u");
    let asked = 0;
    const c = helios(user, {
      token: () => {
        asked++;
        return token(user);
      },
    });
    const states = record(c, "state");
    await c.connect();
    assert.deepEqual(
      states.map((s) => s.state),
      ["connecting", "handshake", "connected"],
    );
    assert.equal(asked, 1);

    const recovered = next(c, "recovered");
    c.dropConnection();
    const r = await recovered;
    assert.equal(r.starlingId, c.starlingId);
    assert.equal(asked, 2);
    assert.deepEqual(
      states.slice(3).map((s) => s.state),
      ["reconnecting", "connecting", "handshake", "connected"],
    );
    assert.equal(states[3]!.closeCode, 4000);

    const ns = uniq("hang");
    const provider = await connected();
    await provider.provide(ns, { wait: () => new Promise(() => {}) });
    const pending = c.request(`${ns}:wait`);
    c.close();
    await assert.rejects(pending, { code: "CLOSED", message: "the client is closed" });
    await assert.rejects(c.request("system:ping"), { code: "CLOSED", message: "the client is closed" });
    assert.equal(c.state, "closed");
  });

  test("without a WebSocket implementation (Node 20 has no global one) the error says what to pass", async () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
    Object.defineProperty(globalThis, "WebSocket", { value: undefined, configurable: true, writable: true });
    try {
      const c = new HeliosClient({ url: node.wsUrl("/starling"), token: token(uniq("u")) });
      const errors = record(c, "error");
      await assert.rejects(c.connect(), { code: "CLOSED" });
      assert.equal(c.state, "closed");
      assert.deepEqual(
        errors.map((e) => (e as Error).message),
        ["no WebSocket implementation: pass one as the WebSocket option"],
      );
    } finally {
      if (saved) Object.defineProperty(globalThis, "WebSocket", saved);
      else delete (globalThis as { WebSocket?: unknown }).WebSocket;
    }
  });
});
