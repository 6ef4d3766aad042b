// Copies the compiled SDK (dist/src/*.js) and the demo page (demo/) into gateway/demo/,
// which the murmur binary embeds (gateway/src/demo.rs). Run after `npm run build`.
import { cpSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "..", "gateway", "demo");
mkdirSync(join(out, "sdk"), { recursive: true });
for (const f of readdirSync(join(here, "..", "dist", "src")).filter((f) => f.endsWith(".js"))) {
  cpSync(join(here, "..", "dist", "src", f), join(out, "sdk", f));
}
for (const f of ["index.html", "demo.js", "demo.css"]) cpSync(join(here, "..", "demo", f), join(out, f));
console.log(`demo written to ${out}`);
