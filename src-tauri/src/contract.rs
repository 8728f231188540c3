//! Keeps `ui/src/types.ts` identical to the Rust types. This test builds a value of every type
//! the webview receives, with every enum variant and every optional field both set and unset,
//! serializes each with serde exactly as Tauri does, and writes them as *typed* TypeScript
//! constants to `ui/src/generated/contract-samples.ts`. `tsc` (`npm run ui:check`) then refuses
//! any field or variant the two sides disagree on (an extra field is an excess property, a
//! missing one a missing property, and each enum is a `Record` over the TypeScript union, so
//! a variant missing on either side fails too).
//!
//! The test fails when the committed file is stale; `UPDATE_CONTRACT=1 cargo test -p
//! underpass-gui contract` rewrites it.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use underpass_profile::{
    BundleInfo, Catalog, CatalogServer, Keystore, Policy, ProfileName, ProfileSummary, SignerKey,
};
use underpass_proto::{
    DnsStatus, DoctorReport, FirewallState, Key, KillSwitchMode, Layer, LayerId, LayerVerdict,
    LeakedPacket, MtuFinding, PeerStatus, ReconnectReason, ReconnectStatus, ResolverRoute,
    RoutingSummary, SelfTestKind, SelfTestReport, Status, TunnelState, Verdict,
};

use crate::connect::{Connecting, Target};
use crate::doctor::DoctorRun;
use crate::helper::{HelperView, LinkState, SelfTestProgress};
use crate::links::OpenRequest;
use crate::profiles::{ImportOutcome, UntrustedSigner};
use crate::settings::Settings;

/// Every variant of a fieldless enum; adding a variant without listing it here fails to
/// compile (the match is exhaustive).
macro_rules! all_variants {
    ($t:ident: $($v:ident),+) => {{
        let all = vec![$($t::$v),+];
        for x in &all {
            match x {
                $($t::$v)|+ => {}
            }
        }
        all
    }};
}

struct Out(String);

impl Out {
    fn value<T: Serialize>(&mut self, name: &str, ty: &str, v: &T) {
        let json = serde_json::to_string_pretty(v).unwrap();
        writeln!(self.0, "export const {name}: T.{ty} = {json};\n").unwrap();
    }

    fn variants<T: Serialize>(&mut self, name: &str, ty: &str, all: &[T]) {
        let keys: Vec<String> = all
            .iter()
            .map(|v| format!("  {}: true,", serde_json::to_string(v).unwrap()))
            .collect();
        writeln!(
            self.0,
            "export const {name}: Record<T.{ty}, true> = {{\n{}\n}};\n",
            keys.join("\n")
        )
        .unwrap();
    }
}

fn signer() -> SignerKey {
    SignerKey {
        public_key: "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".into(),
        key_id: "E7620F1842B4E81F".into(),
    }
}

fn connected_status() -> Status {
    Status {
        state: TunnelState::Connected,
        profile: Some("se-sto-wg-001".into()),
        interface: Some("upn0".into()),
        addresses: vec![
            "10.64.1.2/32".parse().unwrap(),
            "fd00:64:1::2/128".parse().unwrap(),
        ],
        endpoint: Some("192.0.2.10:51820".parse().unwrap()),
        rx_bytes: 123_456,
        tx_bytes: 7_890,
        last_handshake_secs: Some(12),
        error: Some("example".into()),
        mtu: Some(1420),
        routing: Some(RoutingSummary {
            full_tunnel: true,
            include: vec!["10.0.0.0/8".parse().unwrap()],
            exclude: vec!["10.9.0.0/16".parse().unwrap()],
            fwmark: 0x5550,
            table: 5550,
        }),
        peers: vec![PeerStatus {
            public_key: Key([2; 32]),
            endpoint: Some("192.0.2.10:51820".parse().unwrap()),
            allowed_ips: vec!["0.0.0.0/0".parse().unwrap()],
            rx_bytes: 1,
            tx_bytes: 2,
            last_handshake_secs: Some(3),
        }],
        kill_switch: KillSwitchMode::Auto,
        lan_access: true,
        firewall: FirewallState::TunnelOnly,
        dns: Some(DnsStatus {
            servers: vec!["10.64.1.1".parse().unwrap()],
            method: "resolv.conf".into(),
        }),
        ..Status::disconnected()
    }
}

