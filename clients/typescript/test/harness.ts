/**
 * Test harness of the SDK tests: real `murmur` processes (embedded, or a cluster on a
 * test-owned `redis-server`) on free ports, client JWTs, the backend API, and bounded
 * waits. Every process a test starts is killed when the test file ends, also when a test
 * failed (an `after` hook per file, and a process `exit` hook as the last resort).
 *
 * The binary is `$MURMUR_BIN`, or `target/debug/murmur` of the repository (`cargo build
 * --workspace`). Node logs go to `<tmp>/murmur-sdk-tests/<node id>.log`.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { WebSocket } from "ws";

import { ChatClient, type ChatEvents, type ChatOptions, type Emitter, type HeliosClient, type HeliosEvents, type WebSocketConstructor } from "../src/index.js";

/** The repository root (this file runs as clients/typescript/dist/test/harness.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
/** clients/typescript. */
export const SDK_ROOT = join(REPO_ROOT, "clients", "typescript");

/** The secrets every spawned node uses (the same as the Rust harness, tests/src/lib.rs). */
export const JWT_SECRET = "murmur-tests-jwt-secret-0123456789abcdef";
export const RECOVERY_SECRET = "murmur-tests-recovery-secret-0123456789abcdef";
export const API_KEY = "murmur-tests-api-key-0123456789abcdef";

const LOG_DIR = join(tmpdir(), "murmur-sdk-tests");

export function murmurBin(): string {
  const bin = process.env.MURMUR_BIN ?? join(REPO_ROOT, "target", "debug", "murmur");
  if (!existsSync(bin)) throw new Error(`murmur binary not found at ${bin}: run \`cargo build --workspace\` (or set MURMUR_BIN)`);
  return bin;
}

/** A unique name with `prefix` (users, channels, targets), so tests never collide. */
export function uniq(prefix: string): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

// ---- waiting ----------------------------------------------------------------------

/**
 * Polls `cond` every `intervalMs` until it returns a value other than `undefined`/`false`
 * and returns it; throws, naming `what`, after `timeoutMs`. The only way tests wait.
 */
