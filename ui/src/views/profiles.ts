// Profiles: import (dialog, drag and drop, typed path), signature, policy, expiry, delete.
import { open, save } from "@tauri-apps/plugin-dialog";
import { getCurrentWebview } from "@tauri-apps/api/webview";
import { api, errorText } from "../api";
import { h, replace, replaceKeyed } from "../dom";
import { flagIcon } from "../flags";
import type { Store } from "../store";
import type { ImportOutcome, ProfileSummary } from "../generated/contract";

export function signatureText(p: ProfileSummary): string {
  const b = p.bundle;
  if (!b) return "Unsigned: imported from a plain WireGuard file";
  return `Signed by ${b.organization}, key ID ${b.signer.key_id} (fingerprint ${b.signer.public_key})`;
}

export function policyText(p: ProfileSummary): string | null {
  const b = p.bundle;
  if (!b) return null;
  const pol = b.policy;
  return [
    `kill switch at least ${pol.min_kill_switch}`,
    `split tunnel ${pol.split_tunnel_allowed ? "allowed" : "not allowed"}`,
    `LAN access ${pol.lan_access_allowed ? "allowed" : "not allowed"}`,
    pol.dns_locked ? "DNS locked to the tunnel" : "DNS not locked",
  ].join(" · ");
}

export function expiryText(p: ProfileSummary, nowSecs: number): string | null {
  const b = p.bundle;
  if (!b || b.expires_at === null) return b ? "Does not expire" : null;
  return b.expires_at <= nowSecs ? `Expired on ${b.expires}` : `Expires ${b.expires}`;
}

export class ProfilesView {
  readonly el: HTMLElement;
  private list = h("div", { class: "profile-list" });
  private messages = h("div", { class: "messages", "aria-live": "polite", id: "import-messages" });
  private pathInput = h("input", { id: "import-path", type: "text", placeholder: "/path/to/profile.conf, .underpass, .zip or folder", "aria-label": "Path to import" });
  private drop = h("div", { class: "dropzone", id: "dropzone" }, "Drop .conf, .underpass or .zip files, or a folder, anywhere on this window");
  private confirming: string | null = null;
  /** Public keys shown, by profile. */
  private keys = new Map<string, string>();

  constructor(private store: Store, private reload: () => Promise<void>) {
    this.el = h(
      "div",
      { class: "screen profiles" },
      h(
        "section",
        { class: "card" },
        h("h1", {}, "Profiles"),
        h(
          "div",
          { class: "actions" },
          h("button", { id: "import-file", onclick: () => void this.pick(false) }, "Import files…"),
          h("button", { id: "import-folder", onclick: () => void this.pick(true) }, "Import a folder…"),
        ),
        h(
          "form",
          {
            class: "path-form",
            onsubmit: (e: Event) => {
              e.preventDefault();
              const p = this.pathInput.value.trim();
              if (p) void this.importPaths([p], false);
            },
          },
          this.pathInput,
          h("button", { id: "import-path-button", type: "submit" }, "Import"),
        ),
        this.drop,
        this.messages,
      ),
      h("section", { class: "card" }, h("h2", {}, "Installed"), this.list),
    );
    void this.listenForDrops();
  }

  private async listenForDrops(): Promise<void> {
    try {
      await getCurrentWebview().onDragDropEvent((e) => {
        const p = e.payload;
        if (p.type === "over" || p.type === "enter") this.drop.classList.add("active");
        else this.drop.classList.remove("active");
        if (p.type === "drop" && p.paths.length) void this.importPaths(p.paths, false);
      });
    } catch {
      // no webview (unit tests)
    }
  }

  private async pick(folder: boolean): Promise<void> {
    try {
      const chosen = await open(
        folder
          ? { directory: true, multiple: false, title: "Import every .conf in a folder" }
          : {
              multiple: true,
              title: "Import profiles",
              filters: [{ name: "WireGuard or Underpass profiles", extensions: ["conf", "underpass", "zip"] }],
            },
      );
      const paths = chosen === null ? [] : Array.isArray(chosen) ? chosen : [chosen];
      if (paths.length) await this.importPaths(paths, false);
    } catch (e) {
      this.show([h("p", { class: "error" }, `The file dialog failed: ${errorText(e)}`)]);
    }
  }

  async importPaths(paths: string[], trust: boolean): Promise<void> {
    try {
      const outcomes = await api.importPaths(paths, trust);
      this.show(outcomes.flatMap((o, i) => this.outcome(o, paths[i] ?? o.source)));
    } catch (e) {
      this.show([h("p", { class: "error" }, errorText(e))]);
    }
    await this.reload();
  }

  /** A bundle a link brought: nothing is imported until the user says so. */
  confirmLink(r: { path: string; organization: string; profile: string; serial: number }): void {
    const replaces = this.store.state.profiles.some((p) => p.name === r.profile);
    this.show([
      h(
        "div",
        { class: "trust", role: "alertdialog", "aria-label": "Import a profile from a link", id: "link-import" },
        h("p", {}, `A link asks to import the profile "${r.profile}" from ${r.organization} (serial ${r.serial}).`),
        h(
          "p",
          { class: "muted" },
          replaces
            ? `It would replace your profile "${r.profile}" if its serial is newer. Import it only if you expected this link.`
            : "Import it only if you expected this link. Its signature is checked before anything is saved.",
        ),
        h("button", { class: "primary", id: "link-import-yes", onclick: () => void this.importPaths([r.path], false) }, "Import"),
        h("button", { id: "link-import-no", onclick: () => this.show([h("p", {}, "Nothing imported.")]) }, "Cancel"),
      ),
    ]);
  }

