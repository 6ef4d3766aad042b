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

import { Connection, type ConnectionOptions, type ConnectionState, type StateChange, pickUrl } from "./connection.js";
import { ChatError, ClientErrorCode, ConnectionClosedError } from "./errors.js";
import { Emitter } from "./events.js";
import { BoundedSet, type Timing, type TokenProvider, resolve } from "./util.js";

/** A chat message body as received: `type` (e.g. `"text"`) and `body`, plus any other fields. */
export interface MessageBody {
  type: string;
  body: unknown;
  [extra: string]: unknown;
}

// ---- message types (docs/chat.md, "Message types") -----------------------------------
//
// Field names are the wire's (`duration-ms`, `accuracy-m`): a received `message` has the
// same shape as the one sent. The broker checks every field (https URLs only, a `mime`
// matching the type, sizes, lengths); a refusal rejects `send` with its reason.

/** The seed's text message: any JSON `body` (usually a string); other fields pass through. */
export type TextMessage = { type: "text"; body: unknown; [extra: string]: unknown };

/** `image` body. `url` is `https://`, `mime` `image/…`, `size` the bytes of the image. */
export type ImageBody = {
  url: string;
  mime: string;
  size: number;
  /** Pixels, 1…65535. */
  width?: number;
  height?: number;
  /** A small inline preview: padded standard base64, at most 2048 characters. */
  thumbnail?: string;
  /** 1–1024 bytes. */
  caption?: string;
};

/** `audio` body (`mime` `audio/…`). */
export type AudioBody = {
  url: string;
  mime: string;
  size: number;
  /** 1 … 86 400 000 (24 h). */
  "duration-ms"?: number;
  caption?: string;
};

/** `video` body (`mime` `video/…`). */
export type VideoBody = {
  url: string;
  mime: string;
  size: number;
  "duration-ms"?: number;
  width?: number;
  height?: number;
  thumbnail?: string;
  caption?: string;
};

/** `file` body: any `mime`; `name` 1–255 bytes without `/`, backslash or control characters. */
export type FileBody = {
  url: string;
  mime: string;
  size: number;
  name: string;
  caption?: string;
};

/** `location` body: degrees, `accuracy-m` in metres (0…10⁷), `name` of the place. */
export type LocationBody = {
  latitude: number;
  longitude: number;
  "accuracy-m"?: number;
  name?: string;
};

export type ImageMessage = { type: "image"; body: ImageBody };
export type AudioMessage = { type: "audio"; body: AudioBody };
export type VideoMessage = { type: "video"; body: VideoBody };
export type FileMessage = { type: "file"; body: FileBody };
export type LocationMessage = { type: "location"; body: LocationBody };

/** A multimedia message: a link to media the app stores elsewhere (the broker never fetches it). */
export type MediaMessage = ImageMessage | AudioMessage | VideoMessage | FileMessage | LocationMessage;

/** What {@link ChatClient.send} takes (besides a plain string, sent as a `text` message). */
export type OutgoingMessage = TextMessage | MediaMessage;

/** The message types the broker knows. */
export type MessageType = OutgoingMessage["type"];
export const MESSAGE_TYPES: readonly MessageType[] = ["text", "image", "audio", "video", "file", "location"];

/** Narrows a received message: `if (isMessageOfType(m.message, "image")) m.message.body.url`. */
export function isMessageOfType<T extends MessageType>(message: MessageBody, type: T): message is MessageBody & Extract<OutgoingMessage, { type: T }> {
  return message.type === type;
}

/** A message of a session (a `message-broadcast`). */
export interface ChatMessage {
  sessionId: string;
  messageId: string;
  senderId: string;
  message: MessageBody;
  senderTimestamp: number | null;
  serverTimestamp: number;
  /** From a history answer (`request-message-history`, or the catch-up after a reconnect). */
  history: boolean;
  /** Sent by this very connection (the answer to {@link ChatClient.send}). */
  own: boolean;
  timing?: Timing;
}

/** A session (`providing-session-info`). */
export interface SessionInfo {
  sessionId: string;
  type: "direct" | "mutable";
  status: "created" | "modified" | "deleted" | "unchanged";
  participants: string[];
  /**
   * A group's owner (with the `"roles"` extension; `null` for a group stored before roles
   * existed, absent when the broker did not send roles).
   */
  owner?: string | null;
  /** A group's admins (with the `"roles"` extension). */
  admins?: string[];
}

