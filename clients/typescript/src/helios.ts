/**
 * Helios-Starling client (WebSocket `/starling`, docs/helios.md): requests with
 * timeouts and cancellation, providers that serve namespaces, publish/subscribe,
 * requests from the broker or the backend, progress notifications, `~timing`, and
 * recovery: the client keeps a fresh recovery token and reconnects with `?recover=`; after
 * `connection:recovered` nothing buffered is lost (and duplicates a node crash may replay
 * are dropped by `seq`); after `connection:recovery_failed` it subscribes and provides
 * again and tells the app.
 *
 * @module
 */

import { Connection, type ConnectionOptions, type ConnectionState, type StateChange, pickUrl, withQuery } from "./connection.js";
import { ClientErrorCode, ConnectionClosedError, HeliosError, MurmurError } from "./errors.js";
import { Emitter } from "./events.js";
import { type Timing, type TokenProvider, resolve, uuid } from "./util.js";

const PROTOCOL = "helios-starling";
const VERSION = "1.0.0";

/** Options of {@link HeliosClient}. */
export interface HeliosOptions extends ConnectionOptions {
  /** `ws://host:8080/starling`, or several nodes' URLs: reconnects retry the same node once, then rotate. */
  url: string | readonly string[];
  /** The client JWT (or a callback giving a fresh one at every connect). */
  token: TokenProvider;
  /** Default timeout of a request (ms); default 30000 (the broker's own cap). */
  requestTimeoutMs?: number;
  /** Requests waiting for a connection, at most (default 1024); beyond: `QUEUE_FULL`. */
  maxQueued?: number;
  /** Refuse to send while the socket holds more than this many unsent bytes (default 4 MiB): `QUEUE_FULL`. */
  maxBufferedBytes?: number;
  /** Send `system:ping` after this long without traffic, and drop the socket if it gets no answer (ms; default 25000; 0 = off). */
  heartbeatMs?: number;
  /** How long to wait for `connection:recovered`/`recovery_failed` after a `?recover=` connect (ms, default 15000). */
  recoveryTimeoutMs?: number;
}

/** Options of one request. */
export interface RequestOptions {
  /** Timeout (ms). Sent as the request's `timeoutMs`; the broker caps it at 30 s. */
  timeoutMs?: number;
  /**
   * Aborting sends `system:cancel`; the request rejects with the broker's `REQUEST_CANCELLED`
   * (`ABORTED` when it was not sent yet, or the cancel could not reach the broker).
   */
  signal?: AbortSignal;
  /** `~timing` decorator (Aries RFC 0032). */
  timing?: Timing;
  /** Progress notifications the provider sends for this request. */
  onProgress?: (data: unknown, topic: string | null) => void;
}

/** What a provider's handler gets besides the payload. */
export interface RequestContext {
  /** The request's id (chosen by the broker). */
  requestId: string;
  method: string;
  /** The caller's `~timing`, if any. */
  timing?: Timing;
  /** Sends a progress notification to the caller. */
  progress(data: unknown, topic?: string): void;
}

/**
 * Serves one method. Return the response's `data` (or a promise of it); throw a
 * {@link HeliosError} to answer with its code, message and details (any other throw is
 * answered `METHOD_ERROR` with its message).
 */
export type Handler = (payload: unknown, ctx: RequestContext) => unknown;

/** A channel publication. */
export interface Publication {
  channel: string;
  data: unknown;
  /** Per-channel sequence number (absent when the bus was down). */
  seq?: number;
  epoch?: string;
  timing?: Timing;
}

/** A notification that is not a channel publication the app subscribed to. */
export interface Notification {
  topic: string | null;
  data: unknown;
  requestId: string | null;
}

/** `connection:recovered` data. */
export interface Recovered {
  starlingId: string;
  buffered: number;
  recoveredFrom: number;
  timestamp: number;
}

/** `connection:recovery_failed` data. */
export interface RecoveryFailed {
  reason: string;
  timestamp: number;
}

