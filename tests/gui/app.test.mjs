// The real app, end to end: the release-like binary (front end embedded) under Xvfb, driven
// through tauri-driver + WebKitWebDriver, against a real underpassd in the sandbox with
// wireguard-go servers. Started by tests/gui/run.sh, which sets the environment below.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WebDriver, sleep, until as poll } from "./webdriver.mjs";

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
const TMP = env("GUI_TMP");
const NS_ROUTER = env("GUI_NS_ROUTER");
const BLOCK = env("GUI_BLOCK_SERVERS").split(",");
const CLIENT_PUB = env("GUI_CLIENT_PUB");
const CLIENT_KEY = readFileSync(env("GUI_CLIENT_KEY_FILE"), "utf8").trim();
const DESKTOP = join(import.meta.dirname, "desktop.py");
// The D-Bus session run.sh started: tauri-driver, WebKitWebDriver, the app and its WebKit.
const SESSION_PID = env("GUI_SESSION_PID");
// The desktop session the app lives in: its HOME, session bus and display.
const SESSION = {
  ...process.env,
  HOME: join(TMP, "home"),
  XDG_RUNTIME_DIR: join(TMP, "xdg"),
  DBUS_SESSION_BUS_ADDRESS: env("GUI_DBUS"),
  NO_AT_BRIDGE: "1",
};

let wd;

async function shot(name) {
  await sleep(1000); // a screenshot taken at once can still show the previous frame
  mkdirSync(ART, { recursive: true });
  desk("shot", "Underpass", join(ART, `${name}.png`));
}

async function go(screen) {
  await wd.click(`#nav-${screen}`);
  await wd.el(`#nav-${screen}.active`);
}

/** The desktop around the app (tests/gui/desktop.py): the tray over D-Bus, the window. */
function desk(...args) {
  return execFileSync("/usr/bin/python3", [DESKTOP, ...args], { env: SESSION, encoding: "utf8", timeout: 20000 });
}
const trayMenu = () => JSON.parse(desk("tray-menu", join(TMP, "tray.jsonl")));
const trayClick = (label) => desk("tray-click", join(TMP, "tray.jsonl"), label);
const windowState = () => JSON.parse(desk("window", "Underpass"));
const entry = (node, label) => node.children.find((c) => c.label === label);
/** What a desktop does for a link or a double-clicked file: its launcher, by MIME type. */
function gioOpen(what) {
  execFileSync("gio", ["open", what], { env: SESSION, stdio: "inherit", timeout: 20000 });
}
const notifications = () => {
  try {
    return readFileSync(join(TMP, "notify.log"), "utf8");
  } catch {
    return "";
  }
};
async function until(what, f, timeoutMs = 10000) {
  return poll(what, async () => f(), timeoutMs);
}
/** Drops UDP to these servers at the sandbox's router (they stop answering handshakes). */
function blockServers(on) {
  const nft = (...a) => execFileSync("ip", ["netns", "exec", NS_ROUTER, "nft", ...a], { timeout: 10000 });
  if (on) {
    nft("add", "table", "inet", "guitest");
    nft("add", "chain", "inet", "guitest", "f", "{ type filter hook forward priority 0; }");
    nft("add", "rule", "inet", "guitest", "f", "ip", "daddr", `{ ${BLOCK.join(", ")} }`, "udp", "dport", "51820", "drop");
  } else {
    nft("delete", "table", "inet", "guitest");
  }
}
/** The verdict each layer of the troubleshooter's stack shows, in order. */
async function layerVerdicts() {
  const ids = await wd.find("#doctor-layers li.layer");
  const attr = (id, name) => wd.cmd("GET", `/element/${id}/attribute/${name}`);
  return Promise.all(ids.map(async (id) => `${await attr(id, "data-layer")}=${await attr(id, "data-verdict")}`));
}
/** Runs the troubleshooter in the app and waits for a verdict line other than `before` (on a
 * healthy tunnel it answers within the click's round trip, so its progress is not awaited). */
