// The bundle's size budget (README, "Dashboard"): the page is compiled into the binary and
// loaded on every visit, so it stays small. Fails the build when a file is over its budget.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const budgets = {
  // React + React Flow + dagre are ~450 KiB; the rest of the issue (palette, forms, inspector)
  // has ~100 KiB of room.
  "dist/assets/app.js": { raw: 560 * 1024, gzip: 180 * 1024 },
  "dist/assets/app.css": { raw: 40 * 1024, gzip: 10 * 1024 },
  "dist/index.html": { raw: 4 * 1024, gzip: 2 * 1024 },
};
let over = false;
for (const [file, budget] of Object.entries(budgets)) {
  const bytes = readFileSync(file);
  const gz = gzipSync(bytes, { level: 9 }).length;
  const ok = bytes.length <= budget.raw && gz <= budget.gzip;
  over ||= !ok;
  console.log(
    `${ok ? "ok  " : "OVER"} ${file}: ${(bytes.length / 1024).toFixed(1)} KiB (budget ${budget.raw / 1024}), gzip ${(gz / 1024).toFixed(1)} KiB (budget ${budget.gzip / 1024})`,
  );
}
if (over) {
  console.error("the dashboard is over its size budget (check-size.mjs)");
  process.exit(1);
}
