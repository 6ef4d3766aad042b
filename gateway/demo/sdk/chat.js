/**
 * GradAgenda chat client (WebSocket `/chat`, docs/chat.md): authentication, direct and
 * mutable sessions, messages resolved with their broadcast (correlated by `cdid`),
 * batches, history and delivery reports. After a reconnect it authenticates again and
 * catches up every session it knows from the last messages it saw (history), then
 * delivers what arrived live meanwhile: no gap, no duplicate.
 *
 * The protocol's extensions are here too: typed multimedia messages, read state and read
 * reports, the inbox, presence, typing indicators and group roles (owner, admins).
 *
 * @module
 */
import { Connection, pickUrl } from "./connection.js";
import { ChatError, ClientErrorCode, ConnectionClosedError } from "./errors.js";
import { Emitter } from "./events.js";
import { BoundedSet, resolve } from "./util.js";
export const MESSAGE_TYPES = ["text", "image", "audio", "video", "file", "location"];
/** Narrows a received message: `if (isMessageOfType(m.message, "image")) m.message.body.url`. */
export function isMessageOfType(message, type) {
    return message.type === type;
}
/** Every extension: the default of {@link ChatOptions.extensions}. */
export const CHAT_EXTENSIONS = ["read-reports", "roles", "typing"];
/** Compares two message ids `<ms>-<n>` (falls back to text order). */
export function compareMessageIds(a, b) {
    const pa = /^(\d+)-(\d+)$/.exec(a);
    const pb = /^(\d+)-(\d+)$/.exec(b);
    if (pa && pb) {
        const d = Number(pa[1]) - Number(pb[1]);
        return d !== 0 ? d : Number(pa[2]) - Number(pb[2]);
    }
    return a < b ? -1 : a > b ? 1 : 0;
}
/** How many of the newest seen ids the catch-up reaches back over (broadcasts may arrive slightly out of id order). */
const CATCHUP_OVERLAP = 10;
/** Users per `request-presence` (the broker's maximum). */
const PRESENCE_CHUNK = 256;
/**
 * A chat client for one device of one user.
 */
