/**
 * TimeStick client (HTTP, docs/timestick.md): START from a `timestick://` URI or a
 * target, `post`, receiving by long-poll (at-least-once, confirmed by cursor) or
 * Server-Sent Events (resumed with `Last-Event-ID`), STOP and KILL.
 *
 * Every request carries `Authorization: Bearer <token>`, so SSE is read with `fetch` and a
 * streamed body (the browser `EventSource` cannot send that header).
 *
 * @module
 */

import { ClientErrorCode, TimeStickError } from "./errors.js";
import { type BackoffOptions, type Timing, type TokenProvider, backoffDelay, jwtSubject, resolve, uuid } from "./util.js";

type FetchLike = typeof fetch;

/** Options of {@link TimeStickClient}. */
export interface TimeStickOptions {
  /** The node, `http://host:8080` (default: derived from the START's `timestick://` URI). */
  baseUrl?: string;
  token: TokenProvider;
  /** `fetch` implementation (default `globalThis.fetch`). */
  fetch?: FetchLike;
  /** Retry backoff of the receive loops after network errors. */
  backoff?: BackoffOptions;
}

/** A delivered TimeStick message. */
export interface TimeStickMessage {
  type: "request" | "response" | "control";
  session_id: string;
  message_id: string;
  correlation_id: string | null;
  payload: unknown;
  from?: { caller: string | null; protocol: string };
  "~timing"?: Timing;
  [extra: string]: unknown;
}

/** Negotiated capabilities (START-OK). */
export interface Capabilities {
  max_message_size: number;
  supports_binary: boolean;
  supports_notifications: boolean;
  server_can_stop_anytime: boolean;
}

/** Where a session goes: a `timestick://host[:port]/path` URI or a target path. */
export type StartTarget = { uri: string } | { target: string };

