import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clearMocks, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { startApp } from "./app";
import { DEFAULT_SETTINGS } from "./store";
import {
  catalog,
  connecting,
  helperViewConnected,
  helperViewNotRunning,
  openImportLink,
  openRefused,
  openSelect,
  profileSigned,
  statusConnected,
  statusDisconnected,
} from "./fixtures";
import type { HelperView, OpenRequest, ProfileSummary } from "./generated/contract";

const tick = () => new Promise((r) => setTimeout(r, 0));
let calls: { cmd: string; args: unknown }[] = [];
let selfTestAnswer: () => unknown;
let openQueue: OpenRequest[];
let profiles: ProfileSummary[];

beforeEach(() => {
  calls = [];
  openQueue = [];
  profiles = [];
  selfTestAnswer = () => {
    throw "the helper refused: self-tests are not implemented yet";
  };
  mockWindows("main");
  mockIPC(
    (cmd, args) => {
      calls.push({ cmd, args });
      switch (cmd) {
        case "helper_view":
          return helperViewNotRunning;
        case "list_profiles":
          return profiles;
        case "take_open_requests":
          return openQueue.splice(0);
        case "connect":
          return connecting;
        case "server_catalog":
          return catalog;
        case "get_settings":
          return { ...DEFAULT_SETTINGS };
        case "self_test":
          return selfTestAnswer();
        default:
          return null;
      }
    },
    { shouldMockEvents: true },
  );
  document.body.innerHTML = '<div id="app"></div>';
});

afterEach(() => clearMocks());

const root = () => document.getElementById("app")!;
const title = () => document.getElementById("state-title")?.textContent;
const click = (sel: string) => (document.querySelector(sel) as HTMLElement).click();

