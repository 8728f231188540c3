// The app's state: the helper's latest report (exactly as received), the profile list and
// catalog, and a throughput history computed from successive counters.
import type { Catalog, HelperView, ProfileSummary, Settings } from "./types";

export interface Sample {
  t: number; // ms
  rx: number; // bytes/s
  tx: number;
}

export const HISTORY_MS = 5 * 60 * 1000;

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
  /** The chosen server: profile and (for a bundle) server id. */
  choice: { profile: string; server: string | null } | null;
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
      settings: { split_include: [], split_exclude: [], notifications: true },
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
    const c = this.state.choice;
    const all = catalog.countries.flatMap((k) => k.servers);
    if (!c || !all.some((s) => s.profile === c.profile && s.server === c.server)) {
      const first = all[0];
      this.state.choice = first ? { profile: first.profile, server: first.server } : null;
    }
    this.changed();
  }
}
