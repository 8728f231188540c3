// Settings: the kill switch and LAN access (owned by the helper: shown as it reports them),
// split-tunnel lists validated as typed, notifications.
import { api, errorText } from "../api";
import { h, replace } from "../dom";
import type { Store } from "../store";
import type { KillSwitchMode } from "../types";
import { checkPrefixes } from "../validate";

const MODES: { mode: KillSwitchMode; title: string; text: string }[] = [
  { mode: "off", title: "Off", text: "Traffic flows normally whenever the tunnel is down." },
  { mode: "auto", title: "Automatic", text: "While you want to be connected and the tunnel is not up (connecting, errors, a helper crash), everything is blocked." },
  { mode: "lockdown", title: "Lockdown", text: "Nothing leaves except through the tunnel, even when disconnected and at boot." },
];

export class SettingsView {
  readonly el: HTMLElement;
  private ks = h("fieldset", { class: "card", id: "kill-switch" });
  private lan = h("div", { class: "card" });
  private include = h("textarea", { id: "split-include", rows: 3, placeholder: "e.g. 10.0.0.0/8, fd00::/8", "aria-describedby": "include-errors" });
  private exclude = h("textarea", { id: "split-exclude", rows: 3, placeholder: "e.g. 192.168.0.0/16", "aria-describedby": "exclude-errors" });
  private includeErr = h("p", { id: "include-errors", class: "error", "aria-live": "polite" });
  private excludeErr = h("p", { id: "exclude-errors", class: "error", "aria-live": "polite" });
  private notifications = h("input", { id: "notifications", type: "checkbox" });
  private save = h("button", { id: "save-settings", class: "primary", type: "submit" }, "Save");
  private saveMsg = h("p", { "aria-live": "polite", id: "settings-message" });
  private helperErr = h("p", { class: "error", role: "alert", id: "helper-settings-error" });
  private loaded = false;

  constructor(private store: Store) {
    for (const t of [this.include, this.exclude]) t.addEventListener("input", () => this.validate());
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
      h("label", { for: "split-include" }, "Only these prefixes go through the tunnel"),
      this.include,
      this.includeErr,
      h("label", { for: "split-exclude" }, "These prefixes never go through the tunnel"),
      this.exclude,
      this.excludeErr,
      h("h2", {}, "Notifications"),
      h("label", { class: "check" }, this.notifications, " Tell me when I connect, when the tunnel drops unexpectedly, and when the kill switch blocks"),
      h("div", { class: "actions" }, this.save),
      this.saveMsg,
    );
    this.el = h("div", { class: "screen settings" }, h("h1", {}, "Settings"), this.helperErr, this.ks, this.lan, form);
  }

  private validate(): boolean {
    const i = checkPrefixes(this.include.value);
    const x = checkPrefixes(this.exclude.value);
    this.includeErr.textContent = i.errors.join("; ");
    this.excludeErr.textContent = x.errors.join("; ");
    this.include.setAttribute("aria-invalid", String(!i.ok));
    this.exclude.setAttribute("aria-invalid", String(!x.ok));
    this.save.disabled = !(i.ok && x.ok);
    return i.ok && x.ok;
  }

  private async saveSettings(): Promise<void> {
    if (!this.validate()) return;
    try {
      this.store.state.settings = await api.saveSettings(this.include.value, this.exclude.value, this.notifications.checked);
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
    const s = this.store.state.view.status;
    if (!this.loaded) {
      const st = this.store.state.settings;
      this.include.value = st.split_include.join(", ");
      this.exclude.value = st.split_exclude.join(", ");
      this.notifications.checked = st.notifications;
      this.loaded = st.split_include.length + st.split_exclude.length > 0 || !st.notifications;
      this.validate();
    }
    const off = s === null;
    replace(
      this.ks,
      h("legend", {}, "Kill switch"),
      off ? h("p", { class: "muted" }, "The helper owns the kill switch; it is not reachable right now.") : null,
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
            disabled: off,
            onchange: () => void this.helper(() => api.setKillSwitch(m.mode)),
          }),
          h("span", {}, h("strong", {}, m.title), h("span", { class: "muted" }, ` — ${m.text}`)),
        ),
      ),
    );
    replace(
      this.lan,
      h("h2", {}, "Local network"),
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          id: "lan-access",
          checked: s?.lan_access === true,
          disabled: off,
          onchange: (e: Event) => void this.helper(() => api.setLanAccess((e.target as HTMLInputElement).checked)),
        }),
        " Allow printers, file shares and other devices on my local network while the kill switch blocks",
      ),
    );
  }

  /** Settings arrived from disk after the screen was built. */
  reset(): void {
    this.loaded = false;
  }
}
