// HeliosClient recovery against real processes: the socket cut, the node SIGKILLed and
// restarted, the client resuming on another node of a 2-node cluster, and a failed
// recovery (the client subscribes and provides again and tells the app).
//
// Every scenario holds the client away with a Gate in its token provider (the provider is
// asked at every connect), publishes while it is away, then lets it come back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";

import { HeliosClient, type HeliosOptions, type Publication, type WebSocketConstructor } from "../src/index.js";
import { Cluster, Gate, MurmurNode, next, record, stopAll, token, uniq, waitFor } from "./harness.js";

const WS = WebSocket as unknown as WebSocketConstructor;

let cluster: Cluster;
const open: HeliosClient[] = [];

function helios(url: string | string[], gate: Gate, options: Partial<HeliosOptions> = {}): HeliosClient {
  const user = uniq("u");
  const c = new HeliosClient({
    url,
    token: async () => {
      await gate.pass();
      return token(user);
    },
    WebSocket: WS,
    heartbeatMs: 0,
    backoff: { initialMs: 50, maxMs: 200 },
    ...options,
  });
  open.push(c);
  return c;
}

/** Subscribes and returns the data of every publication, in arrival order. */
async function collect(c: HeliosClient, channel: string): Promise<Publication[]> {
  const got: Publication[] = [];
  await c.subscribe(channel, (p) => got.push(p));
  return got;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

before(async () => {
  cluster = await Cluster.start(2);
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

describe("recovery", () => {
  test("the socket is cut: connection:recovered, every publication made meanwhile once and in order, a call's answer kept", async () => {
    const [a] = cluster.nodes as [MurmurNode, MurmurNode];
    const gate = new Gate();
    const c = helios(a.wsUrl("/starling"), gate);
    await c.connect();
    const id = c.starlingId;
    const ch = uniq("cut-");
    const got = await collect(c, ch);
    for (const n of range(1, 3)) await a.publish(ch, n);
    await waitFor("n=1..3", () => got.length === 3);

    // A call in flight when the socket goes: its answer waits in the recovery buffer.
    const ns = uniq("svc");
    const provider = helios(a.wsUrl("/starling"), new Gate());
    let answer!: (v: string) => void;
    let asked = 0;
    await provider.provide(ns, {
      wait: () => {
        asked++;
        return new Promise<string>((r) => (answer = r));
      },
    });
    const call = c.request<string>(`${ns}:wait`);
    await waitFor("the provider to have the call", () => asked === 1);

    const gaps = record(c, "gap");
    const failed = record(c, "recoveryFailed");
    const recovered = next(c, "recovered");
    gate.close();
    c.dropConnection();
    await waitFor("the client to wait for its token", () => gate.waiting === 1);
    assert.equal(c.state, "connecting");
    answer("answered while away");
    for (const n of range(4, 10)) await a.publish(ch, n);
    gate.open();

    const r = await recovered;
    assert.equal(r.starlingId, id);
    assert.equal(c.starlingId, id);
    // What waited for it: the 7 publications, and the call's answer unless it reached
    // the node only after the recovery (it travels from the provider's own socket, so
    // its arrival is not ordered with the publications); either way it comes once.
    assert.ok(r.buffered === 8 || r.buffered === 7, `buffered ${r.buffered}`);
    assert.equal(await call, "answered while away");
    await waitFor("n=4..10", () => got.length >= 10);
    await c.request("system:ping"); // barrier: nothing more is coming
    assert.deepEqual(
      got.map((p) => p.data),
      range(1, 10),
    );
    assert.deepEqual(
      got.map((p) => p.seq),
      range(1, 10),
    );
    assert.deepEqual(gaps, []);
    assert.deepEqual(failed, []);
    assert.equal(c.state, "connected");
  });

  test("the node is SIGKILLed and restarted: connection:recovered there, nothing lost, nothing twice", async () => {
    const [a, b] = cluster.nodes as [MurmurNode, MurmurNode];
    const gate = new Gate();
    const c = helios(a.wsUrl("/starling"), gate);
    await c.connect();
    const id = c.starlingId;
    const ch = uniq("restart-");
    const got = await collect(c, ch);
    for (const n of range(1, 5)) await b.publish(ch, n);
    await waitFor("n=1..5", () => got.length === 5);

    const failed = record(c, "recoveryFailed");
    const recovered = next(c, "recovered", 30_000);
    gate.close();
    await a.kill();
    await waitFor("the client to wait for its token", () => gate.waiting === 1);
    for (const n of range(6, 20)) await b.publish(ch, n);
    await a.restart();
    gate.open();

    const r = await recovered;
    assert.equal(r.starlingId, id);
    await waitFor("n=6..20", () => got.length >= 20);
    await c.request("system:ping");
    assert.deepEqual(
      got.map((p) => p.data),
      range(1, 20),
    );
    assert.deepEqual(failed, []);
    // Still subscribed after the recovery: live publications keep coming.
    await b.publish(ch, 21);
    await waitFor("n=21", () => got.length === 21);
    assert.equal(got[20]!.data, 21);
  });

  test("across nodes: connected to A, A is SIGKILLed, the client resumes on B with every publication once and in order", async () => {
    const [a, b] = cluster.nodes as [MurmurNode, MurmurNode];
    const gate = new Gate();
    const c = helios([a.wsUrl("/starling"), b.wsUrl("/starling")], gate);
    await c.connect();
    const id = c.starlingId;
    const ch = uniq("move-");
    const got = await collect(c, ch);
    for (const n of range(1, 5)) await a.publish(ch, n);
    await waitFor("n=1..5", () => got.length === 5);

    const gaps = record(c, "gap");
    const failed = record(c, "recoveryFailed");
    const recovered = next(c, "recovered", 30_000);
    gate.close();
    await a.kill();
    await waitFor("the client to wait for its token", () => gate.waiting === 1);
    for (const n of range(6, 30)) await b.publish(ch, n);
    gate.open();

    const r = await recovered;
    assert.equal(r.starlingId, id);
    await waitFor("n=6..30", () => got.length >= 30);
    await c.request("system:ping");
    assert.deepEqual(
      got.map((p) => p.data),
      range(1, 30),
    );
    assert.deepEqual(gaps, []);
    assert.deepEqual(failed, []);
    // It is on B now: B's publications keep arriving live, and calls are answered.
    await b.publish(ch, 31);
    await waitFor("n=31", () => got.length === 31);
    assert.equal((await c.request<{ pong: boolean }>("system:ping")).pong, true);
    await a.restart();
  });
});

describe("failed recovery", () => {
  test("the session is gone (embedded node restarted): recoveryFailed with the reason, subscriptions and providers restored", async () => {
    const node = await MurmurNode.start();
    const gate = new Gate();
    const c = helios(node.wsUrl("/starling"), gate);
    await c.connect();
    const oldId = c.starlingId;
    const ch = uniq("fresh-");
    const got = await collect(c, ch);
    const ns = uniq("svc");
    await c.provide(ns, { hello: () => "still here" });
    await node.publish(ch, "before");
    await waitFor("the first publication", () => got.length === 1);
    // A call in flight: the old Starling's answer can never come.
    const other = helios(node.wsUrl("/starling"), new Gate());
    const hangs = uniq("hang");
    let asked = 0;
    await other.provide(hangs, {
      wait: () => {
        asked++;
        return new Promise(() => {});
      },
    });
    const call = c.request(`${hangs}:wait`);
    call.catch(() => undefined);
    await waitFor("the provider to have the call", () => asked === 1);

    const recovered = record(c, "recovered");
    const failed = next(c, "recoveryFailed", 30_000);
    const fresh = next(c, "connected", 30_000);
    gate.close();
    await node.kill();
    await waitFor("the client to wait for its token", () => gate.waiting === 1);
    await node.restart();
    gate.open();

    const f = await failed;
    assert.equal(f.reason, "session not found or recovery window passed");
    await assert.rejects(call, { code: "RECOVERY_FAILED", message: "recovery failed: session not found or recovery window passed" });
    assert.equal(typeof f.timestamp, "number");
    const { starlingId } = await fresh;
    assert.notEqual(starlingId, oldId);
    assert.equal(c.starlingId, starlingId);
    assert.deepEqual(recovered, []);

    // Subscribed again: a publication after the failure arrives.
    await node.publish(ch, "after");
    await waitFor("the publication after the failure", () => got.length === 2);
    assert.deepEqual(
      got.map((p) => p.data),
      ["before", "after"],
    );
    // Providing again: another client's call reaches the handler.
    const caller = helios(node.wsUrl("/starling"), new Gate());
    assert.equal(await caller.request(`${ns}:hello`), "still here");
  });
});

describe("a node that hangs", () => {
  test("the heartbeat finds the dead connection; the client resumes on the other node with everything", async () => {
    const [a, b] = cluster.nodes as [MurmurNode, MurmurNode];
    const gate = new Gate();
    const c = helios([a.wsUrl("/starling"), b.wsUrl("/starling")], gate, { heartbeatMs: 300, connectTimeoutMs: 1000 });
    await c.connect();
    const id = c.starlingId;
    const ch = uniq("hang-");
    const got = await collect(c, ch);
    await b.publish(ch, 1);
    await waitFor("n=1", () => got.length === 1);

    const states = record(c, "state");
    const recovered = next(c, "recovered", 30_000);
    a.pause();
    try {
      for (const n of range(2, 6)) await b.publish(ch, n);
      const r = await recovered;
      assert.equal(r.starlingId, id);
      await waitFor("n=2..6", () => got.length >= 6);
      await c.request("system:ping");
      assert.deepEqual(
        got.map((p) => p.data),
        range(1, 6),
      );
      const lost = states.find((s) => s.state === "reconnecting");
      assert.equal(lost?.closeReason, "heartbeat: no answer to system:ping");
    } finally {
      a.resume();
    }
  });
});
