// The chat demo in a real browser (Debian's chromium, driven by playwright-core): two
// pages as two users on a development-mode node with Redis. Bob's chat list (the inbox)
// counts Alice's unread messages; once he opens the group her messages get their read
// ticks (✓ delivered, ✓✓ read); she sees "bob is typing…" and his presence dot. They
// exchange text and an image and survive a restart of the node (SIGKILL, started again on
// the same ports) without losing a message: a message typed while the node is down goes
// out after the reconnect. A third page of the same user shows the history on join; when
// Bob's pages close, Alice sees him offline. Saves docs/img/demo.png (or
// $MURMUR_DEMO_SCREENSHOT).
//
// The node embeds the page (clients/typescript/demo/) and the SDK (gateway/demo/sdk/) at
// build time: the test first checks that what it serves is what is on disk, and fails
// naming the stale files otherwise. MURMUR_DEMO_FROM_DISK=1 has the browser take those
// files from disk instead (everything else — /demo/token, /chat — is the node's).
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";

import { MurmurNode, REPO_ROOT, RedisServer, SDK_ROOT, stopAll } from "../test/harness.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FROM_DISK = process.env.MURMUR_DEMO_FROM_DISK === "1";
const SCREENSHOT = process.env.MURMUR_DEMO_SCREENSHOT ?? join(REPO_ROOT, "docs", "img", "demo.png");
const WAIT = { timeout: 15_000 };
/** Where the demo's images live (routed by the test to a picture of its own). */
const IMAGE_URL = "https://cdn.example.com/demo/sunset.svg";
const SUNSET = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180"><defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#2b2d6e"/><stop offset=".6" stop-color="#f08a4b"/><stop offset="1" stop-color="#ffd27a"/></linearGradient></defs><rect width="320" height="180" fill="url(#s)"/><circle cx="160" cy="130" r="34" fill="#ffe9a8"/><rect y="138" width="320" height="42" fill="#1d2a4a"/></svg>`;

let node: MurmurNode;
let browser: Browser;

/** The demo's files as they are on disk: path under /demo/ → [content type, bytes]. */
function demoFiles(): Map<string, [string, Buffer]> {
  const files = new Map<string, [string, Buffer]>();
  for (const [f, type] of [
    ["index.html", "text/html; charset=utf-8"],
    ["demo.js", "text/javascript; charset=utf-8"],
    ["demo.css", "text/css; charset=utf-8"],
  ] as const) {
    files.set(f, [type, readFileSync(join(SDK_ROOT, "demo", f))]);
  }
  const built = join(SDK_ROOT, "dist", "src");
  for (const f of readdirSync(built).filter((f) => f.endsWith(".js"))) files.set(`sdk/${f}`, ["text/javascript; charset=utf-8", readFileSync(join(built, f))]);
  return files;
}

before(async () => {
  const redis = await RedisServer.start();
  node = await MurmurNode.start({ redis, env: { MURMUR_DEV: "1" } });
  if (!FROM_DISK) {
    const stale: string[] = [];
    for (const [f, [, want]] of demoFiles()) {
      const res = await fetch(`${node.publicUrl}/demo/${f}`);
      const have = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200 || !have.equals(want)) stale.push(f);
    }
    assert.deepEqual(
      stale,
      [],
      "the node serves a demo that differs from the files on disk: run `npm run build && npm run demo` in clients/typescript and rebuild murmur " +
        "(it embeds them), or set MURMUR_DEMO_FROM_DISK=1 to serve them from disk",
    );
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // A page the test fulfils has no address of its own: chromium would block its
      // WebSocket to 127.0.0.1 as a request from outside to the local network.
      ...(FROM_DISK ? ["--disable-features=LocalNetworkAccessChecks"] : []),
    ],
  });
});

after(async () => {
  await browser?.close();
  await stopAll();
});

async function routes(context: BrowserContext): Promise<void> {
  await context.route(IMAGE_URL, (route) => route.fulfill({ status: 200, contentType: "image/svg+xml", body: SUNSET }));
  if (FROM_DISK) {
    const files = demoFiles();
    await context.route(`${node.publicUrl}/demo/**`, async (route) => {
      const path = new URL(route.request().url()).pathname.replace(/^\/demo\//, "") || "index.html";
      const file = route.request().method() === "GET" ? files.get(path) : undefined;
      if (file) await route.fulfill({ status: 200, contentType: file[0], body: file[1] });
      else await route.fallback();
    });
  }
}

async function login(user: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  await routes(context);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error: ${e.message}`));
  await page.goto(`${node.publicUrl}/demo/`);
  await page.fill("#user", user);
  await page.click("#login-btn");
  await page.locator('#state[data-state="connected"]').waitFor(WAIT);
  assert.equal(await page.textContent("#state"), "connected");
  return page;
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.click("#send");
}

/** Waits until `text` is on the page's message list. */
async function sees(page: Page, text: string): Promise<void> {
  await page.locator("#messages li .body", { hasText: text }).waitFor(WAIT);
}

