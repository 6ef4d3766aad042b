// The way an app developer gets the SDK: `npm pack`, `npm install` of the tarball into a
// project of their own, `import { HeliosClient } from "@murmuration/client"`. The app
// below subscribes, its node is SIGKILLed and restarted, and it still sees what was
// published meanwhile, after connection:recovered.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { Cluster, SDK_ROOT, stopAll, token, uniq, waitFor, within } from "./harness.js";

const APP = `
import { HeliosClient } from "@murmuration/client";
import { WebSocket } from "ws";

const [url, token, channel] = process.argv.slice(2);
const say = (event, extra = {}) => console.log(JSON.stringify({ event, ...extra }));
const client = new HeliosClient({ url, token, WebSocket, backoff: { initialMs: 50, maxMs: 500 } });
client.on("state", (s) => say("state", { state: s.state }));
client.on("recovered", (r) => say("recovered", { starlingId: r.starlingId }));
await client.connect();
await client.subscribe(channel, (p) => {
  say("publication", { data: p.data });
  if (p.data === "after") client.close();
});
say("subscribed", { starlingId: client.starlingId });
`;

let dir: string | null = null;
let app: ChildProcess | null = null;

after(async () => {
  app?.kill("SIGKILL");
  await stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("npm pack, npm install into an app, subscribe; the node is SIGKILLed and restarted; the app recovers and misses nothing", async () => {
  dir = mkdtempSync(join(tmpdir(), "murmur-sdk-app-"));
  const npm = (args: string[], cwd: string) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], SDK_ROOT)) as { filename: string; files: { path: string }[] }[];
  assert.equal(packed[0]!.filename, "murmuration-client-0.1.0.tgz");
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of ["dist/src/index.js", "dist/src/index.d.ts", "src/index.ts", "README.md", "package.json"]) assert.ok(files.includes(f), `${f} not in ${files.join(", ")}`);
  assert.deepEqual(
    files.filter((f) => !/^(dist\/src|src)\/[a-z]+\.(js|d\.ts|d\.ts\.map|ts)$/.test(f) && f !== "README.md" && f !== "package.json"),
    [],
  );

  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "my-app", private: true, type: "module" }));
  writeFileSync(join(dir, "app.mjs"), APP);
  // `ws` from the SDK's own node_modules (offline); the SDK itself has no dependency.
  npm(["install", "--no-audit", "--no-fund", "--offline", "./murmuration-client-0.1.0.tgz", join(SDK_ROOT, "node_modules", "ws")], dir);

  const cluster = await Cluster.start(2);
  const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  const user = uniq("app-");
  const channel = uniq("news-");
  const lines: { event: string; [k: string]: unknown }[] = [];
  let stderr = "";
  app = spawn(process.execPath, ["app.mjs", a.wsUrl("/starling"), token(user), channel], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let buf = "";
  app.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  app.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => app!.once("exit", (code) => r(code)));
  const has = (event: string, data?: unknown) => lines.some((l) => l.event === event && (data === undefined || l.data === data));

  await waitFor(`the app to subscribe (stderr: ${stderr})`, () => has("subscribed"));
  const starlingId = lines.find((l) => l.event === "subscribed")!.starlingId;
  await a.publish(channel, "before");
  await waitFor("the app to get the first publication", () => has("publication", "before"));

  await a.kill();
  await b.publish(channel, "while the node was down");
  await a.restart();
  await waitFor("the app to recover", () => has("recovered"), { timeoutMs: 30_000 });
  await waitFor("the publication made while the node was down", () => has("publication", "while the node was down"));
  await b.publish(channel, "after");
  assert.equal(await within("the app to exit after close()", exited), 0, stderr);

  assert.equal(lines.find((l) => l.event === "recovered")!.starlingId, starlingId);
  assert.deepEqual(
    lines.filter((l) => l.event === "publication").map((l) => l.data),
    ["before", "while the node was down", "after"],
  );
  assert.ok(
    lines.findIndex((l) => l.event === "recovered") > lines.findIndex((l) => l.data === "while the node was down"),
    "the missed publication is replayed before connection:recovered",
  );
});