describe("the app", () => {
  it("shows the no-helper screen, then the helper's state when it comes back", async () => {
    await startApp(root());
    expect(title()).toBe("The Underpass helper is not running");
    expect(document.getElementById("no-helper")?.textContent).toContain("sudo systemctl start underpassd");
    // The fix is listed once, not also in the explanation above it.
    expect(document.getElementById("state-detail")?.textContent).toBe(
      "The helper is installed, but its service is stopped.",
    );
    expect(document.getElementById("connect-button")).toBeNull();
    const back: HelperView = { ...helperViewConnected, status: statusDisconnected };
    await emit("helper-view", back);
    await tick();
    expect(title()).toBe("Disconnected");
    expect(document.getElementById("connect-button")).not.toBeNull();
  });

  it("reports the window ready once it shows the helper's state, not on every update", async () => {
    let shownAtReady: string | null | undefined;
    let reported: unknown;
    mockIPC(
      (cmd, args) => {
        calls.push({ cmd, args: undefined });
        if (cmd === "window_ready") {
          shownAtReady = title();
          reported = (args as { shown?: string } | undefined)?.shown;
        }
        if (cmd === "helper_view") return helperViewConnected;
        if (cmd === "server_catalog") return catalog;
        if (cmd === "list_profiles" || cmd === "take_open_requests") return [];
        if (cmd === "get_settings") return { ...DEFAULT_SETTINGS };
        return null;
      },
      { shouldMockEvents: true },
    );
    const frame = () => new Promise((r) => setTimeout(r, 50)); // a frame and the timer after it
    await startApp(root());
    await frame();
    expect(shownAtReady).toMatch(/^Connected to /);
    expect(reported).toBe(shownAtReady); // the state line it reports is the one on screen
    // Not on every update: only when the window starts.
    calls = [];
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await frame();
    expect(title()).toBe("Disconnected");
    expect(calls.filter((c) => c.cmd === "window_ready")).toHaveLength(0);
  });

  it("connects to the server picked in the country picker", async () => {
    await startApp(root());
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await tick();
    // The first server is chosen by default; the one picked afterwards is the one connected to.
    click('.server[data-profile="mystery"]');
    click("#connect-button");
    await tick();
    expect(calls.find((c) => c.cmd === "connect")?.args).toEqual({ target: { kind: "server", profile: "mystery", server: null } });
  });

  it("shows a self-test error plainly instead of a result", async () => {
    await startApp(root());
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await tick();
    click("#nav-diagnostics");
    click("#run-dns");
    await tick();
    await tick();
    const box = document.getElementById("result-dns")!.textContent!;
    expect(box).toContain("The helper could not run this test: the helper refused: self-tests are not implemented yet");
    expect(box).not.toContain("Passed");
  });

  it("updates the live numbers in place, keeping the button, its focus and the facts", async () => {
    await startApp(root());
    await emit("helper-view", helperViewConnected);
    await tick();
    const button = document.getElementById("connect-button")!;
    button.focus();
    const explain = document.querySelector(".explain")!;
    const next = { ...statusConnected, rx_bytes: statusConnected.rx_bytes + 10 * 1024 * 1024, last_handshake_secs: 7 };
    await emit("helper-view", { ...helperViewConnected, status: next });
    await tick();
    expect(document.getElementById("detail-rx")!.textContent).toBe("10.1 MiB");
    expect(document.getElementById("detail-handshake")!.textContent).toBe("7 s ago");
    expect(document.getElementById("connect-button")).toBe(button);
    expect(document.activeElement).toBe(button);
    expect(document.querySelector(".explain")).toBe(explain);
  });

  it("connects to the fastest server by default and says which one won", async () => {
    await startApp(root());
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await tick();
    expect(document.querySelector('.server.selected[data-best=""]')).not.toBeNull();
    expect(document.getElementById("choice")!.textContent).toContain("the fastest one");
    click('.server[data-best="SE"]');
    expect(document.getElementById("choice")!.textContent).toBe("Server: the fastest in Sweden");
    click("#connect-button");
    await tick();
    await tick();
    expect(calls.find((c) => c.cmd === "connect")?.args).toEqual({ target: { kind: "fastest", country: "SE" } });
    expect(document.getElementById("connect-note")!.textContent).toBe(
      "Fastest of 3 servers: se-sto-wg-001 (sto-1), handshake in 12.5 ms.",
    );
  });

  it("opens what it was asked to: a link selects a server, a bad one says why", async () => {
    openQueue = [openSelect, openRefused];
    profiles = [profileSigned];
    // The catalog must hold the selected server for the choice to stick.
    const acme = { ...catalog.countries[0]!.servers[0]!, profile: "acme" };
    const withAcme = { countries: [{ ...catalog.countries[0]!, servers: [acme] }] };
    mockIPC(
      (cmd) => {
        switch (cmd) {
          case "helper_view":
            return { ...helperViewConnected, status: statusDisconnected };
          case "server_catalog":
            return withAcme;
          case "take_open_requests":
            return openQueue.splice(0);
          case "list_profiles":
            return profiles;
          default:
            return null;
        }
      },
      { shouldMockEvents: true },
    );
    await startApp(root());
    await tick();
    expect(document.querySelector('.server.selected[data-profile="acme"]')).not.toBeNull();
    expect(document.querySelector(".error[role=alert]")!.textContent).toContain('Could not open underpass://nope: unknown action "nope"');
  });

  it("imports a link's bundle only after the user agrees, and says when a link names no server", async () => {
    openQueue = [{ kind: "select", target: { kind: "server", profile: "gone", server: null } }, openImportLink];
    await startApp(root());
    await tick();
    expect(document.querySelector(".error[role=alert]")!.textContent).toBe('Could not select "gone": it is not among your profiles.');
    expect(document.getElementById("link-import")!.textContent).toContain('import the profile "acme" from ACME IT (serial 3)');
    expect(calls.some((c) => c.cmd === "import_paths")).toBe(false);
    click("#link-import-yes");
    await tick();
    expect(calls.find((c) => c.cmd === "import_paths")?.args).toEqual({ paths: [openImportLink.kind === "import_link" ? openImportLink.path : ""], trust: false });
  });

  it("shows what a signed profile's policy locks, with the reason", async () => {
    profiles = [profileSigned];
    await startApp(root());
    // The helper reports the policy it holds the session to.
    const policy = { organization: "ACME IT", serial: 3, policy: profileSigned.bundle!.policy };
    await emit("helper-view", { ...helperViewConnected, status: { ...statusConnected, profile: "se-sto-wg-001", policy } });
    await tick();
    click("#nav-settings");
    expect((document.getElementById("split-include") as HTMLTextAreaElement).disabled).toBe(true);
    expect(document.getElementById("split-lock")!.textContent).toBe(
      'Locked by the policy of ACME IT for profile "se-sto-wg-001": split tunnel is not allowed.',
    );
    expect((document.getElementById("custom-dns") as HTMLTextAreaElement).disabled).toBe(true);
    expect((document.getElementById("ks-off") as HTMLInputElement).disabled).toBe(true);
    expect((document.getElementById("ks-lockdown") as HTMLInputElement).disabled).toBe(false);
    expect(document.getElementById("lan-lock")).toBeNull();
  });

  it("says which organization manages the machine when its policy locks a setting", async () => {
    await startApp(root());
    const policy = { organization: "ACME IT", serial: 0, policy: { min_kill_switch: "auto", split_tunnel_allowed: false, lan_access_allowed: false, dns_locked: false } };
    const managed = { organization: "ACME IT", source: "/etc/underpass/policy.json", locked: [{ setting: "split_tunnel", reason: "not allowed" }] };
    await emit("helper-view", { ...helperViewConnected, status: { ...statusDisconnected, policy, managed } });
    await tick();
    click("#nav-settings");
    expect(document.getElementById("split-lock")!.textContent).toBe(
      "Locked: this machine is managed by ACME IT (/etc/underpass/policy.json): split tunnel is not allowed.",
    );
    expect((document.getElementById("ks-off") as HTMLInputElement).disabled).toBe(true);
  });

  it("gives every control on every screen a name a screen reader can say", async () => {
    profiles = [profileSigned];
    await startApp(root());
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await tick();
    const nameOf = (el: Element): string => {
      const aria = el.getAttribute("aria-label") ?? "";
      const id = el.getAttribute("id");
      const label = id ? document.querySelector(`label[for="${id}"]`)?.textContent : null;
      const wrapping = el.closest("label")?.textContent;
      const own = el.tagName === "BUTTON" ? el.textContent : "";
      return [aria, label, wrapping, own].find((t) => t && t.trim() !== "")?.trim() ?? "";
    };
    for (const screen of ["connect", "profiles", "settings", "diagnostics"]) {
      click(`#nav-${screen}`);
      const controls = [...document.querySelectorAll("main input, main textarea, main button, main select")];
      expect(controls.length).toBeGreaterThan(0);
      const unnamed = controls.filter((c) => nameOf(c) === "").map((c) => c.outerHTML.slice(0, 80));
      expect(unnamed, `unnamed controls on ${screen}`).toEqual([]);
    }
  });
});
