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
import { Connection, pickUrl, withQuery } from "./connection.js";
import { ClientErrorCode, ConnectionClosedError, HeliosError, MurmurError } from "./errors.js";
import { Emitter } from "./events.js";
import { resolve, uuid } from "./util.js";
const PROTOCOL = "helios-starling";
const VERSION = "1.0.0";
/** Margin added to a request's timeout before the client gives up on the broker's own answer. */
const TIMEOUT_GRACE_MS = 1500;
/**
 * A Helios-Starling client. `await client.connect()` before use, or just call: requests
 * made while disconnected wait (bounded) for the connection.
 */
export class HeliosClient extends Emitter {
    #o;
    #conn;
    #urlIndex = { index: 0 };
    #pending = new Map();
    #queue = [];
    #channels = new Map();
    #positions = new Map();
    #handlers = new Map();
    #namespaces = new Map();
    #recoveryToken = null;
    #tokenTimer = null;
    #heartbeat = null;
    #recoveryTimer = null;
    #lastTraffic = 0;
    #pinging = false;
    #recovering = false;
    #starlingId = null;
    #firstConnect;
    #firstResolve;
    #firstReject;
    #closed = false;
    constructor(options) {
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
            if (s.state === "closed")
                this.#onClosed(s);
        });
        this.#conn.on("open", () => this.#onOpen());
        this.#conn.on("message", (t) => this.#onMessage(t));
        this.#conn.on("close", () => this.#onSocketGone());
        this.#conn.on("error", (e) => this.emit("error", e));
    }
    /** The current connection state. */
    get state() {
        return this.#conn.state;
    }
    /** This Starling's id (known once connected). */
    get starlingId() {
        return this.#starlingId;
    }
    /** The latest recovery token (from `starling:getToken`). */
    get recoveryToken() {
        return this.#recoveryToken;
    }
    /** Opens the connection; resolves once the first Starling is ready. */
    connect() {
        this.#conn.start();
        return this.#firstConnect;
    }
    /** Closes for good; pending requests reject with `CLOSED`. */
    close() {
        this.#closed = true;
        this.#conn.close(1000, "bye");
    }
    /** Test and diagnostics hook: cuts the current socket as a network failure would (the client recovers). */
    dropConnection() {
        this.#conn.drop(4000, "dropped by the application");
    }
    /**
     * Calls `method` (built-in, or served by a provider anywhere in the cluster) and
     * resolves with the response's `data`; rejects with a {@link HeliosError} carrying the
     * broker's (or provider's) code, message and details.
     */
    request(method, payload, options = {}) {
        return this.#request(method, payload, options, false);
    }
    /** Publishes on a channel; resolves with the broker's `messageId` (and `deliverAt` when held by `~timing`). */
    publish(channel, data, options = {}) {
        return this.request("broker:publish", { channel, data }, options);
    }
    /** Calls `handler` with every publication on `channel` (subscribing with the broker on the first handler). */
    async subscribe(channel, handler) {
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
            }
            catch (e) {
                set.delete(handler);
                if (set.size === 0)
                    this.#channels.delete(channel);
                throw e;
            }
        }
        return {
            channel,
            unsubscribe: async () => {
                const s = this.#channels.get(channel);
                if (!s || !s.delete(handler))
                    return;
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
    async provide(namespace, handlers) {
        const had = this.#namespaces.get(namespace);
        this.#namespaces.set(namespace, handlers);
        if (!had) {
            try {
                await this.request("broker:provide", { namespace });
            }
            catch (e) {
                this.#namespaces.delete(namespace);
                throw e;
            }
        }
    }
    /** Stops serving `namespace`. */
    async unprovide(namespace) {
        if (!this.#namespaces.delete(namespace))
            return;
        await this.request("broker:unprovide", { namespace });
    }
    /**
     * Answers server-initiated requests for exactly `method` (for example the backend's
     * `POST /api/v1/starlings/<id>/requests`), without providing a namespace.
     */
    handle(method, handler) {
        this.#handlers.set(method, handler);
        return () => {
            if (this.#handlers.get(method) === handler)
                this.#handlers.delete(method);
        };
    }
    // ---- internals ------------------------------------------------------------------
    async #buildUrl(attempt) {
        const base = pickUrl(this.#o.url, attempt, this.#urlIndex);
        const token = await resolve(this.#o.token);
        this.#recovering = this.#recoveryToken !== null;
        return withQuery(base, { token, recover: this.#recoveryToken ?? undefined });
    }
    #request(method, payload, options, internal) {
        if (this.#closed)
            return Promise.reject(new HeliosError(ClientErrorCode.CLOSED, "the client is closed"));
        if (options.signal?.aborted)
            return Promise.reject(new HeliosError(ClientErrorCode.ABORTED, "aborted before it was sent"));
        const requestId = uuid();
        const timeoutMs = options.timeoutMs ?? this.#o.requestTimeoutMs ?? 30_000;
        const msg = {
            protocol: PROTOCOL,
            version: VERSION,
            timestamp: Date.now(),
            type: "request",
            requestId,
            method,
            payload: payload === undefined ? null : payload,
            timeoutMs,
        };
        if (options.timing)
            msg["~timing"] = options.timing;
        const frame = JSON.stringify(msg);
        return new Promise((res, rej) => {
            const p = {
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
            }
            else if (this.#queue.length >= (this.#o.maxQueued ?? 1024)) {
                this.#settle(requestId, new HeliosError(ClientErrorCode.QUEUE_FULL, "too many requests wait for the connection"));
            }
            else {
                this.#queue.push(requestId);
                this.#conn.start();
            }
        });
    }
    #write(requestId, p) {
        if (this.#conn.bufferedAmount > (this.#o.maxBufferedBytes ?? 4 * 1024 * 1024)) {
            this.#settle(requestId, new HeliosError(ClientErrorCode.QUEUE_FULL, "the socket's send buffer is full"));
            return;
        }
        if (this.#conn.send(p.frame))
            p.sent = true;
        else
            this.#queue.push(requestId);
    }
    #abort(requestId) {
        const p = this.#pending.get(requestId);
        if (!p)
            return;
        if (!p.sent) {
            this.#queue = this.#queue.filter((id) => id !== requestId);
            this.#settle(requestId, new HeliosError(ClientErrorCode.ABORTED, "aborted before it was sent"));
            return;
        }
        // The broker answers the call REQUEST_CANCELLED ("cancelled by the caller"). When the
        // cancel cannot reach it (the connection went away), the call is abandoned here.
        this.#request("system:cancel", { requestId }, { timeoutMs: 10_000 }, true).catch((e) => {
            this.#settle(requestId, new HeliosError(ClientErrorCode.ABORTED, `aborted; the broker was not told: ${e?.message ?? e}`));
        });
    }
    #settle(requestId, error, data) {
        const p = this.#pending.get(requestId);
        if (!p)
            return;
        this.#pending.delete(requestId);
        clearTimeout(p.timer);
        p.cleanup?.();
        if (error)
            p.reject(error);
        else
            p.resolve(data);
    }
    #flushQueue() {
        const q = this.#queue;
        this.#queue = [];
        for (const id of q) {
            const p = this.#pending.get(id);
            if (p && !p.sent)
                this.#write(id, p);
        }
    }
    #onOpen() {
        this.#lastTraffic = Date.now();
        this.#startHeartbeat();
        if (this.#recovering) {
            // Wait for connection:recovered / connection:recovery_failed.
            this.#recoveryTimer = setTimeout(() => {
                this.emit("error", new HeliosError(ClientErrorCode.PROTOCOL, "no recovery answer in time"));
                this.#conn.drop(4000, "no recovery answer");
            }, this.#o.recoveryTimeoutMs ?? 15_000);
        }
        else {
            void this.#fresh(false, null);
        }
    }
    /** A fresh Starling (first connect, or after a failed recovery): restore what the app asked for. */
    async #fresh(afterFailure, failure) {
        try {
            await this.#refreshToken();
            if (afterFailure) {
                const subs = [...this.#channels.keys()].map((channel) => this.#request("broker:subscribe", { channel }, { timeoutMs: 10_000 }, true));
                const provs = [...this.#namespaces.keys()].map((namespace) => this.#request("broker:provide", { namespace }, { timeoutMs: 10_000 }, true));
                await Promise.all([...subs, ...provs]);
            }
        }
        catch (e) {
            this.emit("error", e);
            this.#conn.drop(4000, "could not restore the session");
            return;
        }
        this.#conn.ready();
        this.#flushQueue();
        this.emit("connected", { starlingId: this.#starlingId ?? "" });
        if (failure)
            this.emit("recoveryFailed", failure);
        this.#firstResolve();
    }
    async #refreshToken() {
        if (this.#tokenTimer)
            clearTimeout(this.#tokenTimer);
        this.#tokenTimer = null;
        const r = (await this.#request("starling:getToken", null, { timeoutMs: 10_000 }, true));
        this.#recoveryToken = r.token;
        this.#starlingId = r.starlingId ?? this.#starlingId;
        // Renew at half the lifetime, so a token in hand is always valid.
        const ms = Math.max(1000, (r.expiresIn * 1000) / 2);
        this.#tokenTimer = setTimeout(() => {
            this.#tokenTimer = null;
            if (this.#conn.state === "connected")
                this.#refreshToken().catch((e) => this.emit("error", e));
        }, Math.min(ms, 2 ** 31 - 1));
    }
    #onSocketGone() {
        this.#stopHeartbeat();
        if (this.#recoveryTimer)
            clearTimeout(this.#recoveryTimer);
        this.#recoveryTimer = null;
        // Requests that were written stay pending: a recovery on the same node delivers their
        // answers. Internal handshake calls are retried by the next handshake.
        for (const [id, p] of this.#pending) {
            if (p.internal)
                this.#settle(id, new HeliosError(ClientErrorCode.CONNECTION_LOST, "connection lost"));
        }
    }
    #onClosed(s) {
        this.#stopHeartbeat();
        if (this.#tokenTimer)
            clearTimeout(this.#tokenTimer);
        const err = this.#closed
            ? new HeliosError(ClientErrorCode.CLOSED, "the client is closed")
            : new ConnectionClosedError(s.closeCode ?? 0, s.closeReason ?? "");
        for (const id of [...this.#pending.keys()])
            this.#settle(id, err);
        this.#queue = [];
        this.#firstReject(err);
    }
    #startHeartbeat() {
        const every = this.#o.heartbeatMs ?? 25_000;
        if (every <= 0)
            return;
        this.#stopHeartbeat();
        this.#heartbeat = setInterval(() => {
            if (this.#pinging || Date.now() - this.#lastTraffic < every)
                return;
            this.#pinging = true;
            this.#request("system:ping", null, { timeoutMs: Math.min(every, 10_000) }, true)
                .catch(() => this.#conn.drop(4000, "heartbeat: no answer to system:ping"))
                .finally(() => {
                this.#pinging = false;
            });
        }, Math.max(250, Math.floor(every / 2)));
    }
    #stopHeartbeat() {
        if (this.#heartbeat)
            clearInterval(this.#heartbeat);
        this.#heartbeat = null;
    }
    #send(msg) {
        this.#conn.send(JSON.stringify({ protocol: PROTOCOL, version: VERSION, timestamp: Date.now(), ...msg }));
    }
    #onMessage(text) {
        this.#lastTraffic = Date.now();
        let f;
        try {
            f = JSON.parse(text);
        }
        catch {
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
    #onResponse(f) {
        const id = f.requestId;
        if (typeof id !== "string")
            return;
        if (f.success)
            this.#settle(id, null, f.data === undefined ? null : f.data);
        else
            this.#settle(id, new HeliosError(f.error?.code ?? "ERROR", f.error?.message ?? "", f.error?.details));
    }
    #onNotification(f) {
        const n = f.notification ?? {};
        const topic = n.topic ?? null;
        if (typeof f.requestId === "string") {
            const p = this.#pending.get(f.requestId);
            p?.onProgress?.(n.data ?? null, topic);
            return;
        }
        if (topic === "connection:recovered") {
            if (this.#recoveryTimer)
                clearTimeout(this.#recoveryTimer);
            this.#recoveryTimer = null;
            const data = n.data;
            this.#starlingId = data.starlingId ?? this.#starlingId;
            this.#conn.ready();
            this.#flushQueue();
            this.#refreshToken().catch((e) => this.emit("error", e));
            this.emit("recovered", data);
            return;
        }
        if (topic === "connection:recovery_failed") {
            if (this.#recoveryTimer)
                clearTimeout(this.#recoveryTimer);
            this.#recoveryTimer = null;
            const data = n.data;
            this.#recoveryToken = null;
            this.#recovering = false;
            // The old Starling's calls will never be answered on this connection.
            for (const [id, p] of this.#pending) {
                if (p.sent && !p.internal)
                    this.#settle(id, new HeliosError(ClientErrorCode.RECOVERY_FAILED, `recovery failed: ${data.reason}`));
            }
            void this.#fresh(true, data);
            return;
        }
        if (topic !== null && this.#channels.has(topic)) {
            if (typeof n.seq === "number" && typeof n.epoch === "string") {
                const last = this.#positions.get(topic);
                if (last && last.epoch === n.epoch) {
                    if (n.seq <= last.seq)
                        return; // a duplicate replayed after a node crash
                    if (n.seq > last.seq + 1)
                        this.emit("gap", { channel: topic, epoch: n.epoch, expected: last.seq + 1, got: n.seq });
                }
                this.#positions.set(topic, { epoch: n.epoch, seq: n.seq });
            }
            const pub = { channel: topic, data: n.data ?? null };
            if (n.seq !== undefined)
                pub.seq = n.seq;
            if (n.epoch !== undefined)
                pub.epoch = n.epoch;
            if (f["~timing"])
                pub.timing = f["~timing"];
            for (const h of [...(this.#channels.get(topic) ?? [])]) {
                try {
                    h(pub);
                }
                catch (e) {
                    this.emit("error", e);
                }
            }
            return;
        }
        this.emit("notification", { topic, data: n.data ?? null, requestId: null });
    }
    async #onRequest(f) {
        const requestId = f.requestId;
        const method = f.method;
        if (typeof requestId !== "string" || typeof method !== "string")
            return;
        const colon = method.indexOf(":");
        const ns = method.slice(0, colon);
        const action = method.slice(colon + 1);
        const handler = this.#handlers.get(method) ?? this.#namespaces.get(ns)?.[action];
        const socket = this.#conn.socket;
        const reply = (msg) => {
            // A response for a connection that is gone is dropped: the broker already answered
            // the caller REQUEST_CANCELLED.
            if (this.#conn.socket === socket)
                this.#send({ type: "response", requestId, ...msg });
        };
        if (!handler || typeof handler !== "function") {
            reply({ success: false, error: { code: "METHOD_NOT_FOUND", message: `no handler for "${method}"` } });
            return;
        }
        const ctx = {
            requestId,
            method,
            progress: (data, topic = "progress") => {
                if (this.#conn.socket === socket)
                    this.#send({ type: "notification", requestId, notification: { topic, data } });
            },
        };
        if (f["~timing"])
            ctx.timing = f["~timing"];
        try {
            const data = await handler(f.payload ?? null, ctx);
            reply({ success: true, data: data === undefined ? null : data });
        }
        catch (e) {
            if (e instanceof MurmurError) {
                const error = { code: e.code, message: e.message.slice(0, 1024) };
                if (e.details !== undefined)
                    error.details = e.details;
                reply({ success: false, error });
            }
            else {
                reply({ success: false, error: { code: "METHOD_ERROR", message: String(e?.message ?? e).slice(0, 1024) } });
            }
        }
    }
}
