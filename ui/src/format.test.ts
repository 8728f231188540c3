import { describe, expect, it } from "vitest";
import { age, bytes, display, explainAddresses, rate } from "./format";
import { helperViewConnected, helperViewNotRunning, statusConnected, statusDisconnected } from "./fixtures";
import { checkPrefixes } from "./validate";
import type { HelperView } from "./generated/contract";

const view = (status: HelperView["status"]): HelperView => ({ ...helperViewConnected, status });

describe("display: only what the helper reported", () => {
  it("shows no helper, with the fix, when the link is down", () => {
    const d = display(helperViewNotRunning);
    expect(d.kind).toBe("no-helper");
    expect(d.title).toBe("The Underpass helper is not running");
    expect(d.kind === "no-helper" && d.fix.join(" ")).toContain("systemctl start underpassd");
  });
  it("says blocked by the kill switch when the firewall blocks and the tunnel is not up", () => {
    const d = display(view({ ...statusDisconnected, state: "error", error: "no handshake", firewall: "blocking" }));
    expect(d.kind).toBe("blocked");
    expect(d.detail).toContain("no handshake");
  });
  it("names the profile when connected", () => {
    expect(display(view({ ...statusConnected, firewall: "tunnel_only" })).title).toBe("Connected to se-sto-wg-001");
  });
  it("a permission problem says how to join the group", () => {
    const d = display({ ...helperViewNotRunning, link: "permission_denied" });
    expect(d.title).toBe("Not allowed to talk to the helper");
    expect(d.kind === "no-helper" && d.fix[0]).toContain("usermod -aG underpass");
  });
  it("tells not installed from not running", () => {
    const missing = display({ ...helperViewNotRunning, link: "not_installed" });
    expect(missing.title).toBe("The Underpass helper is not installed");
    expect(missing.kind === "no-helper" && missing.fix[0]).toContain("apt-get install ./underpass-daemon_");
    const stopped = display(helperViewNotRunning);
    expect(stopped.kind === "no-helper" && stopped.fix.join(" ")).not.toContain("install");
  });
});

describe("formatting", () => {
  it("formats counters, rates and ages", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.50 KiB");
    expect(rate(125000)).toBe("1.0 Mbit/s");
    expect(age(null)).toBe("no handshake yet");
    expect(age(75)).toBe("1 min 15 s ago");
  });
  it("explains the tunnel addresses in plain words", () => {
    const t = explainAddresses(statusConnected).join(" ");
    expect(t).toContain("Your address inside the tunnel: 10.64.1.2 and fd00:64:1::2");
    expect(t).toContain("192.0.2.10:51820");
  });
});

describe("prefix lists as typed", () => {
  it("accepts v4 and v6 prefixes and names every bad entry", () => {
    expect(checkPrefixes("10.0.0.0/8, fd00::/8\n192.0.2.0/24").ok).toBe(true);
    const c = checkPrefixes("10.0.0.0/8, banana, 10.1.2.3/16, 300.0.0.0/8, ::/129");
    expect(c.ok).toBe(false);
    expect(c.errors).toHaveLength(4);
    expect(c.errors[0]).toContain('entry 2: "banana"');
    expect(c.errors[1]).toContain("host bits");
    expect(checkPrefixes("").ok).toBe(true);
  });
});