/** The roles {@link ChatClient.setRoles} sets: either or both. */
export interface SessionRoles {
  /** Hands the group over to this participant. */
  owner?: string;
  /** Replaces the list of admins (participants). */
  admins?: string[];
}

/** A delivery report (`message-delivered`): the message reached these devices. */
export interface DeliveryReport {
  sessionId: string;
  messageId: string;
  devices: { userId: string; deviceId: string }[];
}

/** One reader's position in a {@link ReadReport}. */
export interface ReadMark {
  userId: string;
  /** The newest message this reader has read: every message up to it is read. */
  messageId: string;
  readTimestamp: number;
}

/**
 * A read report (`message-read`, with the `"read-reports"` extension): readers of one
 * session, each once with their newest mark. A message *m* is read by a user when their
 * `messageId` is at or after *m* ({@link compareMessageIds}).
 */
export interface ReadReport {
  sessionId: string;
  /** The first reader (repeats `readBy[0]`). */
  userId: string;
  messageId: string;
  readBy: ReadMark[];
}

/** {@link ChatClient.unreadCount}: the user's read position in a session. */
export interface UnreadCount {
  sessionId: string;
  /** The newest message the user has read; `null` before the first mark. */
  readMessageId: string | null;
  /** Messages of other senders after the read position (within the kept history). */
  unread: number;
  /** `null` for a session without messages. */
  newestMessageId: string | null;
}

/** The newest message of an {@link InboxItem}. */
export interface InboxLastMessage {
  messageId: string;
  senderId: string;
  serverTimestamp: number;
  messageType: string;
  /** At most 140 characters: a text body, a caption, a file or place name, else `""`. */
  preview: string;
}

/** One conversation of the inbox. */
export interface InboxItem {
  sessionId: string;
  sessionType: "direct" | "mutable";
  /** As {@link UnreadCount.unread}, but at most 100 (show "99+"). */
  unread: number;
  /** `null` for a group without messages (those come last). */
  lastMessage: InboxLastMessage | null;
}