/** Maps `timestick://host[:port]/path` to `http(s)://host[:port]/timestick/path`. */
export function timestickUriToHttp(uri: string, secure = false): string {
  const m = /^timestick:\/\/([^/?#]+)(\/[^?#]*)?$/.exec(uri);
  if (!m) throw new TimeStickError(0, ClientErrorCode.INVALID_ARGUMENT, `not a timestick:// URI: ${uri}`);
  return `${secure ? "https" : "http"}://${m[1]}/timestick${m[2] ?? "/"}`;
}

async function errorFrom(res: Response): Promise<TimeStickError> {
  const text = await res.text().catch(() => "");
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  const payload = (body.payload ?? {}) as Record<string, unknown>;
  const apiErr = (body.error ?? {}) as Record<string, unknown>;
  const code =
    (body.action === "START-ERROR" ? "START-ERROR" : undefined) ??
    (body.error_code as string | undefined) ??
    (payload.error_code as string | undefined) ??
    (apiErr.code as string | undefined) ??
    `HTTP_${res.status}`;
  const reason =
    (body.reason as string | undefined) ??
    (body.error_message as string | undefined) ??
    (payload.error_message as string | undefined) ??
    (apiErr.message as string | undefined) ??
    (text || res.statusText);
  return new TimeStickError(res.status, code, reason, body);
}

/** A TimeStick caller. */
export class TimeStickClient {
  readonly #o: TimeStickOptions;
  constructor(options: TimeStickOptions) {
    this.#o = options;
  }

  /** @internal */
  get fetch(): FetchLike {
    const f = this.#o.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new TimeStickError(0, ClientErrorCode.INVALID_ARGUMENT, "no fetch implementation");
    return f;
  }

  /** @internal */
  get backoff(): BackoffOptions | undefined {
    return this.#o.backoff;
  }

  /** @internal An authenticated request. */
  async call(url: string, init: RequestInit = {}): Promise<Response> {
    const token = await resolve(this.#o.token);
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${token}`);
    if (init.body) headers.set("Content-Type", "application/json");
    try {
      return await this.fetch(url, { ...init, headers });
    } catch (e) {
      if ((e as Error)?.name === "AbortError") throw e;
      throw new TimeStickError(0, ClientErrorCode.NETWORK, String((e as Error)?.message ?? e));
    }
  }

  /**
   * START: resolves with the session (START-OK), rejects with a {@link TimeStickError}
   * (`code` `START-ERROR`, `status` and the broker's `reason`).
   */
  async start(where: StartTarget, options: { callerId?: string; maxMessageSize?: number; version?: string } = {}): Promise<TimeStickSession> {
    const token = await resolve(this.#o.token);
    const callerId = options.callerId ?? jwtSubject(token);
    if (!callerId) throw new TimeStickError(0, ClientErrorCode.INVALID_ARGUMENT, "callerId is needed (the token has no sub)");
    let url: string;
    const body: Record<string, unknown> = {
      action: "START",
      protocol: "TimeStick",
      version: options.version ?? "0.1",
      caller_id: callerId,
      capabilities: { max_message_size: options.maxMessageSize ?? 65535, supports_binary: false, supports_notifications: true },
    };
    let base = this.#o.baseUrl;
    if ("uri" in where) {
      body.requested_uri = where.uri;
      if (!base) base = new URL(timestickUriToHttp(where.uri)).origin;
      url = `${base}/timestick/start`;
    } else {
      if (!base) throw new TimeStickError(0, ClientErrorCode.INVALID_ARGUMENT, "baseUrl is needed to START on a target");
      const path = where.target
        .replace(/^\/+|\/+$/g, "")
        .split("/")
        .map(encodeURIComponent)
        .join("/");
      url = `${base}/timestick/${path}`;
    }
    const res = await this.call(url, { method: "POST", body: JSON.stringify(body) });
    if (res.status !== 200) throw await errorFrom(res);
    const ok = (await res.json()) as { session_id: string; endpoint: string; transport: string; capabilities: Capabilities };
    return new TimeStickSession(this, base!, ok.session_id, ok.endpoint, ok.capabilities);
  }
}

/** What {@link TimeStickSession.receive} calls. */
export interface ReceiveHandlers {
  /** Every delivered message (requests, responses and the final control message). */
  onMessage(m: TimeStickMessage): void;
  /** The session ended: a final STOP / STOP-OK was delivered, or the broker answered 410. */
  onEnd?(info: { reason: string; status?: number; control?: TimeStickMessage }): void;
  /** A network or server error; the loop retries with backoff. */
  onError?(e: unknown): void;
}

/** A running receive loop. */
export interface Receiver {
  /** Stops the loop (an open poll or stream is aborted). */
  stop(): void;
  /** Resolves when the loop ends (stopped, or the session ended). */
  done: Promise<void>;
  /** The last cursor / event id received. */
  readonly cursor: string | null;
}

/** One START-ed session. */
export class TimeStickSession {
  /** The cursor after the last message handed to the app by `poll()` / `receive()`. */
  cursor: string | null = null;

  constructor(
    private readonly client: TimeStickClient,
    readonly baseUrl: string,
    readonly id: string,
    readonly endpoint: string,
    readonly capabilities: Capabilities,
  ) {}

  get url(): string {
    return `${this.baseUrl}${this.endpoint}`;
  }

  /** Posts one message; resolves with its `message_id` (202), rejects with the status and `error_code`. */
  async post(msg: {
    type: "request" | "response" | "control";
    payload?: unknown;
    messageId?: string;
    correlationId?: string | null;
    timing?: Timing;
  }): Promise<{ messageId: string }> {
    const body: Record<string, unknown> = {
      type: msg.type,
      session_id: this.id,
      message_id: msg.messageId ?? uuid(),
      correlation_id: msg.correlationId ?? null,
      payload: msg.payload ?? null,
    };
    if (msg.timing) body["~timing"] = msg.timing;
    const res = await this.client.call(this.url, { method: "POST", body: JSON.stringify(body) });
    if (res.status !== 202) throw await errorFrom(res);
    const ok = (await res.json()) as { message_id: string };
    return { messageId: ok.message_id };
  }

  /** Posts a `request` (reaches every other session of the target and its Helios subscribers). */
  request(payload: unknown, options: { messageId?: string; timing?: Timing } = {}): Promise<{ messageId: string }> {
    return this.post({ type: "request", payload, ...options });
  }

  /** Posts a `response` to a delivered request (`correlationId` = its `message_id`). */
  respond(correlationId: string, payload: unknown, options: { messageId?: string; timing?: Timing } = {}): Promise<{ messageId: string }> {
    return this.post({ type: "response", payload, correlationId, ...options });
  }

  /**
   * One long-poll: `after` confirms everything up to that cursor (default: the session's
   * {@link cursor}). Resolves with the messages and the new cursor, which it also keeps.
   */
  async poll(options: { wait?: number; after?: string | null; signal?: AbortSignal } = {}): Promise<{ messages: TimeStickMessage[]; cursor: string }> {
    const u = new URL(this.url);
    u.searchParams.set("wait", String(options.wait ?? 25));
    const after = options.after === undefined ? this.cursor : options.after;
    if (after) u.searchParams.set("after", after);
    const init: RequestInit = { method: "GET" };
    if (options.signal) init.signal = options.signal;
    const res = await this.client.call(u.toString(), init);
    if (res.status !== 200) throw await errorFrom(res);
    const body = (await res.json()) as { messages: TimeStickMessage[]; cursor: string };
    this.cursor = body.cursor;
    return body;
  }

  /**
   * Server-Sent Events: yields `{id, message}` per event. `lastEventId` (default the
   * session's {@link cursor}) resumes after that event.
   */
  async *stream(options: { lastEventId?: string | null; signal?: AbortSignal } = {}): AsyncGenerator<{ id: string; message: TimeStickMessage }> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    const last = options.lastEventId === undefined ? this.cursor : options.lastEventId;
    if (last) headers["Last-Event-ID"] = last;
    const init: RequestInit = { method: "GET", headers };
    if (options.signal) init.signal = options.signal;
    const res = await this.client.call(`${this.url}/stream`, init);
    if (res.status !== 200) throw await errorFrom(res);
    if (!res.body) throw new TimeStickError(0, ClientErrorCode.PROTOCOL, "the stream has no body");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let id = "";
    let data: string[] = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {
            if (data.length) {
              const message = JSON.parse(data.join("\n")) as TimeStickMessage;
              this.cursor = id || this.cursor;
              yield { id, message };
            }
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "id") id = val;
          else if (field === "data") data.push(val);
        }
      }
    } finally {
      reader.cancel().catch(() => undefined);
    }
  }

  /**
   * Receives until the session ends or `stop()`: by long-poll (each poll confirms the
   * previous answer) or by SSE (reconnecting with `Last-Event-ID`). Network errors are
   * retried with backoff; a 410 or the final control message ends the loop.
   */
  receive(handlers: ReceiveHandlers, options: { mode?: "poll" | "sse"; wait?: number } = {}): Receiver {
    const abort = new AbortController();
    let stopped = false;
    const session = this;
    const isFinal = (m: TimeStickMessage) => {
      const action = (m.payload as { action?: string } | null)?.action;
      return m.type === "control" && (action === "STOP" || action === "STOP-OK");
    };
    const run = async () => {
      let attempt = 0;
      while (!stopped) {
        try {
          if (options.mode === "sse") {
            for await (const { message } of session.stream({ signal: abort.signal })) {
              attempt = 0;
              handlers.onMessage(message);
              if (isFinal(message)) {
                handlers.onEnd?.({ reason: String((message.payload as { reason?: string }).reason ?? ""), control: message });
                return;
              }
            }
          } else {
            const { messages } = await session.poll({ wait: options.wait ?? 25, signal: abort.signal });
            attempt = 0;
            for (const m of messages) {
              handlers.onMessage(m);
              if (isFinal(m)) {
                // Confirm the final message, so the broker knows it arrived.
                session.poll({ wait: 0 }).catch(() => undefined);
                handlers.onEnd?.({ reason: String((m.payload as { reason?: string }).reason ?? ""), control: m });
                return;
              }
            }
          }
        } catch (e) {
          if (stopped) return;
          if (e instanceof TimeStickError && (e.status === 410 || e.status === 404 || e.status === 401 || e.status === 403)) {
            handlers.onEnd?.({ reason: e.reason, status: e.status });
            return;
          }
          handlers.onError?.(e);
          const delay = backoffDelay(attempt++, session.client.backoff);
          await new Promise<void>((r) => {
            const t = setTimeout(r, delay);
            abort.signal.addEventListener("abort", () => {
              clearTimeout(t);
              r();
            });
          });
        }
      }
    };
    const done = run();
    return {
      stop() {
        stopped = true;
        abort.abort();
      },
      done,
      get cursor() {
        return session.cursor;
      },
    };
  }

  /** STOP from the caller (`reason` default `normal-termination`). */
  async stop(reason?: string): Promise<void> {
    const payload: Record<string, unknown> = { action: "STOP" };
    if (reason !== undefined) payload.reason = reason;
    await this.post({ type: "control", payload });
  }

  /** KILL from the caller, level 0–3. */
  async kill(level: 0 | 1 | 2 | 3, reason?: string): Promise<void> {
    const payload: Record<string, unknown> = { action: "KILL", kill_level: level };
    if (reason !== undefined) payload.reason = reason;
    await this.post({ type: "control", payload });
  }
}