export class ChatClient extends Emitter {
    #o;
    #conn;
    #urlIndex = { index: 0 };
    #cdid = 0;
    #pending = new Map();
    #queue = [];
    #seen = new Map();
    #sessions = new Map();
    #everConnected = false;
    #catchingUp = false;
    #held = [];
    #firstConnect;
    #firstResolve;
    #firstReject;
    #closed = false;
    /** Users watched with {@link watchPresence}: watched again after a reconnect. */
    #watched = new Set();
    /** Session id → when this client last sent a typing indicator there. */
    #typingAt = new Map();
    constructor(options) {
        super();
        this.#o = options;
        this.#firstConnect = new Promise((res, rej) => {
            this.#firstResolve = res;
            this.#firstReject = rej;
        });
        this.#firstConnect.catch(() => undefined);
        this.#conn = new Connection(async (attempt) => pickUrl(this.#o.url, attempt, this.#urlIndex), options);
        this.#conn.on("state", (s) => {
            this.emit("state", s);
            if (s.state === "closed")
                this.#onClosed(s);
        });
        this.#conn.on("open", () => void this.#authenticate());
        this.#conn.on("message", (t) => this.#onText(t));
        this.#conn.on("close", () => this.#onSocketGone());
        this.#conn.on("error", (e) => this.emit("error", e));
    }
    get state() {
        return this.#conn.state;
    }
    get userId() {
        return this.#o.userId;
    }
    get deviceId() {
        return this.#o.deviceId;
    }
    /** Sessions this client knows (from listings, creations and changes). */
    get sessions() {
        return [...this.#sessions.values()];
    }
    /** Connects and authenticates; rejects with `AUTH_FAILED` (the broker's reason) if refused. */
    connect() {
        this.#conn.start();
        return this.#firstConnect;
    }
    close() {
        this.#closed = true;
        this.#conn.close(1000, "bye");
    }
    /** Test and diagnostics hook: cuts the socket as a network failure would (the client reconnects and catches up). */
    dropConnection() {
        this.#conn.drop(4000, "dropped by the application");
    }
    /** The direct session with `userId` (its id is the same forever). */
    directSession(userId) {
        return this.#action("session", { type: "request-direct-session-info", "user-id": userId });
    }
    /** Creates a group with these users (the creator is added by the broker). */
    createSession(userIds) {
        return this.#action("session", { type: "request-mutable-session-creation", "user-id": userIds });
    }
    /** Replaces a group's participants. */
    modifySession(sessionId, userIds) {
        return this.#action("session", {
            type: "request-mutable-session-modification",
            "session-id": sessionId,
            "user-id": userIds,
        });
    }
    /** Deletes a group. */
    deleteSession(sessionId) {
        return this.#action("session", { type: "request-mutable-session-deletion", "session-id": sessionId });
    }
    /** The user's groups. */
    listSessions() {
        return this.#action("list", { type: "request-mutable-session-listing" });
    }
    /** Leaves a group; resolves with its info without the user (the last one out deletes it: `deleted`). */
    leaveSession(sessionId) {
        return this.#action("session", { type: "request-leaving-mutable-session", "session-id": sessionId });
    }
    /**
     * Sets a group's roles (its owner only): `owner` hands it over, `admins` replaces the
     * admins; resolves with the modified info. Only the owner and admins modify or delete a
     * group.
     */
    setRoles(sessionId, roles) {
        const frame = { type: "request-mutable-session-roles", "session-id": sessionId };
        if (roles.owner !== undefined)
            frame.owner = roles.owner;
        if (roles.admins !== undefined)
            frame.admins = roles.admins;
        return this.#action("session", frame);
    }
    /**
     * Sends a message — a string (a `text` message), or a typed {@link OutgoingMessage}
     * (text, image, audio, video, file, location); resolves with its broadcast (with
     * `messageId` and `serverTimestamp`). A message the broker refuses rejects with
     * `FAILED` and its reason (e.g. `` `body.url` must use https ``).
     */
    send(sessionId, message, options = {}) {
        return this.#action("send", this.#sendFrame(sessionId, message, options.timing, options.senderTimestamp));
    }
    /** Sends a message held by `~timing` (`delay_milli` / `wait_until_time`); resolves with the broker's note. */
    schedule(sessionId, message, timing) {
        return this.#action("status", this.#sendFrame(sessionId, message, timing)).then((note) => ({
            scheduled: true,
            note: String(note ?? ""),
        }));
    }
    /**
     * A page of a session's history, oldest first: the last `limit` messages, or the first
     * `limit` after `sinceMessageId`.
     */
    history(sessionId, options = {}) {
        const frame = { type: "request-message-history", "session-id": sessionId };
        if (options.limit !== undefined)
            frame.limit = options.limit;
        if (options.sinceMessageId !== undefined)
            frame["since-message-id"] = options.sinceMessageId;
        return this.#action("history", frame).then((items) => {
            // The app has these: a catch-up after a reconnect does not deliver them again.
            for (const m of items)
                this.#markSeen(m);
            return items;
        });
    }
    /**
     * Moves the user's read position in a session forward to `messageId` (never back: an
     * older mark succeeds and changes nothing). Participants' devices with `"read-reports"`
     * get a `read` event.
     */
    markRead(sessionId, messageId) {
        return this.#action("status", { type: "request-marking-read", "session-id": sessionId, "message-id": messageId }).then(() => undefined);
    }
    /** The user's read position in a session and how many messages of others follow it. */
    unreadCount(sessionId) {
        return this.#action("unread", { type: "request-unread-count", "session-id": sessionId });
    }
    /**
     * A page of the user's conversations, newest message first (`limit` 1–100, default 20);
     * pass the previous page's `nextCursor` as `cursor` for the next one. A session that
     * gets a message while paging moves to the front: refresh from the first page then.
     */
    inbox(options = {}) {
        const frame = { type: "request-inbox" };
        if (options.limit !== undefined)
            frame.limit = options.limit;
        if (options.cursor !== undefined && options.cursor !== null)
            frame.cursor = options.cursor;
        return this.#action("inbox", frame);
    }
    /**
     * Watches users the user shares a session with (a group, or a direct session with
     * messages): resolves with their presence now, then every change is a `presence` event
     * until {@link unwatchPresence} or {@link close}; the client watches them again after a
     * reconnect. A user sharing no session refuses the request (`"x" shares no session with
     * you`). More than 256 users go out as several requests.
     */
    async watchPresence(userIds) {
        const users = [...new Set(userIds)];
        const got = await this.#presence(users, true);
        for (const u of users)
            this.#watched.add(u);
        return got;
    }
    /** Stops watching users; resolves with their presence now. */
    unwatchPresence(userIds) {
        const users = [...new Set(userIds)];
        for (const u of users)
            this.#watched.delete(u);
        return this.#presence(users, false);
    }
    /** Users this client watches. */
    get watchedUsers() {
        return [...this.#watched];
    }
    /**
     * Tells the session's other devices that the user types (fire and forget: no answer,
     * never rejects). Call it on every keystroke: it sends at most one indicator per
     * {@link ChatOptions.typingIntervalMs} per session, and none while disconnected.
     * Returns whether an indicator went out.
     */
    typing(sessionId) {
        if (this.#conn.state !== "connected" || this.#catchingUp)
            return false;
        const now = Date.now();
        const interval = this.#o.typingIntervalMs ?? 2250;
        const last = this.#typingAt.get(sessionId);
        if (last !== undefined && now - last < interval)
            return false;
        if (this.#typingAt.size >= 1024) {
            for (const [sid, at] of this.#typingAt)
                if (now - at >= interval)
                    this.#typingAt.delete(sid);
        }
        if (!this.#conn.send(JSON.stringify({ type: "request-typing", "session-id": sessionId })))
            return false;
        this.#typingAt.set(sessionId, now);
        return true;
    }
    /**
     * Several actions in one `batch-mode-action` frame (at most 64); each is answered as if
     * sent alone. Queue them on the returned batch, then `commit()`.
     */
    batch() {
        return new ChatBatch(this, (kind, frame) => this.#prepare(kind, frame));
    }
    /** @internal Sends a batch frame of prepared actions. */
    _commit(ids) {
        if (ids.length === 0)
            return;
        if (ids.length > 64) {
            for (const id of ids)
                this.#settle(id, new ChatError(ClientErrorCode.INVALID_ARGUMENT, "a batch holds at most 64 actions"));
            return;
        }
        const batchId = this.#nextCdid();
        const frame = { cdid: batchId, type: "batch-mode-action", actions: ids.map((id) => this.#pending.get(id).frame) };
        this.#dispatch(batchId, frame, ids);
    }
    // ---- internals ------------------------------------------------------------------
    #presence(users, watch) {
        const chunks = [];
        for (let i = 0; i < users.length; i += PRESENCE_CHUNK)
            chunks.push(users.slice(i, i + PRESENCE_CHUNK));
        return Promise.all(chunks.map((c) => this.#action("presence", { type: "request-presence", "user-id": c, watch }))).then((r) => r.flat());
    }
    /** After a reconnect: watches the watched users again on the new connection and tells their state. */
    async #rewatch() {
        const users = [...this.#watched];
        for (let i = 0; i < users.length; i += PRESENCE_CHUNK) {
            try {
                const got = (await this.#direct("presence", { type: "request-presence", "user-id": users.slice(i, i + PRESENCE_CHUNK), watch: true }));
                for (const p of got)
                    this.emit("presence", p);
            }
            catch (e) {
                if (e instanceof ChatError && e.code === ClientErrorCode.FAILED)
                    this.emit("error", e);
                else
                    throw e;
            }
        }
    }
    #sendFrame(sessionId, message, timing, senderTimestamp) {
        const body = typeof message === "string" ? { type: "text", body: message } : message;
        const frame = {
            type: "request-sending-a-message",
            "session-id": sessionId,
            message: body,
            "sender-timestamp": senderTimestamp ?? Date.now(),
        };
        if (timing)
            frame["~timing"] = timing;
        return frame;
    }
    #nextCdid() {
        return `c${++this.#cdid}`;
    }
    #prepare(kind, frame) {
        const cdid = this.#nextCdid();
        const full = { cdid, ...frame };
        let resolveFn;
        let rejectFn;
        const promise = new Promise((res, rej) => {
            resolveFn = res;
            rejectFn = rej;
        });
        const timeoutMs = this.#o.requestTimeoutMs ?? 10_000;
        this.#pending.set(cdid, {
            kind,
            frame: full,
            sent: false,
            items: [],
            resolve: resolveFn,
            reject: rejectFn,
            timer: setTimeout(() => this.#settle(cdid, new ChatError(ClientErrorCode.TIMEOUT, `no answer to ${String(frame.type)} within ${timeoutMs} ms`)), timeoutMs),
        });
        if (this.#closed)
            this.#settle(cdid, new ChatError(ClientErrorCode.CLOSED, "the client is closed"));
        return { id: cdid, promise };
    }
    #action(kind, frame) {
        const { id, promise } = this.#prepare(kind, frame);
        if (this.#pending.has(id))
            this.#dispatch(id, this.#pending.get(id).frame, [id]);
        return promise;
    }
    /** Sends `frame` now when connected, else queues it (bounded). `ids` are the actions it carries. */
    #dispatch(key, frame, ids) {
        const live = ids.filter((id) => this.#pending.has(id));
        if (live.length === 0)
            return;
        if (this.#conn.state === "connected" && !this.#catchingUp) {
            this.#conn.send(JSON.stringify(frame));
            for (const id of live)
                this.#pending.get(id).sent = true;
            return;
        }
        if (this.#queue.length + live.length > (this.#o.maxQueued ?? 1024)) {
            for (const id of live)
                this.#settle(id, new ChatError(ClientErrorCode.QUEUE_FULL, "too many actions wait for the connection"));
            return;
        }
        // Queued actions are sent one by one when connected (a batch's answers are the same).
        void key;
        this.#queue.push(...live);
        this.#conn.start();
    }
    /** Sends an action during the handshake (authenticate, catch-up), bypassing the queue. */
    #direct(kind, frame) {
        const { id, promise } = this.#prepare(kind, frame);
        const p = this.#pending.get(id);
        if (p && this.#conn.send(JSON.stringify(p.frame)))
            p.sent = true;
        else
            this.#settle(id, new ChatError(ClientErrorCode.CONNECTION_LOST, "connection lost"));
        return promise;
    }
    #flushQueue() {
        const q = this.#queue;
        this.#queue = [];
        for (const id of q) {
            const p = this.#pending.get(id);
            if (p && !p.sent && this.#conn.send(JSON.stringify(p.frame)))
                p.sent = true;
        }
    }
    #settle(cdid, error, value) {
        const p = this.#pending.get(cdid);
        if (!p)
            return;
        this.#pending.delete(cdid);
        clearTimeout(p.timer);
        if (error)
            p.reject(error);
        else
            p.resolve(value);
    }
    async #authenticate() {
        let token;
        try {
            token = await resolve(this.#o.token);
        }
        catch (e) {
            this.emit("error", e);
            this.#conn.drop(4000, "token provider failed");
            return;
        }
        const frame = { type: "authenticate", "user-id": this.#o.userId, "device-id": this.#o.deviceId, token };
        const extensions = this.#o.extensions ?? CHAT_EXTENSIONS;
        if (extensions.length > 0)
            frame.extensions = [...extensions];
        const { id, promise } = this.#prepare("status", frame);
        const p = this.#pending.get(id);
        if (p && this.#conn.send(JSON.stringify(p.frame)))
            p.sent = true;
        try {
            await promise;
        }
        catch (e) {
            if (e instanceof ChatError && e.code === ClientErrorCode.FAILED) {
                const err = new ChatError(ClientErrorCode.AUTH_FAILED, e.reason);
                this.emit("error", err);
                this.#firstReject(err);
                this.#closed = true;
                this.#conn.close(1000, "authentication failed");
            }
            return;
        }
        const reconnect = this.#everConnected;
        this.#everConnected = true;
        if (reconnect) {
            this.#catchingUp = true;
            try {
                const counts = await this.#catchUp();
                await this.#rewatch();
                this.#catchingUp = false;
                this.#releaseHeld();
                this.emit("caughtUp", { sessions: counts });
            }
            catch (e) {
                this.#catchingUp = false;
                this.emit("error", e);
                this.#conn.drop(4000, "catch-up failed");
                return;
            }
        }
        this.#conn.ready();
        this.#flushQueue();
        this.emit("connected", { reconnect });
        this.#firstResolve();
    }
    /** After a reconnect: every session's history since the last messages seen. */
    async #catchUp() {
        const groups = (await this.#direct("list", { type: "request-mutable-session-listing" }));
        const ids = new Set(groups.map((g) => g.sessionId));
        for (const id of this.#seen.keys())
            ids.add(id);
        for (const s of this.#sessions.values())
            if (s.status !== "deleted")
                ids.add(s.sessionId);
        const listed = new Set(groups.map((g) => g.sessionId));
        const counts = {};
        const page = Math.min(100, Math.max(1, this.#o.historyPageSize ?? 100));
        for (const sid of ids) {
            // A group that is no longer listed was left or deleted while away.
            if (!sid.startsWith("direct-") && !listed.has(sid))
                continue;
            let since = this.#catchUpStart(sid);
            let n = 0;
            for (;;) {
                const frame = { type: "request-message-history", "session-id": sid, limit: page };
                if (since)
                    frame["since-message-id"] = since;
                const items = (await this.#direct("history", frame));
                for (const m of items)
                    if (this.#deliver(m))
                        n++;
                if (!since || items.length < page)
                    break;
                since = items[items.length - 1].messageId;
            }
            counts[sid] = n;
        }
        return counts;
    }
    #catchUpStart(sid) {
        const seen = this.#seen.get(sid);
        if (!seen || seen.size === 0)
            return undefined;
        const sorted = seen.values().sort(compareMessageIds);
        return sorted[Math.max(0, sorted.length - CATCHUP_OVERLAP)];
    }
    #releaseHeld() {
        const held = this.#held;
        this.#held = [];
        for (const raw of held)
            this.#deliver(this.#toMessage(raw, false));
    }
    /** Records `m` as delivered; false if it already was. */
    #markSeen(m) {
        let seen = this.#seen.get(m.sessionId);
        if (!seen) {
            seen = new BoundedSet(this.#o.dedupWindow ?? 1000);
            this.#seen.set(m.sessionId, seen);
        }
        if (seen.has(m.messageId))
            return false;
        seen.add(m.messageId);
        return true;
    }
    /** Emits `message` unless this message was already delivered; true if emitted. */
    #deliver(m) {
        if (!this.#markSeen(m))
            return false;
        this.emit("message", m);
        return true;
    }
    #onSocketGone() {
        this.#catchingUp = false;
        this.#held = [];
        // Actions written to the lost socket cannot be answered on the next one.
        for (const [id, p] of this.#pending) {
            if (p.sent)
                this.#settle(id, new ChatError(ClientErrorCode.CONNECTION_LOST, "connection lost before the answer"));
        }
    }
    #onClosed(s) {
        const err = this.#closed
            ? new ChatError(ClientErrorCode.CLOSED, "the client is closed")
            : new ConnectionClosedError(s.closeCode ?? 0, s.closeReason ?? "");
        for (const id of [...this.#pending.keys()])
            this.#settle(id, err);
        this.#queue = [];
        this.#firstReject(err);
    }
    #onText(text) {
        let v;
        try {
            v = JSON.parse(text);
        }
        catch {
            this.emit("error", new ChatError(ClientErrorCode.PROTOCOL, "the broker sent invalid JSON"));
            return;
        }
        this.#onAction(v);
    }
    #toMessage(a, own) {
        const m = {
            sessionId: String(a["session-id"]),
            messageId: String(a["message-id"]),
            senderId: String(a["sender-id"]),
            message: a.message,
            senderTimestamp: typeof a["sender-timestamp"] === "number" ? a["sender-timestamp"] : null,
            serverTimestamp: Number(a["server-timestamp"] ?? 0),
            history: a.history === true,
            own,
        };
        if (a["~timing"])
            m.timing = a["~timing"];
        return m;
    }
    #toSession(a) {
        const s = {
            sessionId: String(a["session-id"]),
            type: a["session-type"] === "direct" ? "direct" : "mutable",
            status: a.status ?? "unchanged",
            participants: Array.isArray(a["user-id"]) ? a["user-id"].map(String) : [],
        };
        if ("owner" in a)
            s.owner = typeof a.owner === "string" ? a.owner : null;
        if (Array.isArray(a.admins))
            s.admins = a.admins.map(String);
        return s;
    }
    #toPresence(a) {
        return {
            userId: String(a["user-id"]),
            status: a.status === "online" ? "online" : "offline",
            lastSeen: typeof a["last-seen"] === "number" ? a["last-seen"] : null,
        };
    }
    #toInboxItem(a) {
        const last = a["last-message"] && typeof a["last-message"] === "object" ? a["last-message"] : null;
        return {
            sessionId: String(a["session-id"]),
            sessionType: a["session-type"] === "direct" ? "direct" : "mutable",
            unread: Number(a.unread ?? 0),
            lastMessage: last
                ? {
                    messageId: String(last["message-id"]),
                    senderId: String(last["sender-id"]),
                    serverTimestamp: Number(last["server-timestamp"] ?? 0),
                    messageType: String(last["message-type"]),
                    preview: typeof last.preview === "string" ? last.preview : "",
                }
                : null,
        };
    }
    #onAction(a) {
        const type = a.type;
        const cdid = typeof a.cdid === "string" ? a.cdid : null;
        const p = cdid ? this.#pending.get(cdid) : undefined;
        switch (type) {
            case "batch-mode-action":
                if (Array.isArray(a.actions))
                    for (const inner of a.actions)
                        if (inner && typeof inner === "object")
                            this.#onAction(inner);
                return;
            case "status-response": {
                if (!p || !cdid) {
                    if (a.status === "failed")
                        this.emit("error", new ChatError(ClientErrorCode.FAILED, String(a.message ?? "failed")));
                    return;
                }
                if (a.status === "succeeded") {
                    if (p.kind === "list" || p.kind === "history" || p.kind === "presence")
                        this.#settle(cdid, null, p.items);
                    else if (p.kind === "inbox")
                        this.#settle(cdid, null, { items: p.items, nextCursor: typeof a["next-cursor"] === "string" ? a["next-cursor"] : null });
                    else if (p.kind === "send" || p.kind === "unread")
                        this.#settle(cdid, new ChatError(ClientErrorCode.PROTOCOL, `unexpected answer: ${String(a.message ?? "succeeded")}`));
                    else
                        this.#settle(cdid, null, a.message ?? null);
                }
                else {
                    this.#settle(cdid, new ChatError(ClientErrorCode.FAILED, String(a.message ?? "failed")));
                }
                return;
            }
            case "providing-session-info": {
                const s = this.#toSession(a);
                this.#sessions.set(s.sessionId, s);
                if (p && cdid && p.kind === "list") {
                    p.items.push(s);
                    return;
                }
                if (p && cdid)
                    this.#settle(cdid, null, s);
                this.emit("session", s);
                return;
            }
            case "message-broadcast": {
                if (p && cdid && p.kind === "history") {
                    p.items.push(this.#toMessage(a, false));
                    return;
                }
                if (p && cdid && p.kind === "send") {
                    const m = this.#toMessage(a, true);
                    this.#settle(cdid, null, m);
                    this.#deliver(m);
                    return;
                }
                if (this.#catchingUp) {
                    if (this.#held.length < 10_000)
                        this.#held.push(a);
                    return;
                }
                this.#deliver(this.#toMessage(a, false));
                return;
            }
            case "message-delivered": {
                const devices = Array.isArray(a["delivered-to"])
                    ? a["delivered-to"].map((d) => ({ userId: String(d["user-id"]), deviceId: String(d["device-id"]) }))
                    : [{ userId: String(a["user-id"]), deviceId: String(a["device-id"]) }];
                this.emit("delivered", { sessionId: String(a["session-id"]), messageId: String(a["message-id"]), devices });
                return;
            }
            case "message-read": {
                const readBy = Array.isArray(a["read-by"])
                    ? a["read-by"].map((r) => ({ userId: String(r["user-id"]), messageId: String(r["message-id"]), readTimestamp: Number(r["read-timestamp"] ?? 0) }))
                    : [{ userId: String(a["user-id"]), messageId: String(a["message-id"]), readTimestamp: 0 }];
                this.emit("read", { sessionId: String(a["session-id"]), userId: String(a["user-id"]), messageId: String(a["message-id"]), readBy });
                return;
            }
            case "unread-count": {
                if (p && cdid && p.kind === "unread") {
                    this.#settle(cdid, null, {
                        sessionId: String(a["session-id"]),
                        readMessageId: typeof a["read-message-id"] === "string" ? a["read-message-id"] : null,
                        unread: Number(a.unread ?? 0),
                        newestMessageId: typeof a["newest-message-id"] === "string" ? a["newest-message-id"] : null,
                    });
                }
                return;
            }
            case "inbox-item": {
                if (p && cdid && p.kind === "inbox")
                    p.items.push(this.#toInboxItem(a));
                return;
            }
            case "presence": {
                const pr = this.#toPresence(a);
                if (p && cdid && p.kind === "presence")
                    p.items.push(pr);
                else
                    this.emit("presence", pr);
                return;
            }
            case "typing": {
                this.emit("typing", { sessionId: String(a["session-id"]), userId: String(a["user-id"]), deviceId: String(a["device-id"]) });
                return;
            }
            default:
                return;
        }
    }
}
/** Actions collected for one `batch-mode-action` frame. */
export class ChatBatch {
    client;
    prepare;
    #ids = [];
    #committed = false;
    constructor(client, prepare) {
        this.client = client;
        this.prepare = prepare;
    }
    #add(kind, frame) {
        if (this.#committed)
            throw new ChatError(ClientErrorCode.INVALID_ARGUMENT, "the batch was already committed");
        const { id, promise } = this.prepare(kind, frame);
        this.#ids.push(id);
        return promise;
    }
    send(sessionId, message, senderTimestamp) {
        const body = typeof message === "string" ? { type: "text", body: message } : message;
        return this.#add("send", {
            type: "request-sending-a-message",
            "session-id": sessionId,
            message: body,
            "sender-timestamp": senderTimestamp ?? Date.now(),
        });
    }
    createSession(userIds) {
        return this.#add("session", { type: "request-mutable-session-creation", "user-id": userIds });
    }
    directSession(userId) {
        return this.#add("session", { type: "request-direct-session-info", "user-id": userId });
    }
    history(sessionId, options = {}) {
        const frame = { type: "request-message-history", "session-id": sessionId };
        if (options.limit !== undefined)
            frame.limit = options.limit;
        if (options.sinceMessageId !== undefined)
            frame["since-message-id"] = options.sinceMessageId;
        return this.#add("history", frame);
    }
    markRead(sessionId, messageId) {
        return this.#add("status", { type: "request-marking-read", "session-id": sessionId, "message-id": messageId }).then(() => undefined);
    }
    unreadCount(sessionId) {
        return this.#add("unread", { type: "request-unread-count", "session-id": sessionId });
    }
    /** Sends the batch (queued until connected). */
    commit() {
        this.#committed = true;
        this.client._commit(this.#ids);
    }
}
