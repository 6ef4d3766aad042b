/**
 * The core every WebSocket client is built on: one logical connection that survives
 * sockets. A state machine (`idle → connecting → open → ready`, then
 * `reconnecting → connecting → …` after every loss, `closed` at the end) that reconnects
 * with exponential backoff and jitter, asks the protocol for a fresh URL (and so a fresh
 * token) at every attempt, and gives up only on close codes that say reconnecting is
 * pointless (4002 replaced) or when the app closes it.
 *
 * @module
 */

import { Emitter } from "./events.js";
import { type BackoffOptions, backoffDelay } from "./util.js";

/** What the SDK needs of a WebSocket: the WHATWG API (browsers, React Native, `ws` on Node). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s `WebSocket` on Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * States of a client's connection:
 * * `idle`: not started;
 * * `connecting`: a socket is being opened (the first one, or after a loss);
 * * `handshake`: the socket is open, the protocol's own handshake runs (chat `authenticate`, Helios recovery);
 * * `connected`: ready: requests go out at once;
 * * `reconnecting`: waiting for the backoff delay before the next attempt;
 * * `closed`: for good (the app closed it, or the broker said not to come back).
 */
export type ConnectionState = "idle" | "connecting" | "handshake" | "connected" | "reconnecting" | "closed";

/** Payload of the `state` event. */
export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Reconnect attempt number (0 for the first try after a loss). */
  attempt: number;
  /** While `reconnecting`: the delay before the next attempt. */
  delayMs?: number;
  /** Close code and reason of the socket that went away, if one did. */
  closeCode?: number;
  closeReason?: string;
}

/** Options of every WebSocket client. */
export interface ConnectionOptions {
  /** WebSocket implementation; default `globalThis.WebSocket` (pass `ws` on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff. */
  backoff?: BackoffOptions;
  /** A socket that is not open within this time is abandoned and retried (ms, default 10000). */
  connectTimeoutMs?: number;
  /** Do not reconnect automatically (default false). */
  noReconnect?: boolean;
}

/** Close codes after which reconnecting is pointless. */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([4002]);

interface ConnectionEvents {
  state: StateChange;
  open: WebSocketLike;
  message: string;
  close: { code: number; reason: string };
  error: unknown;
  [k: string]: unknown;
}

/** @internal The reconnecting socket. Protocol clients drive it. */
export class Connection extends Emitter<ConnectionEvents> {
  #opts: ConnectionOptions;
  #url: (attempt: number) => Promise<string>;
  #ws: WebSocketLike | null = null;
  #state: ConnectionState = "idle";
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closing = false;
  #lastClose: { code: number; reason: string } | null = null;

  constructor(url: (attempt: number) => Promise<string>, opts: ConnectionOptions) {
    super();
    this.#url = url;
    this.#opts = opts;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The current socket, when one is open. */
  get socket(): WebSocketLike | null {
    return this.#ws && this.#ws.readyState === 1 ? this.#ws : null;
  }

  /** Bytes the current socket has not sent yet. */
  get bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  /** Opens the first socket. */
  start(): void {
    if (this.#state !== "idle") return;
    void this.#connect();
  }

  /** The protocol's handshake finished: the connection is usable and the backoff starts over. */
  ready(): void {
    if (this.#state === "handshake") {
      this.#attempt = 0;
      this.#set("connected");
    }
  }

  /** Sends a text frame on the open socket; false when there is none. */
  send(text: string): boolean {
    const ws = this.socket;
    if (!ws) return false;
    ws.send(text);
    return true;
  }

  /** Abandons the current socket (for example after a missed heartbeat); the connection reconnects. */
  drop(code = 4000, reason = "client dropped the connection"): void {
    const ws = this.#ws;
    if (!ws) return;
    this.#detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this.#lost(code, reason);
  }

  /** Closes for good. */
  close(code = 1000, reason = "bye"): void {
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    if (ws) {
      this.#detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        /* ignore */
      }
      this.emit("close", { code, reason });
    }
    this.#set("closed", { closeCode: code, closeReason: reason });
  }

  #set(state: ConnectionState, extra: Partial<StateChange> = {}): void {
    const previous = this.#state;
    if (previous === state && state !== "reconnecting") return;
    this.#state = state;
    this.emit("state", { state, previous, attempt: this.#attempt, ...extra });
  }

  #detach(ws: WebSocketLike): void {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this.#ws === ws) this.#ws = null;
  }

  async #connect(): Promise<void> {
    if (this.#closing) return;
    this.#set("connecting", this.#lastClose ? { closeCode: this.#lastClose.code, closeReason: this.#lastClose.reason } : {});
    let url: string;
    try {
      url = await this.#url(this.#attempt);
    } catch (e) {
      this.emit("error", e);
      this.#lost(4000, `cannot build the URL: ${(e as Error)?.message ?? e}`);
      return;
    }
    if (this.#closing) return;
    const Ctor = this.#opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      this.emit("error", new Error("no WebSocket implementation: pass one as the WebSocket option"));
      this.#closing = true;
      this.#set("closed");
      return;
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (e) {
      this.emit("error", e);
      this.#lost(4000, String(e));
      return;
    }
    this.#ws = ws;
    const connectTimer = setTimeout(() => {
      if (this.#ws === ws && ws.readyState !== 1) {
        this.#detach(ws);
        try {
          ws.close();
        } catch {
          /* ignore */
        }
        this.#lost(4000, "connect timeout");
      }
    }, this.#opts.connectTimeoutMs ?? 10_000);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      this.#set("handshake");
      this.emit("open", ws);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") this.emit("message", ev.data);
    };
    ws.onerror = (ev) => {
      this.emit("error", ev);
    };
    ws.onclose = (ev) => {
      clearTimeout(connectTimer);
      this.#detach(ws);
      this.#lost(ev.code, ev.reason);
    };
  }

  #lost(code: number, reason: string): void {
    this.#lastClose = { code, reason };
    this.emit("close", { code, reason });
    if (this.#closing) return;
    if (FATAL_CLOSE_CODES.has(code) || this.#opts.noReconnect) {
      this.#closing = true;
      this.#set("closed", { closeCode: code, closeReason: reason });
      return;
    }
    const delayMs = backoffDelay(this.#attempt, this.#opts.backoff);
    this.#set("reconnecting", { delayMs, closeCode: code, closeReason: reason });
    this.#attempt++;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#connect();
    }, delayMs);
  }
}

/** Picks the URL of attempt `attempt` from one URL or a list (rotating through the list). */
export function pickUrl(urls: string | readonly string[], attempt: number, last: { index: number }): string {
  if (typeof urls === "string") return urls;
  if (urls.length === 0) throw new Error("no URL given");
  // The first try after a loss goes to the same node; later ones rotate.
  if (attempt > 0) last.index = (last.index + 1) % urls.length;
  return urls[last.index]!;
}

/** Appends query parameters to a URL. */
export function withQuery(url: string, params: Record<string, string | undefined>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined) u.searchParams.set(k, v);
  }
  return u.toString();
}
