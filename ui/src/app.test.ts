import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clearMocks, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { startApp } from "./app";
import {
  catalog,
  helperViewConnected,
  helperViewNotRunning,
  statusConnected,
  statusDisconnected,
} from "./generated/contract-samples";
import type { HelperView } from "./types";

const tick = () => new Promise((r) => setTimeout(r, 0));
let calls: { cmd: string; args: unknown }[] = [];
let selfTestAnswer: () => unknown;

beforeEach(() => {
  calls = [];
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
          return [];
        case "server_catalog":
          return catalog;
        case "get_settings":
          return { split_include: [], split_exclude: [], notifications: true };
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
    expect(document.getElementById("connect-button")).toBeNull();
    const back: HelperView = { ...helperViewConnected, status: statusDisconnected };
    await emit("helper-view", back);
    await tick();
    expect(title()).toBe("Disconnected");
    expect(document.getElementById("connect-button")).not.toBeNull();
  });

  it("connects to the server picked in the country picker", async () => {
    await startApp(root());
    await emit("helper-view", { ...helperViewConnected, status: statusDisconnected });
    await tick();
    // The first server is chosen by default; the one picked afterwards is the one connected to.
    click('.server[data-profile="mystery"]');
    click("#connect-button");
    await tick();
    expect(calls.find((c) => c.cmd === "connect")?.args).toMatchObject({ profile: "mystery", server: null });
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
});
