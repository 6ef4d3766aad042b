// ChatClient and the protocol's extensions against one embedded node (docs/chat.md,
// "Message types", "Roles", "Extensions"): typed multimedia messages, read state and read
// reports, the inbox, presence, typing indicators, leaving and roles. Devices opted out
// (`extensions: []`) prove that those frames reach only devices that asked for them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  CHAT_EXTENSIONS,
  ChatClient,
  type ChatMessage,
  type ChatOptions,
  type ImageMessage,
  type OutgoingMessage,
  isMessageOfType,
} from "../src/index.js";
import { MurmurNode, closeAndWait, following, next, quiet, record, stopAll, uniq, waitFor, chatClient } from "./harness.js";

const MESSAGE_ID = /^\d+-\d+$/;

let node: MurmurNode;
const open: ChatClient[] = [];

function chat(userId: string, options: Partial<ChatOptions> = {}): ChatClient {
  return chatClient(node, userId, open, options);
}

async function connected(userId: string, options?: Partial<ChatOptions>): Promise<ChatClient> {
  const c = chat(userId, options);
  await c.connect();
  return c;
}

before(async () => {
  node = await MurmurNode.start();
});

after(async () => {
  for (const c of open) c.close();
  await stopAll();
});

describe("multimedia messages", () => {
  test("image, file and location messages round trip exactly; the SDK names every extension by default", async () => {
    assert.deepEqual(CHAT_EXTENSIONS, ["read-reports", "roles", "typing"]);
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const got = record(b, "message");
    const g = await a.createSession([bob]);

    const image: ImageMessage = {
      type: "image",
      body: {
        url: "https://cdn.example.com/p/1.jpg",
        mime: "image/jpeg",
        size: 482113,
        width: 1280,
        height: 960,
        thumbnail: "/9j/4AAQSkZJRgABAQ==",
        caption: "sunset",
      },
    };
    const file: OutgoingMessage = {
      type: "file",
      body: { url: "https://cdn.example.com/f/report.pdf", mime: "application/pdf", size: 1024, name: "report.pdf" },
    };
    const place: OutgoingMessage = { type: "location", body: { latitude: 48.8584, longitude: 2.2945, "accuracy-m": 12.5, name: "Tour Eiffel" } };

    const sent = [await a.send(g.sessionId, image), await a.send(g.sessionId, file), await a.send(g.sessionId, place)];
    assert.deepEqual(
      sent.map((m) => m.message),
      [image, file, place],
    );
    for (const m of sent) assert.match(m.messageId, MESSAGE_ID);
    await waitFor("bob to get the three", () => got.length === 3);
    assert.deepEqual(
      got.map((m) => m.message),
      [image, file, place],
    );
    assert.deepEqual(
      got.map((m) => m.messageId),
      sent.map((m) => m.messageId),
    );
    const first = got[0]!.message;
    assert.ok(isMessageOfType(first, "image"));
    assert.equal(first.body.caption, "sunset");
    assert.equal(isMessageOfType(first, "file"), false);
    // History carries them the same.
    assert.deepEqual(
      (await b.history(g.sessionId)).map((m) => m.message),
      [image, file, place],
    );
  });

  test("a media message the broker refuses rejects with its reason, and nothing is sent", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const got = record(b, "message");
    const g = await a.createSession([bob]);

    await assert.rejects(a.send(g.sessionId, { type: "image", body: { url: "http://cdn.example.com/1.jpg", mime: "image/jpeg", size: 10 } }), {
      code: "FAILED",
      message: "`body.url` must use https",
    });
    await assert.rejects(a.send(g.sessionId, { type: "image", body: { url: "https://cdn.example.com/1.mp3", mime: "audio/mpeg", size: 10 } }), {
      code: "FAILED",
      message: "`body.mime` of a `image` message must be image/…",
    });
    // Shapes the types forbid, as a JavaScript caller could still send them.
    await assert.rejects(a.send(g.sessionId, { type: "file", body: { url: "https://cdn.example.com/f", mime: "text/plain", size: 3 } } as unknown as OutgoingMessage), {
      code: "FAILED",
      message: "a `file` message needs `body.name`",
    });
    await assert.rejects(a.send(g.sessionId, { type: "sticker", body: { id: 7 } } as unknown as OutgoingMessage), {
      code: "FAILED",
      message: 'unknown message type "sticker" (known: text, image, audio, video, file, location)',
    });
    const ok = await a.send(g.sessionId, "after the refusals");
    await waitFor("bob to get the text", () => got.length === 1);
    assert.equal(got[0]!.messageId, ok.messageId);
    assert.deepEqual(
      (await b.history(g.sessionId)).map((m) => m.message),
      [{ type: "text", body: "after the refusals" }],
    );
  });
});

