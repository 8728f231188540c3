// The app's state: the helper's latest report (exactly as received), the profile list and
// catalog, and a throughput history computed from successive counters.
import type { Catalog, HelperView, ProfileSummary, Settings, Target } from "./generated/contract";

export interface Sample {
  t: number; // ms
  rx: number; // bytes/s
  tx: number;
}

export const HISTORY_MS = 5 * 60 * 1000;

/** The settings until the app's own arrive (the same defaults as Rust's `Settings`). */
export const DEFAULT_SETTINGS: Settings = {
  split_include: [],
  split_exclude: [],
  notifications: true,
  custom_dns: [],
  connect_on_launch: false,
  launch_at_login: false,
  last_target: null,
};

export class Throughput {
  samples: Sample[] = [];
  private last: { t: number; rx: number; tx: number; key: string } | null = null;

  /** Feeds one report's counters; a new session (other profile, counters reset) starts over. */
  push(key: string, rxBytes: number, txBytes: number, now: number): void {
    const l = this.last;
    if (l && l.key === key && rxBytes >= l.rx && txBytes >= l.tx) {
      const dt = (now - l.t) / 1000;
      if (dt >= 0.2) {
        this.samples.push({ t: now, rx: (rxBytes - l.rx) / dt, tx: (txBytes - l.tx) / dt });
        this.last = { t: now, rx: rxBytes, tx: txBytes, key };
      }
    } else {
      if (!l || l.key !== key) this.samples = [];
      this.last = { t: now, rx: rxBytes, tx: txBytes, key };
    }
    this.samples = this.samples.filter((s) => now - s.t <= HISTORY_MS);
  }

  reset(): void {
    this.samples = [];
    this.last = null;
  }
}

export interface AppState {
  view: HelperView;
  profiles: ProfileSummary[];
  catalog: Catalog;
  settings: Settings;
  throughput: Throughput;
  /** What Connect connects to: the fastest server (anywhere or in a country) by default,
   * or one server. `null` when there is no server at all. */
  choice: Target | null;
}

type Listener = () => void;

export class Store {
  state: AppState;
  private listeners: Listener[] = [];

  constructor(view: HelperView) {
    this.state = {
      view,
      profiles: [],
      catalog: { countries: [] },
      settings: { ...DEFAULT_SETTINGS },
      throughput: new Throughput(),
      choice: null,
    };
  }

  subscribe(f: Listener): void {
    this.listeners.push(f);
  }

  changed(): void {
    for (const f of this.listeners) f();
  }

  setView(view: HelperView, now = Date.now()): void {
    this.state.view = view;
    const s = view.status;
    if (s && (s.state === "connected" || s.state === "connecting") && s.profile) {
      this.state.throughput.push(`${s.profile}|${s.interface ?? ""}`, s.rx_bytes, s.tx_bytes, now);
    } else {
      this.state.throughput.reset();
    }
    this.changed();
  }

  setCatalog(catalog: Catalog): void {
    this.state.catalog = catalog;
    this.state.choice = validChoice(catalog, this.state.choice ?? this.state.settings.last_target);
    this.changed();
  }

  /** Chooses `target` (when the catalog has it) and tells the screens. */
  choose(target: Target): void {
    this.state.choice = validChoice(this.state.catalog, target);
    this.changed();
  }
}

/** `target` if the catalog can serve it, else the fastest server; `null` with no servers. */
export function validChoice(catalog: Catalog, target: Target | null): Target | null {
  const countries = catalog.countries;
  if (!countries.some((c) => c.servers.length)) return null;
  const ok =
    target !== null &&
    (target.kind === "fastest"
      ? target.country === null || countries.some((c) => c.code === target.country)
      : countries.some((c) => c.servers.some((s) => s.profile === target.profile && s.server === target.server)));
  return ok ? target : { kind: "fastest", country: null };
}

export function sameTarget(a: Target | null, b: Target | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.kind === "fastest" && b.kind === "fastest") return a.country === b.country;
  if (a.kind === "server" && b.kind === "server") return a.profile === b.profile && a.server === b.server;
  return false;
}