/** A gap in a channel's sequence (something was missed outside recovery's guarantees). */
export interface Gap {
  channel: string;
  epoch: string;
  expected: number;
  got: number;
}

/** Events of {@link HeliosClient}. */
export interface HeliosEvents {
  state: StateChange;
  /** A fresh Starling: the first connect, or after a failed recovery. */
  connected: { starlingId: string };
  recovered: Recovered;
  recoveryFailed: RecoveryFailed;
  notification: Notification;
  gap: Gap;
  /** Something went wrong that is not any request's answer (bad frame, top-level error, socket error). */
  error: unknown;
  [k: string]: unknown;
}

/** An active subscription. */
export interface Subscription {
  readonly channel: string;
  /** Removes this handler; the channel is unsubscribed when its last handler goes. */
  unsubscribe(): Promise<void>;
}

interface Pending {
  method: string;
  frame: string;
  sent: boolean;
  internal: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
  onProgress?: RequestOptions["onProgress"];
  cleanup?: () => void;
}

interface Frame {
  type?: string;
  requestId?: string | null;
  method?: string;
  payload?: unknown;
  success?: boolean;
  data?: unknown;
  error?: { code?: string; message?: string; details?: unknown };
  notification?: { topic?: string | null; data?: unknown; seq?: number; epoch?: string };
  "~timing"?: Timing;
}

/** Margin added to a request's timeout before the client gives up on the broker's own answer. */
const TIMEOUT_GRACE_MS = 1500;

/**
 * A Helios-Starling client. `await client.connect()` before use, or just call: requests
 * made while disconnected wait (bounded) for the connection.
 */
export class HeliosClient extends Emitter<HeliosEvents> {
  #o: HeliosOptions;
  #conn: Connection;
  #urlIndex = { index: 0 };
  #pending = new Map<string, Pending>();
  #queue: string[] = [];
  #channels = new Map<string, Set<(p: Publication) => void>>();
  #positions = new Map<string, { epoch: string; seq: number }>();
  #handlers = new Map<string, Handler>();
  #namespaces = new Map<string, Record<string, Handler>>();
  #recoveryToken: string | null = null;
  #tokenTimer: ReturnType<typeof setTimeout> | null = null;
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  #recoveryTimer: ReturnType<typeof setTimeout> | null = null;
  #lastTraffic = 0;
  #pinging = false;
  #recovering = false;
  #starlingId: string | null = null;
  #firstConnect: Promise<void>;
  #firstResolve!: () => void;
  #firstReject!: (e: unknown) => void;
  #closed = false;

