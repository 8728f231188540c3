// Values the unit tests hand to the UI as if the app had sent them. They are typed with the
// generated contract (generated/contract.ts), so `tsc` refuses any that the Rust types would not
// produce.
import type * as T from "./generated/contract";

const KEY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const ENDPOINT = "192.0.2.10:51820";

export const statusDisconnected: T.Status = {
  state: "disconnected",
  profile: null,
  interface: null,
  addresses: [],
  endpoint: null,
  rx_bytes: 0,
  tx_bytes: 0,
  last_handshake_secs: null,
  error: null,
  mtu: null,
  routing: null,
  peers: [],
  kill_switch: "auto",
  lan_access: false,
  firewall: "open",
  dns: null,
  policy: null,
  reconnect: null,
  server_in_use: null,
};

export const statusConnected: T.Status = {
  ...statusDisconnected,
  state: "connected",
  profile: "se-sto-wg-001",
  interface: "upn0",
  addresses: ["10.64.1.2/32", "fd00:64:1::2/128"],
  endpoint: ENDPOINT,
  rx_bytes: 123456,
  tx_bytes: 7890,
  last_handshake_secs: 12,
  error: "example",
  mtu: 1420,
  routing: { full_tunnel: true, include: ["10.0.0.0/8"], exclude: ["10.9.0.0/16"], fwmark: 21840, table: 5550 },
  peers: [
    { public_key: KEY, endpoint: ENDPOINT, allowed_ips: ["0.0.0.0/0"], rx_bytes: 1, tx_bytes: 2, last_handshake_secs: 3 },
  ],
  lan_access: true,
  firewall: "tunnel_only",
  dns: { servers: ["10.64.1.1"], method: "resolv.conf" },
};

export const helperViewConnected: T.HelperView = {
  link: "connected",
  message: null,
  socket: "/run/underpass/underpassd.sock",
  helper_version: "0.1.0",
  status: statusConnected,
};

export const helperViewNotRunning: T.HelperView = {
  ...helperViewConnected,
  link: "not_running",
  message: "the Underpass helper is not running",
  helper_version: null,
  status: null,
};

export const profileSigned: T.ProfileSummary = {
  name: "se-sto-wg-001",
  source: "se-sto-wg-001.conf",
  endpoint: ENDPOINT,
  addresses: ["10.64.1.2/32"],
  peers: 1,
  full_tunnel: true,
  imported_at: 1700000000,
  country: "SE",
  city: "Stockholm",
  keystore: "file",
  bundle: {
    organization: "ACME IT",
    description: "Staff VPN",
    serial: 3,
    expires: "2030-01-01T00:00:00Z",
    expires_at: 1893456000,
    signer: { public_key: "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3", key_id: "E7620F1842B4E81F" },
    trusted_comment: "timestamp:1700000000",
    policy: { min_kill_switch: "auto", split_tunnel_allowed: false, lan_access_allowed: true, dns_locked: true },
    key_generated_locally: true,
  },
};

export const catalog: T.Catalog = {
  countries: [
    {
      code: "SE",
      name: "Sweden",
      flag: "🇸🇪",
      servers: [
        {
          profile: "se-sto-wg-001",
          server: "sto-1",
          country: "SE",
          city: "Stockholm",
          endpoint: ENDPOINT,
          public_key: KEY,
          organization: "ACME IT",
        },
      ],
    },
    {
      code: null,
      name: "Unknown location",
      flag: null,
      servers: [
        { profile: "mystery", server: null, country: null, city: null, endpoint: ENDPOINT, public_key: KEY, organization: null },
      ],
    },
  ],
};

export const connecting: T.Connecting = { profile: "se-sto-wg-001", server: "sto-1", rtt_ms: 12.5, measured: 3 };

export const openSelect: T.OpenRequest = {
  kind: "select",
  target: { kind: "server", profile: "acme", server: "sto-1" },
};

export const openImportLink: T.OpenRequest = {
  kind: "import_link",
  path: "/home/u/.config/underpass/inbox/link-1.underpass",
  organization: "ACME IT",
  profile: "acme",
  serial: 3,
};

export const openRefused: T.OpenRequest = { kind: "refused", what: "underpass://nope", reason: 'unknown action "nope"' };

/** A troubleshooter report with every verdict: the routes fail, so what follows is skipped. */
const doctorLayer = (id: T.LayerId, verdict: T.LayerVerdict): T.Layer => ({
  id,
  verdict,
  depends_on: verdict === "skipped" ? "routes" : null,
  evidence: [`${id}: what was seen`],
  explanation: `${id}: what it means`,
  fix: verdict === "fail" || verdict === "warn" ? `${id}: what to do` : null,
});
const doctorLayers: T.Layer[] = [
  doctorLayer("control-plane", "ok"),
  doctorLayer("outer-path", "ok"),
  doctorLayer("interface", "warn"),
  doctorLayer("routes", "fail"),
  doctorLayer("firewall", "skipped"),
  doctorLayer("dns", "skipped"),
  doctorLayer("mtu", "skipped"),
];
/** What `DoctorReport::to_text` prints for it (crates/proto/src/doctor_text.rs). */
const doctorText = "   1. control-plane  ok       Is the control plane healthy: peer authenticated, keys current?\n         - control-plane: what was seen\n         control-plane: what it means\n   2. outer-path     ok       Do packets reach the endpoint over the real network?\n         - outer-path: what was seen\n         outer-path: what it means\n   3. interface      WARN     Is the virtual interface up and addressed correctly?\n         - interface: what was seen\n         interface: what it means\n         Fix: interface: what to do\n>> 4. routes         FAIL     Are the expected routes present?\n         - routes: what was seen\n         routes: what it means\n         Fix: routes: what to do\n   5. firewall       skipped  Do the firewall rules allow the tunnel's traffic?\n         (depends on routes)\n         - firewall: what was seen\n   6. dns            skipped  Is DNS aligned with the routing?\n         (depends on routes)\n         - dns: what was seen\n   7. mtu            skipped  Is the MTU small enough for the real path?\n         (depends on routes)\n         - mtu: what was seen\n\nFirst failing layer: routes — routes: what to do\n";

export const doctorRun: T.DoctorRun = {
  report: { layers: doctorLayers, mtu: { current: 1420, explicit: null, largest_packet: 1312, suggested: 1312 } },
  text: doctorText,
};
export const doctorRunExplicitMtu: T.DoctorRun = {
  report: { layers: doctorLayers, mtu: { current: 1380, explicit: 1380, largest_packet: null, suggested: null } },
  text: doctorText,
};
export const doctorRunNoMtu: T.DoctorRun = { report: { layers: doctorLayers, mtu: null }, text: doctorText };
export const layerIds: Record<T.LayerId, true> = {
  "control-plane": true,
  "outer-path": true,
  interface: true,
  routes: true,
  firewall: true,
  dns: true,
  mtu: true,
};
