// The chat demo in a real browser (Debian's chromium, driven by playwright-core): two
// pages as two users on a development-mode node with Redis exchange messages, see the
// delivery ticks, and survive a restart of the node (SIGKILL, started again on the same
// ports) without losing a message: a message typed while the node is down goes out after
// the reconnect. A third page of the same user shows the history on join. Saves
// docs/img/demo.png.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, type Page, chromium } from "playwright-core";

import { MurmurNode, REPO_ROOT, RedisServer, stopAll } from "../test/harness.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WAIT = { timeout: 15_000 };

let node: MurmurNode;
let browser: Browser;

before(async () => {
  const redis = await RedisServer.start();
  node = await MurmurNode.start({ redis, env: { MURMUR_DEV: "1" } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await stopAll();
});

async function login(user: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 900, height: 520 } });
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

/** Waits until the user's own message `text` has its delivery tick. */
async function ticked(page: Page, text: string): Promise<void> {
  await page.locator("#messages li.own", { hasText: text }).locator(".tick.delivered").waitFor(WAIT);
}

test("two users chat through the demo page, see delivery ticks and survive a node restart", async () => {
  // The node and its Redis are this test's own: plain names are safe (and read well in the screenshot).
  const alice = "alice";
  const bob = "bob";
  const a = await login(alice);
  const b = await login(bob);

  // Alice creates a group with Bob; it appears in Bob's list.
  await a.fill("#members", bob);
  await a.click("#create button");
  const group = b.locator("#groups li", { hasText: alice });
  await group.waitFor(WAIT);
  await group.click();

  await say(a, "hello bob");
  await sees(b, "hello bob");
  await ticked(a, "hello bob");
  await say(b, "hi alice");
  await sees(a, "hi alice");
  await ticked(b, "hi alice");

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

  const all = ["hello bob", "hi alice", "sent while the node was down", "welcome back", "all good"];
  assert.deepEqual(await shown(a), all);
  assert.deepEqual(await shown(b), all);

  // Another window of Bob's: the group and its history, kept in Redis across the restart.
  const b2 = await login(bob);
  const again = b2.locator("#groups li", { hasText: alice });
  await again.waitFor(WAIT);
  await again.click();
  await sees(b2, "all good");
  assert.deepEqual(await shown(b2), all);

  // The README's picture: Alice's and Bob's windows side by side.
  const shots = await Promise.all([a, b].map(async (p) => (await p.screenshot()).toString("base64")));
  const board = await (await browser.newContext({ viewport: { width: 1816, height: 520 } })).newPage();
  await board.setContent(
    `<body style="margin:0;display:flex;gap:16px;background:#9aa3b5">${shots.map((s) => `<img src="data:image/png;base64,${s}">`).join("")}</body>`,
  );
  await board.locator("img").nth(1).waitFor(WAIT);
  mkdirSync(join(REPO_ROOT, "docs", "img"), { recursive: true });
  await board.screenshot({ path: join(REPO_ROOT, "docs", "img", "demo.png") });
});
