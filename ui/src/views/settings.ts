// Settings: the kill switch and LAN access (owned by the helper: shown as it reports them),
// split-tunnel lists and custom DNS validated as typed, notifications, launch at login and
// connect on launch. What a signed profile's policy forbids is shown locked, with the reason.
import { api, errorText } from "../api";
import { h, replaceKeyed } from "../dom";
import type { Store } from "../store";
import type { KillSwitchMode, Policy, ProfileSummary, Status } from "../generated/contract";
import { checkAddresses, checkPrefixes } from "../validate";

const MODES: { mode: KillSwitchMode; title: string; text: string }[] = [
  { mode: "off", title: "Off", text: "Traffic flows normally whenever the tunnel is down." },
  { mode: "auto", title: "Automatic", text: "While you want to be connected and the tunnel is not up (connecting, errors, a helper crash), everything is blocked." },
  { mode: "lockdown", title: "Lockdown", text: "Nothing leaves except through the tunnel, even when disconnected and at boot." },
];
const RANK: Record<KillSwitchMode, number> = { off: 0, auto: 1, lockdown: 2 };

/** The policy that governs the settings now: the one the helper enforces for the session it
 * holds, else the chosen profile's (from its signed bundle). */
export function governingPolicy(
  status: Status | null,
  profiles: ProfileSummary[],
  chosen: string | null,
): { organization: string; profile: string; policy: Policy; managed: string | null } | null {
  if (status?.policy) {
    const managed = status.managed?.organization === status.policy.organization ? status.managed.source : null;
    return { organization: status.policy.organization, profile: status.profile ?? "", policy: status.policy.policy, managed };
  }
  const b = profiles.find((p) => p.name === chosen)?.bundle;
  return b && chosen ? { organization: b.organization, profile: chosen, policy: b.policy, managed: null } : null;
}

export class SettingsView {
  readonly el: HTMLElement;
  private ks = h("fieldset", { class: "card", id: "kill-switch" });
  private lan = h("div", { class: "card" });
  private include = h("textarea", { id: "split-include", rows: 3, placeholder: "e.g. 10.0.0.0/8, fd00::/8", "aria-describedby": "include-errors split-lock" });
  private exclude = h("textarea", { id: "split-exclude", rows: 3, placeholder: "e.g. 192.168.0.0/16", "aria-describedby": "exclude-errors split-lock" });
  private includeErr = h("p", { id: "include-errors", class: "error", "aria-live": "polite" });
  private excludeErr = h("p", { id: "exclude-errors", class: "error", "aria-live": "polite" });
  private splitLock = h("p", { id: "split-lock", class: "lock", hidden: true });
  private dns = h("textarea", { id: "custom-dns", rows: 2, placeholder: "empty: the profile's DNS", "aria-describedby": "dns-errors dns-lock" });
  private dnsErr = h("p", { id: "dns-errors", class: "error", "aria-live": "polite" });
  private dnsLock = h("p", { id: "dns-lock", class: "lock", hidden: true });
  private notifications = h("input", { id: "notifications", type: "checkbox" });
  private launchAtLogin = h("input", { id: "launch-at-login", type: "checkbox" });
  private connectOnLaunch = h("input", { id: "connect-on-launch", type: "checkbox" });
  private save = h("button", { id: "save-settings", class: "primary", type: "submit" }, "Save");
  private saveMsg = h("p", { "aria-live": "polite", id: "settings-message" });
  private helperErr = h("p", { class: "error", role: "alert", id: "helper-settings-error" });
  private loaded = false;

  constructor(private store: Store) {
    for (const t of [this.include, this.exclude, this.dns]) {
      t.addEventListener("input", () => this.validate());
      t.addEventListener("change", () => this.validate()); // a cleared field may only say this
    }
    const form = h(
      "form",
      {
        class: "card",
        onsubmit: (e: Event) => {
          e.preventDefault();
          void this.saveSettings();
        },
      },
      h("h2", {}, "Split tunnel"),
      h("p", { class: "muted" }, "Leave both empty for a full tunnel (everything goes through the VPN). Applies at the next connect."),
      this.splitLock,
      h("label", { for: "split-include" }, "Only these prefixes go through the tunnel"),
      this.include,
      this.includeErr,
      h("label", { for: "split-exclude" }, "These prefixes never go through the tunnel"),
      this.exclude,
      this.excludeErr,
      h("h2", {}, "DNS"),
      h("p", { class: "muted" }, "Resolvers to use instead of the profile's. They are reached through the tunnel, and the kill switch lets DNS go nowhere else. Applies at the next connect."),
      this.dnsLock,
      h("label", { for: "custom-dns" }, "Custom resolvers"),
      this.dns,
      this.dnsErr,
      h("h2", {}, "Starting"),
      h("label", { class: "check" }, this.launchAtLogin, " Start Underpass in the tray when I log in"),
      h("label", { class: "check" }, this.connectOnLaunch, " Connect when Underpass starts (to the server chosen last)"),
      h("h2", {}, "Notifications"),
      h("label", { class: "check" }, this.notifications, " Tell me when I connect, when the tunnel drops unexpectedly, when the kill switch blocks, and when a self-test fails"),
      h("div", { class: "actions" }, this.save),
      this.saveMsg,
    );
    this.el = h("div", { class: "screen settings" }, h("h1", {}, "Settings"), this.helperErr, this.ks, this.lan, form);
  }

