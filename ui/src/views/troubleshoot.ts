// Diagnostics → Troubleshoot: the helper's doctor (the same request `underpass doctor` sends)
// drawn as a stack of seven layers that light up per verdict, the first failing one
// highlighted with what it means and what to do, the evidence on demand. Everything shown is
// the helper's report; the words around it are for people who never heard of a route.
import { api, errorText } from "../api";
import { h, replaceKeyed } from "../dom";
import type { DoctorReport, DoctorRun, Layer, LayerId, LayerVerdict, Status } from "../generated/contract";

/** Each layer in plain words: a short name and the question it answers. */
export const LAYERS: Record<LayerId, { title: string; question: string }> = {
  "control-plane": { title: "Server handshake", question: "Does the server recognise you, with the right keys?" },
  "outer-path": { title: "Path to the server", question: "Do packets reach the server over your network?" },
  interface: { title: "VPN adapter", question: "Is the tunnel's network adapter up, with your address?" },
  routes: { title: "Routes", question: "Does your traffic go into the tunnel?" },
  firewall: { title: "Firewall", question: "Do firewall rules let the tunnel's traffic through?" },
  dns: { title: "Name lookups (DNS)", question: "Are website names looked up through the tunnel?" },
  mtu: { title: "Packet size (MTU)", question: "Do large packets fit through the real path?" },
};

const VERDICT_WORDS: Record<LayerVerdict, string> = {
  ok: "OK",
  warn: "Warning",
  fail: "Problem",
  skipped: "Not checked",
};

export function verdictWord(v: LayerVerdict): string {
  return VERDICT_WORDS[v];
}

export function firstFailure(r: DoctorReport): Layer | undefined {
  return r.layers.find((l) => l.verdict === "fail");
}

/** The one line on top: all good, only warnings, or where the problem is (its layer below
 * says what to do). */
export function summary(r: DoctorReport): { verdict: LayerVerdict; text: string } {
  const fail = firstFailure(r);
  if (fail) {
    const n = r.layers.indexOf(fail) + 1;
    return { verdict: "fail", text: `Found the problem at step ${n} of ${r.layers.length}: ${LAYERS[fail.id].title}.` };
  }
  const warns = r.layers.filter((l) => l.verdict === "warn");
  if (warns.length) {
    const names = warns.map((l) => LAYERS[l.id].title).join(", ");
    return { verdict: "warn", text: `No problem found, but ${warns.length === 1 ? "one step has" : `${warns.length} steps have`} a warning: ${names}.` };
  }
  return { verdict: "ok", text: `Everything checks out: all ${r.layers.length} steps passed.` };
}

/** What the app offers about the MTU the probe measured (the CLI's `--apply-mtu`). */
export type MtuOffer =
  | { kind: "apply"; mtu: number; current: number }
  | { kind: "explicit"; explicit: number; measured: number | null };

export function mtuOffer(r: DoctorReport): MtuOffer | null {
  const m = r.mtu;
  if (!m) return null;
  if (m.explicit !== null) {
    const measured = m.largest_packet !== null && m.largest_packet < m.explicit ? m.largest_packet : null;
    return { kind: "explicit", explicit: m.explicit, measured };
  }
  if (m.suggested !== null && m.suggested !== m.current) return { kind: "apply", mtu: m.suggested, current: m.current };
  return null;
}

/** "Not checked" says which step it waits for, by number and name. */
function skippedText(r: DoctorReport, l: Layer): string {
  if (!l.depends_on) return "Not checked.";
  const n = r.layers.findIndex((x) => x.id === l.depends_on) + 1;
  return `Not checked, because step ${n} (${LAYERS[l.depends_on].title}) has to work first.`;
}

/** A layer's one-line head: step number, plain name, a line beside it, an optional toggle and
 * the verdict. */
function head(index: number, id: LayerId, beside: string, verdict: string, toggle: HTMLElement | null): HTMLElement {
  return h(
    "div",
    { class: "layer-head" },
    h("span", { class: "layer-step", "aria-hidden": "true" }, String(index + 1)),
    h("span", { class: "layer-title" }, LAYERS[id].title, h("span", { class: "layer-question" }, beside)),
    toggle,
    h("span", { class: "layer-verdict" }, verdict),
  );
}

