import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { doctorRun, doctorRunExplicitMtu, doctorRunNoMtu, layerIds, statusConnected, statusDisconnected } from "./fixtures";
import { LAYERS, firstFailure, mtuOffer, precondition, renderReport, summary, TroubleshootCard } from "./views/troubleshoot";
import type { DoctorReport, DoctorRun, LayerVerdict, Status } from "./generated/contract";

const report = doctorRun.report;
const healthy: DoctorReport = { layers: report.layers.map((l) => ({ ...l, verdict: "ok", depends_on: null, fix: null })), mtu: null };
const withVerdicts = (...v: LayerVerdict[]): DoctorReport => ({
  layers: report.layers.map((l, i) => ({ ...l, verdict: v[i] ?? "ok", depends_on: v[i] === "skipped" ? "routes" : null })),
  mtu: null,
});
const tick = () => new Promise((r) => setTimeout(r, 0));

describe("the troubleshooter's verdict logic", () => {
  it("names every layer the helper knows in plain words", () => {
    expect(Object.keys(LAYERS).sort()).toEqual(Object.keys(layerIds).sort());
  });
  it("says all steps passed when every layer is ok", () => {
    expect(summary(healthy)).toEqual({ verdict: "ok", text: "Everything checks out: all 7 steps passed." });
    expect(firstFailure(healthy)).toBeUndefined();
  });
  it("names the first failing layer by step and plain name", () => {
    const s = summary(report);
    expect(s.verdict).toBe("fail");
    expect(s.text).toBe("Found the problem at step 4 of 7: Routes.");
  });
  it("picks the first of several failures, not a later one or a warning", () => {
    const r = withVerdicts("ok", "warn", "fail", "fail", "skipped");
    expect(firstFailure(r)?.id).toBe("interface");
  });
  it("reports warnings when nothing fails", () => {
    expect(summary(withVerdicts("ok", "warn")).text).toBe("No problem found, but one step has a warning: Path to the server.");
    expect(summary(withVerdicts("warn", "ok", "ok", "ok", "ok", "ok", "warn")).text).toContain("2 steps have a warning: Server handshake, Packet size (MTU)");
  });
  it("offers the measured MTU when the probe found a smaller one", () => {
    expect(mtuOffer(report)).toEqual({ kind: "apply", mtu: 1312, current: 1420 });
  });
  it("says the profile's own MTU wins instead of offering one", () => {
    expect(mtuOffer(doctorRunExplicitMtu.report)).toEqual({ kind: "explicit", explicit: 1380, measured: null });
    const measured = { ...doctorRunExplicitMtu.report, mtu: { current: 1420, explicit: 1420, largest_packet: 1312, suggested: null } };
    expect(mtuOffer(measured)).toEqual({ kind: "explicit", explicit: 1420, measured: 1312 });
  });
  it("offers nothing when there is no finding or nothing to change", () => {
    expect(mtuOffer(doctorRunNoMtu.report)).toBeNull();
    expect(mtuOffer({ ...report, mtu: { current: 1420, explicit: null, largest_packet: 1420, suggested: null } })).toBeNull();
  });
  it("tells no helper (blocking) from not connected (a hint)", () => {
    expect(precondition(null, "the helper is not running")).toEqual({ blocking: true, text: expect.stringContaining("not reachable") });
    expect(precondition(statusDisconnected, null)).toEqual({ blocking: false, text: expect.stringContaining("Connect first") });
    expect(precondition(statusConnected, null)).toBeNull();
  });
});