/** A page of {@link ChatClient.inbox}, newest message first. */
export interface InboxPage {
  items: InboxItem[];
  /** Give it as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

/** A user's presence. */
export interface Presence {
  userId: string;
  /** Online while one of their devices is connected on any node. */
  status: "online" | "offline";
  /** When they were last online (ms); `null` while online, and for a user never seen. */
  lastSeen: number | null;
}

/** Someone types in a session (`typing`, with the `"typing"` extension). Ephemeral. */
export interface TypingIndicator {
  sessionId: string;
  userId: string;
  deviceId: string;
}

/** Extensions a device opts into at `authenticate` (docs/chat.md). */
export type ChatExtension = "read-reports" | "roles" | "typing";
/** Every extension: the default of {@link ChatOptions.extensions}. */
export const CHAT_EXTENSIONS: readonly ChatExtension[] = ["read-reports", "roles", "typing"];

/** The broker's answer to a message held by `~timing`. */
export interface Scheduled {
  scheduled: true;
  /** `scheduled for <time>`. */
  note: string;
}

/** Options of {@link ChatClient}. */
export interface ChatOptions extends ConnectionOptions {
  /** `ws://host:8080/chat`, or several nodes' URLs (reconnects rotate after one retry). */
  url: string | readonly string[];
  userId: string;
  deviceId: string;
  /** The client JWT (`sub` = `userId`), or a callback giving a fresh one at every connect. */
  token: TokenProvider;
  /** Default timeout of an action (ms, default 10000). */
  requestTimeoutMs?: number;
  /** Actions waiting for a connection, at most (default 1024): beyond, `QUEUE_FULL`. */
  maxQueued?: number;
  /** Message ids remembered per session to drop duplicates (default 1000). */
  dedupWindow?: number;
  /** Page size of history requests (default and maximum 100). */
  historyPageSize?: number;
  /**
   * Extensions named at `authenticate`. Default: all of them ({@link CHAT_EXTENSIONS}):
   * `"read-reports"` (the `read` event), `"roles"` (`owner`/`admins` in {@link SessionInfo}),
   * `"typing"` (the `typing` event). `[]` names none: the broker then sends exactly the
   * frames of the protocol before extensions.
   */
  extensions?: readonly ChatExtension[];
  /**
   * Least time between two {@link ChatClient.typing} indicators of one session (ms,
   * default 2250: the broker takes one per 2 s per device and session).
   */
  typingIntervalMs?: number;
}

/** Events of {@link ChatClient}. */
export interface ChatEvents {
  state: StateChange;
  /** Authenticated (first connect or after a reconnect, once the catch-up is done). */
  connected: { reconnect: boolean };
  /** Every message once: live broadcasts, this connection's own, and catch-up after a reconnect. */
  message: ChatMessage;
  session: SessionInfo;
  delivered: DeliveryReport;
  /** Read reports (extension `"read-reports"`), the user's own other devices' included. */
  read: ReadReport;
  /**
   * A change of a watched user ({@link ChatClient.watchPresence}); after a reconnect, the
   * state of every watched user as the client watches them again.
   */
  presence: Presence;
  /** Another device types in a session (extension `"typing"`). */
  typing: TypingIndicator;
  /** After a reconnect: how many messages the catch-up delivered per session. */
  caughtUp: { sessions: Record<string, number> };
  error: unknown;
  [k: string]: unknown;
}

/**
 * What answers an action (correlated by `cdid`): `status` a `status-response`; `session`
 * a `providing-session-info`; `send` its `message-broadcast`; `list`, `history`, `inbox`
 * and `presence` the items (`providing-session-info`, `message-broadcast`, `inbox-item`,
 * `presence`) that precede their `status-response`; `unread` an `unread-count`.
 */
type Kind = "status" | "session" | "send" | "list" | "history" | "unread" | "inbox" | "presence";

interface Pending {
  kind: Kind;
  frame: Record<string, unknown>;
  sent: boolean;
  items: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

type Raw = Record<string, unknown>;

/** Compares two message ids `<ms>-<n>` (falls back to text order). */
export function compareMessageIds(a: string, b: string): number {
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
export class ChatClient extends Emitter<ChatEvents> {
  #o: ChatOptions;
  #conn: Connection;
  #urlIndex = { index: 0 };
  #cdid = 0;
  #pending = new Map<string, Pending>();
  #queue: string[] = [];
  #seen = new Map<string, BoundedSet<string>>();
  #sessions = new Map<string, SessionInfo>();
  #everConnected = false;
  #catchingUp = false;
  #held: Raw[] = [];
  #firstConnect: Promise<void>;
  #firstResolve!: () => void;
  #firstReject!: (e: unknown) => void;
  #closed = false;
  /** Users watched with {@link watchPresence}: watched again after a reconnect. */
  #watched = new Set<string>();
  /** Session id → when this client last sent a typing indicator there. */
  #typingAt = new Map<string, number>();

  constructor(options: ChatOptions) {
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
      if (s.state === "closed") this.#onClosed(s);
    });
    this.#conn.on("open", () => void this.#authenticate());
    this.#conn.on("message", (t) => this.#onText(t));
    this.#conn.on("close", () => this.#onSocketGone());
    this.#conn.on("error", (e) => this.emit("error", e));
  }

  get state(): ConnectionState {
    return this.#conn.state;
  }

  get userId(): string {
    return this.#o.userId;
  }

  get deviceId(): string {
    return this.#o.deviceId;
  }

  /** Sessions this client knows (from listings, creations and changes). */
  get sessions(): SessionInfo[] {
    return [...this.#sessions.values()];
  }

  /** Connects and authenticates; rejects with `AUTH_FAILED` (the broker's reason) if refused. */
  connect(): Promise<void> {
    this.#conn.start();
    return this.#firstConnect;
  }

  close(): void {
    this.#closed = true;
    this.#conn.close(1000, "bye");
  }

  /** Test and diagnostics hook: cuts the socket as a network failure would (the client reconnects and catches up). */
  dropConnection(): void {
    this.#conn.drop(4000, "dropped by the application");
  }

  /** The direct session with `userId` (its id is the same forever). */
  directSession(userId: string): Promise<SessionInfo> {
    return this.#action("session", { type: "request-direct-session-info", "user-id": userId }) as Promise<SessionInfo>;
  }

  /** Creates a group with these users (the creator is added by the broker). */
  createSession(userIds: string[]): Promise<SessionInfo> {
    return this.#action("session", { type: "request-mutable-session-creation", "user-id": userIds }) as Promise<SessionInfo>;
  }

  /** Replaces a group's participants. */
  modifySession(sessionId: string, userIds: string[]): Promise<SessionInfo> {
    return this.#action("session", {
      type: "request-mutable-session-modification",
      "session-id": sessionId,
      "user-id": userIds,
    }) as Promise<SessionInfo>;
  }