export function renderLayer(r: DoctorReport, l: Layer, index: number, first: boolean): HTMLElement {
  const judged = l.verdict !== "skipped";
  // A problem or warning is explained right away; for a layer that is fine the explanation
  // sits with the evidence, one click away.
  const upfront = l.verdict === "fail" || l.verdict === "warn";
  const hasDetails = l.evidence.length > 0 || (judged && !upfront);
  const evidence = hasDetails
    ? h(
        "div",
        { class: "layer-evidence", id: `evidence-${l.id}`, hidden: true },
        judged && !upfront ? h("p", {}, l.explanation) : null,
        l.fix && !upfront ? h("p", { class: "layer-fix" }, h("strong", {}, "What to do: "), l.fix) : null,
        l.evidence.length ? h("ul", {}, l.evidence.map((e) => h("li", {}, h("code", {}, e)))) : null,
        h("p", { class: "muted" }, `Layer "${l.id}" of \`underpass doctor\`.`),
      )
    : null;
  const toggle = evidence
    ? h("button", {
        class: "layer-toggle",
        "aria-expanded": "false",
        "aria-controls": evidence.id,
        onclick: (e: Event) => {
          evidence.hidden = !evidence.hidden;
          const b = e.currentTarget as HTMLElement;
          b.setAttribute("aria-expanded", String(!evidence.hidden));
          b.textContent = evidence.hidden ? "Details" : "Hide details";
        },
      }, "Details")
    : null;
  return h(
    "li",
    { class: `layer verdict-${l.verdict}${first ? " first-fail" : ""}`, "data-layer": l.id, "data-verdict": l.verdict },
    head(index, l.id, judged ? LAYERS[l.id].question : skippedText(r, l), verdictWord(l.verdict), toggle),
    first ? h("p", { class: "layer-flag" }, "This is where it breaks: start here.") : null,
    upfront ? h("p", { class: "layer-explanation" }, l.explanation) : null,
    upfront && l.fix ? h("p", { class: "layer-fix" }, h("strong", {}, "What to do: "), l.fix) : null,
    evidence,
  );
}

/** The seven layers while the helper checks them: the same stack, each one waiting. */
export function renderPending(): HTMLElement {
  return h(
    "ol",
    { class: "layer-stack checking", id: "doctor-layers", "aria-busy": "true" },
    (Object.keys(LAYERS) as LayerId[]).map((id, i) =>
      h("li", { class: "layer verdict-pending", "data-layer": id, "data-verdict": "pending" }, head(i, id, LAYERS[id].question, "Checking…", null)),
    ),
  );
}

export function renderReport(r: DoctorReport): HTMLElement[] {
  const s = summary(r);
  const fail = firstFailure(r);
  return [
    h(
      "div",
      { class: `doctor-summary verdict-${s.verdict}`, id: "doctor-summary", role: s.verdict === "fail" ? "alert" : "status" },
      h("p", { class: "doctor-headline" }, s.text),
    ),
    h("ol", { class: "layer-stack", id: "doctor-layers" }, r.layers.map((l, i) => renderLayer(r, l, i, l === fail))),
  ];
}

/** When the troubleshooter cannot say anything useful yet: no helper, or no tunnel. */
export function precondition(status: Status | null, helperMessage: string | null): { blocking: boolean; text: string } | null {
  if (!status)
    return {
      blocking: true,
      text: `The Underpass helper is not reachable, so nothing can be checked${helperMessage ? ` (${helperMessage})` : ""}. The Connect screen says how to start it.`,
    };
  if (status.state === "disconnected")
    return {
      blocking: false,
      text: "Underpass is not connected. Connect first: the troubleshooter checks a tunnel step by step. (If connecting fails, run it while Underpass is still trying.)",
    };
  return null;
}

/** Copies `text`: the clipboard API, else the older copy command on a selected textarea. */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // fall through to the older way
    }
  }
  const area = h("textarea", { readonly: true, class: "offscreen" });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand?.("copy") ?? false;
  area.remove();
  if (!ok) throw new Error("this window may not use the clipboard");
}

type State = { idle: true } | { running: true; action: string } | { run: DoctorRun } | { error: string; last: DoctorRun | undefined };