  constructor(options: HeliosOptions) {
    super();
    this.#o = options;
    this.#firstConnect = new Promise((res, rej) => {
      this.#firstResolve = res;
      this.#firstReject = rej;
    });
    this.#firstConnect.catch(() => undefined);
    this.#conn = new Connection((attempt) => this.#buildUrl(attempt), options);
    this.#conn.on("state", (s) => {
      this.emit("state", s);
      if (s.state === "closed") this.#onClosed(s);
    });
    this.#conn.on("open", () => this.#onOpen());
    this.#conn.on("message", (t) => this.#onMessage(t));
    this.#conn.on("close", () => this.#onSocketGone());
    this.#conn.on("error", (e) => this.emit("error", e));
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.#conn.state;
  }

  /** This Starling's id (known once connected). */
  get starlingId(): string | null {
    return this.#starlingId;
  }

  /** The latest recovery token (from `starling:getToken`). */
  get recoveryToken(): string | null {
    return this.#recoveryToken;
  }

  /** Opens the connection; resolves once the first Starling is ready. */
  connect(): Promise<void> {
    this.#conn.start();
    return this.#firstConnect;
  }

  /** Closes for good; pending requests reject with `CLOSED`. */
  close(): void {
    this.#closed = true;
    this.#conn.close(1000, "bye");
  }

  /** Test and diagnostics hook: cuts the current socket as a network failure would (the client recovers). */
  dropConnection(): void {
    this.#conn.drop(4000, "dropped by the application");
  }

  /**
   * Calls `method` (built-in, or served by a provider anywhere in the cluster) and
   * resolves with the response's `data`; rejects with a {@link HeliosError} carrying the
   * broker's (or provider's) code, message and details.
   */
  request<T = unknown>(method: string, payload?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.#request(method, payload, options, false) as Promise<T>;
  }

  /** Publishes on a channel; resolves with the broker's `messageId` (and `deliverAt` when held by `~timing`). */
  publish(channel: string, data: unknown, options: { timing?: Timing; timeoutMs?: number } = {}): Promise<{ channel: string; messageId: string; deliverAt?: string }> {
    return this.request("broker:publish", { channel, data }, options);
  }

  /** Calls `handler` with every publication on `channel` (subscribing with the broker on the first handler). */
  async subscribe(channel: string, handler: (p: Publication) => void): Promise<Subscription> {
    let set = this.#channels.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.#channels.set(channel, set);
    }
    set.add(handler);
    if (first) {
      try {
        await this.request("broker:subscribe", { channel });
      } catch (e) {
        set.delete(handler);
        if (set.size === 0) this.#channels.delete(channel);
        throw e;
      }
    }
    return {
      channel,
      unsubscribe: async () => {
        const s = this.#channels.get(channel);
        if (!s || !s.delete(handler)) return;
        if (s.size === 0) {
          this.#channels.delete(channel);
          await this.request("broker:unsubscribe", { channel });
        }
      },
    };
  }

  /**
   * Serves `namespace:*`: `handlers.action` answers `namespace:action`. Resolves once the
   * broker routes the namespace here. Provided again automatically after a failed recovery.
   */
  async provide(namespace: string, handlers: Record<string, Handler>): Promise<void> {
    const had = this.#namespaces.get(namespace);
    this.#namespaces.set(namespace, handlers);
    if (!had) {
      try {
        await this.request("broker:provide", { namespace });
      } catch (e) {
        this.#namespaces.delete(namespace);
        throw e;
      }
    }
  }

  /** Stops serving `namespace`. */
  async unprovide(namespace: string): Promise<void> {
    if (!this.#namespaces.delete(namespace)) return;
    await this.request("broker:unprovide", { namespace });
  }

  /**
   * Answers server-initiated requests for exactly `method` (for example the backend's
   * `POST /api/v1/starlings/<id>/requests`), without providing a namespace.
   */
  handle(method: string, handler: Handler): () => void {
    this.#handlers.set(method, handler);
    return () => {
      if (this.#handlers.get(method) === handler) this.#handlers.delete(method);
    };
  }

  // ---- internals ------------------------------------------------------------------

  async #buildUrl(attempt: number): Promise<string> {
    const base = pickUrl(this.#o.url, attempt, this.#urlIndex);
    const token = await resolve(this.#o.token);
    this.#recovering = this.#recoveryToken !== null;
    return withQuery(base, { token, recover: this.#recoveryToken ?? undefined });
  }

  #request(method: string, payload: unknown, options: RequestOptions, internal: boolean): Promise<unknown> {
    if (this.#closed) return Promise.reject(new HeliosError(ClientErrorCode.CLOSED, "the client is closed"));
    if (options.signal?.aborted) return Promise.reject(new HeliosError(ClientErrorCode.ABORTED, "aborted before it was sent"));
    const requestId = uuid();
    const timeoutMs = options.timeoutMs ?? this.#o.requestTimeoutMs ?? 30_000;
    const msg: Record<string, unknown> = {
      protocol: PROTOCOL,
      version: VERSION,
      timestamp: Date.now(),
      type: "request",
      requestId,
      method,
      payload: payload === undefined ? null : payload,
      timeoutMs,
    };
    if (options.timing) msg["~timing"] = options.timing;
    const frame = JSON.stringify(msg);
    return new Promise((res, rej) => {
      const p: Pending = {
        method,
        frame,
        sent: false,
        internal,
        resolve: res,
        reject: rej,
        onProgress: options.onProgress,
        timer: setTimeout(() => {
          this.#settle(requestId, new HeliosError("REQUEST_TIMEOUT", `no answer to ${method} within ${timeoutMs} ms`));
        }, timeoutMs + TIMEOUT_GRACE_MS),
      };
      if (options.signal) {
        const signal = options.signal;
        const onAbort = () => this.#abort(requestId);
        signal.addEventListener("abort", onAbort, { once: true });
        p.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      this.#pending.set(requestId, p);
      // Built-in calls of the handshake go out at once; the rest waits for `connected`.
      const now = internal ? this.#conn.socket !== null : this.#conn.state === "connected";
      if (now) {
        this.#write(requestId, p);
      } else if (this.#queue.length >= (this.#o.maxQueued ?? 1024)) {
        this.#settle(requestId, new HeliosError(ClientErrorCode.QUEUE_FULL, "too many requests wait for the connection"));
      } else {
        this.#queue.push(requestId);
        this.#conn.start();
      }
    });
  }

  #write(requestId: string, p: Pending): void {
    if (this.#conn.bufferedAmount > (this.#o.maxBufferedBytes ?? 4 * 1024 * 1024)) {
      this.#settle(requestId, new HeliosError(ClientErrorCode.QUEUE_FULL, "the socket's send buffer is full"));
      return;
    }
    if (this.#conn.send(p.frame)) p.sent = true;
    else this.#queue.push(requestId);
  }

  #abort(requestId: string): void {
    const p = this.#pending.get(requestId);
    if (!p) return;
    if (!p.sent) {
      this.#queue = this.#queue.filter((id) => id !== requestId);
      this.#settle(requestId, new HeliosError(ClientErrorCode.ABORTED, "aborted before it was sent"));
      return;
    }
    // The broker answers the call REQUEST_CANCELLED ("cancelled by the caller"). When the
    // cancel cannot reach it (the connection went away), the call is abandoned here.
    this.#request("system:cancel", { requestId }, { timeoutMs: 10_000 }, true).catch((e) => {
      this.#settle(requestId, new HeliosError(ClientErrorCode.ABORTED, `aborted; the broker was not told: ${(e as Error)?.message ?? e}`));
    });
  }

  #settle(requestId: string, error: unknown, data?: unknown): void {
    const p = this.#pending.get(requestId);
    if (!p) return;
    this.#pending.delete(requestId);
    clearTimeout(p.timer);
    p.cleanup?.();
    if (error) p.reject(error);
    else p.resolve(data);
  }

  #flushQueue(): void {
    const q = this.#queue;
    this.#queue = [];
    for (const id of q) {
      const p = this.#pending.get(id);
      if (p && !p.sent) this.#write(id, p);
    }
  }

  #onOpen(): void {
    this.#lastTraffic = Date.now();
    this.#startHeartbeat();
    if (this.#recovering) {
      // Wait for connection:recovered / connection:recovery_failed.
      this.#recoveryTimer = setTimeout(() => {
        this.emit("error", new HeliosError(ClientErrorCode.PROTOCOL, "no recovery answer in time"));
        this.#conn.drop(4000, "no recovery answer");
      }, this.#o.recoveryTimeoutMs ?? 15_000);
    } else {
      void this.#fresh(false, null);
    }
  }

  /** A fresh Starling (first connect, or after a failed recovery): restore what the app asked for. */
  async #fresh(afterFailure: boolean, failure: RecoveryFailed | null): Promise<void> {
    try {
      await this.#refreshToken();
      if (afterFailure) {
        const subs = [...this.#channels.keys()].map((channel) =>
          this.#request("broker:subscribe", { channel }, { timeoutMs: 10_000 }, true),
        );
        const provs = [...this.#namespaces.keys()].map((namespace) =>
          this.#request("broker:provide", { namespace }, { timeoutMs: 10_000 }, true),
        );
        await Promise.all([...subs, ...provs]);
      }
    } catch (e) {
      this.emit("error", e);
      this.#conn.drop(4000, "could not restore the session");
      return;
    }
    this.#conn.ready();
    this.#flushQueue();
    this.emit("connected", { starlingId: this.#starlingId ?? "" });
    if (failure) this.emit("recoveryFailed", failure);
    this.#firstResolve();
  }

  async #refreshToken(): Promise<void> {
    if (this.#tokenTimer) clearTimeout(this.#tokenTimer);
    this.#tokenTimer = null;
    const r = (await this.#request("starling:getToken", null, { timeoutMs: 10_000 }, true)) as {
      token: string;
      expiresIn: number;
      starlingId: string;
    };
    this.#recoveryToken = r.token;
    this.#starlingId = r.starlingId ?? this.#starlingId;
    // Renew at half the lifetime, so a token in hand is always valid.
    const ms = Math.max(1000, (r.expiresIn * 1000) / 2);
    this.#tokenTimer = setTimeout(() => {
      this.#tokenTimer = null;
      if (this.#conn.state === "connected") this.#refreshToken().catch((e) => this.emit("error", e));
    }, Math.min(ms, 2 ** 31 - 1));
  }

  #onSocketGone(): void {
    this.#stopHeartbeat();
    if (this.#recoveryTimer) clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = null;
    // Requests that were written stay pending: a recovery on the same node delivers their
    // answers. Internal handshake calls are retried by the next handshake.
    for (const [id, p] of this.#pending) {
      if (p.internal) this.#settle(id, new HeliosError(ClientErrorCode.CONNECTION_LOST, "connection lost"));
    }
  }

  #onClosed(s: StateChange): void {
    this.#stopHeartbeat();
    if (this.#tokenTimer) clearTimeout(this.#tokenTimer);
    const err = this.#closed
      ? new HeliosError(ClientErrorCode.CLOSED, "the client is closed")
      : new ConnectionClosedError(s.closeCode ?? 0, s.closeReason ?? "");
    for (const id of [...this.#pending.keys()]) this.#settle(id, err);
    this.#queue = [];
    this.#firstReject(err);
  }

  #startHeartbeat(): void {
    const every = this.#o.heartbeatMs ?? 25_000;
    if (every <= 0) return;
    this.#stopHeartbeat();
    this.#heartbeat = setInterval(() => {
      if (this.#pinging || Date.now() - this.#lastTraffic < every) return;
      this.#pinging = true;
      this.#request("system:ping", null, { timeoutMs: Math.min(every, 10_000) }, true)
        .catch(() => this.#conn.drop(4000, "heartbeat: no answer to system:ping"))
        .finally(() => {
          this.#pinging = false;
        });
    }, Math.max(250, Math.floor(every / 2)));
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  #send(msg: Record<string, unknown>): void {
    this.#conn.send(JSON.stringify({ protocol: PROTOCOL, version: VERSION, timestamp: Date.now(), ...msg }));
  }

  #onMessage(text: string): void {
    this.#lastTraffic = Date.now();
    let f: Frame;
    try {
      f = JSON.parse(text) as Frame;
    } catch {
      this.emit("error", new HeliosError(ClientErrorCode.PROTOCOL, "the broker sent invalid JSON"));
      return;
    }
    switch (f.type) {
      case "response":
        return this.#onResponse(f);
      case "notification":
        return this.#onNotification(f);
      case "request":
        return void this.#onRequest(f);
      case "error":
        this.emit("error", new HeliosError(f.error?.code ?? "ERROR", f.error?.message ?? "", f.error?.details));
        return;
      default:
        this.emit("error", new HeliosError(ClientErrorCode.PROTOCOL, `unknown message type ${String(f.type)}`));
    }
  }

  #onResponse(f: Frame): void {
    const id = f.requestId;
    if (typeof id !== "string") return;
    if (f.success) this.#settle(id, null, f.data === undefined ? null : f.data);
    else this.#settle(id, new HeliosError(f.error?.code ?? "ERROR", f.error?.message ?? "", f.error?.details));
  }

  #onNotification(f: Frame): void {
    const n = f.notification ?? {};
    const topic = n.topic ?? null;
    if (typeof f.requestId === "string") {
      const p = this.#pending.get(f.requestId);
      p?.onProgress?.(n.data ?? null, topic);
      return;
    }
    if (topic === "connection:recovered") {
      if (this.#recoveryTimer) clearTimeout(this.#recoveryTimer);
      this.#recoveryTimer = null;
      const data = n.data as Recovered;
      this.#starlingId = data.starlingId ?? this.#starlingId;
      this.#conn.ready();
      this.#flushQueue();
      this.#refreshToken().catch((e) => this.emit("error", e));
      this.emit("recovered", data);
      return;
    }
    if (topic === "connection:recovery_failed") {
      if (this.#recoveryTimer) clearTimeout(this.#recoveryTimer);
      this.#recoveryTimer = null;
      const data = n.data as RecoveryFailed;
      this.#recoveryToken = null;
      this.#recovering = false;
      // The old Starling's calls will never be answered on this connection.
      for (const [id, p] of this.#pending) {
        if (p.sent && !p.internal) this.#settle(id, new HeliosError(ClientErrorCode.RECOVERY_FAILED, `recovery failed: ${data.reason}`));
      }
      void this.#fresh(true, data);
      return;
    }
    if (topic !== null && this.#channels.has(topic)) {
      if (typeof n.seq === "number" && typeof n.epoch === "string") {
        const last = this.#positions.get(topic);
        if (last && last.epoch === n.epoch) {
          if (n.seq <= last.seq) return; // a duplicate replayed after a node crash
          if (n.seq > last.seq + 1) this.emit("gap", { channel: topic, epoch: n.epoch, expected: last.seq + 1, got: n.seq });
        }
        this.#positions.set(topic, { epoch: n.epoch, seq: n.seq });
      }
      const pub: Publication = { channel: topic, data: n.data ?? null };
      if (n.seq !== undefined) pub.seq = n.seq;
      if (n.epoch !== undefined) pub.epoch = n.epoch;
      if (f["~timing"]) pub.timing = f["~timing"];
      for (const h of [...(this.#channels.get(topic) ?? [])]) {
        try {
          h(pub);
        } catch (e) {
          this.emit("error", e);
        }
      }
      return;
    }
    this.emit("notification", { topic, data: n.data ?? null, requestId: null });
  }

  async #onRequest(f: Frame): Promise<void> {
    const requestId = f.requestId;
    const method = f.method;
    if (typeof requestId !== "string" || typeof method !== "string") return;
    const colon = method.indexOf(":");
    const ns = method.slice(0, colon);
    const action = method.slice(colon + 1);
    const handler = this.#handlers.get(method) ?? this.#namespaces.get(ns)?.[action];
    const socket = this.#conn.socket;
    const reply = (msg: Record<string, unknown>) => {
      // A response for a connection that is gone is dropped: the broker already answered
      // the caller REQUEST_CANCELLED.
      if (this.#conn.socket === socket) this.#send({ type: "response", requestId, ...msg });
    };
    if (!handler || typeof handler !== "function") {
      reply({ success: false, error: { code: "METHOD_NOT_FOUND", message: `no handler for "${method}"` } });
      return;
    }
    const ctx: RequestContext = {
      requestId,
      method,
      progress: (data, topic = "progress") => {
        if (this.#conn.socket === socket) this.#send({ type: "notification", requestId, notification: { topic, data } });
      },
    };
    if (f["~timing"]) ctx.timing = f["~timing"];
    try {
      const data = await handler(f.payload ?? null, ctx);
      reply({ success: true, data: data === undefined ? null : data });
    } catch (e) {
      if (e instanceof MurmurError) {
        const error: Record<string, unknown> = { code: e.code, message: e.message.slice(0, 1024) };
        if (e.details !== undefined) error.details = e.details;
        reply({ success: false, error });
      } else {
        reply({ success: false, error: { code: "METHOD_ERROR", message: String((e as Error)?.message ?? e).slice(0, 1024) } });
      }
    }
  }
}
