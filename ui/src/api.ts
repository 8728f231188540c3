// Every call into the Rust side goes through here: one function per Tauri command.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  Catalog,
  Connecting,
  DoctorRun,
  OpenRequest,
  SettingsForm,
  Target,
  HelperView,
  ImportOutcome,
  KillSwitchMode,
  ProfileSummary,
  SelfTestKind,
  SelfTestProgress,
  SelfTestReport,
  Settings,
} from "./generated/contract";

export const api = {
  helperView: () => invoke<HelperView>("helper_view"),
  retryHelper: () => invoke<void>("retry_helper"),
  listProfiles: () => invoke<ProfileSummary[]>("list_profiles"),
  serverCatalog: () => invoke<Catalog>("server_catalog"),
  importPaths: (paths: string[], trust: boolean) =>
    invoke<ImportOutcome[]>("import_paths", { paths, trust }),
  deleteProfile: (name: string) => invoke<void>("delete_profile", { name }),
  publicKey: (name: string) => invoke<string>("public_key", { name }),
  savePublicKey: (name: string, path: string) => invoke<void>("save_public_key", { name, path }),
  connect: (target: Target) => invoke<Connecting>("connect", { target }),
  disconnect: () => invoke<void>("disconnect"),
  setKillSwitch: (mode: KillSwitchMode) => invoke<void>("set_kill_switch", { mode }),
  setLanAccess: (allow: boolean) => invoke<void>("set_lan_access", { allow }),
  getSettings: () => invoke<Settings>("get_settings"),
  saveSettings: (form: SettingsForm) => invoke<Settings>("save_settings", { form }),
  exportReport: () => invoke<string>("export_report"),
  takeOpenRequests: () => invoke<OpenRequest[]>("take_open_requests"),
  /** The window shows the helper's state (the app logs how long opening it took). */
  /** The window has rendered the helper's state; `shown` is its state line (for the log). */
  windowReady: (shown: string) => invoke<void>("window_ready", { shown }),
  onOpenRequests: (f: () => void): Promise<UnlistenFn> => listen<null>("open-requests", () => f()),
  /** The troubleshooter: the helper walks the tunnel's seven layers (a few seconds). */
  runDoctor: () => invoke<DoctorRun>("run_doctor"),
  /** Applies the MTU the troubleshooter measured, then runs it again. */
  applyMtu: (mtu: number) => invoke<DoctorRun>("apply_mtu", { mtu }),
  selfTest: (test: SelfTestKind) => invoke<SelfTestReport>("self_test", { test }),
  onHelperView: (f: (v: HelperView) => void): Promise<UnlistenFn> =>
    listen<HelperView>("helper-view", (e) => f(e.payload)),
  onSelfTestProgress: (f: (p: SelfTestProgress) => void): Promise<UnlistenFn> =>
    listen<SelfTestProgress>("selftest-progress", (e) => f(e.payload)),
};

/** A command's error as a sentence (commands reject with a string). */
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}