  /** Deletes a group. */
  deleteSession(sessionId: string): Promise<SessionInfo> {
    return this.#action("session", { type: "request-mutable-session-deletion", "session-id": sessionId }) as Promise<SessionInfo>;
  }

  /** The user's groups. */
  listSessions(): Promise<SessionInfo[]> {
    return this.#action("list", { type: "request-mutable-session-listing" }) as Promise<SessionInfo[]>;
  }

  /** Leaves a group; resolves with its info without the user (the last one out deletes it: `deleted`). */
  leaveSession(sessionId: string): Promise<SessionInfo> {
    return this.#action("session", { type: "request-leaving-mutable-session", "session-id": sessionId }) as Promise<SessionInfo>;
  }

  /**
   * Sets a group's roles (its owner only): `owner` hands it over, `admins` replaces the
   * admins; resolves with the modified info. Only the owner and admins modify or delete a
   * group.
   */
  setRoles(sessionId: string, roles: SessionRoles): Promise<SessionInfo> {
    const frame: Raw = { type: "request-mutable-session-roles", "session-id": sessionId };
    if (roles.owner !== undefined) frame.owner = roles.owner;
    if (roles.admins !== undefined) frame.admins = roles.admins;
    return this.#action("session", frame) as Promise<SessionInfo>;
  }

  /**
   * Sends a message — a string (a `text` message), or a typed {@link OutgoingMessage}
   * (text, image, audio, video, file, location); resolves with its broadcast (with
   * `messageId` and `serverTimestamp`). A message the broker refuses rejects with
   * `FAILED` and its reason (e.g. `` `body.url` must use https ``).
   */
  send(sessionId: string, message: OutgoingMessage | string, options: { timing?: Omit<Timing, "delay_milli" | "wait_until_time">; senderTimestamp?: number } = {}): Promise<ChatMessage> {
    return this.#action("send", this.#sendFrame(sessionId, message, options.timing, options.senderTimestamp)) as Promise<ChatMessage>;
  }