/// A troubleshooter report with every verdict: the routes fail, so what follows is skipped.
pub(crate) fn doctor_report() -> DoctorReport {
    let layer = |id: LayerId, verdict: LayerVerdict| Layer {
        id,
        verdict,
        depends_on: (verdict == LayerVerdict::Skipped).then_some(LayerId::Routes),
        evidence: vec![format!("{id}: what was seen")],
        explanation: format!("{id}: what it means"),
        fix: matches!(verdict, LayerVerdict::Fail | LayerVerdict::Warn)
            .then(|| format!("{id}: what to do")),
    };
    DoctorReport {
        layers: vec![
            layer(LayerId::ControlPlane, LayerVerdict::Ok),
            layer(LayerId::OuterPath, LayerVerdict::Ok),
            layer(LayerId::Interface, LayerVerdict::Warn),
            layer(LayerId::Routes, LayerVerdict::Fail),
            layer(LayerId::Firewall, LayerVerdict::Skipped),
            layer(LayerId::Dns, LayerVerdict::Skipped),
            layer(LayerId::Mtu, LayerVerdict::Skipped),
        ],
        mtu: Some(MtuFinding {
            current: 1420,
            explicit: None,
            largest_packet: Some(1312),
            suggested: Some(1312),
        }),
    }
}

fn summary(bundle: Option<BundleInfo>) -> ProfileSummary {
    ProfileSummary {
        name: ProfileName::new("se-sto-wg-001").unwrap(),
        source: Some("se-sto-wg-001.conf".into()),
        endpoint: "192.0.2.10:51820".into(),
        addresses: vec!["10.64.1.2/32".parse().unwrap()],
        peers: 1,
        full_tunnel: true,
        imported_at: 1_700_000_000,
        country: Some("SE".into()),
        city: Some("Stockholm".into()),
        keystore: Keystore::File,
        bundle,
    }
}

