// Pure presentation helpers: turning what the helper reported into words. No state is made
// up here: every function maps a reported value to text.
import type { HelperView, ReconnectReason, Status } from "./generated/contract";

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function rate(bytesPerSec: number): string {
  const bits = bytesPerSec * 8;
  if (bits < 1000) return `${Math.round(bits)} bit/s`;
  if (bits < 1e6) return `${(bits / 1e3).toFixed(1)} kbit/s`;
  if (bits < 1e9) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  return `${(bits / 1e9).toFixed(2)} Gbit/s`;
}

export function age(secs: number | null): string {
  if (secs === null) return "no handshake yet";
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${secs % 60} s ago`;
  return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min ago`;
}

/** What the Connect screen shows, derived only from the helper's report. */
export type Display =
  | { kind: "no-helper"; title: string; detail: string; fix: string[] }
  | { kind: "disconnected" | "connecting" | "connected" | "disconnecting"; title: string; detail: string }
  | { kind: "blocked"; title: string; detail: string }
  | { kind: "reconnecting" | "offline"; title: string; detail: string; facts: string[] }
  | { kind: "error"; title: string; detail: string };

/** The helper's reason for healing, in plain words. */
export function reconnectReason(r: ReconnectReason): string {
  switch (r) {
    case "server_not_responding":
      return "The server stopped responding.";
    case "network_changed":
      return "Your network changed.";
    case "resumed_from_sleep":
      return "The computer woke from sleep.";
    case "session_expired":
      return "The session with the server expired.";
    case "setup_failed":
      return "Setting up the tunnel failed.";
    case "no_network":
      return "No network reaches the server.";
  }
}

function healing(s: Status): Display | null {
  const r = s.reconnect;
  if (s.state !== "reconnecting" && s.state !== "offline") return null;
  const held =
    s.firewall === "open"
      ? "The kill switch is off: apps may reach the internet directly meanwhile."
      : "Internet blocked to protect you until the tunnel is back.";
  const facts: string[] = [];
  if (r) {
    if (r.attempt > 0) facts.push(`Attempt ${r.attempt}: ${r.action}`);
    if (r.last_error) facts.push(`Last error: ${r.last_error}`);
  }
  if (s.state === "offline")
    return { kind: "offline", title: "No network; waiting", detail: `${held} Underpass reconnects by itself as soon as a network reaches the server.`, facts };
  const why = r ? reconnectReason(r.reason) : "The tunnel stopped working.";
  return { kind: "reconnecting", title: `Reconnecting${s.profile ? ` to ${s.profile}` : ""}…`, detail: `${why} ${held}`, facts };
}

export function display(view: HelperView): Display {
  const s = view.status;
  if (view.link !== "connected" || s === null) return noHelper(view);
  const where = s.profile ? ` to ${s.profile}` : "";
  const heal = healing(s);
  if (heal) return heal;
  if (s.firewall === "blocking" && s.state !== "connected") {
    return {
      kind: "blocked",
      title: "Blocked by the kill switch",
      detail:
        s.state === "error" && s.error
          ? `The tunnel is down (${s.error}), so the kill switch holds all traffic back. Connect again, or turn the kill switch off in Settings.`
          : `The kill switch (${s.kill_switch}) holds all traffic back until the tunnel is up.`,
    };
  }
  switch (s.state) {
    case "connected":
      return { kind: "connected", title: `Connected${where}`, detail: "Your traffic goes through the tunnel." };
    case "connecting":
      return { kind: "connecting", title: `Connecting${where}…`, detail: "Waiting for the server's handshake." };
    case "disconnecting":
      return { kind: "disconnecting", title: "Disconnecting…", detail: "Removing the tunnel and its routes." };
    case "reconnecting":
    case "offline":
      return { kind: "connecting", title: `Reconnecting${where}…`, detail: "" };
    case "error":
      return {
        kind: "error",
        title: "Could not keep the tunnel up",
        detail: `${s.error ?? "The helper reported an error without a reason."} Try again, or pick another server.`,
      };
    case "disconnected":
      return {
        kind: "disconnected",
        title: "Disconnected",
        detail:
          s.firewall === "open"
            ? "Your traffic goes out directly, not through a VPN."
            : "Not connected; the kill switch allows only what its mode permits.",
      };
  }
}

function noHelper(view: HelperView): Display {
  // The client library's message is written for the CLI (it names commands); the screen says
  // what is wrong in words and lists the fixes once, below.
  const msg = view.message ?? "";
  const t = (title: string, detail: string, fix: string[]): Display => ({ kind: "no-helper", title, detail, fix });
  switch (view.link) {
    case "connecting":
      return t("Looking for the Underpass helper…", `Socket ${view.socket}`, []);
    case "permission_denied":
      return t(
        "Not allowed to talk to the helper",
        'The helper admits members of the group "underpass" and the person at this computer\'s active session. This session is neither: a remote (SSH) session, or a policy that asks for the group.',
        ["sudo usermod -aG underpass $USER", "then log out and back in"],
      );
    case "not_installed":
      return t("The Underpass helper is not installed", "The app needs the helper service, which comes in the underpass-daemon package.", [
        "sudo apt-get install ./underpass-daemon_VERSION_amd64.deb",
        "or: sudo dnf install ./underpass-daemon-VERSION-1.x86_64.rpm",
      ]);
    case "incompatible":
      return t("The helper is a different version", msg, ["Install the same Underpass release for the app and the helper."]);
    case "lost":
      return t("Lost the connection to the helper", `${msg}. Reconnecting…`, []);
    default:
      return t("The Underpass helper is not running", "The helper is installed, but its service is stopped.", [
        "sudo systemctl start underpassd",
        "or, without systemd: sudo underpassd",
      ]);
  }
}

/** Explains the point-to-point tunnel addresses in plain words. */
export function explainAddresses(s: Status): string[] {
  const out: string[] = [];
  const mine = s.addresses.map((a) => a.split("/")[0]);
  if (mine.length) out.push(`Your address inside the tunnel: ${mine.join(" and ")}.`);
  const endpoint = s.endpoint ?? s.peers[0]?.endpoint ?? null;
  if (endpoint)
    out.push(
      `The other end is the server at ${endpoint}: everything sent into ${s.interface ?? "the tunnel"} is encrypted and sent there as UDP, and it forwards it on.`,
    );
  if (s.dns?.servers.length) out.push(`Names are resolved by ${s.dns.servers.join(", ")} inside the tunnel (${s.dns.method}).`);
  return out;
}