  private validate(): boolean {
    const checks: [HTMLTextAreaElement, HTMLElement, ReturnType<typeof checkPrefixes>][] = [
      [this.include, this.includeErr, checkPrefixes(this.include.value)],
      [this.exclude, this.excludeErr, checkPrefixes(this.exclude.value)],
      [this.dns, this.dnsErr, checkAddresses(this.dns.value)],
    ];
    for (const [input, err, c] of checks) {
      err.textContent = c.errors.join("; ");
      input.setAttribute("aria-invalid", String(!c.ok));
    }
    const ok = checks.every(([, , c]) => c.ok);
    this.save.disabled = !ok;
    return ok;
  }

  private async saveSettings(): Promise<void> {
    if (!this.validate()) return;
    try {
      this.store.state.settings = await api.saveSettings({
        include: this.include.value,
        exclude: this.exclude.value,
        custom_dns: this.dns.value,
        notifications: this.notifications.checked,
        connect_on_launch: this.connectOnLaunch.checked,
        launch_at_login: this.launchAtLogin.checked,
      });
      this.saveMsg.className = "ok";
      this.saveMsg.textContent = "Saved.";
    } catch (e) {
      this.saveMsg.className = "error";
      this.saveMsg.textContent = errorText(e);
    }
  }

  private async helper(f: () => Promise<void>): Promise<void> {
    this.helperErr.textContent = "";
    try {
      await f();
    } catch (e) {
      this.helperErr.textContent = errorText(e);
    }
  }

  update(): void {
    const { view, profiles, choice } = this.store.state;
    const s = view.status;
    if (!this.loaded) {
      const st = this.store.state.settings;
      this.include.value = st.split_include.join(", ");
      this.exclude.value = st.split_exclude.join(", ");
      this.dns.value = st.custom_dns.join(", ");
      this.notifications.checked = st.notifications;
      this.launchAtLogin.checked = st.launch_at_login;
      this.connectOnLaunch.checked = st.connect_on_launch;
      this.loaded = true;
      this.validate();
    }
    const gov = governingPolicy(s, profiles, choice?.kind === "server" ? choice.profile : null);
    const because = gov?.managed
      ? `Locked: this machine is managed by ${gov.organization} (${gov.managed})`
      : gov ? `Locked by the policy of ${gov.organization} for profile "${gov.profile}"` : "";
    const pol = gov?.policy;
    const minKs: KillSwitchMode = pol ? (pol.dns_locked && pol.min_kill_switch === "off" ? "auto" : pol.min_kill_switch) : "off";
    lock(this.splitLock, [this.include, this.exclude], pol && !pol.split_tunnel_allowed ? `${because}: split tunnel is not allowed.` : null);
    lock(this.dnsLock, [this.dns], pol?.dns_locked ? `${because}: DNS must go to the tunnel's resolvers.` : null);

    const off = s === null;
    // Rebuilt only when something shown changes, so focus stays on the radio button.
    replaceKeyed(this.ks, JSON.stringify([s?.kill_switch, off, minKs, because]), () => [
      h("legend", {}, "Kill switch"),
      off ? h("p", { class: "muted" }, "The helper owns the kill switch; it is not reachable right now.") : null,
      RANK[minKs] > 0 ? h("p", { class: "lock", id: "ks-lock" }, `${because}: the kill switch stays at least ${MODES[RANK[minKs]]!.title.toLowerCase()}.`) : null,
      MODES.map((m) =>
        h(
          "label",
          { class: "mode" },
          h("input", {
            type: "radio",
            name: "kill-switch",
            value: m.mode,
            id: `ks-${m.mode}`,
            checked: s?.kill_switch === m.mode,
            disabled: off || RANK[m.mode] < RANK[minKs],
            onchange: () => void this.helper(() => api.setKillSwitch(m.mode)),
          }),
          h("span", {}, h("strong", {}, m.title), h("span", { class: "muted" }, ` — ${m.text}`)),
        ),
      ),
    ]);
    const lanLocked = pol !== undefined && !pol.lan_access_allowed;
    replaceKeyed(this.lan, JSON.stringify([s?.lan_access, off, lanLocked, because]), () => [
      h("h2", {}, "Local network"),
      lanLocked ? h("p", { class: "lock", id: "lan-lock" }, `${because}: local network access is not allowed.`) : null,
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          id: "lan-access",
          checked: s?.lan_access === true,
          disabled: off || (lanLocked && s?.lan_access !== true),
          onchange: (e: Event) => void this.helper(() => api.setLanAccess((e.target as HTMLInputElement).checked)),
        }),
        " Allow printers, file shares and other devices on my local network while the kill switch blocks",
      ),
    ]);
  }

  /** Settings arrived from disk after the screen was built. */
  reset(): void {
    this.loaded = false;
  }
}

/** Disables `inputs` and shows `reason` in `note`, or enables them and hides it. */
function lock(note: HTMLElement, inputs: HTMLTextAreaElement[], reason: string | null): void {
  note.hidden = reason === null;
  note.textContent = reason ?? "";
  for (const i of inputs) i.disabled = reason !== null;
}