async function troubleshoot(before = null) {
  await wd.click("#run-doctor");
  return wd.waitText("#doctor-summary", (t) => t.length > 0 && t !== before, "the troubleshooter's verdict", 60000);
}
/** A rule in the client's firewall that drops everything sent into the tunnel. */
function dropTunnelTraffic(on) {
  const nft = (...a) => execFileSync("ip", ["netns", "exec", NS_CLIENT, "nft", ...a], { timeout: 10000 });
  if (on) {
    const links = JSON.parse(execFileSync("ip", ["-n", NS_CLIENT, "-j", "-d", "link", "show"], { encoding: "utf8" }));
    const tun = links.find((l) => l.linkinfo?.info_kind === "tun")?.ifname;
    assert.ok(tun, "the tunnel's TUN device in the client namespace");
    nft("add", "table", "inet", "guidoctor");
    nft("add", "chain", "inet", "guidoctor", "out", "{ type filter hook output priority -10; }");
    nft("add", "rule", "inet", "guidoctor", "out", "oifname", tun, "counter", "drop");
  } else {
    nft("delete", "table", "inet", "guidoctor");
  }
}
async function prop(css, name) {
  return wd.cmd("GET", `/element/${await wd.el(css)}/property/${name}`);
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

/** The app's processes and their WebKit processes, as {pid, comm}: the D-Bus session's tree
 * (tauri-driver started the first window), plus the trees of every app process on this
 * session's bus (the tray outlives the window that started it, which hands it to init; the
 * test starts some itself). */
function appTree() {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" })
    .split("\n").map((l) => l.trim().split(/\s+/)).filter((r) => r.length === 3);
  const ourBus = (pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(`DBUS_SESSION_BUS_ADDRESS=${SESSION.DBUS_SESSION_BUS_ADDRESS}`);
    } catch {
      return false; // it has ended
    }
  };
  const ours = new Set([SESSION_PID, ...rows.filter(([pid, , comm]) => /^underpass-(gui|tray)$/.test(comm) && ourBus(pid)).map(([pid]) => pid)]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of rows) if (ours.has(ppid) && !ours.has(pid)) { ours.add(pid); grew = true; }
  }
  return rows.filter(([pid]) => ours.has(pid)).map(([pid, , comm]) => ({ pid, comm }));
}
/** The WebKit processes of the app (the page's web process and the network process). */
const webkitProcesses = () => appTree().filter((p) => /^WebKit(WebProces|NetworkPr)/.test(p.comm)).map((p) => `${p.comm}=${p.pid}`);
/** The app's own processes: the window process (underpass-gui) and the tray (underpass-tray). */
const appProcesses = () => appTree().filter((p) => /^underpass-(gui|tray)$/.test(p.comm)).map((p) => p.comm).sort();
/** A process's proportional set size in MiB (shared pages counted once). */
function pssMiB(pid) {
  const kib = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+) kB/m);
  return Number(kib[1]) / 1024;
}

/** Closes the window, which ends the window process and its WebKit processes; the tray stays. */
async function closeToTray() {
  desk("close", "Underpass");
  await until("the window to go", () => !windowState().mapped);
  await until("the window process and WebKit's to end", () => appProcesses().join() === "underpass-tray" && webkitProcesses().length === 0, 15000)
    .catch((e) => { throw new Error(`${e.message}; still running: ${appTree().map((p) => p.comm).join(" ")}`); });
}

/** The app's "window ready" log lines: a new window has rendered the helper's state, which
 * each line quotes (its state line). */
function readyLines() {
  const dir = join(TMP, "home", ".local", "state", "underpass");
  const files = existsSync(dir) ? readdirSync(dir) : [];
  return files.flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n")).filter((l) => l.includes("window ready"));
}

before(async () => {
  await WebDriver.waitReady(DRIVER, 30000);
  wd = await WebDriver.start(DRIVER, APP);
});

after(async () => {
  if (wd) await wd.quit().catch(() => {});
  // The tray outlives the window that started it: end it as a user would.
  if (appProcesses().includes("underpass-tray")) trayClick("Quit");
});

test("import, connect, self-tests, disconnect, no helper and recovery", { timeout: 240000 }, async () => {
  try {
    await scenario();
  } catch (e) {
    // Evidence for the failure: what the window showed, and its DOM (while WebDriver has it).
    if (wd) {
      await shot("failure").catch(() => {});
      const src = await wd.cmd("GET", "/source").catch(() => "");
      writeFileSync(join(ART, "failure.html"), String(src));
    }
    throw e;
  }
});

