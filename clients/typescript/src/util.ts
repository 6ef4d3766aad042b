/**
 * Small helpers shared by the clients.
 *
 * @module
 */

/** A value or a function giving it, maybe asynchronously. */
export type Provider<T> = T | (() => T | Promise<T>);

/** A client JWT, or a callback that returns a fresh one (called at every (re)connect). */
export type TokenProvider = Provider<string>;

/** Resolves a {@link Provider}. */
export async function resolve<T>(p: Provider<T>): Promise<T> {
  return typeof p === "function" ? await (p as () => T | Promise<T>)() : p;
}

/** A random UUID v4 in canonical lower-case text (works outside secure contexts too). */
export function uuid(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  const b = new Uint8Array(16);
  if (c?.getRandomValues) {
    c.getRandomValues(b);
  } else {
    for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  }
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A promise with its resolve and reject functions. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Exponential backoff with jitter. */
export interface BackoffOptions {
  /** First delay (ms). Default 250. */
  initialMs?: number;
  /** Largest delay (ms). Default 10000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Fraction of the delay that is random, 0–1. Default 0.5 (a delay is between 50 % and 100 % of the nominal one). */
  jitter?: number;
}

/** The delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt: number, o: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = o.initialMs ?? 250;
  const max = o.maxMs ?? 10_000;
  const factor = o.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, o.jitter ?? 0.5));
  const nominal = Math.min(max, initial * Math.pow(factor, Math.min(attempt, 64)));
  return Math.round(nominal * (1 - jitter * random()));
}

/** Base64url (no padding) to text. */
export function base64UrlDecode(s: string): string {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The `sub` claim of a JWT (not verified: the broker verifies). */
export function jwtSubject(token: string): string | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const claims = JSON.parse(base64UrlDecode(part)) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/** Aries RFC 0032 `~timing` decorator (docs/timing.md). */
export interface Timing {
  in_time?: string;
  out_time?: string;
  stale_time?: string;
  expires_time?: string;
  delay_milli?: number;
  wait_until_time?: string;
  [extra: string]: unknown;
}

/** A set that remembers its newest `max` entries. */
export class BoundedSet<T> {
  #items = new Set<T>();
  constructor(readonly max: number) {}
  has(v: T): boolean {
    return this.#items.has(v);
  }
  add(v: T): void {
    this.#items.delete(v);
    this.#items.add(v);
    while (this.#items.size > this.max) {
      const first = this.#items.values().next().value as T;
      this.#items.delete(first);
    }
  }
  values(): T[] {
    return [...this.#items];
  }
  get size(): number {
    return this.#items.size;
  }
}
