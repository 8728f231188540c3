// The TypeScript side of the contract. These mirror the Rust types (crates/proto, crates/profile,
// src-tauri) as serde serializes them. `generated/contract-samples.ts` is written by a Rust test
// from real values of every type and variant, and `tsc` checks it against these declarations,
// so the two sides cannot drift: a field or variant added, removed or renamed on either side
// fails `npm run ui:check` or `cargo test -p underpass-gui`.

export type TunnelState =
  | "disconnected"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "offline"
  | "disconnecting"
  | "error";
export type ReconnectReason =
  | "server_not_responding"
  | "network_changed"
  | "resumed_from_sleep"
  | "session_expired"
  | "setup_failed"
  | "no_network";

/** What the helper does to heal the tunnel (reconnecting, offline). */
export interface ReconnectStatus {
  reason: ReconnectReason;
  attempt: number;
  since_secs: number;
  last_answer_secs: number | null;
  action: string;
  last_error: string | null;
}
export type KillSwitchMode = "off" | "auto" | "lockdown";
export type FirewallState = "open" | "tunnel_only" | "blocking";
export type SelfTestKind = "dns" | "kill_switch";
export type Verdict = "pass" | "fail" | "inconclusive";
export type Keystore = "keyring" | "file";
export type LinkState =
  | "connecting"
  | "connected"
  | "not_running"
  | "not_installed"
  | "permission_denied"
  | "incompatible"
  | "lost";

export interface RoutingSummary {
  full_tunnel: boolean;
  include: string[];
  exclude: string[];
  fwmark: number;
  table: number;
}

export interface PeerStatus {
  public_key: string;
  endpoint: string | null;
  allowed_ips: string[];
  rx_bytes: number;
  tx_bytes: number;
  last_handshake_secs: number | null;
}

export interface DnsStatus {
  servers: string[];
  method: string;
}

export interface Policy {
  min_kill_switch: KillSwitchMode;
  split_tunnel_allowed: boolean;
  lan_access_allowed: boolean;
  dns_locked: boolean;
}

export interface Status {
  state: TunnelState;
  profile: string | null;
  interface: string | null;
  addresses: string[];
  endpoint: string | null;
  rx_bytes: number;
  tx_bytes: number;
  last_handshake_secs: number | null;
  error: string | null;
  mtu: number | null;
  routing: RoutingSummary | null;
  peers: PeerStatus[];
  kill_switch: KillSwitchMode;
  lan_access: boolean;
  firewall: FirewallState;
  dns: DnsStatus | null;
  /** The policy of the signed profile the user wants connected, if any. */
  policy: SessionPolicy | null;
  /** While reconnecting or offline: why, which attempt, since when. */
  reconnect: ReconnectStatus | null;
  /** Set when the machine obeys a managed policy: who manages it and what is locked. */
  managed?: ManagedStatus;
  // ---- issue 8 (failover): added by hand; tsgen generates these types ----
  /** Which server of the user's choice is in use. */
  server_in_use: ServerInUse | null;
}

// ---- issue 8 (failover): added by hand in a block of its own, for the ts-rs merge ----
/** Which server of the user's choice the tunnel uses (or is trying). */
export interface ServerInUse {
  profile: string;
  /** For a signed bundle, the server's id in it. */
  server: string | null;
  endpoint: string;
  /** 1-based position of the server in the choice, in the order the client sent it. */
  position: number;
  /** How many servers the choice holds (1 for a named server). */
  of: number;
}

export interface ManagedStatus {
  organization: string;
  source: string;
  locked: LockedSetting[];
}

export interface LockedSetting {
  setting: string;
  reason: string;
}

export interface SessionPolicy {
  organization: string;
  serial: number;
  policy: Policy;
}

export interface LeakedPacket {
  interface: string;
  protocol: string;
  source: string;
  destination: string;
  detail: string | null;
}

export interface ResolverRoute {
  server: string;
  interface: string | null;
  through_tunnel: boolean;
}

export interface SelfTestReport {
  test: SelfTestKind;
  verdict: Verdict;
  duration_ms: number;
  captured_on: string[];
  sent: string[];
  leaks: LeakedPacket[];
  resolvers: ResolverRoute[];
  notes: string[];
}

export interface HelperView {
  link: LinkState;
  message: string | null;
  socket: string;
  helper_version: string | null;
  status: Status | null;
}

export interface SelfTestProgress {
  test: SelfTestKind;
  step: string;
}

export interface SignerKey {
  public_key: string;
  key_id: string;
}

export interface BundleInfo {
  organization: string;
  description: string | null;
  serial: number;
  expires: string | null;
  expires_at: number | null;
  signer: SignerKey;
  trusted_comment: string;
  policy: Policy;
  key_generated_locally: boolean;
}

export interface ProfileSummary {
  name: string;
  source: string | null;
  endpoint: string;
  addresses: string[];
  peers: number;
  full_tunnel: boolean;
  imported_at: number;
  country: string | null;
  city: string | null;
  keystore: Keystore;
  bundle: BundleInfo | null;
}

export interface CatalogServer {
  profile: string;
  server: string | null;
  country: string | null;
  city: string | null;
  endpoint: string;
  public_key: string;
  organization: string | null;
}

export interface CatalogCountry {
  code: string | null;
  name: string;
  flag: string | null;
  servers: CatalogServer[];
}

export interface Catalog {
  countries: CatalogCountry[];
}

export interface UntrustedSigner {
  organization: string;
  signer: SignerKey;
}

export interface ImportOutcome {
  source: string;
  imported: string[];
  failed: string[];
  ignored_hooks: number;
  untrusted: UntrustedSigner | null;
}

/** What to connect to (Rust: connect::Target). */
export type Target =
  | { kind: "fastest"; country: string | null }
  | { kind: "server"; profile: string; server: string | null };

/** Where a connect request went (Rust: connect::Connecting). */
export interface Connecting {
  profile: string;
  server: string | null;
  rtt_ms: number | null;
  measured: number;
}

/** Something the app was asked to open: a link or a file (Rust: links::OpenRequest). */
export type OpenRequest =
  | { kind: "select"; target: Target }
  | { kind: "import"; paths: string[] }
  | { kind: "import_link"; path: string; organization: string; profile: string; serial: number }
  | { kind: "refused"; what: string; reason: string };

export interface Settings {
  split_include: string[];
  split_exclude: string[];
  notifications: boolean;
  custom_dns: string[];
  connect_on_launch: boolean;
  launch_at_login: boolean;
  last_target: Target | null;
}

/** The Settings screen's form as typed (Rust: settings::SettingsForm). */
export interface SettingsForm {
  include: string;
  exclude: string;
  custom_dns: string;
  notifications: boolean;
  connect_on_launch: boolean;
  launch_at_login: boolean;
}
