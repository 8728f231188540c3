// The real app, end to end: the release-like binary (front end embedded) under Xvfb, driven
// through tauri-driver + WebKitWebDriver, against a real underpassd in the sandbox with
// wireguard-go servers. Started by tests/gui/run.sh, which sets the environment below.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WebDriver, sleep } from "./webdriver.mjs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through tests/gui/run.sh`);
  return v;
};
const DRIVER = env("GUI_WEBDRIVER_URL");
const APP = env("GUI_APP");
const ART = env("GUI_ARTIFACTS");
const SANDBOX_DIR = env("SANDBOX_DIR");
const HELPER = join(import.meta.dirname, "helper.sh");
const NS_CLIENT = env("GUI_NS_CLIENT");
const INET = env("GUI_INET_ADDR4");

let wd;

async function shot(name) {
  await sleep(1000); // a screenshot taken at once can still show the previous frame
  mkdirSync(ART, { recursive: true });
  writeFileSync(join(ART, `${name}.png`), await wd.screenshot());
}

async function go(screen) {
  await wd.click(`#nav-${screen}`);
  await wd.el(`#nav-${screen}.active`);
}

function helper(action) {
  execFileSync("bash", [HELPER, action], { stdio: "inherit", timeout: 30000 });
}

function rssKiB() {
  const out = execFileSync("ps", ["-eo", "rss=,comm="], { encoding: "utf8" });
  const pick = (re) => out.split("\n").map((l) => l.trim().split(/\s+/)).filter(([, c]) => c && re.test(c));
  return {
    app: pick(/^underpass-gui$/).map(([r]) => Number(r)),
    webkit: pick(/^WebKit(WebProc|NetworkPr)/).map(([r, c]) => `${c}=${r}`),
  };
}

before(async () => {
  await WebDriver.waitReady(DRIVER, 30000);
  wd = await WebDriver.start(DRIVER, APP);
});

after(async () => {
  if (wd) await wd.quit();
});

test("import, connect, self-tests, disconnect, no helper and recovery", { timeout: 240000 }, async () => {
  try {
    await scenario();
  } catch (e) {
    // Evidence for the failure: what the window showed, and its DOM.
    await shot("failure").catch(() => {});
    const src = await wd.cmd("GET", "/source").catch(() => "");
    writeFileSync(join(ART, "failure.html"), String(src));
    throw e;
  }
});

async function scenario() {
  // The app starts against a running helper with no profiles.
  await wd.waitText("#state-title", (t) => t === "Disconnected", "the helper's state");
  assert.match(await wd.text(".server-list"), /No servers yet/);
  await shot("01-connect-empty");

  // 1. Import the sandbox's three wg-quick files (a folder import, typed as a path).
  await go("profiles");
  await wd.type("#import-path", SANDBOX_DIR);
  await wd.click("#import-path-button");
  await wd.waitText("#import-messages", (t) => /Imported .*se-sto-wg-001/.test(t), "the import report", 15000);
  await wd.waitText(".profile-list", (t) => t.includes("de-fra-wg-001") && t.includes("us-nyc-wg-001"), "the profile list");
  assert.match(await wd.text(".profile-list"), /Unsigned: imported from a plain WireGuard file/);
  await shot("02-profiles");

  // 2. Pick a country in the picker (searching for it) and connect.
  await go("connect");
  await wd.type("#server-search", "swe");
  await wd.waitText(".server-list", (t) => t.includes("Sweden") && !t.includes("Germany"), "the search to narrow the list");
  await wd.click('.server[data-profile="se-sto-wg-001"]');
  await wd.el('.server.selected[data-profile="se-sto-wg-001"]');
  await wd.type("#server-search", "");
  await wd.click("#connect-button");

  // 3. Connected, with live numbers.
  await wd.waitText("#state-title", (t) => t === "Connected to se-sto-wg-001", "Connected", 30000);
  await wd.waitText("#detail-handshake", (t) => /s ago/.test(t), "a handshake age");
  execFileSync("ip", ["netns", "exec", NS_CLIENT, "ping", "-c", "20", "-i", "0.2", "-s", "1000", INET], { timeout: 20000 });
  const rx = await wd.waitText("#detail-rx", (t) => /KiB|MiB/.test(t), "received bytes to grow");
  assert.ok(rx);
  assert.match(await wd.text(".explain"), /Your address inside the tunnel: 10\.64\.1\.2/);
  await wd.waitText(".legend", (t) => /↓ [\d.]+ (k|M)?bit\/s/.test(t), "a throughput rate");
  const mem = rssKiB();
  writeFileSync(join(ART, "memory.json"), JSON.stringify(mem, null, 2));
  console.log(`# RSS (KiB) app ${mem.app.join(",")} webkit ${mem.webkit.join(" ")}`);
  await shot("03-connected");

  // 4. Both self-tests, rendered from the helper's report.
  await go("diagnostics");
  await wd.click("#run-dns");
  const dns = await wd.waitText("#result-dns", (t) => /Passed|Failed|Inconclusive|could not run/.test(t), "the DNS test's verdict", 90000);
  assert.match(dns, /Passed: nothing leaked/, dns);
  await wd.click("#run-kill_switch");
  const ks = await wd.waitText("#result-kill_switch", (t) => /Passed|Failed|Inconclusive|could not run/.test(t), "the kill-switch test's verdict", 90000);
  assert.match(ks, /Passed: nothing leaked/, ks);
  await shot("04-diagnostics");

  // Settings: the helper's kill switch is shown; a bad prefix is caught as it is typed.
  await go("settings");
  await wd.el("#ks-auto:checked");
  await wd.type("#split-include", "10.0.0.0/8, banana");
  await wd.waitText("#include-errors", (t) => t.includes('"banana"'), "the prefix error");
  assert.equal(await wd.cmd("GET", `/element/${await wd.el("#save-settings")}/enabled`), false);
  await shot("05-settings");
  await wd.type("#split-include", "");

  // 5. Disconnect.
  await go("connect");
  await wd.click("#connect-button");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "Disconnected", 20000);

  // 6. The helper stops: the app says so and how to fix it.
  helper("stop");
  await wd.waitText("#state-title", (t) => t === "The Underpass helper is not running", "the no-helper screen", 15000);
  assert.match(await wd.text("#no-helper"), /systemctl start underpassd/);
  await shot("06-no-helper");

  // 7. It comes back: the app recovers by itself.
  helper("start");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "recovery", 15000);
  await shot("07-recovered");
}
