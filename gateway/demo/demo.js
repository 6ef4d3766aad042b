// The chat demo: only the SDK (./sdk/index.js) and the dev-only POST /demo/token.
import { ChatClient } from "./sdk/index.js";

const $ = (id) => document.getElementById(id);
const state = $("state");
let client = null;
let current = null;
const groups = new Map();
const messages = new Map(); // sessionId -> Map(messageId -> message)
const delivered = new Set(); // messageIds with a delivery report

function setState(text, kind) {
  state.textContent = text;
  state.dataset.state = kind;
}

async function token(user) {
  const res = await fetch("/demo/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }) });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

function renderGroups() {
  const ul = $("groups");
  ul.replaceChildren();
  for (const g of groups.values()) {
    const li = document.createElement("li");
    li.textContent = g.participants.join(", ");
    li.dataset.session = g.sessionId;
    if (g.sessionId === current) li.className = "active";
    li.onclick = () => join(g.sessionId);
    ul.append(li);
  }
}

function renderMessages() {
  const ol = $("messages");
  ol.replaceChildren();
  const list = [...(messages.get(current)?.values() ?? [])];
  for (const m of list) {
    const li = document.createElement("li");
    li.dataset.messageId = m.messageId;
    if (m.senderId === client.userId) li.className = "own";
    const who = document.createElement("span");
    who.className = "sender";
    who.textContent = m.senderId;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = String(m.message.body);
    li.append(who, body);
    if (m.senderId === client.userId) {
      const tick = document.createElement("span");
      const ok = delivered.has(m.messageId);
      tick.className = ok ? "tick delivered" : "tick";
      tick.textContent = ok ? "✓✓" : "✓";
      li.append(tick);
    }
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

function store(m) {
  let s = messages.get(m.sessionId);
  if (!s) messages.set(m.sessionId, (s = new Map()));
  s.set(m.messageId, m);
  if (m.sessionId === current) renderMessages();
}

async function join(sessionId) {
  current = sessionId;
  $("title").textContent = groups.get(sessionId)?.participants.join(", ") ?? sessionId;
  $("text").disabled = $("send").disabled = false;
  renderGroups();
  for (const m of await client.history(sessionId)) store(m);
  renderMessages();
}

$("login-btn").onclick = async () => {
  const user = $("user").value.trim();
  if (!user) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/chat`;
  client = new ChatClient({ url, userId: user, deviceId: `demo-${Math.random().toString(36).slice(2, 8)}`, token: () => token(user) });
  client.on("state", (s) => {
    if (s.state === "reconnecting" || (s.state === "connecting" && s.previous === "reconnecting")) setState("reconnecting…", "reconnecting");
    else if (s.state === "closed") setState("closed", "closed");
  });
  client.on("connected", ({ reconnect }) => setState(reconnect ? "recovered" : "connected", reconnect ? "recovered" : "connected"));
  client.on("message", store);
  client.on("session", (s) => {
    if (s.type !== "mutable") return;
    if (s.status === "deleted") groups.delete(s.sessionId);
    else groups.set(s.sessionId, s);
    renderGroups();
  });
  client.on("delivered", (r) => {
    delivered.add(r.messageId);
    renderMessages();
  });
  setState("connecting…", "connecting");
  await client.connect();
  $("login").hidden = true;
  $("app").hidden = false;
  document.title = `${user} — Murmuration chat demo`;
  for (const g of await client.listSessions()) groups.set(g.sessionId, g);
  renderGroups();
};

$("create").onsubmit = async (e) => {
  e.preventDefault();
  const users = $("members").value.split(",").map((u) => u.trim()).filter(Boolean);
  const s = await client.createSession(users);
  groups.set(s.sessionId, s);
  $("members").value = "";
  await join(s.sessionId);
};

$("compose").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !current) return;
  $("text").value = "";
  try {
    store(await client.send(current, text));
  } catch (err) {
    alert(`not sent: ${err.code}: ${err.reason}`);
  }
};
