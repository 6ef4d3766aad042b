// The SDK the node embeds for the demo page (gateway/demo/sdk/, committed so that cargo
// needs no npm) is exactly what tsc makes of src/ now: regenerate it with
// `npm run build && npm run demo` after changing src/.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { REPO_ROOT, SDK_ROOT } from "./harness.js";

const embedded = join(REPO_ROOT, "gateway", "demo", "sdk");
const built = join(SDK_ROOT, "dist", "src");
const js = (dir: string) => readdirSync(dir).filter((f) => f.endsWith(".js")).sort();

test("gateway/demo/sdk holds the same files as dist/src", () => {
  assert.deepEqual(js(embedded), js(built));
});

test("every embedded SDK file equals tsc's output (run `npm run build && npm run demo` if not)", () => {
  for (const f of js(built)) {
    const want = readFileSync(join(built, f), "utf8");
    const have = readFileSync(join(embedded, f), "utf8");
    assert.ok(have === want, `gateway/demo/sdk/${f} is stale: run \`npm run build && npm run demo\` in clients/typescript`);
  }
});
