// Diagnostics: the troubleshooter (views/troubleshoot.ts), the helper's self-tests, rendered
// from its report (nothing made up), and the routing, DNS and firewall state as the helper
// reports them.
import { api, errorText } from "../api";
import { h, replaceKeyed } from "../dom";
import type { Store } from "../store";
import type { SelfTestKind, SelfTestProgress, SelfTestReport, Status } from "../generated/contract";
import { TroubleshootCard } from "./troubleshoot";

const TESTS: { kind: SelfTestKind; title: string; run: string; what: string }[] = [
  { kind: "dns", title: "DNS-leak test", run: "Run the DNS-leak test", what: "Resolves fresh random names while capturing on every interface except the tunnel: any DNS packet seen there is a leak." },
  { kind: "kill_switch", title: "Kill-switch test", run: "Run the kill-switch test", what: "Sends probes that try to get around the tunnel and briefly simulates a tunnel drop: anything that gets out is reported." },
];

type Result = { report: SelfTestReport } | { error: string } | { running: string[] };

export function verdictText(r: SelfTestReport): string {
  switch (r.verdict) {
    case "pass":
      return "Passed: nothing leaked";
    case "fail":
      return `Failed: ${r.leaks.length} packet(s) escaped the tunnel`;
    case "inconclusive":
      return "Inconclusive: the test could not run as asked";
  }
}