export async function waitFor<T>(
  what: string,
  cond: () => T | undefined | false | Promise<T | undefined | false>,
  { timeoutMs = 10_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Bounds a promise: rejects, naming `what`, if it does not settle within `timeoutMs`. */
export async function within<T>(what: string, p: Promise<T>, timeoutMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type AnyEmitter = Emitter<Record<string, unknown>>;

/** Resolves with the next value of `event` on `client` (bounded). */
export function next<K extends keyof HeliosEvents & string>(client: HeliosClient, event: K, timeoutMs?: number): Promise<HeliosEvents[K]>;
export function next<K extends keyof ChatEvents & string>(client: ChatClient, event: K, timeoutMs?: number): Promise<ChatEvents[K]>;
export function next(client: unknown, event: string, timeoutMs = 10_000): Promise<unknown> {
  let off = () => {};
  const p = new Promise<unknown>((res) => {
    off = (client as AnyEmitter).once(event, res);
  });
  return within(`event "${event}"`, p, timeoutMs).finally(off);
}

/** Records every value of `event` on `client`. */
export function record<K extends keyof HeliosEvents & string>(client: HeliosClient, event: K): HeliosEvents[K][];
export function record<K extends keyof ChatEvents & string>(client: ChatClient, event: K): ChatEvents[K][];
export function record(client: unknown, event: string): unknown[] {
  const seen: unknown[] = [];
  (client as AnyEmitter).on(event, (v) => seen.push(v));
  return seen;
}

// ---- chat ------------------------------------------------------------------------

/** Longer than the broker's aggregation windows (reports: 50 ms), for proofs of absence. */
const QUIET_MS = 300;

/** Nothing more arrives on `c`: a quiet window longer than the broker's aggregation, then a round trip on `c`. */
export async function quiet(c: ChatClient): Promise<void> {
  await new Promise((r) => setTimeout(r, QUIET_MS));
  await c.listSessions();
}

/**
 * Waits until every client's device follows the group live: each sends one message and
 * each gets all the others'. A device gets a group's broadcasts once its node subscribed
 * it to the group (live, or replayed from the history right after), so from then on
 * ephemeral frames such as `typing` reach it too (docs/chat.md, "Groups on the wire").
 */
export async function following(sessionId: string, clients: ChatClient[]): Promise<string[]> {
  const got = clients.map((c) => record(c, "message"));
  const sent: string[] = [];
  for (const [i, c] of clients.entries()) sent.push((await c.send(sessionId, `hello from ${i}`)).messageId);
  await waitFor("every device to get the others' hellos", () =>
    got.every((g, i) => sent.every((id, j) => i === j || g.some((m) => m.messageId === id))),
  );
  return sent;
}

/** Resolves once `c` is closed for good (its socket is gone, so the broker has seen the close). */
export function closeAndWait(c: ChatClient): Promise<unknown> {
  const closed = waitFor("the client to be closed", () => c.state === "closed");
  c.close();
  return closed;
}

/** A gate a token provider can wait on: closed, every `pass()` waits until `open()`. */
export class Gate {
  #open = true;
  #waiters: (() => void)[] = [];
  /** How many callers are waiting right now. */
  waiting = 0;
  close(): void {
    this.#open = false;
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
  async pass(): Promise<void> {
    if (this.#open) return;
    this.waiting++;
    await new Promise<void>((r) => this.#waiters.push(r));
    this.waiting--;
  }
}

// ---- tokens -----------------------------------------------------------------------

function b64url(s: string | Buffer): string {
  return Buffer.from(s).toString("base64url");
}

/** An HS256 JWT over `claims`, signed with `secret`. */
export function jwt(claims: Record<string, unknown>, secret = JWT_SECRET): string {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A client token for `user`: `sub`, `iat = now`, `exp = now + expOffsetSecs` (tests/src/tokens.rs). */
export function token(user: string, expOffsetSecs = 3600, secret = JWT_SECRET): string {
  const now = Math.floor(Date.now() / 1000);
  return jwt({ sub: user, iat: now, exp: now + expOffsetSecs }, secret);
}

// ---- processes --------------------------------------------------------------------

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
  children.clear();
}
process.on("exit", killAll);
for (const [sig, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(code);
  });
}

const usedPorts = new Set<number>();

/** A free TCP port on 127.0.0.1, never the same twice in this process. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((res, rej) => {
      const srv = createServer();
      srv.once("error", rej);
      srv.listen(0, "127.0.0.1", () => {
        const addr = srv.address();
        const p = typeof addr === "object" && addr ? addr.port : 0;
        srv.close(() => res(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
}

function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

async function killChild(c: ChildProcess, what: string): Promise<void> {
  if (!exited(c)) {
    const gone = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGKILL");
    await within(`${what} to exit after SIGKILL`, gone);
  }
  children.delete(c);
}

function tail(path: string, n = 30): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

/** A throwaway `redis-server` on a free port, no persistence. */
export class RedisServer {
  #child: ChildProcess | null = null;
  private constructor(readonly port: number) {}

  static async start(): Promise<RedisServer> {
    const r = new RedisServer(await freePort());
    await r.#spawn();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/`;
  }

  async #spawn(): Promise<void> {
    mkdirSync(LOG_DIR, { recursive: true });
    const log = join(LOG_DIR, `redis-${this.port}.log`);
    const fd = openSync(log, "a");
    const child = spawn("redis-server", ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: ["ignore", fd, fd],
    });
    children.add(child);
    this.#child = child;
    await waitFor(`redis-server on ${this.port} to answer PING (log ${log})`, async () => {
      if (exited(child)) throw new Error(`redis-server exited: ${tail(log)}`);
      return (await redisPing(this.port)) || undefined;
    });
  }

  async stop(): Promise<void> {
    if (this.#child) await killChild(this.#child, `redis-server ${this.port}`);
    this.#child = null;
  }
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ host: "127.0.0.1", port });
    let buf = "";
    s.setTimeout(1000, () => {
      s.destroy();
      res(false);
    });
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) {
        s.destroy();
        res(buf.startsWith("+PONG"));
      }
    });
    s.on("error", () => res(false));
  });
}

/** Options of a node. */
export interface NodeOptions {
  redis?: RedisServer;
  /** Extra environment (applied last). */
  env?: Record<string, string>;
  id?: string;
}

/** One `murmur serve` process; {@link restart} starts it again with the same id and ports. */
export class MurmurNode {
  #child: ChildProcess | null = null;
  readonly id: string;
  readonly logPath: string;

  private constructor(
    readonly publicPort: number,
    readonly internalPort: number,
    readonly sinkPort: number,
    readonly options: NodeOptions,
  ) {
    this.id = options.id ?? uniq("sdk-");
    this.logPath = join(LOG_DIR, `${this.id}.log`);
  }

  /** Starts a node and waits until `/readyz` answers 200. */
  static async start(options: NodeOptions = {}): Promise<MurmurNode> {
    const n = new MurmurNode(await freePort(), await freePort(), await freePort(), options);
    await n.#spawn();
    return n;
  }