  /** Sends a message held by `~timing` (`delay_milli` / `wait_until_time`); resolves with the broker's note. */
  schedule(sessionId: string, message: OutgoingMessage | string, timing: Timing): Promise<Scheduled> {
    return this.#action("status", this.#sendFrame(sessionId, message, timing)).then((note) => ({
      scheduled: true as const,
      note: String(note ?? ""),
    }));
  }

  /**
   * A page of a session's history, oldest first: the last `limit` messages, or the first
   * `limit` after `sinceMessageId`.
   */
  history(sessionId: string, options: { limit?: number; sinceMessageId?: string } = {}): Promise<ChatMessage[]> {
    const frame: Raw = { type: "request-message-history", "session-id": sessionId };
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.sinceMessageId !== undefined) frame["since-message-id"] = options.sinceMessageId;
    return (this.#action("history", frame) as Promise<ChatMessage[]>).then((items) => {
      // The app has these: a catch-up after a reconnect does not deliver them again.
      for (const m of items) this.#markSeen(m);
      return items;
    });
  }

  /**
   * Moves the user's read position in a session forward to `messageId` (never back: an
   * older mark succeeds and changes nothing). Participants' devices with `"read-reports"`
   * get a `read` event.
   */
  markRead(sessionId: string, messageId: string): Promise<void> {
    return this.#action("status", { type: "request-marking-read", "session-id": sessionId, "message-id": messageId }).then(() => undefined);
  }

  /** The user's read position in a session and how many messages of others follow it. */
  unreadCount(sessionId: string): Promise<UnreadCount> {
    return this.#action("unread", { type: "request-unread-count", "session-id": sessionId }) as Promise<UnreadCount>;
  }

  /**
   * A page of the user's conversations, newest message first (`limit` 1–100, default 20);
   * pass the previous page's `nextCursor` as `cursor` for the next one. A session that
   * gets a message while paging moves to the front: refresh from the first page then.
   */
  inbox(options: { limit?: number; cursor?: string | null } = {}): Promise<InboxPage> {
    const frame: Raw = { type: "request-inbox" };
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.cursor !== undefined && options.cursor !== null) frame.cursor = options.cursor;
    return this.#action("inbox", frame) as Promise<InboxPage>;
  }

  /**
   * Watches users the user shares a session with (a group, or a direct session with
   * messages): resolves with their presence now, then every change is a `presence` event
   * until {@link unwatchPresence} or {@link close}; the client watches them again after a
   * reconnect. A user sharing no session refuses the request (`"x" shares no session with
   * you`). More than 256 users go out as several requests.
   */
  async watchPresence(userIds: readonly string[]): Promise<Presence[]> {
    const users = [...new Set(userIds)];
    const got = await this.#presence(users, true);
    for (const u of users) this.#watched.add(u);
    return got;
  }

  /** Stops watching users; resolves with their presence now. */
  unwatchPresence(userIds: readonly string[]): Promise<Presence[]> {
    const users = [...new Set(userIds)];
    for (const u of users) this.#watched.delete(u);
    return this.#presence(users, false);
  }

  /** Users this client watches. */
  get watchedUsers(): string[] {
    return [...this.#watched];
  }

  /**
   * Tells the session's other devices that the user types (fire and forget: no answer,
   * never rejects). Call it on every keystroke: it sends at most one indicator per
   * {@link ChatOptions.typingIntervalMs} per session, and none while disconnected.
   * Returns whether an indicator went out.
   */
  typing(sessionId: string): boolean {
    if (this.#conn.state !== "connected" || this.#catchingUp) return false;
    const now = Date.now();
    const interval = this.#o.typingIntervalMs ?? 2250;
    const last = this.#typingAt.get(sessionId);
    if (last !== undefined && now - last < interval) return false;
    if (this.#typingAt.size >= 1024) {
      for (const [sid, at] of this.#typingAt) if (now - at >= interval) this.#typingAt.delete(sid);
    }
    if (!this.#conn.send(JSON.stringify({ type: "request-typing", "session-id": sessionId }))) return false;
    this.#typingAt.set(sessionId, now);
    return true;
  }

  /**
   * Several actions in one `batch-mode-action` frame (at most 64); each is answered as if
   * sent alone. Queue them on the returned batch, then `commit()`.
   */
  batch(): ChatBatch {
    return new ChatBatch(this, (kind, frame) => this.#prepare(kind, frame));
  }

  /** @internal Sends a batch frame of prepared actions. */
  _commit(ids: string[]): void {
    if (ids.length === 0) return;
    if (ids.length > 64) {
      for (const id of ids) this.#settle(id, new ChatError(ClientErrorCode.INVALID_ARGUMENT, "a batch holds at most 64 actions"));
      return;
    }
    const batchId = this.#nextCdid();
    const frame: Raw = { cdid: batchId, type: "batch-mode-action", actions: ids.map((id) => this.#pending.get(id)!.frame) };
    this.#dispatch(batchId, frame, ids);
  }

  // ---- internals ------------------------------------------------------------------

  #presence(users: string[], watch: boolean): Promise<Presence[]> {
    const chunks: string[][] = [];
    for (let i = 0; i < users.length; i += PRESENCE_CHUNK) chunks.push(users.slice(i, i + PRESENCE_CHUNK));
    return Promise.all(chunks.map((c) => this.#action("presence", { type: "request-presence", "user-id": c, watch }) as Promise<Presence[]>)).then((r) => r.flat());
  }

  /** After a reconnect: watches the watched users again on the new connection and tells their state. */
  async #rewatch(): Promise<void> {
    const users = [...this.#watched];
    for (let i = 0; i < users.length; i += PRESENCE_CHUNK) {
      try {
        const got = (await this.#direct("presence", { type: "request-presence", "user-id": users.slice(i, i + PRESENCE_CHUNK), watch: true })) as Presence[];
        for (const p of got) this.emit("presence", p);
      } catch (e) {
        if (e instanceof ChatError && e.code === ClientErrorCode.FAILED) this.emit("error", e);
        else throw e;
      }
    }
  }

  #sendFrame(sessionId: string, message: OutgoingMessage | string, timing?: Timing, senderTimestamp?: number): Raw {
    const body = typeof message === "string" ? { type: "text", body: message } : message;
    const frame: Raw = {
      type: "request-sending-a-message",
      "session-id": sessionId,
      message: body,
      "sender-timestamp": senderTimestamp ?? Date.now(),
    };
    if (timing) frame["~timing"] = timing;
    return frame;
  }

  #nextCdid(): string {
    return `c${++this.#cdid}`;
  }

  #prepare(kind: Kind, frame: Raw): { id: string; promise: Promise<unknown> } {
    const cdid = this.#nextCdid();
    const full = { cdid, ...frame };
    let resolveFn!: (v: unknown) => void;
    let rejectFn!: (e: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
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
    if (this.#closed) this.#settle(cdid, new ChatError(ClientErrorCode.CLOSED, "the client is closed"));
    return { id: cdid, promise };
  }

  #action(kind: Kind, frame: Raw): Promise<unknown> {
    const { id, promise } = this.#prepare(kind, frame);
    if (this.#pending.has(id)) this.#dispatch(id, this.#pending.get(id)!.frame, [id]);
    return promise;
  }

  /** Sends `frame` now when connected, else queues it (bounded). `ids` are the actions it carries. */
  #dispatch(key: string, frame: Raw, ids: string[]): void {
    const live = ids.filter((id) => this.#pending.has(id));
    if (live.length === 0) return;
    if (this.#conn.state === "connected" && !this.#catchingUp) {
      this.#conn.send(JSON.stringify(frame));
      for (const id of live) this.#pending.get(id)!.sent = true;
      return;
    }
    if (this.#queue.length + live.length > (this.#o.maxQueued ?? 1024)) {
      for (const id of live) this.#settle(id, new ChatError(ClientErrorCode.QUEUE_FULL, "too many actions wait for the connection"));
      return;
    }
    // Queued actions are sent one by one when connected (a batch's answers are the same).
    void key;
    this.#queue.push(...live);
    this.#conn.start();
  }

  /** Sends an action during the handshake (authenticate, catch-up), bypassing the queue. */
  #direct(kind: Kind, frame: Raw): Promise<unknown> {
    const { id, promise } = this.#prepare(kind, frame);
    const p = this.#pending.get(id);
    if (p && this.#conn.send(JSON.stringify(p.frame))) p.sent = true;
    else this.#settle(id, new ChatError(ClientErrorCode.CONNECTION_LOST, "connection lost"));
    return promise;
  }

  #flushQueue(): void {
    const q = this.#queue;
    this.#queue = [];
    for (const id of q) {
      const p = this.#pending.get(id);
      if (p && !p.sent && this.#conn.send(JSON.stringify(p.frame))) p.sent = true;
    }
  }

  #settle(cdid: string, error: unknown, value?: unknown): void {
    const p = this.#pending.get(cdid);
    if (!p) return;
    this.#pending.delete(cdid);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
  }

  async #authenticate(): Promise<void> {
    let token: string;
    try {
      token = await resolve(this.#o.token);
    } catch (e) {
      this.emit("error", e);
      this.#conn.drop(4000, "token provider failed");
      return;
    }
    const frame: Raw = { type: "authenticate", "user-id": this.#o.userId, "device-id": this.#o.deviceId, token };
    const extensions = this.#o.extensions ?? CHAT_EXTENSIONS;
    if (extensions.length > 0) frame.extensions = [...extensions];
    const { id, promise } = this.#prepare("status", frame);
    const p = this.#pending.get(id);
    if (p && this.#conn.send(JSON.stringify(p.frame))) p.sent = true;
    try {
      await promise;
    } catch (e) {
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
      } catch (e) {
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
  async #catchUp(): Promise<Record<string, number>> {
    const groups = (await this.#direct("list", { type: "request-mutable-session-listing" })) as SessionInfo[];
    const ids = new Set<string>(groups.map((g) => g.sessionId));
    for (const id of this.#seen.keys()) ids.add(id);
    for (const s of this.#sessions.values()) if (s.status !== "deleted") ids.add(s.sessionId);
    const listed = new Set(groups.map((g) => g.sessionId));
    const counts: Record<string, number> = {};
    const page = Math.min(100, Math.max(1, this.#o.historyPageSize ?? 100));
    for (const sid of ids) {
      // A group that is no longer listed was left or deleted while away.
      if (!sid.startsWith("direct-") && !listed.has(sid)) continue;
      let since = this.#catchUpStart(sid);
      let n = 0;
      for (;;) {
        const frame: Raw = { type: "request-message-history", "session-id": sid, limit: page };
        if (since) frame["since-message-id"] = since;
        const items = (await this.#direct("history", frame)) as ChatMessage[];
        for (const m of items) if (this.#deliver(m)) n++;
        if (!since || items.length < page) break;
        since = items[items.length - 1]!.messageId;
      }
      counts[sid] = n;
    }
    return counts;
  }

  #catchUpStart(sid: string): string | undefined {
    const seen = this.#seen.get(sid);
    if (!seen || seen.size === 0) return undefined;
    const sorted = seen.values().sort(compareMessageIds);
    return sorted[Math.max(0, sorted.length - CATCHUP_OVERLAP)];
  }

  #releaseHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const raw of held) this.#deliver(this.#toMessage(raw, false));
  }

  /** Records `m` as delivered; false if it already was. */
  #markSeen(m: ChatMessage): boolean {
    let seen = this.#seen.get(m.sessionId);
    if (!seen) {
      seen = new BoundedSet(this.#o.dedupWindow ?? 1000);
      this.#seen.set(m.sessionId, seen);
    }
    if (seen.has(m.messageId)) return false;
    seen.add(m.messageId);
    return true;
  }

  /** Emits `message` unless this message was already delivered; true if emitted. */
  #deliver(m: ChatMessage): boolean {
    if (!this.#markSeen(m)) return false;
    this.emit("message", m);
    return true;
  }

  #onSocketGone(): void {
    this.#catchingUp = false;
    this.#held = [];
    // Actions written to the lost socket cannot be answered on the next one.
    for (const [id, p] of this.#pending) {
      if (p.sent) this.#settle(id, new ChatError(ClientErrorCode.CONNECTION_LOST, "connection lost before the answer"));
    }
  }

  #onClosed(s: StateChange): void {
    const err = this.#closed
      ? new ChatError(ClientErrorCode.CLOSED, "the client is closed")
      : new ConnectionClosedError(s.closeCode ?? 0, s.closeReason ?? "");
    for (const id of [...this.#pending.keys()]) this.#settle(id, err);
    this.#queue = [];
    this.#firstReject(err);
  }

  #onText(text: string): void {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      this.emit("error", new ChatError(ClientErrorCode.PROTOCOL, "the broker sent invalid JSON"));
      return;
    }
    this.#onAction(v as Raw);
  }

  #toMessage(a: Raw, own: boolean): ChatMessage {
    const m: ChatMessage = {
      sessionId: String(a["session-id"]),
      messageId: String(a["message-id"]),
      senderId: String(a["sender-id"]),
      message: a.message as MessageBody,
      senderTimestamp: typeof a["sender-timestamp"] === "number" ? (a["sender-timestamp"] as number) : null,
      serverTimestamp: Number(a["server-timestamp"] ?? 0),
      history: a.history === true,
      own,
    };
    if (a["~timing"]) m.timing = a["~timing"] as Timing;
    return m;
  }

  #toSession(a: Raw): SessionInfo {
    const s: SessionInfo = {
      sessionId: String(a["session-id"]),
      type: a["session-type"] === "direct" ? "direct" : "mutable",
      status: (a.status as SessionInfo["status"]) ?? "unchanged",
      participants: Array.isArray(a["user-id"]) ? (a["user-id"] as unknown[]).map(String) : [],
    };
    if ("owner" in a) s.owner = typeof a.owner === "string" ? a.owner : null;
    if (Array.isArray(a.admins)) s.admins = (a.admins as unknown[]).map(String);
    return s;
  }

  #toPresence(a: Raw): Presence {
    return {
      userId: String(a["user-id"]),
      status: a.status === "online" ? "online" : "offline",
      lastSeen: typeof a["last-seen"] === "number" ? (a["last-seen"] as number) : null,
    };
  }

  #toInboxItem(a: Raw): InboxItem {
    const last = a["last-message"] && typeof a["last-message"] === "object" ? (a["last-message"] as Raw) : null;
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

  #onAction(a: Raw): void {
    const type = a.type;
    const cdid = typeof a.cdid === "string" ? a.cdid : null;
    const p = cdid ? this.#pending.get(cdid) : undefined;
    switch (type) {
      case "batch-mode-action":
        if (Array.isArray(a.actions)) for (const inner of a.actions) if (inner && typeof inner === "object") this.#onAction(inner as Raw);
        return;
      case "status-response": {
        if (!p || !cdid) {
          if (a.status === "failed") this.emit("error", new ChatError(ClientErrorCode.FAILED, String(a.message ?? "failed")));
          return;
        }
        if (a.status === "succeeded") {
          if (p.kind === "list" || p.kind === "history" || p.kind === "presence") this.#settle(cdid, null, p.items);
          else if (p.kind === "inbox") this.#settle(cdid, null, { items: p.items, nextCursor: typeof a["next-cursor"] === "string" ? a["next-cursor"] : null });
          else if (p.kind === "send" || p.kind === "unread") this.#settle(cdid, new ChatError(ClientErrorCode.PROTOCOL, `unexpected answer: ${String(a.message ?? "succeeded")}`));
          else this.#settle(cdid, null, a.message ?? null);
        } else {
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
        if (p && cdid) this.#settle(cdid, null, s);
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
          if (this.#held.length < 10_000) this.#held.push(a);
          return;
        }
        this.#deliver(this.#toMessage(a, false));
        return;
      }
      case "message-delivered": {
        const devices = Array.isArray(a["delivered-to"])
          ? (a["delivered-to"] as Raw[]).map((d) => ({ userId: String(d["user-id"]), deviceId: String(d["device-id"]) }))
          : [{ userId: String(a["user-id"]), deviceId: String(a["device-id"]) }];
        this.emit("delivered", { sessionId: String(a["session-id"]), messageId: String(a["message-id"]), devices });
        return;
      }
      case "message-read": {
        const readBy = Array.isArray(a["read-by"])
          ? (a["read-by"] as Raw[]).map((r) => ({ userId: String(r["user-id"]), messageId: String(r["message-id"]), readTimestamp: Number(r["read-timestamp"] ?? 0) }))
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
          } satisfies UnreadCount);
        }
        return;
      }
      case "inbox-item": {
        if (p && cdid && p.kind === "inbox") p.items.push(this.#toInboxItem(a));
        return;
      }
      case "presence": {
        const pr = this.#toPresence(a);
        if (p && cdid && p.kind === "presence") p.items.push(pr);
        else this.emit("presence", pr);
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
  #ids: string[] = [];
  #committed = false;
  constructor(
    private readonly client: ChatClient,
    private readonly prepare: (kind: Kind, frame: Raw) => { id: string; promise: Promise<unknown> },
  ) {}

  #add<T>(kind: Kind, frame: Raw): Promise<T> {
    if (this.#committed) throw new ChatError(ClientErrorCode.INVALID_ARGUMENT, "the batch was already committed");
    const { id, promise } = this.prepare(kind, frame);
    this.#ids.push(id);
    return promise as Promise<T>;
  }

  send(sessionId: string, message: OutgoingMessage | string, senderTimestamp?: number): Promise<ChatMessage> {
    const body = typeof message === "string" ? { type: "text", body: message } : message;
    return this.#add("send", {
      type: "request-sending-a-message",
      "session-id": sessionId,
      message: body,
      "sender-timestamp": senderTimestamp ?? Date.now(),
    });
  }
  createSession(userIds: string[]): Promise<SessionInfo> {
    return this.#add("session", { type: "request-mutable-session-creation", "user-id": userIds });
  }
  directSession(userId: string): Promise<SessionInfo> {
    return this.#add("session", { type: "request-direct-session-info", "user-id": userId });
  }
  history(sessionId: string, options: { limit?: number; sinceMessageId?: string } = {}): Promise<ChatMessage[]> {
    const frame: Raw = { type: "request-message-history", "session-id": sessionId };
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.sinceMessageId !== undefined) frame["since-message-id"] = options.sinceMessageId;
    return this.#add("history", frame);
  }
  markRead(sessionId: string, messageId: string): Promise<void> {
    return this.#add<unknown>("status", { type: "request-marking-read", "session-id": sessionId, "message-id": messageId }).then(() => undefined);
  }
  unreadCount(sessionId: string): Promise<UnreadCount> {
    return this.#add("unread", { type: "request-unread-count", "session-id": sessionId });
  }

  /** Sends the batch (queued until connected). */
  commit(): void {
    this.#committed = true;
    this.client._commit(this.#ids);
  }
}
