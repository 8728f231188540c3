// GENERATED from the Rust types by ts-rs (src-tauri/src/contract.rs). Do not edit:
// change the Rust type, then run `npm run contract`.

/**
 * The tunnel's state machine, as seen from outside.
 */
export type TunnelState = "disconnected" | "connecting" | "connected" | "reconnecting" | "offline" | "disconnecting" | "error";

export type ReconnectReason = "server_not_responding" | "network_changed" | "resumed_from_sleep" | "session_expired" | "setup_failed" | "no_network";

/**
 * What the helper is doing to heal the tunnel, for [`TunnelState::Reconnecting`] and
 * [`TunnelState::Offline`].
 */
export type ReconnectStatus = { reason: ReconnectReason, 
/**
 * 1 for the first attempt; reset when the tunnel works again or the network comes back.
 */
attempt: number, 
/**
 * Seconds since the tunnel stopped working (since it entered this episode).
 */
since_secs: number, 
/**
 * Seconds since the server last answered, if it ever did in this session.
 */
last_answer_secs: number | null, 
/**
 * What the current attempt does, in words ("forcing a handshake", "new socket", ...).
 */
action: string, 
/**
 * The last attempt's failure, if it failed with an error rather than silence.
 */
last_error: string | null, };

/**
 * When the firewall blocks traffic that does not go through the tunnel.
 */
export type KillSwitchMode = "off" | "auto" | "lockdown";

export type FirewallState = "open" | "tunnel_only" | "blocking";

export type RoutingSummary = { 
/**
 * True when a default route (v4 or v6) goes through the tunnel.
 */
full_tunnel: boolean, 
/**
 * Prefixes routed into the tunnel.
 */
include: Array<string>, 
/**
 * Prefixes carved back out of the tunnel.
 */
exclude: Array<string>, 
/**
 * Firewall mark on the helper's own encrypted UDP, and the policy-routing table.
 */
fwmark: number, table: number, };

export type PeerStatus = { public_key: string, endpoint: string | null, allowed_ips: Array<string>, rx_bytes: number, tx_bytes: number, last_handshake_secs: number | null, };

export type DnsStatus = { servers: Array<string>, 
/**
 * `resolv.conf` (rewritten in place) or `systemd-resolved`.
 */
method: string, };

/**
 * What an organization requires of every session of a signed profile. The client checks it
 * before asking; the helper holds the whole session to it.
 */
export type Policy = { 
/**
 * The weakest kill-switch mode the user may choose.
 */
min_kill_switch: KillSwitchMode, 
/**
 * May the user route only some prefixes through the tunnel (or exclude some)?
 */
split_tunnel_allowed: boolean, 
/**
 * May the local network be reached outside the tunnel?
 */
lan_access_allowed: boolean, 
/**
 * Must all DNS go to the tunnel's resolvers? Underpass locks DNS with the kill switch,
 * so this also requires at least `auto`.
 */
dns_locked: boolean, };

/**
 * The policy a connect request carries, with who set it.
 */
export type SessionPolicy = { organization: string, serial: number, policy: Policy, };

/**
 * What a managed machine's policy locks, for the CLI and the app to show.
 */
export type ManagedStatus = { organization: string, 
/**
 * The file the policy comes from (`/etc/underpass/policy.json`).
 */
source: string, 
/**
 * One entry per locked setting, with the reason in words.
 */
locked: Array<LockedSetting>, };

export type LockedSetting = { 
/**
 * `kill_switch`, `split_tunnel`, `lan_access`, `dns`, `servers` or `profiles`.
 */
setting: string, reason: string, };

/**
 * Which server of the user's choice the tunnel uses (or is trying).
 */
export type ServerInUse = { 
/**
 * The profile of the server.
 */
profile: string, 
/**
 * For a signed bundle, the server's id in it.
 */
server: string | null, endpoint: string, 
/**
 * 1-based position of the server in the choice, in the order the client sent it.
 */
position: number, 
/**
 * How many servers the choice holds (1 for a named server).
 */
of: number, };

/**
 * Everything a client can see about the tunnel. `underpass status --json` prints exactly this.
 */
export type Status = { state: TunnelState, profile: string | null, interface: string | null, addresses: Array<string>, 
/**
 * The endpoint of the first peer (the server), as resolved.
 */
endpoint: string | null, rx_bytes: number, tx_bytes: number, 
/**
 * Seconds since the most recent handshake with any peer.
 */
last_handshake_secs: number | null, 
/**
 * Why the tunnel is in [`TunnelState::Error`], in words a user can act on.
 */
error: string | null, mtu: number | null, 
/**
 * Routing mode actually installed.
 */
routing: RoutingSummary | null, peers: Array<PeerStatus>, kill_switch: KillSwitchMode, lan_access: boolean, 
/**
 * What the firewall does right now.
 */
firewall: FirewallState, 
/**
 * The resolvers the system is pointed at while connected, and how.
 */
dns: DnsStatus | null, 
/**
 * The policy of the signed profile the user wants connected, if any.
 */
policy: SessionPolicy | null, 
/**
 * Set when the machine obeys a managed policy: who manages it and what is locked.
 */
managed?: ManagedStatus, 
/**
 * While reconnecting or offline: why, which attempt, and for how long.
 */
reconnect: ReconnectStatus | null, 
/**
 * Which server of the user's choice is in use (issue 8).
 */
server_in_use: ServerInUse | null, };