describe("the layer stack", () => {
  const stack = (r: DoctorReport) => {
    const box = document.createElement("div");
    box.append(...renderReport(r));
    return box;
  };
  it("draws seven layers in order, each lit by its verdict", () => {
    const box = stack(report);
    const layers = [...box.querySelectorAll("li.layer")];
    expect(layers.map((l) => l.getAttribute("data-layer"))).toEqual(report.layers.map((l) => l.id));
    expect(layers.map((l) => l.getAttribute("data-verdict"))).toEqual(["ok", "ok", "warn", "fail", "skipped", "skipped", "skipped"]);
    expect(layers.map((l) => l.querySelector(".layer-verdict")!.textContent)).toEqual(["OK", "OK", "Warning", "Problem", "Not checked", "Not checked", "Not checked"]);
  });
  it("highlights only the first failure, with its explanation and fix shown", () => {
    const box = stack(report);
    const first = box.querySelectorAll(".first-fail");
    expect(first).toHaveLength(1);
    expect(first[0]!.getAttribute("data-layer")).toBe("routes");
    expect(first[0]!.querySelector(".layer-explanation")!.textContent).toBe("routes: what it means");
    expect(first[0]!.querySelector(".layer-fix")!.textContent).toBe("What to do: routes: what to do");
  });
  it("says which step a skipped layer waits for", () => {
    const fw = stack(report).querySelector('[data-layer="firewall"]')!;
    expect(fw.textContent).toContain("Not checked, because step 4 (Routes) has to work first.");
    expect(fw.querySelector(".layer-explanation")).toBeNull();
  });
  it("keeps the evidence behind a click, and an ok layer's explanation with it", () => {
    const ok = stack(report).querySelector('[data-layer="control-plane"]')!;
    const details = ok.querySelector(".layer-evidence") as HTMLElement;
    const toggle = ok.querySelector(".layer-toggle") as HTMLElement;
    expect(details.hidden).toBe(true);
    expect(details.textContent).toContain("control-plane: what was seen");
    expect(details.textContent).toContain("control-plane: what it means");
    expect(ok.querySelector(".layer-explanation")).toBeNull();
    toggle.click();
    expect(details.hidden).toBe(false);
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    toggle.click();
    expect(details.hidden).toBe(true);
  });
  it("shows no highlight on a healthy tunnel", () => {
    const box = stack(healthy);
    expect(box.querySelectorAll(".first-fail")).toHaveLength(0);
    expect(box.querySelector("#doctor-summary")!.textContent).toContain("all 7 steps passed");
  });
});

describe("the Troubleshoot card", () => {
  let answer: (cmd: string, args: unknown) => unknown;
  let calls: { cmd: string; args: unknown }[];
  let status: Status | null;
  let card: TroubleshootCard;
  const $ = (sel: string) => card.el.querySelector(sel) as HTMLElement | null;

  beforeEach(() => {
    calls = [];
    status = statusConnected;
    answer = () => doctorRun;
    mockIPC((cmd, args) => {
      calls.push({ cmd, args });
      return answer(cmd, args);
    });
    card = new TroubleshootCard(() => ({ status, message: status ? null : "the helper is not running" }));
    document.body.replaceChildren(card.el);
    card.update();
  });
  afterEach(() => clearMocks());

  it("shows the seven layers waiting while the helper checks, then its report", async () => {
    let release!: (r: DoctorRun) => void;
    answer = () => new Promise<DoctorRun>((r) => (release = r));
    $("#run-doctor")!.click();
    expect(($("#run-doctor") as HTMLButtonElement).disabled).toBe(true);
    expect($("#doctor-progress")!.textContent).toContain("This takes a few seconds");
    expect(card.el.querySelectorAll('li[data-verdict="pending"]')).toHaveLength(7);
    release(doctorRun);
    await tick();
    await tick();
    expect(calls.map((c) => c.cmd)).toEqual(["run_doctor"]);
    expect($(".first-fail")!.getAttribute("data-layer")).toBe("routes");
    expect(($("#run-doctor") as HTMLButtonElement).disabled).toBe(false);
  });

  it("says plainly when the helper cannot run it", async () => {
    answer = () => {
      throw "the helper is not running (no socket at /run/underpass/underpassd.sock)";
    };
    $("#run-doctor")!.click();
    await tick();
    await tick();
    expect($(".doctor-error")!.textContent).toBe("The troubleshooter could not run: the helper is not running (no socket at /run/underpass/underpassd.sock)");
  });

  it("cannot be run without a helper, and says why", () => {
    status = null;
    card.update();
    expect(($("#run-doctor") as HTMLButtonElement).disabled).toBe(true);
    expect($("#doctor-note")!.textContent).toContain("helper is not reachable");
  });

  it("applies the measured MTU and shows the new report", async () => {
    $("#run-doctor")!.click();
    await tick();
    await tick();
    answer = () => ({ ...doctorRunNoMtu, report: healthy });
    $("#apply-mtu")!.click();
    await tick();
    await tick();
    expect(calls[1]).toEqual({ cmd: "apply_mtu", args: { mtu: 1312 } });
    expect($("#doctor-summary")!.textContent).toContain("all 7 steps passed");
    expect($("#apply-mtu")).toBeNull();
  });

  it("says the profile's MTU wins and offers no button", async () => {
    answer = () => doctorRunExplicitMtu;
    $("#run-doctor")!.click();
    await tick();
    await tick();
    expect($("#apply-mtu")).toBeNull();
    expect($("#mtu-explicit")!.textContent).toContain("MTU = 1380");
  });

  it("copies the CLI's text of the report for support", async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    $("#run-doctor")!.click();
    await tick();
    await tick();
    $("#copy-doctor")!.click();
    await tick();
    expect(writeText).toHaveBeenCalledWith(doctorRun.text);
    expect($("#doctor-copy-message")!.textContent).toContain("Copied");
    expect($("#doctor-text")!.textContent).toBe(doctorRun.text);
  });
});