  private outcome(o: ImportOutcome, path: string): HTMLElement[] {
    const out: HTMLElement[] = [];
    if (o.imported.length) out.push(h("p", { class: "ok" }, `Imported ${o.imported.join(", ")} from ${o.source}.`));
    if (o.ignored_hooks) out.push(h("p", { class: "warn" }, `${o.ignored_hooks} hook command(s) (PostUp and the like) were dropped: Underpass never runs commands from a profile.`));
    for (const f of o.failed) out.push(h("p", { class: "error" }, f));
    if (o.untrusted) {
      const u = o.untrusted;
      out.push(
        h(
          "div",
          { class: "trust", role: "alertdialog", "aria-label": "Trust a new organization key" },
          h("p", {}, `${o.source} is signed by "${u.organization}" with a key you have not trusted yet.`),
          h("p", {}, "Key ID ", h("code", {}, u.signer.key_id), ", fingerprint ", h("code", {}, u.signer.public_key)),
          h("p", { class: "muted" }, "Compare the fingerprint with the one your IT department gave you before trusting it."),
          h("button", { class: "primary", onclick: () => void this.importPaths([path], true) }, "Trust this key and import"),
          h("button", { onclick: () => this.show([]) }, "Cancel"),
        ),
      );
    }
    return out;
  }

  private show(nodes: HTMLElement[]): void {
    replace(this.messages, nodes);
  }

  update(): void {
    const { profiles } = this.store.state;
    if (!profiles.length) {
      replaceKeyed(this.list, "none", () => [h("p", { class: "muted" }, "No profiles yet. Import the .conf file your VPN provider gave you, or the .underpass file from your IT department.")]);
      return;
    }
    const now = Date.now() / 1000;
    const country = (p: ProfileSummary) =>
      this.store.state.catalog.countries.find((c) => c.code !== null && c.code === p.country);
    // Rebuilt only when something shown changes (not on every statistics event), so a
    // selected public key or a focused button stays as it is.
    const key = JSON.stringify([profiles, profiles.map((p) => country(p)?.code), this.confirming, [...this.keys], Math.floor(now / 60)]);
    replaceKeyed(this.list, key, () =>
      profiles.map((p) => {
        const exp = expiryText(p, now);
        const pol = policyText(p);
        const c = country(p);
        return h(
          "article",
          { class: "profile", "data-profile": p.name },
          h(
            "header",
            {},
            h("h3", {}, flagIcon(c?.code ?? null), ` ${p.name}`),
            h(
              "button",
              {
                class: this.confirming === p.name ? "danger" : "quiet",
                "aria-label": `Delete ${p.name}`,
                onclick: () => void this.remove(p.name),
              },
              this.confirming === p.name ? "Really delete?" : "Delete",
            ),
          ),
          h("p", { class: p.bundle ? "signed" : "muted" }, signatureText(p)),
          this.keyBlock(p),
          pol ? h("p", {}, `Policy: ${pol}`) : null,
          exp ? h("p", { class: exp.startsWith("Expired") ? "error" : "" }, exp) : null,
          h(
            "p",
            { class: "muted" },
            `${[p.city, c?.name ?? p.country].filter(Boolean).join(", ") || "Location unknown"} · ${p.endpoint} · ${p.full_tunnel ? "full tunnel" : "split tunnel"} · key in ${p.keystore === "keyring" ? "the OS keyring" : "a 0600 file"}`,
          ),
        );
      }),
    );
  }

  /** "Public key": shown on request, with a way to save it for IT. A bundle whose key was
   * generated on this device says that IT needs it. */
  private keyBlock(p: ProfileSummary): HTMLElement {
    const key = this.keys.get(p.name);
    const needed = p.bundle?.key_generated_locally
      ? h("p", { class: "warn" }, `This device made its own key: send the public key to ${p.bundle.organization} so they can let it in.`)
      : null;
    if (key === undefined) {
      return h(
        "div",
        { class: "key" },
        needed,
        h("button", { class: "quiet show-key", "data-profile": p.name, onclick: () => void this.showKey(p.name) }, "Show public key"),
      );
    }
    return h(
      "div",
      { class: "key" },
      needed,
      h("label", { for: `key-${p.name}` }, "Public key"),
      h("input", {
        id: `key-${p.name}`,
        class: "public-key",
        "data-profile": p.name,
        readonly: true,
        value: key,
        onfocus: (e: Event) => (e.target as HTMLInputElement).select(),
      }),
      h("button", { class: "quiet", onclick: () => void this.saveKey(p.name) }, "Save to a file…"),
    );
  }

  private async showKey(name: string): Promise<void> {
    try {
      this.keys.set(name, await api.publicKey(name));
      this.update();
    } catch (e) {
      this.show([h("p", { class: "error" }, errorText(e))]);
    }
  }

  private async saveKey(name: string): Promise<void> {
    try {
      const path = await save({ title: `Save the public key of ${name}`, defaultPath: `${name}.pub` });
      if (path === null) return;
      await api.savePublicKey(name, path);
      this.show([h("p", { class: "ok" }, `Saved the public key of ${name} to ${path}.`)]);
    } catch (e) {
      this.show([h("p", { class: "error" }, errorText(e))]);
    }
  }

  private async remove(name: string): Promise<void> {
    if (this.confirming !== name) {
      this.confirming = name;
      this.update();
      setTimeout(() => {
        if (this.confirming === name) {
          this.confirming = null;
          this.update();
        }
      }, 4000);
      return;
    }
    this.confirming = null;
    try {
      await api.deleteProfile(name);
      this.show([h("p", { class: "ok" }, `Deleted ${name}.`)]);
    } catch (e) {
      this.show([h("p", { class: "error" }, errorText(e))]);
    }
    await this.reload();
  }
}
