// Connect: the big button, the state, the country picker and the live details.
import { api, errorText } from "../api";
import { h, replace, replaceKeyed, svg } from "../dom";
import { age, bytes, display, explainAddresses, rate } from "../format";
import { flagIcon } from "../flags";
import { HISTORY_MS, sameTarget, type Sample, type Store } from "../store";
import type { Catalog, Connecting, Status, Target } from "../generated/contract";

export function filterCatalog(catalog: Catalog, query: string): Catalog {
  const q = query.trim().toLowerCase();
  if (!q) return catalog;
  return {
    countries: catalog.countries
      .map((c) => {
        const countryHit = c.name.toLowerCase().includes(q) || (c.code ?? "").toLowerCase() === q;
        const servers = countryHit
          ? c.servers
          : c.servers.filter((s) =>
              [s.city, s.profile, s.server, s.organization].some((x) => (x ?? "").toLowerCase().includes(q)),
            );
        return { ...c, servers };
      })
      .filter((c) => c.servers.length > 0),
  };
}

export function plot(samples: Sample[], now: number, width = 320, height = 90): SVGElement {
  const max = Math.max(1, ...samples.map((s) => Math.max(s.rx, s.tx)));
  // The time axis grows with the session, from 30 s up to the last 5 minutes.
  const first = samples[0]?.t ?? now;
  const span = Math.min(HISTORY_MS, Math.max(30000, now - first));
  const x = (t: number) => width - ((now - t) / span) * width;
  const y = (v: number) => height - 4 - (v / max) * (height - 8);
  const line = (pick: (s: Sample) => number) => samples.map((s) => `${x(s.t).toFixed(1)},${y(pick(s)).toFixed(1)}`).join(" ");
  return svg(
    "svg",
    { id: "plot", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Throughput over the last 5 minutes", class: "plot" },
    svg("line", { x1: 0, y1: height - 4, x2: width, y2: height - 4, class: "axis" }),
    svg("polyline", { points: line((s) => s.rx), class: "rx" }),
    svg("polyline", { points: line((s) => s.tx), class: "tx" }),
  );
}

export class ConnectView {
  readonly el: HTMLElement;
  private card = h("section", { class: "card state-card", "aria-live": "polite" });
  private details = h("section", { class: "card details" });
  private list = h("div", { class: "server-list", role: "listbox", "aria-label": "Servers" });
  private search = h("input", {
    id: "server-search",
    type: "search",
    placeholder: "Search country, city or server",
    "aria-label": "Search servers",
  });
  private error = "";
  private note = "";
  private busy = false;
  private listKey = "";
  private rxKey = h("span", { class: "rx-key" });
  private txKey = h("span", { class: "tx-key" });
  private plot: SVGElement = plot([], 0);
  private throughput = h(
    "div",
    { class: "throughput" },
    h("p", { class: "legend" }, this.rxKey, " ", this.txKey, h("span", { class: "muted" }, "  up to the last 5 minutes")),
    this.plot,
  );

  constructor(private store: Store) {
    this.search.addEventListener("input", () => this.renderList(true));
    this.el = h(
      "div",
      { class: "screen connect" },
      h("div", { class: "col" }, this.card, this.details),
      h("section", { class: "card picker" }, h("h2", {}, "Server"), this.search, this.list),
    );
  }

  update(): void {
    this.renderCard();
    this.renderDetails();
    this.renderList(false);
  }

  private async act(f: () => Promise<void>): Promise<void> {
    this.busy = true;
    this.error = "";
    this.note = "";
    this.renderCard();
    try {
      await f();
    } catch (e) {
      this.error = errorText(e);
    }
    this.busy = false;
    this.renderCard();
  }

  private renderCard(): void {
    const { view, choice } = this.store.state;
    const d = display(view);
    const s = view.status;
    const wantsDisconnect = s !== null && ["connected", "connecting", "reconnecting", "offline"].includes(s.state);
    const key = JSON.stringify([d, view.socket, s?.state ?? null, choice, this.busy, this.error, this.note, this.choiceText()]);
    replaceKeyed(this.card, key, () => this.cardChildren(d, wantsDisconnect));
  }

  private cardChildren(d: ReturnType<typeof display>, wantsDisconnect: boolean): (Node | string | null)[] {
    const { view, choice } = this.store.state;
    const s = view.status;
    const button = h(
      "button",
      {
        id: "connect-button",
        class: `big ${wantsDisconnect ? "stop" : "go"}`,
        disabled: this.busy || s === null || (!wantsDisconnect && choice === null) || s.state === "disconnecting",
        onclick: () =>
          this.act(async () => {
            // The choice at the time of the click: the card is not rebuilt when it changes.
            const now = this.store.state.choice;
            if (wantsDisconnect) await api.disconnect();
            else if (now) this.note = connectedNote(await api.connect(now));
          }),
      },
      wantsDisconnect ? (s?.state === "connecting" || s?.state === "offline" ? "Cancel" : "Disconnect") : "Connect",
    );
    const children: (Node | string | null)[] = [
      h("div", { class: `state state-${d.kind}` }, h("span", { class: "dot", "aria-hidden": "true" }), h("h1", { id: "state-title" }, d.title)),
      h("p", { id: "state-detail", class: "detail" }, d.detail),
    ];
    if (d.kind === "reconnecting" || d.kind === "offline")
      children.push(h("ul", { class: "facts", id: "healing-facts" }, ...d.facts.map((f) => h("li", {}, f))));
    if (d.kind === "no-helper") {
      children.push(noHelperHelp(d.fix, view.socket));
    } else {
      children.push(button);
      if (!wantsDisconnect && choice !== null) {
        const measuring = this.busy && choice.kind === "fastest";
        children.push(h("p", { class: "choice", id: "choice" }, measuring ? "Measuring the servers' handshake times…" : this.choiceText()));
      }
      if (this.note) children.push(h("p", { class: "muted", id: "connect-note" }, this.note));
      if (!wantsDisconnect && choice === null) children.push(h("p", { class: "hint" }, "Import a profile (Profiles) to get a server to connect to."));
    }
    if (this.error) children.push(h("p", { class: "error", role: "alert", id: "connect-error" }, this.error));
    return children;
  }

  private renderDetails(): void {
    const s = this.store.state.view.status;
    if (!s || !["connected", "connecting", "reconnecting", "offline"].includes(s.state)) {
      this.details.hidden = true;
      return;
    }
    this.details.hidden = false;
    // The facts that stay for the whole session are built once; the counters, the handshake
    // age and the plot are updated in place every second.
    const key = JSON.stringify([s.profile, s.endpoint, s.interface, s.addresses, explainAddresses(s)]);
    replaceKeyed(this.details, key, () => [h("h2", {}, "This connection"), detailsList(s), this.throughput]);
    setText(this.details, "#detail-handshake", age(s.last_handshake_secs));
    setText(this.details, "#detail-rx", bytes(s.rx_bytes));
    setText(this.details, "#detail-tx", bytes(s.tx_bytes));
    const samples = this.store.state.throughput.samples;
    const last = samples[samples.length - 1];
    this.rxKey.textContent = `↓ ${last ? rate(last.rx) : "…"}`;
    this.txKey.textContent = `↑ ${last ? rate(last.tx) : "…"}`;
    this.plot.replaceWith((this.plot = plot(samples, Date.now())));
  }

  private renderList(force: boolean): void {
    const { catalog, choice } = this.store.state;
    const key = JSON.stringify([catalog, choice, this.search.value]);
    if (!force && key === this.listKey) return;
    this.listKey = key;
    const filtered = filterCatalog(catalog, this.search.value);
    if (catalog.countries.length === 0) {
      replace(this.list, h("p", { class: "muted" }, "No servers yet. Import a profile in Profiles."));
      return;
    }
    if (filtered.countries.length === 0) {
      replace(this.list, h("p", { class: "muted" }, `Nothing matches "${this.search.value}".`));
      return;
    }
    const selected = (t: Target) => sameTarget(choice, t);
    const pick = (t: Target) => () => this.store.choose(t);
    const anywhere: Target = { kind: "fastest", country: null };
    replace(
      this.list,
      this.search.value.trim()
        ? null
        : h(
            "button",
            {
              class: `server fastest${selected(anywhere) ? " selected" : ""}`,
              role: "option",
              "aria-selected": String(selected(anywhere)),
              "data-best": "",
              onclick: pick(anywhere),
            },
            h("span", { class: "city" }, "⚡ Fastest server"),
            h("span", { class: "muted" }, " measured when you connect"),
          ),
      filtered.countries.map((c) => {
        const inCountry: Target | null = c.code ? { kind: "fastest", country: c.code } : null;
        return h(
          "div",
          { class: "country", "data-country": c.code ?? "" },
          h("h3", {}, flagIcon(c.code), ` ${c.name} `, h("span", { class: "count" }, `${c.servers.length}`)),
          inCountry
            ? h(
                "button",
                {
                  class: `server fastest${selected(inCountry) ? " selected" : ""}`,
                  role: "option",
                  "aria-selected": String(selected(inCountry)),
                  "data-best": c.code,
                  onclick: pick(inCountry),
                },
                h("span", { class: "city" }, `Fastest in ${c.name}`),
              )
            : null,
          c.servers.map((s) => {
            const t: Target = { kind: "server", profile: s.profile, server: s.server };
            return h(
              "button",
              {
                class: `server${selected(t) ? " selected" : ""}`,
                role: "option",
                "aria-selected": String(selected(t)),
                "data-profile": s.profile,
                onclick: pick(t),
              },
              h("span", { class: "city" }, s.city ?? s.server ?? s.profile),
              h("span", { class: "muted" }, ` ${s.server ?? s.profile}${s.organization ? ` · ${s.organization}` : ""}`),
            );
          }),
        );
      }),
    );
  }

  /** The chosen target in words, from the catalog. */
  private choiceText(): string {
    const { choice, catalog } = this.store.state;
    if (!choice) return "";
    if (choice.kind === "fastest") {
      if (choice.country === null) return "Server: the fastest one, measured when you connect";
      const c = catalog.countries.find((k) => k.code === choice.country);
      return `Server: the fastest in ${c?.name ?? choice.country}`;
    }
    return `Server: ${choice.profile}${choice.server ? ` (${choice.server})` : ""}`;
  }
}

/** What the app says after a connect request: which server, and how it was chosen. */
export function connectedNote(c: Connecting): string {
  const where = `${c.profile}${c.server ? ` (${c.server})` : ""}`;
  if (c.rtt_ms === null) return "";
  return `Fastest of ${c.measured} servers: ${where}, handshake in ${c.rtt_ms.toFixed(1)} ms.`;
}

function setText(root: Element, css: string, text: string): void {
  const el = root.querySelector(css);
  if (el && el.textContent !== text) el.textContent = text;
}

function detailsList(s: Status): HTMLElement {
  const row = (label: string, id: string, value: string) => h("div", { class: "row" }, h("dt", {}, label), h("dd", { id }, value));
  return h(
    "div",
    {},
    h(
      "dl",
      { class: "facts" },
      row("Server", "detail-profile", s.profile ?? "—"),
      row("Endpoint", "detail-endpoint", s.endpoint ?? "—"),
      row("Tunnel addresses", "detail-addresses", s.addresses.join(", ") || "—"),
      row("Last handshake", "detail-handshake", age(s.last_handshake_secs)),
      row("Received", "detail-rx", bytes(s.rx_bytes)),
      row("Sent", "detail-tx", bytes(s.tx_bytes)),
    ),
    h("div", { class: "explain" }, explainAddresses(s).map((t) => h("p", {}, t))),
  );
}

function noHelperHelp(fix: string[], socket: string): HTMLElement {
  return h(
    "div",
    { class: "no-helper", id: "no-helper" },
    fix.length ? h("p", {}, "To fix it:") : null,
    fix.length ? h("ul", {}, fix.map((f) => h("li", {}, h("code", {}, f)))) : null,
    h("p", { class: "muted" }, `The app looks for the helper at ${socket} and reconnects by itself as soon as it answers.`),
    h("button", { id: "retry-helper", onclick: () => void api.retryHelper() }, "Retry now"),
  );
}