async function shown(page: Page): Promise<string[]> {
  return page.locator("#messages li .body").allTextContents();
}

/** Waits until the user's own message `text` has its delivery tick (✓, or ✓✓ once read). */
async function ticked(page: Page, text: string): Promise<void> {
  await page.locator("#messages li.own", { hasText: text }).locator(".tick.delivered").waitFor(WAIT);
}

/** Waits until the user's own message `text` is read (✓✓). */
async function readTick(page: Page, text: string): Promise<void> {
  const tick = page.locator("#messages li.own", { hasText: text }).locator(".tick.read");
  await tick.waitFor(WAIT);
  assert.equal(await tick.textContent(), "✓✓");
}

/** Waits until `#id`'s text is exactly `text`. */
async function textIs(page: Page, id: string, text: string): Promise<void> {
  await page.waitForFunction(([i, t]) => document.getElementById(i!)?.textContent === t, [id, text], WAIT);
}

test("two users chat through the demo page: inbox counts, read ticks, typing, presence, an image, and a node restart", async () => {
  // The node and its Redis are this test's own: plain names are safe (and read well in the screenshot).
  const alice = "alice";
  const bob = "bob";
  const a = await login(alice);
  const b = await login(bob);

  // Alice creates a group with Bob; it appears in Bob's list, and Bob online in hers.
  await a.fill("#members", bob);
  await a.click("#create button");
  const group = b.locator("#groups li", { hasText: alice });
  await group.waitFor(WAIT);
  await a.locator('#people .person[data-user="bob"] .dot.online').waitFor(WAIT);

  // Bob has not opened it: his inbox counts Alice's messages and previews the last.
  await say(a, "hello bob");
  await group.locator(".unread", { hasText: "1" }).waitFor(WAIT);
  assert.equal(await group.locator(".unread").textContent(), "1");
  assert.equal(await group.locator(".preview").textContent(), "alice: hello bob");
  await ticked(a, "hello bob");
  assert.equal(await a.locator("#messages li.own", { hasText: "hello bob" }).locator(".tick").textContent(), "✓");
  await say(a, "are you there?");
  await group.locator(".unread", { hasText: "2" }).waitFor(WAIT);
  assert.equal(await group.locator(".preview").textContent(), "alice: are you there?");

  // Bob opens it: both are read (✓✓ on Alice's side), his count is gone.
  await group.click();
  await sees(b, "are you there?");
  await readTick(a, "hello bob");
  await readTick(a, "are you there?");
  await group.locator(".unread").waitFor({ state: "detached", ...WAIT });
  await b.locator('#people .person[data-user="alice"] .dot.online').waitFor(WAIT);

  // Bob types: Alice sees it until his message arrives.
  await b.fill("#text", "hi al");
  await textIs(a, "typing", "bob is typing…");
  await say(b, "hi alice");
  await sees(a, "hi alice");
  await textIs(a, "typing", "");
  await readTick(b, "hi alice"); // Alice has the group open: read on arrival

  // The node goes away: both pages say so; Alice types a message meanwhile. Alice's page
  // gets its next token (and so reconnects) only once Bob's is back, so that her message
  // reaches Bob live and is reported delivered: one Bob got from the history catch-up
  // would not be (only broadcasts written to a socket are, docs/chat.md).
  let releaseAlice!: () => void;
  const aliceHeld = new Promise<void>((r) => (releaseAlice = r));
  await a.route("**/demo/token", async (route) => {
    await aliceHeld;
    await route.continue();
  });
  await node.kill();
  await a.locator('#state[data-state="reconnecting"]').waitFor(WAIT);
  await b.locator('#state[data-state="reconnecting"]').waitFor(WAIT);
  assert.equal(await a.textContent("#state"), "reconnecting…");
  await say(a, "sent while the node was down");
  await node.restart();
  await b.locator('#state[data-state="recovered"]').waitFor(WAIT);
  assert.equal(await b.textContent("#state"), "recovered");
  assert.equal(await a.textContent("#state"), "reconnecting…");
  releaseAlice();
  await a.locator('#state[data-state="recovered"]').waitFor(WAIT);
  await a.unroute("**/demo/token");

  await sees(b, "sent while the node was down");
  await ticked(a, "sent while the node was down");
  await say(b, "welcome back");
  await sees(a, "welcome back");
  await ticked(b, "welcome back");
  await say(a, "all good");
  await sees(b, "all good");
  await ticked(a, "all good");
  await readTick(a, "all good");

  const all = ["hello bob", "are you there?", "hi alice", "sent while the node was down", "welcome back", "all good"];
  assert.deepEqual(await shown(a), all);
  assert.deepEqual(await shown(b), all);

  // An image by URL: refused over http (the broker's reason is shown), sent over https.
  await a.fill("#media-url", "http://cdn.example.com/demo/sunset.svg");
  await a.fill("#media-mime", "image/svg+xml");
  await a.fill("#media-size", "731");
  await a.fill("#media-caption", "sunset");
  await a.click("#media-send");
  await textIs(a, "notice", "not sent: FAILED: `body.url` must use https");
  await a.fill("#media-url", IMAGE_URL);
  await a.click("#media-send");
  await textIs(a, "notice", "");
  const image = b.locator("#messages li figure.media");
  await image.waitFor(WAIT);
  assert.equal(await image.locator("img").getAttribute("src"), IMAGE_URL);
  assert.equal(await image.locator("figcaption.caption").textContent(), "sunset");
  await b.waitForFunction(() => (document.querySelector("#messages figure.media img") as HTMLImageElement | null)?.naturalWidth === 320, null, WAIT);
  await readTick(a, "sunset");
  await a.locator("#groups li .preview", { hasText: "alice: sunset" }).waitFor(WAIT);

  // Another window of Bob's: the group and its history, kept in Redis across the restart.
  const b2 = await login(bob);
  const again = b2.locator("#groups li", { hasText: alice });
  await again.waitFor(WAIT);
  await again.click();
  await sees(b2, "all good");
  await b2.locator("#messages li figure.media img").waitFor(WAIT);
  assert.deepEqual(await shown(b2), all);

  // The README's picture: Alice's and Bob's windows side by side.
  const shots = await Promise.all([a, b].map(async (p) => (await p.screenshot()).toString("base64")));
  const board = await (await browser.newContext({ viewport: { width: 1816, height: 600 } })).newPage();
  await board.setContent(
    `<body style="margin:0;display:flex;gap:16px;background:#9aa3b5">${shots.map((s) => `<img src="data:image/png;base64,${s}">`).join("")}</body>`,
  );
  await board.locator("img").nth(1).waitFor(WAIT);
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await board.screenshot({ path: SCREENSHOT });

  // Bob's windows close: Alice sees him offline.
  await b.context().close();
  await b2.context().close();
  await a.locator('#people .person[data-user="bob"] .dot.offline').waitFor(WAIT);
});