export type SelfTestKind = "dns" | "kill_switch";

export type Verdict = "pass" | "fail" | "inconclusive";

export type LeakedPacket = { interface: string, 
/**
 * `udp`, `tcp`, `icmp`, `icmpv6` or the EtherType.
 */
protocol: string, source: string, destination: string, 
/**
 * For DNS, the query name when it could be read.
 */
detail: string | null, };

export type ResolverRoute = { server: string, 
/**
 * The interface the kernel routes queries to this server through.
 */
interface: string | null, through_tunnel: boolean, };

/**
 * The evidence of one self-test: what it sent, where it listened, what it saw.
 */
export type SelfTestReport = { test: SelfTestKind, verdict: Verdict, duration_ms: number, 
/**
 * The interfaces the capture listened on (all but loopback and the tunnel).
 */
captured_on: Array<string>, 
/**
 * What the test sent: names resolved, probes fired, the drop simulated.
 */
sent: Array<string>, 
/**
 * Every packet that counts against the verdict.
 */
leaks: Array<LeakedPacket>, 
/**
 * The DNS test: the resolvers the system is configured with, and their routes.
 */
resolvers: Array<ResolverRoute>, 
/**
 * Anything a reader should know (for example why the test was inconclusive).
 */
notes: Array<string>, };

/**
 * The seven layers, in the order the doctor walks them.
 */
export type LayerId = "control-plane" | "outer-path" | "interface" | "routes" | "firewall" | "dns" | "mtu";

export type LayerVerdict = "ok" | "warn" | "fail" | "skipped";

/**
 * One layer's finding.
 */
export type Layer = { id: LayerId, verdict: LayerVerdict, 
/**
 * For `skipped`: the layer whose failure keeps this one from being judged.
 */
depends_on: LayerId | null, 
/**
 * What was looked at or measured, one fact per line.
 */
evidence: Array<string>, 
/**
 * What it means, in plain words.
 */
explanation: string, 
/**
 * What to do about it (`None` when there is nothing to do).
 */
fix: string | null, };

/**
 * What the path-MTU probe found, so a client can offer to apply it.
 */
export type MtuFinding = { 
/**
 * The tunnel's MTU now.
 */
current: number, 
/**
 * The profile's own `MTU =`, which always wins.
 */
explicit: number | null, 
/**
 * The largest packet that crossed the tunnel, when the probe ran.
 */
largest_packet: number | null, 
/**
 * The MTU to apply, when it differs from `current` and the profile sets none.
 */
suggested: number | null, };

/**
 * `underpass doctor --json` prints exactly this.
 */
export type DoctorReport = { 
/**
 * All seven, in [`LayerId::ALL`] order.
 */
layers: Array<Layer>, mtu: MtuFinding | null, };

/**
 * A valid profile name: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with `.` or
 * `-` (hidden files; command-line flags), and not a name Windows reserves (`CON`, `NUL`…).
 * It doubles as a file name in the store, which is why it is this strict.
 */
export type ProfileName = string;

/**
 * Which store holds private keys.
 */
export type Keystore = "keyring" | "file";

/**
 * A minisign public key: its 8-byte id and its `RW...` text.
 */
export type SignerKey = { 
/**
 * `RW...`, 56 characters: the fingerprint the user compares.
 */
public_key: string, 
/**
 * The key id as minisign prints it (16 upper-case hex digits).
 */
key_id: string, };

/**
 * Who signed a profile, and what it requires: shown by `underpass profiles` and the app.
 */
export type BundleInfo = { organization: string, description: string | null, serial: number, 
/**
 * As written in the bundle (`YYYY-MM-DDTHH:MM:SSZ`).
 */
expires: string | null, expires_at: number | null, signer: SignerKey, trusted_comment: string, policy: Policy, 
/**
 * True when this device generated the private key (the bundle said "generate_locally").
 */
key_generated_locally: boolean, };

/**
 * What `underpass profiles` shows, and what the app's profile list needs.
 */
