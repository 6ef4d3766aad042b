// Copies the compiled SDK (dist/src/*.js) into gateway/demo/sdk/, which the murmur binary
// embeds beside the demo page of demo/ (gateway/src/demo.rs). Run after `npm run build`;
// the output is committed so that cargo needs no npm.
import { cpSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "..", "gateway", "demo");
mkdirSync(join(out, "sdk"), { recursive: true });
for (const f of readdirSync(join(here, "..", "dist", "src")).filter((f) => f.endsWith(".js"))) {
  cpSync(join(here, "..", "dist", "src", f), join(out, "sdk", f));
}
console.log(`SDK for the demo written to ${join(out, "sdk")}`);