fn generate() -> String {
    let mut o = Out(String::from(
        "// GENERATED by `UPDATE_CONTRACT=1 cargo test -p underpass-gui contract`\n\
         // (src-tauri/src/contract.rs) from real Rust values. Do not edit: if `tsc` fails\n\
         // here, ui/src/types.ts no longer matches the Rust types.\n\
         import type * as T from \"../types\";\n\n",
    ));
    o.variants(
        "tunnelStates",
        "TunnelState",
        &all_variants!(TunnelState: Disconnected, Connecting, Connected, Reconnecting, Offline, Disconnecting, Error),
    );
    o.variants(
        "reconnectReasons",
        "ReconnectReason",
        &all_variants!(ReconnectReason: ServerNotResponding, NetworkChanged, ResumedFromSleep, SessionExpired, SetupFailed, NoNetwork),
    );
    o.variants(
        "killSwitchModes",
        "KillSwitchMode",
        &all_variants!(KillSwitchMode: Off, Auto, Lockdown),
    );
    o.variants(
        "firewallStates",
        "FirewallState",
        &all_variants!(FirewallState: Open, TunnelOnly, Blocking),
    );
    o.variants(
        "selfTestKinds",
        "SelfTestKind",
        &all_variants!(SelfTestKind: Dns, KillSwitch),
    );
    o.variants(
        "verdicts",
        "Verdict",
        &all_variants!(Verdict: Pass, Fail, Inconclusive),
    );
    o.variants(
        "keystores",
        "Keystore",
        &all_variants!(Keystore: Keyring, File),
    );
    o.variants(
        "layerIds",
        "LayerId",
        &all_variants!(LayerId: ControlPlane, OuterPath, Interface, Routes, Firewall, Dns, Mtu),
    );
    o.variants(
        "layerVerdicts",
        "LayerVerdict",
        &all_variants!(LayerVerdict: Ok, Warn, Fail, Skipped),
    );
    o.variants("linkStates", "LinkState", &all_variants!(LinkState: Connecting, Connected, NotRunning, NotInstalled, PermissionDenied, Incompatible, Lost));

    o.value("statusConnected", "Status", &connected_status());
    o.value("statusDisconnected", "Status", &Status::disconnected());
    o.value(
        "statusReconnecting",
        "Status",
        &Status {
            state: TunnelState::Reconnecting,
            reconnect: Some(ReconnectStatus {
                reason: ReconnectReason::ServerNotResponding,
                attempt: 2,
                since_secs: 9,
                last_answer_secs: Some(24),
                action: "opening a new socket and looking the server up again".into(),
                last_error: Some("example".into()),
            }),
            ..connected_status()
        },
    );
    let view = HelperView {
        link: LinkState::Connected,
        message: None,
        socket: "/run/underpass/underpassd.sock".into(),
        helper_version: Some("0.1.0".into()),
        status: Some(connected_status()),
    };
    o.value("helperViewConnected", "HelperView", &view);
    let view = HelperView {
        link: LinkState::NotRunning,
        message: Some("the Underpass helper is not running".into()),
        helper_version: None,
        status: None,
        ..view
    };
    o.value("helperViewNotRunning", "HelperView", &view);
    o.value(
        "selfTestProgress",
        "SelfTestProgress",
        &SelfTestProgress {
            test: SelfTestKind::Dns,
            step: "resolving 5 names".into(),
        },
    );
    o.value(
        "selfTestReport",
        "SelfTestReport",
        &SelfTestReport {
            test: SelfTestKind::Dns,
            verdict: Verdict::Fail,
            duration_ms: 2100,
            captured_on: vec!["eth0".into()],
            sent: vec!["a1b2.leaktest.underpass.invalid".into()],
            leaks: vec![
                LeakedPacket {
                    interface: "eth0".into(),
                    protocol: "udp".into(),
                    source: "198.51.100.2:40000".into(),
                    destination: "198.51.100.1:53".into(),
                    detail: Some("a1b2.leaktest.underpass.invalid".into()),
                },
                LeakedPacket {
                    interface: "eth0".into(),
                    protocol: "icmp".into(),
                    source: "198.51.100.2".into(),
                    destination: "192.0.2.1".into(),
                    detail: None,
                },
            ],
            resolvers: vec![
                ResolverRoute {
                    server: "10.64.1.1".parse().unwrap(),
                    interface: Some("upn0".into()),
                    through_tunnel: true,
                },
                ResolverRoute {
                    server: "198.51.100.1".parse().unwrap(),
                    interface: None,
                    through_tunnel: false,
                },
            ],
            notes: vec!["example".into()],
        },
    );
    o.value("doctorRun", "DoctorRun", &DoctorRun::new(doctor_report()));
    o.value(
        "doctorRunExplicitMtu",
        "DoctorRun",
        &DoctorRun::new(DoctorReport {
            mtu: Some(MtuFinding {
                current: 1380,
                explicit: Some(1380),
                largest_packet: None,
                suggested: None,
            }),
            ..doctor_report()
        }),
    );
    o.value(
        "doctorRunNoMtu",
        "DoctorRun",
        &DoctorRun::new(DoctorReport {
            mtu: None,
            ..doctor_report()
        }),
    );
    let bundle = BundleInfo {
        organization: "ACME IT".into(),
        description: Some("Staff VPN".into()),
        serial: 3,
        expires: Some("2030-01-01T00:00:00Z".into()),
        expires_at: Some(1_893_456_000),
        signer: signer(),
        trusted_comment: "timestamp:1700000000".into(),
        policy: Policy {
            min_kill_switch: KillSwitchMode::Auto,
            split_tunnel_allowed: false,
            lan_access_allowed: true,
            dns_locked: true,
        },
        key_generated_locally: true,
    };
    o.value(
        "profileSigned",
        "ProfileSummary",
        &summary(Some(bundle.clone())),
    );
    let plain = ProfileSummary {
        source: None,
        country: None,
        city: None,
        keystore: Keystore::Keyring,
        ..summary(None)
    };
    o.value("profilePlain", "ProfileSummary", &plain);
    let server = |profile: &str, country: Option<&str>, server: Option<&str>| CatalogServer {
        profile: ProfileName::new(profile).unwrap(),
        server: server.map(str::to_string),
        country: country.map(str::to_string),
        city: country.map(|_| "Stockholm".to_string()),
        endpoint: "192.0.2.10:51820".into(),
        public_key: Key([2; 32]),
        organization: server.map(|_| "ACME IT".to_string()),
    };
    o.value(
        "catalog",
        "Catalog",
        &Catalog::build(vec![
            server("se-sto-wg-001", Some("SE"), Some("sto-1")),
            server("mystery", None, None),
        ]),
    );
    o.value(
        "importOutcome",
        "ImportOutcome",
        &ImportOutcome {
            source: "acme.underpass".into(),
            imported: vec!["acme".into()],
            failed: vec!["broken.conf: line 3".into()],
            ignored_hooks: 1,
            untrusted: Some(UntrustedSigner {
                organization: "ACME IT".into(),
                signer: signer(),
            }),
        },
    );
    o.value(
        "importOutcomePlain",
        "ImportOutcome",
        &ImportOutcome {
            source: "x.conf".into(),
            imported: vec![],
            failed: vec![],
            ignored_hooks: 0,
            untrusted: None,
        },
    );
    o.value(
        "settings",
        "Settings",
        &Settings {
            split_include: vec!["10.0.0.0/8".parse().unwrap()],
            split_exclude: vec!["fd00::/8".parse().unwrap()],
            notifications: true,
            custom_dns: vec!["10.64.0.1".parse().unwrap()],
            connect_on_launch: true,
            launch_at_login: false,
            last_target: Some(Target::Fastest {
                country: Some("SE".into()),
            }),
        },
    );
    o.value(
        "settingsDefault",
        "Settings",
        &Settings {
            last_target: Some(Target::Server {
                profile: "se-sto-wg-001".into(),
                server: None,
            }),
            ..Settings::default()
        },
    );
    o.value("targetFastest", "Target", &Target::default());
    o.value(
        "connecting",
        "Connecting",
        &Connecting {
            profile: "se-sto-wg-001".into(),
            server: Some("sto-1".into()),
            rtt_ms: Some(12.5),
            measured: 3,
        },
    );
    o.value(
        "connectingGiven",
        "Connecting",
        &Connecting {
            profile: "mystery".into(),
            server: None,
            rtt_ms: None,
            measured: 0,
        },
    );
    for (name, request) in [
        (
            "openSelect",
            OpenRequest::Select {
                target: Target::Server {
                    profile: "acme".into(),
                    server: Some("sto-1".into()),
                },
            },
        ),
        (
            "openImport",
            OpenRequest::Import {
                paths: vec!["/home/u/acme.underpass".into()],
            },
        ),
        (
            "openImportLink",
            OpenRequest::ImportLink {
                path: "/home/u/.config/underpass/inbox/link-1.underpass".into(),
                organization: "ACME IT".into(),
                profile: "acme".into(),
                serial: 3,
            },
        ),
        (
            "openRefused",
            OpenRequest::Refused {
                what: "underpass://nope".into(),
                reason: "unknown action \"nope\"".into(),
            },
        ),
    ] {
        o.value(name, "OpenRequest", &request);
    }
    o.0.trim_end().to_string() + "\n"
}

#[test]
fn contract_samples_match_the_committed_typescript() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/generated/contract-samples.ts");
    let fresh = generate();
    if std::env::var_os("UPDATE_CONTRACT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: the Rust types changed. Run `UPDATE_CONTRACT=1 cargo test -p underpass-gui contract`, then `npm run ui:check` and fix ui/src/types.ts until it passes",
        path.display()
    );
}