export type ProfileSummary = { name: ProfileName, 
/**
 * The file name it was imported from, if known.
 */
source: string | null, 
/**
 * The first peer's endpoint.
 */
endpoint: string, addresses: Array<string>, peers: number, full_tunnel: boolean, 
/**
 * Seconds since the Unix epoch.
 */
imported_at: number, 
/**
 * Where the server is (wg-quick profiles; a bundle's servers each have their own).
 */
country: string | null, city: string | null, 
/**
 * Where the private key lives.
 */
keystore: Keystore, 
/**
 * Set for a profile installed from a signed bundle.
 */
bundle: BundleInfo | null, };

/**
 * One server a user can connect to: `underpass connect PROFILE [--server SERVER]`.
 */
export type CatalogServer = { profile: ProfileName, 
/**
 * The bundle's server id; `None` for a wg-quick profile.
 */
server: string | null, country: string | null, city: string | null, endpoint: string, public_key: string, 
/**
 * The organization that signed the profile, if any.
 */
organization: string | null, };

/**
 * The servers of one country.
 */
export type CatalogCountry = { 
/**
 * ISO 3166-1 alpha-2; `None` for the unknown group.
 */
code: string | null, name: string, 
/**
 * Regional-indicator emoji (`🇸🇪`); `None` for the unknown group.
 */
flag: string | null, servers: Array<CatalogServer>, };

export type Catalog = { countries: Array<CatalogCountry>, };

/**
 * Whether the app can talk to the helper, and if not, why.
 */
export type LinkState = "connecting" | "connected" | "not_running" | "not_installed" | "permission_denied" | "incompatible" | "lost";

/**
 * What the UI shows about the helper. Sent whole on every change.
 */
export type HelperView = { link: LinkState, 
/**
 * Why the helper cannot be reached and what to do, in the client library's words.
 */
message: string | null, 
/**
 * The socket the app uses (shown on the "no helper" screen).
 */
socket: string, helper_version: string | null, 
/**
 * The last status the helper reported; `None` unless `link` is `connected`.
 */
status: Status | null, };

/**
 * A self-test step, forwarded as the helper reported it.
 */
export type SelfTestProgress = { test: SelfTestKind, step: string, };

/**
 * One troubleshooter run as the webview gets it.
 */
export type DoctorRun = { report: DoctorReport, 
/**
 * The plain-text form, for "Copy for support".
 */
text: string, };

export type UntrustedSigner = { organization: string, signer: SignerKey, };

/**
 * The result of importing one path (a file, a folder or a zip).
 */
export type ImportOutcome = { 
/**
 * The file or folder name, as the user sees it.
 */
source: string, 
/**
 * Names of the profiles imported (or updated).
 */
imported: Array<string>, 
/**
 * One message per file that was refused, naming the file and the reason.
 */
failed: Array<string>, 
/**
 * Hook commands (`PostUp = ...`) found and dropped: they are never run.
 */
ignored_hooks: number, 
/**
 * A signed bundle whose key this user has not trusted yet: ask, then import again with
 * `trust`.
 */
untrusted: UntrustedSigner | null, };

/**
 * What to connect to.
 */
export type Target = { "kind": "fastest", country: string | null, } | { "kind": "server", profile: string, server: string | null, };

/**
 * Where a connect request went.
 */
export type Connecting = { profile: string, server: string | null, 
/**
 * The measured handshake round trip, when the server was chosen by measuring.
 */
rtt_ms: number | null, 
/**
 * How many servers were measured (0: none, the server was given or the only one).
 */
measured: number, };

/**
 * One thing to open, for the webview.
 */
export type OpenRequest = { "kind": "select", target: Target, } | { "kind": "import", paths: Array<string>, } | { "kind": "import_link", path: string, organization: string, profile: string, serial: number, } | { "kind": "refused", what: string, reason: string, };

export type Settings = { 
/**
 * Prefixes routed into the tunnel; empty means a full tunnel.
 */
split_include: Array<string>, 
/**
 * Prefixes kept out of the tunnel.
 */
split_exclude: Array<string>, 
/**
 * Desktop notifications on connect, unexpected disconnect, kill-switch block and a
 * failed self-test.
 */
notifications: boolean, 
/**
 * Resolvers to use instead of the profile's; empty means the profile's. They are
 * reached through the tunnel like the profile's, and a policy with `dns_locked` refuses
 * them.
 */
custom_dns: Array<string>, 
/**
 * Connect to [`Settings::last_target`] when the app starts.
 */
connect_on_launch: boolean, 
/**
 * Start the app (in the tray) when the user logs in. The OS's autostart entry is the
 * truth: `get_settings` reports the entry, `save_settings` writes or removes it; the value
 * kept in the file only records the last choice.
 */
launch_at_login: boolean, 
/**
 * What Connect, the tray and connect-on-launch use: the last server or "fastest" chosen.
 */
last_target: Target | null, };

/**
 * The Settings screen's form, as typed: lists are text, validated here.
 */
export type SettingsForm = { include: string, exclude: string, custom_dns: string, notifications: boolean, connect_on_launch: boolean, launch_at_login: boolean, };