export function renderReport(r: SelfTestReport): HTMLElement {
  const list = (title: string, items: string[]) =>
    items.length ? h("div", {}, h("h4", {}, title), h("ul", {}, items.map((i) => h("li", {}, h("code", {}, i))))) : null;
  return h(
    "div",
    { class: `report verdict-${r.verdict}`, "data-test": r.test },
    h("p", { class: "verdict", "data-verdict": r.verdict }, verdictText(r), h("span", { class: "muted" }, ` (${(r.duration_ms / 1000).toFixed(1)} s)`)),
    r.notes.length ? h("div", {}, r.notes.map((n) => h("p", { class: "note" }, n))) : null,
    list("Listened on", r.captured_on),
    list("Sent", r.sent),
    r.leaks.length
      ? h(
          "table",
          { class: "leaks" },
          h("caption", {}, "Packets seen outside the tunnel"),
          h("thead", {}, h("tr", {}, ["Interface", "Protocol", "From", "To", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, r.leaks.map((l) => h("tr", {}, [l.interface, l.protocol, l.source, l.destination, l.detail ?? ""].map((c) => h("td", {}, c))))),
        )
      : null,
    r.resolvers.length
      ? h(
          "table",
          { class: "resolvers" },
          h("caption", {}, "Configured resolvers and their routes"),
          h("thead", {}, h("tr", {}, ["Server", "Interface", "Through the tunnel"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, r.resolvers.map((x) => h("tr", {}, [x.server, x.interface ?? "—", x.through_tunnel ? "yes" : "NO"].map((c) => h("td", {}, c))))),
        )
      : null,
    h("details", {}, h("summary", {}, "The helper's report (JSON)"), h("pre", {}, JSON.stringify(r, null, 2))),
  );
}

export function systemState(s: Status | null): HTMLElement {
  if (!s) return h("p", { class: "muted" }, "The helper is not reachable.");
  const r = s.routing;
  const rows: [string, string][] = [
    ["Tunnel", s.interface ? `${s.interface}, MTU ${s.mtu ?? "?"}` : "none"],
    ["Routing", r ? `${r.full_tunnel ? "full tunnel" : "split tunnel"}; table ${r.table}, fwmark 0x${r.fwmark.toString(16)}${r.include.length ? `; include ${r.include.join(", ")}` : ""}${r.exclude.length ? `; exclude ${r.exclude.join(", ")}` : ""}` : "system routes only"],
    ["DNS", s.dns ? `${s.dns.servers.join(", ")} via ${s.dns.method}` : "the system's own resolvers"],
    ["Firewall", { open: "open (no Underpass rules)", tunnel_only: "only the tunnel and its endpoint may be used", blocking: "blocking everything but loopback, DHCP/NDP" + (s.lan_access ? " and the LAN" : "") }[s.firewall]],
    ["Kill switch", s.kill_switch],
  ];
  return h("dl", { class: "facts", id: "system-state" }, rows.map(([k, v]) => h("div", { class: "row" }, h("dt", {}, k), h("dd", {}, v))));
}

export class DiagnosticsView {
  readonly el: HTMLElement;
  private results = new Map<SelfTestKind, Result>();
  private boxes = new Map<SelfTestKind, HTMLElement>();
  private buttons = new Map<SelfTestKind, HTMLButtonElement>();
  private system = h("section", { class: "card" });
  private troubleshoot: TroubleshootCard;

  constructor(private store: Store) {
    this.troubleshoot = new TroubleshootCard(() => ({ status: store.state.view.status, message: store.state.view.message }));
    const cards = TESTS.map((t) => {
      const box = h("div", { id: `result-${t.kind}`, "aria-live": "polite" });
      const button = h("button", { id: `run-${t.kind}`, class: "primary", onclick: () => void this.run(t.kind) }, t.run);
      this.boxes.set(t.kind, box);
      this.buttons.set(t.kind, button);
      return h("section", { class: "card" }, h("h2", {}, t.title), h("p", { class: "muted" }, t.what), button, box);
    });
    const reportMsg = h("p", { id: "report-message", "aria-live": "polite" });
    const exportCard = h(
      "section",
      { class: "card" },
      h("h2", {}, "Report for support"),
      h(
        "p",
        { class: "muted" },
        "One text file with the helper's state, the self-test and troubleshooter results of this session, and the app's and the helper's recent logs. It holds no keys.",
      ),
      h(
        "button",
        {
          id: "export-report",
          onclick: async () => {
            reportMsg.className = "";
            reportMsg.textContent = "Saving…";
            try {
              reportMsg.textContent = `Saved to ${await api.exportReport()}`;
              reportMsg.className = "ok";
            } catch (e) {
              reportMsg.textContent = errorText(e);
              reportMsg.className = "error";
            }
          },
        },
        "Save a diagnostics report",
      ),
      reportMsg,
    );
    this.el = h("div", { class: "screen diagnostics" }, h("h1", {}, "Diagnostics"), this.troubleshoot.el, ...cards, this.system, exportCard);
  }

  progress(p: SelfTestProgress): void {
    const r = this.results.get(p.test);
    if (r && "running" in r) {
      r.running.push(p.step);
      this.renderResult(p.test);
    }
  }

  private async run(kind: SelfTestKind): Promise<void> {
    this.results.set(kind, { running: [] });
    this.renderResult(kind);
    try {
      this.results.set(kind, { report: await api.selfTest(kind) });
    } catch (e) {
      this.results.set(kind, { error: errorText(e) });
    }
    this.renderResult(kind);
  }

  private renderResult(kind: SelfTestKind): void {
    const box = this.boxes.get(kind)!;
    const r = this.results.get(kind);
    this.buttons.get(kind)!.disabled = this.store.state.view.status === null || (r !== undefined && "running" in r);
    // Rebuilt only when the result changes: the screen updates with every statistics event.
    replaceKeyed(box, JSON.stringify(r ?? null), () => {
      if (!r) return [];
      if ("running" in r) return [h("p", { class: "running" }, "Running…"), h("ol", { class: "steps" }, r.running.map((s) => h("li", {}, s)))];
      if ("error" in r) return [h("p", { class: "error test-error", role: "alert" }, `The helper could not run this test: ${r.error}`)];
      return [renderReport(r.report)];
    });
  }

  update(): void {
    this.troubleshoot.update();
    for (const t of TESTS) this.renderResult(t.kind);
    const s = this.store.state.view.status;
    const key = JSON.stringify(s && [s.interface, s.mtu, s.routing, s.dns, s.firewall, s.lan_access, s.kill_switch]);
    replaceKeyed(this.system, key, () => [h("h2", {}, "Routes, DNS and firewall now"), systemState(s)]);
  }
}