describe("read state", () => {
  test("markRead moves the position, the other participants' opted-in devices get one read report, unreadCount follows", async () => {
    const [alice, bob, carol] = [uniq("alice-"), uniq("bob-"), uniq("carol-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const b2 = await connected(bob);
    const c = await connected(carol, { extensions: [] });
    const aReads = record(a, "read");
    const b2Reads = record(b2, "read");
    const cReads = record(c, "read");
    const g = await a.createSession([bob, carol]);

    assert.deepEqual(await b.unreadCount(g.sessionId), { sessionId: g.sessionId, readMessageId: null, unread: 0, newestMessageId: null });
    const [aGot, bGot, b2Got, cGot] = [record(a, "message"), record(b, "message"), record(b2, "message"), record(c, "message")];
    const [m1, m2, m3] = [await a.send(g.sessionId, "m1"), await a.send(g.sessionId, "m2"), await a.send(g.sessionId, "m3")];
    const own = await b.send(g.sessionId, "bob's own");
    // Every device follows the group (read reports of a group go out on its channel).
    const all = [m1, m2, m3, own].map((m) => m.messageId);
    const has = (got: ChatMessage[], ids: string[]) => ids.every((id) => got.some((m) => m.messageId === id));
    await waitFor("every device to get the messages", () => has(aGot, [own.messageId]) && has(bGot, all.slice(0, 3)) && has(b2Got, all) && has(cGot, all));
    assert.deepEqual(await b.unreadCount(g.sessionId), { sessionId: g.sessionId, readMessageId: null, unread: 3, newestMessageId: own.messageId });

    const before = Date.now();
    await b.markRead(g.sessionId, m2.messageId);
    await waitFor("alice's read report", () => aReads.length === 1);
    const report = aReads[0]!;
    assert.equal(report.sessionId, g.sessionId);
    assert.equal(report.userId, bob);
    assert.equal(report.messageId, m2.messageId);
    assert.equal(report.readBy.length, 1);
    assert.deepEqual({ ...report.readBy[0]!, readTimestamp: 0 }, { userId: bob, messageId: m2.messageId, readTimestamp: 0 });
    assert.ok(report.readBy[0]!.readTimestamp >= before - 1000 && report.readBy[0]!.readTimestamp <= Date.now() + 1000, `${report.readBy[0]!.readTimestamp}`);
    // Bob's other device is told too (the same report).
    await waitFor("bob's other device's read report", () => b2Reads.length === 1);
    assert.deepEqual(b2Reads[0], report);
    assert.deepEqual(await b.unreadCount(g.sessionId), { sessionId: g.sessionId, readMessageId: m2.messageId, unread: 1, newestMessageId: own.messageId });
    // The same position from another device of the user.
    assert.deepEqual(await b2.unreadCount(g.sessionId), await b.unreadCount(g.sessionId));

    // An older mark succeeds and changes nothing: no report.
    await b.markRead(g.sessionId, m1.messageId);
    await quiet(a);
    assert.equal(aReads.length, 1);
    assert.deepEqual(await b.unreadCount(g.sessionId), { sessionId: g.sessionId, readMessageId: m2.messageId, unread: 1, newestMessageId: own.messageId });

    await b.markRead(g.sessionId, m3.messageId);
    await waitFor("the second read report", () => aReads.length === 2);
    assert.equal(aReads[1]!.messageId, m3.messageId);
    assert.deepEqual(
      aReads[1]!.readBy.map((r) => [r.userId, r.messageId]),
      [[bob, m3.messageId]],
    );
    assert.deepEqual(await b.unreadCount(g.sessionId), { sessionId: g.sessionId, readMessageId: m3.messageId, unread: 0, newestMessageId: own.messageId });

    // Carol opted into no extension: no read report ever reached her.
    await quiet(c);
    assert.deepEqual(cReads, []);

    await assert.rejects(b.markRead(g.sessionId, "not-an-id"), { code: "FAILED", message: "`message-id` must be a message id (`<ms>-<n>`)" });
    await assert.rejects(b.markRead(g.sessionId, `${Date.now() + 86_400_000}-0`), {
      code: "FAILED",
      message: "`message-id` is newer than the session's newest message",
    });
    const eve = await connected(uniq("eve-"));
    await assert.rejects(eve.markRead(g.sessionId, m1.messageId), { code: "FAILED", message: "not a participant of this session" });
    await assert.rejects(eve.unreadCount(g.sessionId), { code: "FAILED", message: "not a participant of this session" });
  });

  test("in a batch: markRead and unreadCount are answered in order", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const g = await a.createSession([bob]);
    const m1 = await a.send(g.sessionId, "one");
    const m2 = await a.send(g.sessionId, "two");
    const batch = b.batch();
    const marked = batch.markRead(g.sessionId, m1.messageId);
    const count = batch.unreadCount(g.sessionId);
    batch.commit();
    assert.equal(await marked, undefined);
    assert.deepEqual(await count, { sessionId: g.sessionId, readMessageId: m1.messageId, unread: 1, newestMessageId: m2.messageId });
  });
});

describe("inbox", () => {
  test("newest message first, previews and unread counts, groups without messages last, paged by cursor", async () => {
    const [alice, bob, carol] = [uniq("alice-"), uniq("bob-"), uniq("carol-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const empty = await a.createSession([bob, carol]);
    const dm = (await a.directSession(bob)).sessionId;
    const group = await a.createSession([bob]);

    await a.send(dm, "d1");
    await a.send(dm, "d2");
    const long = "x".repeat(200);
    await a.send(group.sessionId, long);
    const d3 = await b.send(dm, "d3 from bob");
    const pic = await a.send(group.sessionId, { type: "image", body: { url: "https://cdn.example.com/1.jpg", mime: "image/png", size: 99, caption: "look at this" } });

    const expected = [
      {
        sessionId: group.sessionId,
        sessionType: "mutable",
        unread: 2,
        lastMessage: { messageId: pic.messageId, senderId: alice, serverTimestamp: pic.serverTimestamp, messageType: "image", preview: "look at this" },
      },
      {
        sessionId: dm,
        sessionType: "direct",
        unread: 2,
        lastMessage: { messageId: d3.messageId, senderId: bob, serverTimestamp: d3.serverTimestamp, messageType: "text", preview: "d3 from bob" },
      },
      { sessionId: empty.sessionId, sessionType: "mutable", unread: 0, lastMessage: null },
    ];
    assert.deepEqual(await b.inbox(), { items: expected, nextCursor: null });

    const p1 = await b.inbox({ limit: 2 });
    assert.deepEqual(p1.items, expected.slice(0, 2));
    assert.equal(typeof p1.nextCursor, "string");
    assert.deepEqual(await b.inbox({ limit: 2, cursor: p1.nextCursor }), { items: expected.slice(2), nextCursor: null });

    // Reading the group clears its count; a text preview is cut to 140 characters.
    await b.markRead(group.sessionId, pic.messageId);
    const after = await b.inbox({ limit: 1 });
    assert.equal(after.items[0]!.unread, 0);
    await b.markRead(group.sessionId, (await b.history(group.sessionId, { limit: 2 }))[0]!.messageId);
    const text = await a.send(group.sessionId, long);
    const top = (await b.inbox({ limit: 1 })).items[0]!;
    assert.equal(top.lastMessage!.messageId, text.messageId);
    assert.equal(top.lastMessage!.preview, "x".repeat(140));
    assert.equal(top.unread, 1);

    await assert.rejects(b.inbox({ cursor: "garbage" }), { code: "FAILED", message: "`cursor` must be a `next-cursor` of this listing" });
    assert.deepEqual(await (await connected(uniq("loner-"))).inbox(), { items: [], nextCursor: null });
  });
});

describe("presence", () => {
  test("watchPresence answers the state now, then pushes changes; the last device going turns the user offline", async () => {
    const [alice, bob, carol] = [uniq("alice-"), uniq("bob-"), uniq("carol-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const b2 = await connected(bob);
    await a.createSession([bob, carol]);
    const events = record(a, "presence");

    assert.deepEqual(await a.watchPresence([bob, carol, bob]), [
      { userId: bob, status: "online", lastSeen: null },
      { userId: carol, status: "offline", lastSeen: null },
    ]);
    assert.deepEqual(a.watchedUsers, [bob, carol]);
    const eve = uniq("eve-");
    await assert.rejects(a.watchPresence([eve]), { code: "FAILED", message: `"${eve}" shares no session with you` });

    // One of Bob's two devices goes: he is still online, nothing is pushed.
    await closeAndWait(b2);
    await quiet(a);
    assert.equal(events.length, 0);

    const before = Date.now();
    await closeAndWait(b);
    await waitFor("bob offline", () => events.length === 1);
    assert.equal(events[0]!.userId, bob);
    assert.equal(events[0]!.status, "offline");
    assert.ok(events[0]!.lastSeen !== null && events[0]!.lastSeen >= before - 1000 && events[0]!.lastSeen <= Date.now() + 1000, `${events[0]!.lastSeen}`);

    const c = await connected(carol);
    await waitFor("carol online", () => events.length === 2);
    assert.deepEqual(events[1], { userId: carol, status: "online", lastSeen: null });

    // Unwatched: carol going is not pushed.
    assert.deepEqual(await a.unwatchPresence([carol]), [{ userId: carol, status: "online", lastSeen: null }]);
    assert.deepEqual(a.watchedUsers, [bob]);
    await closeAndWait(c);
    await quiet(a);
    assert.equal(events.length, 2);
  });

  test("after a reconnect the client watches again and tells the current state", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob);
    await a.createSession([bob]);
    assert.deepEqual(await a.watchPresence([bob]), [{ userId: bob, status: "online", lastSeen: null }]);
    const events = record(a, "presence");

    const reconnected = next(a, "connected");
    a.dropConnection();
    assert.deepEqual(await reconnected, { reconnect: true });
    assert.deepEqual(events, [{ userId: bob, status: "online", lastSeen: null }]);

    await closeAndWait(b);
    await waitFor("bob offline, told on the new connection", () => events.length === 2);
    assert.equal(events[1]!.status, "offline");
  });
});

describe("typing", () => {
  test("typing reaches the other opted-in devices, not the typing device nor a device that opted out; the client throttles", async () => {
    const [alice, bob, carol] = [uniq("alice-"), uniq("bob-"), uniq("carol-")];
    const a = await connected(alice);
    const bobDevice = uniq("bob-phone-");
    const b = await connected(bob, { deviceId: bobDevice });
    const b2 = await connected(bob);
    const c = await connected(carol, { extensions: [] });
    const g = await a.createSession([bob, carol]);
    const hellos = await following(g.sessionId, [a, b, b2, c]);
    const [aT, bT, b2T, cT] = [record(a, "typing"), record(b, "typing"), record(b2, "typing"), record(c, "typing")];
    const errors = record(b, "error");

    assert.equal(b.typing(g.sessionId), true);
    const expected = { sessionId: g.sessionId, userId: bob, deviceId: bobDevice };
    await waitFor("alice and bob's other device to see bob typing", () => aT.length === 1 && b2T.length === 1);
    assert.deepEqual(aT, [expected]);
    assert.deepEqual(b2T, [expected]);
    // Within the interval the client sends nothing more (the broker would refuse it).
    assert.equal(b.typing(g.sessionId), false);
    await quiet(b);
    await quiet(c);
    assert.deepEqual(bT, []);
    assert.deepEqual(cT, []);
    assert.deepEqual(errors, []);
    assert.equal(aT.length, 1);
    // Typing is not a message: not in the history.
    assert.deepEqual(
      (await a.history(g.sessionId)).map((m) => m.messageId),
      hellos,
    );
  });

  test("in a direct session; unthrottled, the broker's limit (one per 2 s per session) comes back as an error event, never a rejection", async () => {
    const [alice, bob] = [uniq("alice-"), uniq("bob-")];
    const a = await connected(alice);
    const b = await connected(bob, { typingIntervalMs: 0 });
    const g = await a.directSession(bob);
    const aT = record(a, "typing");
    const errors = record(b, "error");
    assert.equal(b.typing(g.sessionId), true);
    assert.equal(b.typing(g.sessionId), true);
    await waitFor("the broker's refusal", () => errors.length === 1);
    assert.equal((errors[0] as Error).message, "typing indicators: at most one per 2 s per session");
    await quiet(a);
    assert.deepEqual(aT, [{ sessionId: g.sessionId, userId: bob, deviceId: b.deviceId }]);

    const off = chat(bob);
    assert.equal(off.typing(g.sessionId), false); // not connected: dropped
  });
});

describe("roles and leaving", () => {
  test("the owner sets admins, admins modify, others are refused; an owner who leaves hands over; the last one out deletes", async () => {
    const [alice, bob, carol, dave] = [uniq("alice-"), uniq("bob-"), uniq("carol-"), uniq("dave-")];
    const a = await connected(alice);
    const b = await connected(bob);
    const c = await connected(carol, { extensions: [] });
    const d = await connected(dave);
    const bSessions = record(b, "session");
    const cSessions = record(c, "session");

    const g = await a.createSession([bob, carol]);
    assert.equal(g.owner, alice);
    assert.deepEqual(g.admins, []);
    await waitFor("bob and carol told", () => bSessions.length === 1 && cSessions.length === 1);
    assert.deepEqual(bSessions[0], g);
    // Carol opted out of "roles": the info as before extensions.
    assert.deepEqual(cSessions[0], { sessionId: g.sessionId, type: "mutable", status: "created", participants: g.participants });

    const sid = g.sessionId;
    await assert.rejects(b.modifySession(sid, [alice, bob, carol, dave]), {
      code: "FAILED",
      message: "only the session's owner and admins may change its participants or delete it",
    });
    await assert.rejects(b.setRoles(sid, { admins: [bob] }), { code: "FAILED", message: "only the session's owner may change its roles" });
    await assert.rejects(a.setRoles(sid, {}), { code: "FAILED", message: "give an `owner`, `admins`, or both" });
    await assert.rejects(a.setRoles(sid, { admins: [dave] }), { code: "FAILED", message: `"${dave}" is not a participant of this session` });

    const roles = await a.setRoles(sid, { admins: [bob] });
    assert.deepEqual([roles.status, roles.owner, roles.admins], ["modified", alice, [bob]]);
    await waitFor("bob told of his role", () => bSessions.length === 2);
    assert.deepEqual(bSessions[1], roles);

    const added = await b.modifySession(sid, [alice, bob, carol, dave]);
    assert.deepEqual([...added.participants].sort(), [alice, bob, carol, dave].sort());
    await assert.rejects(b.modifySession(sid, [bob, carol]), {
      code: "FAILED",
      message: "the owner cannot be removed: the owner leaves or hands the session over",
    });

    const left = await a.leaveSession(sid);
    assert.equal(left.status, "modified");
    assert.deepEqual([...left.participants].sort(), [bob, carol, dave].sort());
    assert.equal(left.owner, bob);
    assert.deepEqual(left.admins, []); // the first admin became the owner
    await assert.rejects(a.send(sid, "still here?"), { code: "FAILED", message: "not a participant of this session" });

    const handed = await b.setRoles(sid, { owner: dave });
    assert.equal(handed.owner, dave);
    await b.leaveSession(sid);
    await c.leaveSession(sid);
    const last = await d.leaveSession(sid);
    assert.equal(last.status, "deleted");
    assert.deepEqual(await d.listSessions(), []);
    await assert.rejects(d.send(sid, "anyone?"), { code: "FAILED", message: "no such session" });
  });
});
