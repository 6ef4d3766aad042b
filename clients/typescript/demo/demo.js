// The chat demo: only the SDK (./sdk/index.js) and the dev-only POST /demo/token.
// Groups with their inbox (unread counts, previews), text and image messages, ticks on
// one's own messages (· sent, ✓ delivered, ✓✓ read), "… is typing", presence dots.
import { ChatClient, compareMessageIds } from "./sdk/index.js";

const $ = (id) => document.getElementById(id);
const state = $("state");
/** How long "… is typing" stays after the last indicator (the SDK sends one per ~2 s while typing). */
const TYPING_SHOWN_MS = 4000;
let client = null;
let current = null;
const groups = new Map(); // sessionId -> SessionInfo
let inbox = []; // InboxItem[], newest first
const messages = new Map(); // sessionId -> Map(messageId -> message)
const delivered = new Set(); // messageIds with a delivery report
const reads = new Map(); // sessionId -> Map(userId -> newest messageId they read)
const marked = new Map(); // sessionId -> newest messageId this user marked read
const presence = new Map(); // userId -> "online" | "offline"
const typingNow = new Map(); // sessionId -> Map(userId -> timer)

function setState(text, kind) {
  state.textContent = text;
  state.dataset.state = kind;
}

function notice(text) {
  $("notice").textContent = text;
}