  get publicUrl(): string {
    return `http://127.0.0.1:${this.publicPort}`;
  }
  get internalUrl(): string {
    return `http://127.0.0.1:${this.internalPort}`;
  }
  /** `ws://127.0.0.1:<public port><path>`. */
  wsUrl(path: string): string {
    return `ws://127.0.0.1:${this.publicPort}${path}`;
  }
  get running(): boolean {
    return this.#child !== null && !exited(this.#child);
  }

  async #spawn(): Promise<void> {
    mkdirSync(LOG_DIR, { recursive: true });
    const fd = openSync(this.logPath, "a");
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      MURMUR_LISTEN: `127.0.0.1:${this.publicPort}`,
      MURMUR_INTERNAL_LISTEN: `127.0.0.1:${this.internalPort}`,
      MURMUR_SINK_LISTEN: `127.0.0.1:${this.sinkPort}`,
      MURMUR_NODE_ID: this.id,
      MURMUR_JWT_SECRET: JWT_SECRET,
      MURMUR_RECOVERY_SECRET: RECOVERY_SECRET,
      MURMUR_API_KEY: API_KEY,
      MURMUR_DRAIN_DELAY: "0s",
      MURMUR_LOG: "warn",
      RUST_BACKTRACE: "1",
    };
    if (this.options.redis) env.MURMUR_REDIS_URL = this.options.redis.url;
    Object.assign(env, this.options.env ?? {});
    const child = spawn(murmurBin(), ["serve"], { env, stdio: ["ignore", fd, fd] });
    children.add(child);
    this.#child = child;
    await waitFor(
      `node ${this.id} to be ready (log ${this.logPath})`,
      async () => {
        if (exited(child)) throw new Error(`node ${this.id} exited during startup:\n${tail(this.logPath)}`);
        const res = await fetch(`${this.internalUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.status === 200 || undefined;
      },
      { timeoutMs: 30_000, intervalMs: 25 },
    );
  }

  /** SIGKILL, and waits until the process is gone. */
  async kill(): Promise<void> {
    if (this.#child) await killChild(this.#child, `node ${this.id}`);
    this.#child = null;
  }

  /** SIGSTOP: the process is frozen, its sockets stay open (a hung node, a partition). */
  pause(): void {
    this.#child?.kill("SIGSTOP");
  }

  /** SIGCONT after {@link pause}. */
  resume(): void {
    this.#child?.kill("SIGCONT");
  }

  /** Starts the process again: same id, ports and environment. */
  async restart(): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} is still running`);
    await this.#spawn();
  }

  /** A call of the backend API (`/api/v1/…` on the internal port, with the API key). */
  async api(method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const init: RequestInit = { method, headers: { Authorization: `Bearer ${API_KEY}` } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)["Content-Type"] = "application/json";
    }
    const res = await fetch(`${this.internalUrl}/api/v1${path}`, init);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed };
  }

  /** `POST /api/v1/publish`; asserts 200 and returns the `messageId`. */
  async publish(channel: string, data: unknown): Promise<string> {
    const r = await this.api("POST", "/publish", { channel, data });
    if (r.status !== 200) throw new Error(`publish on ${channel}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.messageId as string;
  }
}

/** A redis-server and `n` nodes on it. */
export class Cluster {
  private constructor(
    readonly redis: RedisServer,
    readonly nodes: MurmurNode[],
  ) {}

  static async start(n: number, options: Omit<NodeOptions, "redis"> = {}): Promise<Cluster> {
    const redis = await RedisServer.start();
    const nodes = await Promise.all(Array.from({ length: n }, () => MurmurNode.start({ ...options, redis })));
    return new Cluster(redis, nodes);
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.kill();
    await this.redis.stop();
  }
}

/** Kills everything this process started (for `after` hooks). */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => killChild(c, `pid ${c.pid}`)));
}

/**
 * A chat client of `userId` on `node` — a fresh device id, the client token, fast
 * reconnects, Node's `ws` — added to `open` (the test file closes those at the end).
 */
export function chatClient(node: MurmurNode, userId: string, open: ChatClient[], options: Partial<ChatOptions> = {}): ChatClient {
  const c = new ChatClient({
    url: node.wsUrl("/chat"),
    userId,
    deviceId: uniq("dev-"),
    token: () => token(userId),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { initialMs: 50, maxMs: 200 },
    ...options,
  });
  open.push(c);
  return c;
}