export class TroubleshootCard {
  readonly el: HTMLElement;
  private state: State = { idle: true };
  private button = h("button", { id: "run-doctor", class: "primary", onclick: () => void this.run(() => api.runDoctor(), "Checking your connection, step by step. This takes a few seconds…") }, "Run troubleshooter");
  private note = h("p", { id: "doctor-note", class: "muted" });
  private body = h("div", { id: "doctor-result", "aria-live": "polite" });
  private copyMsg = h("span", { id: "doctor-copy-message", "aria-live": "polite" });

  constructor(private status: () => { status: Status | null; message: string | null }) {
    this.el = h(
      "section",
      { class: "card", id: "troubleshoot" },
      h("h2", {}, "Troubleshoot"),
      h(
        "p",
        { class: "muted" },
        "Something not working? This checks your connection one step at a time and shows the first step that fails, and what to do about it.",
      ),
      this.button,
      this.note,
      this.body,
    );
  }

  private async run(call: () => Promise<DoctorRun>, action: string): Promise<void> {
    const last = "run" in this.state ? this.state.run : undefined;
    this.state = { running: true, action };
    this.update();
    try {
      this.state = { run: await call() };
    } catch (e) {
      this.state = { error: errorText(e), last };
    }
    this.copyMsg.textContent = "";
    this.update();
  }

  private async copy(run: DoctorRun): Promise<void> {
    try {
      await copyText(run.text);
      this.copyMsg.className = "ok";
      this.copyMsg.textContent = "Copied. Paste it into your message to support.";
    } catch (e) {
      this.copyMsg.className = "error";
      this.copyMsg.textContent = `Could not copy (${errorText(e)}): open "The text for support" below and copy it from there.`;
    }
  }

  private mtuPart(r: DoctorReport): HTMLElement | null {
    const offer = mtuOffer(r);
    if (!offer) return null;
    if (offer.kind === "explicit")
      return h(
        "p",
        { class: "mtu-offer note", id: "mtu-explicit" },
        `Your profile sets the packet size itself (MTU = ${offer.explicit}), and that always wins over a measured one.`,
        offer.measured !== null ? ` The largest packet that got through was ${offer.measured} bytes: to use that, the profile needs MTU = ${offer.measured} (ask whoever gave you the profile).` : "",
      );
    return h(
      "div",
      { class: "mtu-offer" },
      h("p", {}, `The troubleshooter measured that packets of up to ${offer.mtu} bytes get through; the tunnel now uses ${offer.current}.`),
      h(
        "button",
        { id: "apply-mtu", class: "primary", onclick: () => void this.run(() => api.applyMtu(offer.mtu), `Setting the packet size to ${offer.mtu}, then checking again…`) },
        `Use the measured packet size (MTU ${offer.mtu})`,
      ),
    );
  }

  private actions(run: DoctorRun): HTMLElement[] {
    return [
      h("div", { class: "actions" }, h("button", { id: "copy-doctor", onclick: () => void this.copy(run) }, "Copy for support"), this.copyMsg),
      h("details", { class: "support-text" }, h("summary", {}, "The text for support"), h("pre", { id: "doctor-text" }, run.text)),
    ];
  }

  update(): void {
    const { status, message } = this.status();
    const pre = precondition(status, message);
    const s = this.state;
    this.button.disabled = "running" in s || (pre?.blocking ?? false);
    this.note.textContent = pre?.text ?? "";
    this.note.className = pre?.blocking ? "error" : "muted";
    // Rebuilt only when the result changes: the screen updates with every statistics event.
    replaceKeyed(this.body, JSON.stringify(s), () => {
      if ("running" in s) return [h("p", { class: "running", id: "doctor-progress" }, h("span", { class: "spinner", "aria-hidden": "true" }), s.action), renderPending()];
      if ("error" in s)
        return [
          h("p", { class: "error doctor-error", role: "alert" }, `The troubleshooter could not run: ${s.error}`),
          ...(s.last ? [...renderReport(s.last.report), ...this.actions(s.last)] : []),
        ];
      if ("run" in s) return [...renderReport(s.run.report), this.mtuPart(s.run.report), ...this.actions(s.run)];
      return [];
    });
  }
}