async function token(user) {
  const res = await fetch("/demo/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }) });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

const el = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

const nameOf = (sessionId) => groups.get(sessionId)?.participants.join(", ") ?? (sessionId.startsWith("direct-") ? "direct chat" : sessionId);

// ---- the list of chats: the inbox, then groups it does not hold yet --------------------

function renderGroups() {
  const ul = $("groups");
  ul.replaceChildren();
  const rows = inbox.filter((i) => i.sessionType === "direct" || groups.has(i.sessionId));
  for (const g of groups.values()) if (!rows.some((i) => i.sessionId === g.sessionId)) rows.push({ sessionId: g.sessionId, unread: 0, lastMessage: null });
  for (const item of rows) {
    const li = el("li");
    li.dataset.session = item.sessionId;
    if (item.sessionId === current) li.classList.add("active");
    li.append(el("span", "name", nameOf(item.sessionId)));
    if (item.unread > 0) li.append(el("span", "unread", item.unread >= 100 ? "99+" : String(item.unread)));
    if (item.lastMessage) li.append(el("span", "preview", `${item.lastMessage.senderId}: ${item.lastMessage.preview || `[${item.lastMessage.messageType}]`}`));
    li.onclick = () => join(item.sessionId);
    ul.append(li);
  }
}

let inboxBusy = false;
let inboxAgain = false;
/** Reloads the inbox's first page; calls made meanwhile coalesce into one more reload. */
async function refreshInbox() {
  if (inboxBusy) {
    inboxAgain = true;
    return;
  }
  inboxBusy = true;
  try {
    do {
      inboxAgain = false;
      inbox = (await client.inbox({ limit: 50 })).items;
      renderGroups();
    } while (inboxAgain);
  } catch (err) {
    notice(`inbox: ${err.code}: ${err.reason}`);
  } finally {
    inboxBusy = false;
  }
}

// ---- the open chat ------------------------------------------------------------------

function renderPeople() {
  const div = $("people");
  div.replaceChildren();
  for (const u of groups.get(current)?.participants ?? []) {
    if (u === client.userId) continue;
    const span = el("span", "person");
    span.dataset.user = u;
    const status = presence.get(u) ?? "unknown";
    const dot = el("span", `dot ${status}`);
    dot.title = status;
    span.append(dot, u);
    div.append(span);
  }
}

function renderTyping() {
  const who = [...(typingNow.get(current)?.keys() ?? [])];
  $("typing").textContent = who.length === 0 ? "" : `${who.join(" and ")} ${who.length === 1 ? "is" : "are"} typing…`;
}

/** Own message `m` is read when another participant's read position is at or after it. */
function isRead(m) {
  for (const [user, id] of reads.get(m.sessionId) ?? []) if (user !== client.userId && compareMessageIds(id, m.messageId) >= 0) return true;
  return false;
}

function renderBody(m) {
  const { type, body } = m.message;
  if (type === "image" && body && typeof body === "object") {
    const fig = el("figure", "media");
    const img = el("img");
    img.src = body.url;
    img.alt = body.caption ?? "image";
    fig.append(img);
    if (body.caption) fig.append(el("figcaption", "caption", body.caption));
    return fig;
  }
  if (type === "text") return el("span", "body", typeof body === "string" ? body : JSON.stringify(body));
  const label = body?.caption ?? body?.name ?? (type === "location" ? `${body?.latitude}, ${body?.longitude}` : "");
  return el("span", "body", `[${type}] ${label}`);
}

function renderMessages() {
  const ol = $("messages");
  ol.replaceChildren();
  const list = [...(messages.get(current)?.values() ?? [])].sort((a, b) => compareMessageIds(a.messageId, b.messageId));
  for (const m of list) {
    const li = el("li");
    li.dataset.messageId = m.messageId;
    li.append(el("span", "sender", m.senderId), renderBody(m));
    if (m.senderId === client.userId) {
      li.className = "own";
      const read = isRead(m);
      const ok = read || delivered.has(m.messageId);
      li.append(el("span", read ? "tick delivered read" : ok ? "tick delivered" : "tick", read ? "✓✓" : ok ? "✓" : "·"));
    }
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

/** Marks the open chat read up to its newest message (once per message). */
async function markCurrentRead() {
  const sessionId = current;
  const ids = [...(messages.get(sessionId)?.keys() ?? [])].sort(compareMessageIds);
  const newest = ids[ids.length - 1];
  if (!newest) return;
  const done = marked.get(sessionId);
  if (done && compareMessageIds(done, newest) >= 0) return;
  marked.set(sessionId, newest);
  try {
    await client.markRead(sessionId, newest);
  } catch (err) {
    notice(`not marked read: ${err.code}: ${err.reason}`);
  }
  refreshInbox();
}

/** Keeps and shows `m`; a message of someone else in the open chat marks it read (unless `mark` is false). */
function store(m, mark = true) {
  let s = messages.get(m.sessionId);
  if (!s) messages.set(m.sessionId, (s = new Map()));
  s.set(m.messageId, m);
  const typing = typingNow.get(m.sessionId);
  if (typing?.has(m.senderId)) {
    clearTimeout(typing.get(m.senderId));
    typing.delete(m.senderId);
  }
  if (m.sessionId === current) {
    renderMessages();
    renderTyping();
    if (mark && m.senderId !== client.userId) markCurrentRead();
  }
}

async function join(sessionId) {
  current = sessionId;
  $("title").textContent = nameOf(sessionId);
  for (const id of ["text", "send", "media-url", "media-mime", "media-size", "media-caption", "media-send"]) $(id).disabled = false;
  renderGroups();
  renderPeople();
  renderTyping();
  renderMessages();
  for (const m of await client.history(sessionId)) store(m, false);
  renderMessages();
  await markCurrentRead();
}

/** Watches the presence of every participant of the user's groups (once each). */
async function watchParticipants() {
  const users = new Set();
  for (const g of groups.values()) for (const u of g.participants) if (u !== client.userId && !client.watchedUsers.includes(u)) users.add(u);
  if (users.size === 0) return;
  let got;
  try {
    got = await client.watchPresence([...users]);
  } catch {
    // One of them shares no session any more: watch the others one by one.
    got = (await Promise.all([...users].map((u) => client.watchPresence([u]).catch(() => [])))).flat();
  }
  for (const p of got) presence.set(p.userId, p.status);
  renderPeople();
}

// ---- login and the forms -------------------------------------------------------------

$("login-btn").onclick = async () => {
  const user = $("user").value.trim();
  if (!user) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/chat`;
  client = new ChatClient({ url, userId: user, deviceId: `demo-${Math.random().toString(36).slice(2, 8)}`, token: () => token(user) });
  client.on("state", (s) => {
    if (s.state === "reconnecting" || (s.state === "connecting" && s.previous === "reconnecting")) setState("reconnecting…", "reconnecting");
    else if (s.state === "closed") setState("closed", "closed");
  });
  client.on("connected", ({ reconnect }) => {
    setState(reconnect ? "recovered" : "connected", reconnect ? "recovered" : "connected");
    if (reconnect) refreshInbox();
  });
  client.on("message", (m) => {
    store(m);
    refreshInbox();
  });
  client.on("session", (s) => {
    if (s.type !== "mutable") return;
    if (s.status === "deleted" || !s.participants.includes(client.userId)) groups.delete(s.sessionId);
    else groups.set(s.sessionId, s);
    renderGroups();
    if (s.sessionId === current) renderPeople();
    watchParticipants();
    refreshInbox();
  });
  client.on("delivered", (r) => {
    delivered.add(r.messageId);
    if (r.sessionId === current) renderMessages();
  });
  client.on("read", (r) => {
    let s = reads.get(r.sessionId);
    if (!s) reads.set(r.sessionId, (s = new Map()));
    for (const { userId, messageId } of r.readBy) {
      const had = s.get(userId);
      if (!had || compareMessageIds(messageId, had) > 0) s.set(userId, messageId);
    }
    if (r.sessionId === current) renderMessages();
  });
  client.on("presence", (p) => {
    presence.set(p.userId, p.status);
    renderPeople();
  });
  client.on("typing", (t) => {
    if (t.userId === client.userId) return;
    let s = typingNow.get(t.sessionId);
    if (!s) typingNow.set(t.sessionId, (s = new Map()));
    clearTimeout(s.get(t.userId));
    s.set(
      t.userId,
      setTimeout(() => {
        s.delete(t.userId);
        renderTyping();
      }, TYPING_SHOWN_MS),
    );
    if (t.sessionId === current) renderTyping();
  });
  setState("connecting…", "connecting");
  await client.connect();
  $("login").hidden = true;
  $("app").hidden = false;
  document.title = `${user} — Murmuration chat demo`;
  for (const g of await client.listSessions()) groups.set(g.sessionId, g);
  renderGroups();
  await Promise.all([refreshInbox(), watchParticipants()]);
};

$("create").onsubmit = async (e) => {
  e.preventDefault();
  const users = $("members").value.split(",").map((u) => u.trim()).filter(Boolean);
  const s = await client.createSession(users);
  groups.set(s.sessionId, s);
  $("members").value = "";
  watchParticipants();
  await join(s.sessionId);
};

$("text").oninput = () => {
  if (current && $("text").value) client.typing(current);
};

/** Sends `message` to the open chat; a refusal shows the broker's reason. */
async function send(message) {
  notice("");
  try {
    store(await client.send(current, message));
    return true;
  } catch (err) {
    notice(`not sent: ${err.code}: ${err.reason}`);
    return false;
  }
}

$("compose").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !current) return;
  $("text").value = "";
  await send(text);
};

$("media").onsubmit = async (e) => {
  e.preventDefault();
  if (!current) return;
  const body = { url: $("media-url").value.trim(), mime: $("media-mime").value.trim(), size: Number($("media-size").value) };
  const caption = $("media-caption").value.trim();
  if (caption) body.caption = caption;
  if (await send({ type: "image", body })) {
    $("media-url").value = $("media-size").value = $("media-caption").value = "";
  }
};
