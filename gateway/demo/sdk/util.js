/**
 * Small helpers shared by the clients.
 *
 * @module
 */
/** Resolves a {@link Provider}. */
export async function resolve(p) {
    return typeof p === "function" ? await p() : p;
}
/** A random UUID v4 in canonical lower-case text (works outside secure contexts too). */
export function uuid() {
    const c = globalThis.crypto;
    const b = new Uint8Array(16);
    if (c?.getRandomValues) {
        c.getRandomValues(b);
    }
    else {
        for (let i = 0; i < 16; i++)
            b[i] = Math.floor(Math.random() * 256);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
export function deferred() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
    });
    return { promise, resolve, reject };
}
/** The delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt, o = {}, random = Math.random) {
    const initial = o.initialMs ?? 250;
    const max = o.maxMs ?? 10_000;
    const factor = o.factor ?? 2;
    const jitter = Math.min(1, Math.max(0, o.jitter ?? 0.5));
    const nominal = Math.min(max, initial * Math.pow(factor, Math.min(attempt, 64)));
    return Math.round(nominal * (1 - jitter * random()));
}
/** Base64url (no padding) to text. */
export function base64UrlDecode(s) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    return new TextDecoder().decode(bytes);
}
/** The `sub` claim of a JWT (not verified: the broker verifies). */
export function jwtSubject(token) {
    const part = token.split(".")[1];
    if (!part)
        return undefined;
    try {
        const claims = JSON.parse(base64UrlDecode(part));
        return typeof claims.sub === "string" ? claims.sub : undefined;
    }
    catch {
        return undefined;
    }
}
/** A set that remembers its newest `max` entries. */
export class BoundedSet {
    max;
    #items = new Set();
    constructor(max) {
        this.max = max;
    }
    has(v) {
        return this.#items.has(v);
    }
    add(v) {
        this.#items.delete(v);
        this.#items.add(v);
        while (this.#items.size > this.max) {
            const first = this.#items.values().next().value;
            this.#items.delete(first);
        }
    }
    values() {
        return [...this.#items];
    }
    get size() {
        return this.#items.size;
    }
}
