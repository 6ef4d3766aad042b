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
import { backoffDelay } from "./util.js";
/** Close codes after which reconnecting is pointless. */
export const FATAL_CLOSE_CODES = new Set([4002]);
/** @internal The reconnecting socket. Protocol clients drive it. */
export class Connection extends Emitter {
    #opts;
    #url;
    #ws = null;
    #state = "idle";
    #attempt = 0;
    #timer = null;
    #closing = false;
    #lastClose = null;
    constructor(url, opts) {
        super();
        this.#url = url;
        this.#opts = opts;
    }
    get state() {
        return this.#state;
    }
    /** The current socket, when one is open. */
    get socket() {
        return this.#ws && this.#ws.readyState === 1 ? this.#ws : null;
    }
    /** Bytes the current socket has not sent yet. */
    get bufferedAmount() {
        return this.#ws?.bufferedAmount ?? 0;
    }
    /** Opens the first socket. */
    start() {
        if (this.#state !== "idle")
            return;
        void this.#connect();
    }
    /** The protocol's handshake finished: the connection is usable and the backoff starts over. */
    ready() {
        if (this.#state === "handshake") {
            this.#attempt = 0;
            this.#set("connected");
        }
    }
    /** Sends a text frame on the open socket; false when there is none. */
    send(text) {
        const ws = this.socket;
        if (!ws)
            return false;
        ws.send(text);
        return true;
    }
    /** Abandons the current socket (for example after a missed heartbeat); the connection reconnects. */
    drop(code = 4000, reason = "client dropped the connection") {
        const ws = this.#ws;
        if (!ws)
            return;
        this.#detach(ws);
        try {
            ws.close(code, reason);
        }
        catch {
            /* already closing */
        }
        this.#lost(code, reason);
    }
    /** Closes for good. */
    close(code = 1000, reason = "bye") {
        this.#closing = true;
        if (this.#timer)
            clearTimeout(this.#timer);
        this.#timer = null;
        const ws = this.#ws;
        if (ws) {
            this.#detach(ws);
            try {
                ws.close(code, reason);
            }
            catch {
                /* ignore */
            }
            this.emit("close", { code, reason });
        }
        this.#set("closed", { closeCode: code, closeReason: reason });
    }
    #set(state, extra = {}) {
        const previous = this.#state;
        if (previous === state && state !== "reconnecting")
            return;
        this.#state = state;
        this.emit("state", { state, previous, attempt: this.#attempt, ...extra });
    }
    #detach(ws) {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (this.#ws === ws)
            this.#ws = null;
    }
    async #connect() {
        if (this.#closing)
            return;
        this.#set("connecting", this.#lastClose ? { closeCode: this.#lastClose.code, closeReason: this.#lastClose.reason } : {});
        let url;
        try {
            url = await this.#url(this.#attempt);
        }
        catch (e) {
            this.emit("error", e);
            this.#lost(4000, `cannot build the URL: ${e?.message ?? e}`);
            return;
        }
        if (this.#closing)
            return;
        const Ctor = this.#opts.WebSocket ?? globalThis.WebSocket;
        if (!Ctor) {
            this.emit("error", new Error("no WebSocket implementation: pass one as the WebSocket option"));
            this.#closing = true;
            this.#set("closed");
            return;
        }
        let ws;
        try {
            ws = new Ctor(url);
        }
        catch (e) {
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
                }
                catch {
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
            if (typeof ev.data === "string")
                this.emit("message", ev.data);
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
    #lost(code, reason) {
        this.#lastClose = { code, reason };
        this.emit("close", { code, reason });
        if (this.#closing)
            return;
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
export function pickUrl(urls, attempt, last) {
    if (typeof urls === "string")
        return urls;
    if (urls.length === 0)
        throw new Error("no URL given");
    // The first try after a loss goes to the same node; later ones rotate.
    if (attempt > 0)
        last.index = (last.index + 1) % urls.length;
    return urls[last.index];
}
/** Appends query parameters to a URL. */
export function withQuery(url, params) {
    const u = new URL(url);
    for (const [k, v] of Object.entries(params)) {
        if (v !== undefined)
            u.searchParams.set(k, v);
    }
    return u.toString();
}