async function scenario() {
  // The app starts against a running helper with no profiles; its tray icon is registered.
  await wd.waitText("#state-title", (t) => t === "Disconnected", "the helper's state");
  assert.match(await wd.text(".server-list"), /No servers yet/);
  const tray0 = await until("the tray item", () => {
    try {
      return trayMenu();
    } catch {
      return undefined;
    }
  });
  assert.equal(tray0.status, "Active");
  assert.deepEqual(tray0.pixmaps, [[32, 32], [128, 128]], "the tray icon, as pixmaps");
  // The tray is a process of its own, which the window started.
  assert.deepEqual(appProcesses(), ["underpass-gui", "underpass-tray"]);
  await shot("01-connect-empty");

  // 1. Import the sandbox's wg-quick files: one dragged from a file manager and dropped on
  // the window, then the whole folder, typed as a path (the one already there is refused by
  // name, the others imported).
  await go("profiles");
  desk("drop", "Underpass", join(SANDBOX_DIR, "de-fra-wg-001.conf"));
  await wd.waitText("#import-messages", (t) => t.includes("Imported de-fra-wg-001 from de-fra-wg-001.conf."), "the dropped file's import", 15000);
  await wd.type("#import-path", SANDBOX_DIR);
  await wd.click("#import-path-button");
  await wd.waitText("#import-messages", (t) => /Imported .*se-sto-wg-001/.test(t), "the import report", 15000);
  await wd.waitText(".profile-list", (t) => t.includes("de-fra-wg-001") && t.includes("us-nyc-wg-001"), "the profile list");
  assert.match(await wd.text(".profile-list"), /Unsigned: imported from a plain WireGuard file/);
  // The public key IT would register: the sandbox client's.
  await wd.click('.show-key[data-profile="se-sto-wg-001"]');
  await wd.el('.public-key[data-profile="se-sto-wg-001"]');
  assert.equal(await prop('.public-key[data-profile="se-sto-wg-001"]', "value"), CLIENT_PUB);
  await shot("02-profiles");

  // 2. Pick a country in the picker (searching for it) and connect. "Fastest server" is the
  // default choice until then.
  await go("connect");
  await wd.el('.server.selected[data-best=""]');
  assert.match(await wd.text("#choice"), /the fastest one/);
  await wd.type("#server-search", "swe");
  await wd.waitText(".server-list", (t) => t.includes("Sweden") && !t.includes("Germany"), "the search to narrow the list");
  await wd.click('.server[data-best="SE"]');
  await wd.el('.server.selected[data-best="SE"]');
  assert.equal(await wd.text("#choice"), "Server: the fastest in Sweden");
  await wd.type("#server-search", "");
  await wd.click("#connect-button");
  await wd.waitText("#state-title", (t) => t === "Connected to se-sto-wg-001", "Connected", 30000);

  // 3. Connected, with live numbers.
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

  // The tray follows: its state line, and "Connect to" lists each country.
  const tray1 = await until("the tray to say connected", () => {
    const m = trayMenu().menu;
    return entry(m, "Connected to se-sto-wg-001") ? m : undefined;
  });
  const countries = entry(tray1, "Connect to");
  assert.deepEqual(
    countries.children.map((c) => c.label),
    ["Fastest server", "🇩🇪 Germany (1 server)", "🇸🇪 Sweden (1 server)", "🇺🇸 United States (1 server)"],
  );
  assert.equal(entry(tray1, "Disconnect").enabled, true);
  assert.equal(entry(tray1, "Connect").enabled, false);

  // 4. Both self-tests, rendered from the helper's report, and the system state.
  await go("diagnostics");
  assert.match(await wd.text("#system-state"), /Firewall\s*only the tunnel and its endpoint may be used/);
  assert.match(await wd.text("#system-state"), /DNS\s*10\.64\.1\.1 via resolv\.conf/);
  await wd.click("#run-dns");
  const dns = await wd.waitText("#result-dns", (t) => /Passed|Failed|Inconclusive|could not run/.test(t), "the DNS test's verdict", 90000);
  assert.match(dns, /Passed: nothing leaked/, dns);
  await wd.click("#run-kill_switch");
  const ks = await wd.waitText("#result-kill_switch", (t) => /Passed|Failed|Inconclusive|could not run/.test(t), "the kill-switch test's verdict", 90000);
  assert.match(ks, /Passed: nothing leaked/, ks);
  await shot("04-diagnostics");

  // The troubleshooter asks the helper to walk the seven layers: on this healthy tunnel all
  // pass. Then a firewall rule dropping what enters the tunnel, and it names the firewall as the
  // first failure (what depends on it is not checked), with the evidence one click away.
  const doctorStart = Date.now();
  const healthy = await troubleshoot();
  assert.match(healthy, /Everything checks out: all 7 steps passed/, (await layerVerdicts()).join(" "));
  const seven = ["control-plane", "outer-path", "interface", "routes", "firewall", "dns", "mtu"];
  assert.deepEqual(await layerVerdicts(), seven.map((id) => `${id}=ok`));
  assert.equal((await wd.find(".first-fail")).length, 0);
  dropTunnelTraffic(true);
  try {
    const broken = await troubleshoot(healthy);
    assert.match(broken, /^Found the problem at step 5 of 7: Firewall\./, broken);
    assert.deepEqual((await layerVerdicts()).slice(0, 5), [...seven.slice(0, 4).map((id) => `${id}=ok`), "firewall=fail"]);
    assert.equal((await wd.find(".first-fail")).length, 1);
    assert.match(await wd.text(".first-fail"), /^5\s*Firewall[\s\S]*This is where it breaks[\s\S]*What to do: Remove the rule/);
    assert.match(await wd.text('[data-layer="dns"]'), /Not checked, because step 5 \(Firewall\) has to work first/);
    assert.equal(await prop(".first-fail .layer-evidence", "hidden"), true);
    // "Copy for support" puts the CLI's text of the report on the clipboard.
    await wd.click("#copy-doctor");
    await wd.waitText("#doctor-copy-message", (t) => t.startsWith("Copied"), "the copy");
    const pasted = desk("clipboard");
    assert.match(pasted, /^>> 5\. firewall +FAIL +Do the firewall rules allow the tunnel's traffic\?$/m, pasted);
    assert.match(pasted, /\nFirst failing layer: firewall — Remove the rule/, pasted);
    await wd.cmd("POST", "/execute/sync", { script: "document.getElementById('troubleshoot').scrollIntoView()", args: [] });
    await shot("04c-troubleshoot");
    // The evidence, on demand.
    await wd.click(".first-fail .layer-toggle");
    assert.equal(await prop(".first-fail .layer-evidence", "hidden"), false);
    assert.match(await wd.text(".first-fail .layer-evidence"), /table inet guidoctor chain out/);
  } finally {
    dropTunnelTraffic(false);
  }
  console.log(`# troubleshooter step (two runs, copy, screenshot): ${Date.now() - doctorStart} ms`);

  // The same test with the kill switch off fails, shows the escaped packets, and notifies.
  await go("settings");
  await wd.click("#ks-off");
  await wd.el("#ks-off:checked", 10000);
  await go("diagnostics");
  await wd.click("#run-kill_switch");
  const broken = await wd.waitText("#result-kill_switch", (t) => /Passed|Failed|Inconclusive|could not run/.test(t), "the broken test's verdict", 90000);
  assert.match(broken, /Failed/, broken);
  assert.match(await wd.text("#result-kill_switch .leaks"), /Packets seen outside the tunnel/);
  await until("the self-test notification", () => notifications().includes("kill-switch self-test failed"));
  await shot("04b-diagnostics-failed");
  // The report for support: the helper's state and log, this session's self-tests, the app's log.
  await wd.click("#export-report");
  const saved = await wd.waitText("#report-message", (t) => t.startsWith("Saved to "), "the report", 15000);
  const reportPath = saved.slice("Saved to ".length);
  assert.match(reportPath, /\/home\/underpass-report-\d{8}-\d{6}\.txt$/);
  const report = readFileSync(reportPath, "utf8");
  assert.match(report, /== Helper status \(routes, DNS, firewall\) ==\n\{\n  "state": "connected"/);
  assert.match(report, /== Self-test: KillSwitch ==[\s\S]*"verdict": "fail"/);
  assert.match(report, /== Troubleshooter \(underpass doctor\) ==\n[\s\S]*\nFirst failing layer: firewall — /);
  assert.match(report, /== App log \(newest \d+ lines\) ==[\s\S]*connecting to se-sto-wg-001 \(chosen as Fastest \{ country: Some\("SE"\) \}\)/);
  assert.match(report, /== Helper log \(newest \d+ lines\) ==[\s\S]*underpassd ready/);
  assert.ok(!report.includes(CLIENT_KEY), "the report holds the private key");
  await go("settings");
  await wd.click("#ks-auto");
  await wd.el("#ks-auto:checked", 10000);

  // Settings: a bad prefix and a bad resolver are caught as they are typed.
  await wd.type("#split-include", "10.0.0.0/8, banana");
  await wd.waitText("#include-errors", (t) => t.includes('"banana"'), "the prefix error");
  assert.equal(await prop("#save-settings", "disabled"), true);
  await wd.type("#custom-dns", "10.64.1.1, dns.example");
  await wd.waitText("#dns-errors", (t) => t.includes('"dns.example" is not an address'), "the DNS error");
  await shot("05-settings");
  await wd.type("#split-include", "");
  await wd.type("#custom-dns", "");
  // Launch at login writes the desktop's autostart entry; connect on launch is used below.
  await wd.click("#launch-at-login");
  await wd.click("#connect-on-launch");
  await wd.click("#save-settings");
  await wd.waitText("#settings-message", (t) => t === "Saved.", "the settings to save");
  const autostart = join(TMP, "home", ".config", "autostart", "underpass.desktop");
  assert.match(readFileSync(autostart, "utf8"), /^Exec=.*underpass-gui --hidden$/m);

  // 5. Disconnect from the tray, as a user would.
  await go("connect");
  trayClick("Disconnect");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "Disconnected by the tray", 20000);

  // "Fastest server" measures every server by a real handshake: with two of the three
  // silent, the one that answers wins, and the app says so.
  await wd.click('.server[data-best=""]');
  blockServers(true);
  try {
    await wd.click("#connect-button");
    await wd.waitText("#state-title", (t) => t === "Connected to se-sto-wg-001", "Connected to the fastest", 30000);
    const note = await wd.waitText("#connect-note", (t) => t.length > 0, "the measurement note");
    assert.match(note, /^Fastest of 3 servers: se-sto-wg-001, handshake in [\d.]+ ms\.$/);
  } finally {
    blockServers(false);
  }
  await shot("05b-fastest");
  await wd.click("#connect-button");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "Disconnected", 20000);

  // 6. Links and files reach the running app through the desktop's launcher, which starts a
  // second instance that hands them over. A connect link only selects.
  gioOpen("underpass://connect?country=DE");
  await wd.el('.server.selected[data-best="DE"]', 15000);
  assert.equal(await wd.text("#choice"), "Server: the fastest in Germany");
  await sleep(2000);
  assert.equal(await wd.text("#state-title"), "Disconnected", "a link only selects");
  // A link must not carry a private key: refused, with the reason.
  const withKey = readFileSync(join(TMP, "corp-3.underpass")).toString("base64url");
  gioOpen(`underpass://import?bundle=${withKey}`);
  await wd.waitText(".error[role=alert]", (t) => t.includes("carries a private key, which a link must never do"), "the refusal", 15000);
  // A signed bundle carried in a link: the user confirms, then the first-use trust prompt.
  const bundle1 = readFileSync(join(TMP, "corp-1.underpass")).toString("base64url");
  gioOpen(`underpass://import?bundle=${bundle1}`);
  await wd.waitText("#link-import", (t) => t.includes('import the profile "corp" from Sandbox Corp IT (serial 1)'), "the link's confirmation", 15000);
  await wd.click("#link-import-yes");
  await wd.waitText("#import-messages", (t) => t.includes('signed by "Sandbox Corp IT" with a key you have not trusted yet'), "the trust prompt", 15000);
  await shot("06-trust-prompt");
  await wd.click(".trust button.primary");
  await wd.waitText("#import-messages", (t) => /Imported corp from/.test(t), "the trusted import");
  await wd.waitText('.profile[data-profile="corp"]', (t) => t.includes("send the public key to Sandbox Corp IT"), "the locally made key's hint");
  // A double-clicked .underpass file with a newer serial replaces the profile in place.
  gioOpen(join(TMP, "corp-2.underpass"));
  await wd.waitText("#import-messages", (t) => t.includes("Imported corp from corp-2.underpass."), "the file import", 15000);
  await wd.waitText('.profile[data-profile="corp"]', (t) => t.includes("Signed by Sandbox Corp IT"), "the signed profile");

  // 7. The signed profile's policy shows as locked settings, with the reason.
  await go("connect");
  await wd.click('.server[data-profile="corp"]');
  await go("settings");
  assert.equal(await wd.text("#split-lock"), 'Locked by the policy of Sandbox Corp IT for profile "corp": split tunnel is not allowed.');
  assert.equal(await prop("#split-include", "disabled"), true);
  assert.match(await wd.text("#dns-lock"), /DNS must go to the tunnel's resolvers/);
  assert.match(await wd.text("#lan-lock"), /local network access is not allowed/);
  assert.equal(await prop("#ks-off", "disabled"), true);
  await shot("07-settings-locked");
  await go("connect");


  // 9. The helper stops: the app says so and how to fix it.
  helper("stop");
  await wd.waitText("#state-title", (t) => t === "The Underpass helper is not running", "the no-helper screen", 15000);
  assert.match(await wd.text("#no-helper"), /systemctl start underpassd/);
  await shot("08-no-helper");

  // 10. It comes back: the app recovers by itself.
  helper("start");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "recovery", 15000);

  // 11. A country from the tray's "Connect to", then Disconnect from the tray.
  trayClick("🇺🇸 United States (1 server)");
  await wd.waitText("#state-title", (t) => t === "Connected to us-nyc-wg-001", "the tray's country", 30000);
  trayClick("Disconnect");
  await wd.waitText("#state-title", (t) => t === "Disconnected", "Disconnected by the tray", 20000);

  // 12. Started as at login (--hidden): the tray alone, with no window process and no WebKit,
  // connected on launch to the last choice (the tray's United States); "Show Underpass"
  // starts the window, at its remembered size, showing the live state.
  desk("resize", "Underpass", "900", "640");
  await until("the resize", () => windowState().width === 900);
  const connectedNotes = () => (notifications().match(/Underpass: connected/g) ?? []).length;
  const notesBefore = connectedNotes();
  trayClick("Quit");
  await until("Quit to end the tray and the window", () => appProcesses().length === 0, 15000);
  await wd.quit().catch(() => {}); // its app has gone
  wd = null;
  // What the autostart entry runs: it starts the tray and returns.
  execFileSync(APP, ["--hidden"], { env: SESSION, timeout: 20000, stdio: "ignore" });
  await until("the tray to say connected on launch", () => {
    try {
      return entry(trayMenu().menu, "Connected to us-nyc-wg-001") ? true : undefined;
    } catch {
      return undefined; // the new tray has not registered its icon yet
    }
  }, 30000);
  assert.equal(windowState().mapped, false, "--hidden starts in the tray");
  assert.deepEqual(appProcesses(), ["underpass-tray"], "only the tray runs");
  assert.deepEqual(webkitProcesses(), [], "no WebKit process in the tray");
  const trayPid = appTree().find((p) => p.comm === "underpass-tray").pid;
  const trayPss = pssMiB(trayPid);
  console.log(`# the tray process: ${trayPss.toFixed(1)} MiB PSS (debug build)`);
  assert.ok(trayPss < 40, `the tray weighs ${trayPss} MiB PSS`);
  await until("the connected-on-launch notification", () => connectedNotes() > notesBefore);
  assert.match(notifications(), /Underpass: connected/, "the connected notification reached the notification server");
  const shows = (n) => readyLines().length > n && readyLines().at(-1).includes('"Connected to us-nyc-wg-001"');
  let ready0 = readyLines().length;
  trayClick("Show Underpass");
  await until("the tray's window to show the live state", () => shows(ready0), 30000);
  await until("the tray to show the window", () => windowState().mapped);
  const size = windowState();
  assert.deepEqual([size.width, size.height], [900, 640], "the remembered size");

  // 8. Closing the window ends the window process and its WebKit processes; the tray stays,
  // still follows the helper, and the tray and a desktop launch open a new window that shows
  // the live state (the app logs it).
  await closeToTray();
  assert.ok(entry(trayMenu().menu, "Connected to us-nyc-wg-001"), "the tray still follows the helper");
  ready0 = readyLines().length;
  const reopen0 = Date.now();
  trayClick("Show Underpass");
  await until("the reopened window to show the live state", () => shows(ready0), 20000);
  console.log(`# reopened from the tray to the live state in ${Date.now() - reopen0} ms (debug build); the app says: ${readyLines().at(-1)}`);
  assert.ok(windowState().mapped, "the window is back");
  assert.ok(webkitProcesses().length > 0, "the new webview runs in WebKit again");
  await closeToTray();
  // The desktop launcher: a window process of its own, beside the tray that runs.
  spawn(APP, [], { env: SESSION, stdio: "ignore" }).unref();
  await until("the launcher's window to show the live state", () => shows(ready0 + 1) && windowState().mapped, 20000);
  assert.deepEqual(appProcesses(), ["underpass-gui", "underpass-tray"], "one window, one tray");
  trayClick("Quit");
  await until("Quit to end both", () => appProcesses().length === 0, 15000);
}
