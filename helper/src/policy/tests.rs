//! The helper's own verdicts on connect requests: each way a member could try to get around
//! a signed bundle or the machine's policy, refused with a reason that names it.

use std::fs;
use std::path::Path;

use underpass_proto::{Key, KillSwitchMode, SignedBundle, TunnelConfig};
use underpass_trust::bundle::signing;
use underpass_trust::system::{POLICY_FILE, TRUSTED_KEYS};

use super::*;

const SERVER_KEY: &str = "PsvPX3MfJ4JVnNpUy/tflueDBxs2S0Ne2kEHsslTkDg=";
const NOW: u64 = 1_800_000_000;

struct Org {
    sk_text: String,
    pub_file: String,
    public_key: String,
}

fn org() -> Org {
    let (sk_text, pub_file, key) = signing::keygen(None).unwrap();
    Org {
        sk_text,
        pub_file,
        public_key: key.public_key,
    }
}

fn bundle(org: &Org, serial: u64, expires: &str, policy: &str) -> String {
    let payload = format!(
        r#"{{"format": "underpass-profile/1", "signer_public_key": "{}",
  "organization": "ACME IT", "name": "corp", "serial": {serial}, "expires": "{expires}",
  "interface": {{"addresses": ["10.70.0.2/32"], "dns": ["10.70.0.1"]}},
  "servers": [
    {{"id": "se-1", "country": "SE", "city": "Stockholm", "endpoint": "192.0.2.10:51820", "public_key": "{SERVER_KEY}"}},
    {{"id": "de-1", "country": "DE", "city": "Berlin", "endpoint": "192.0.2.20:51820", "public_key": "{SERVER_KEY}"}}
  ],
  "policy": {policy},
  "private_key": "generate_locally"}}
"#,
        org.public_key
    );
    let sk = signing::load_secret_key(&org.sk_text, None).unwrap();
    String::from_utf8(signing::sign(&sk, payload.as_bytes(), "t").unwrap()).unwrap()
}

const STRICT: &str = r#"{"min_kill_switch": "auto", "split_tunnel_allowed": false, "lan_access_allowed": false, "dns_locked": true}"#;
const LOOSE: &str = r#"{"min_kill_switch": "off", "split_tunnel_allowed": true, "lan_access_allowed": true, "dns_locked": false}"#;

/// What the client would send for server `id` of `text`.
fn request(text: &str, id: &str) -> TunnelConfig {
    let b = Bundle::open("t", text.as_bytes()).unwrap();
    let mut c = b
        .server_tunnel(b.server_index(id).unwrap(), Key([7; 32]))
        .unwrap();
    c.signed = Some(SignedBundle {
        bundle: text.into(),
        server: id.into(),
    });
    c
}

struct Machine {
    _dir: tempfile::TempDir,
    system: System,
}

fn machine(pinned: &[&Org], policy: Option<&str>) -> Machine {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("etc");
    fs::create_dir_all(sys.join(TRUSTED_KEYS)).unwrap();
    for (i, o) in pinned.iter().enumerate() {
        fs::write(sys.join(TRUSTED_KEYS).join(format!("{i}.pub")), &o.pub_file).unwrap();
    }
    if let Some(p) = policy {
        fs::write(sys.join(POLICY_FILE), p).unwrap();
    }
    for p in [&sys, &sys.join(TRUSTED_KEYS)] {
        restrict(p, 0o755);
    }
    if policy.is_some() {
        restrict(&sys.join(POLICY_FILE), 0o644);
    }
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let system = System::new(&sys, &state);
    Machine { _dir: dir, system }
}

fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

const MANAGED: &str = r#"{"organization": "ACME IT", "require_signed_bundle": true, "min_kill_switch": "auto", "lan_access_allowed": false}"#;

fn refused(m: &mut Machine, mut c: TunnelConfig, needle: &str) {
    let err = admit(&mut c, &mut m.system, NOW).unwrap_err();
    assert!(
        err.message.contains(needle),
        "expected {needle:?} in: {}",
        err.message
    );
}

#[test]
fn a_verified_bundle_sets_the_policy_whatever_the_client_claimed() {
    let acme = org();
    let mut m = machine(&[&acme], None);
    let text = bundle(&acme, 3, "2099-01-01T00:00:00Z", STRICT);
    let mut c = request(&text, "se-1");
    c.policy = None; // stripped by the client
    admit(&mut c, &mut m.system, NOW).unwrap();
    let p = c.policy.unwrap();
    assert_eq!((p.organization.as_str(), p.serial), ("ACME IT", 3));
    assert_eq!(p.policy.min_kill_switch, KillSwitchMode::Auto);
    assert!(!p.policy.lan_access_allowed);
}

#[test]
fn a_managed_machine_refuses_a_tunnel_without_a_signed_bundle() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    refused(&mut m, TunnelConfig::example(), "managed by ACME IT");
    refused(&mut m, TunnelConfig::example(), "carries none");
}

#[test]
fn a_bundle_signed_by_an_unpinned_key_is_refused_on_a_managed_machine() {
    let (acme, intruder) = (org(), org());
    let mut m = machine(&[&acme], Some(MANAGED));
    let text = bundle(&intruder, 9, "2099-01-01T00:00:00Z", LOOSE);
    refused(&mut m, request(&text, "se-1"), "which is not pinned in");
}

#[test]
fn an_expired_bundle_is_refused() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let text = bundle(&acme, 1, "2020-01-01T00:00:00Z", STRICT);
    refused(
        &mut m,
        request(&text, "se-1"),
        "expired on 2020-01-01T00:00:00Z",
    );
}

#[test]
fn a_rolled_back_serial_is_refused_and_the_counter_survives_a_restart() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let mut c = request(&bundle(&acme, 5, "2099-01-01T00:00:00Z", STRICT), "se-1");
    admit(&mut c, &mut m.system, NOW).unwrap();
    // The same serial again is fine (a reconnect); an older one is not.
    let mut again = request(&bundle(&acme, 5, "2099-01-01T00:00:00Z", STRICT), "se-1");
    admit(&mut again, &mut m.system, NOW).unwrap();
    let old = bundle(&acme, 4, "2099-01-01T00:00:00Z", LOOSE);
    refused(
        &mut m,
        request(&old, "se-1"),
        "serial 4, older than serial 5",
    );
    let mut restarted = System::new(&m.system.dir.clone(), m.system.serials.parent().unwrap());
    let err = admit(&mut request(&old, "se-1"), &mut restarted, NOW).unwrap_err();
    assert!(err.message.contains("a rollback"), "{}", err.message);
}

#[test]
fn the_machine_policy_wins_over_a_looser_bundle() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let mut c = request(&bundle(&acme, 1, "2099-01-01T00:00:00Z", LOOSE), "se-1");
    admit(&mut c, &mut m.system, NOW).unwrap();
    let p = c.policy.unwrap().policy;
    assert_eq!(p.min_kill_switch, KillSwitchMode::Auto);
    assert!(!p.lan_access_allowed && p.split_tunnel_allowed);
}

#[test]
fn a_split_tunnel_against_the_policy_is_refused() {
    let acme = org();
    let mut m = machine(&[&acme], None);
    let mut c = request(&bundle(&acme, 1, "2099-01-01T00:00:00Z", STRICT), "se-1");
    c.routing.include = vec!["10.70.0.0/16".parse().unwrap()];
    refused(&mut m, c, "split tunneling");
}

#[test]
fn custom_dns_is_refused_when_dns_is_locked() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let mut c = request(&bundle(&acme, 1, "2099-01-01T00:00:00Z", STRICT), "se-1");
    c.dns = vec!["10.9.9.9".parse().unwrap()];
    refused(&mut m, c, "custom DNS is not allowed");
}

#[test]
fn a_tunnel_that_is_not_the_bundles_is_refused() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let text = bundle(&acme, 1, "2099-01-01T00:00:00Z", STRICT);
    let mut c = request(&text, "se-1");
    c.peers[0].endpoint = "198.51.100.66:51820".into();
    refused(
        &mut m,
        c,
        "server (peer key, endpoint or allowed IPs) differs",
    );
    let mut c = request(&text, "se-1");
    c.addresses = vec!["10.71.0.2/32".parse().unwrap()];
    refused(&mut m, c, "interface addresses differs");
    let mut c = request(&text, "se-1");
    c.signed.as_mut().unwrap().server = "xx-9".into();
    refused(&mut m, c, "no server \"xx-9\"");
    let mut c = request(&text, "se-1");
    c.signed.as_mut().unwrap().bundle = text.replace("\"serial\": 1", "\"serial\": 2");
    refused(&mut m, c, "modified after it was signed");
}

#[test]
fn countries_and_servers_outside_the_machine_policy_are_refused() {
    let acme = org();
    let mut m = machine(
        &[&acme],
        Some(r#"{"organization": "ACME IT", "allowed_countries": ["SE"]}"#),
    );
    let text = bundle(&acme, 1, "2099-01-01T00:00:00Z", LOOSE);
    admit(&mut request(&text, "se-1"), &mut m.system, NOW).unwrap();
    refused(
        &mut m,
        request(&text, "de-1"),
        "servers in DE are not allowed",
    );
    // Without a bundle, no country can be verified.
    refused(&mut m, TunnelConfig::example(), "carries none");
}

#[test]
fn settings_are_held_to_the_machine_policy_even_when_disconnected() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let lower = SessionRequest {
        kill_switch: KillSwitchMode::Off,
        split_tunnel: false,
        lan_access: false,
    };
    let err = m.system.check_setting(None, &lower).unwrap_err();
    assert!(
        err.message.contains("managed by ACME IT") && err.message.contains("at least \"auto\""),
        "{}",
        err.message
    );
    let lan = SessionRequest {
        kill_switch: KillSwitchMode::Lockdown,
        split_tunnel: false,
        lan_access: true,
    };
    assert!(m.system.check_setting(None, &lan).is_err());
    let status = m.system.managed_status().unwrap();
    assert_eq!(status.organization, "ACME IT");
    let locked: Vec<&str> = status.locked.iter().map(|l| l.setting.as_str()).collect();
    assert_eq!(locked, ["kill_switch", "lan_access", "profiles"]);
}

#[test]
fn a_broken_system_directory_refuses_every_connect() {
    let acme = org();
    let mut m = machine(&[&acme], Some("{\"organization\": \"ACME IT\",,}"));
    refused(&mut m, TunnelConfig::example(), "policy.json: line 1");
    assert!(!m.system.active_session_admission());
}

#[test]
fn an_unmanaged_machine_connects_a_plain_tunnel_without_policy() {
    let mut m = machine(&[], None);
    let mut c = TunnelConfig::example();
    c.policy = Some(SessionPolicy {
        organization: "Nobody".into(),
        serial: 1,
        policy: underpass_proto::Policy {
            min_kill_switch: KillSwitchMode::Off,
            split_tunnel_allowed: true,
            lan_access_allowed: true,
            dns_locked: false,
        },
    });
    admit(&mut c, &mut m.system, NOW).unwrap();
    assert_eq!(c.policy, None, "a client's own policy claim is dropped");
    assert!(m.system.active_session_admission());
}

// ---- issue 8: every server of a choice is admitted like a connect of its own ----

#[test]
fn an_unsigned_alternative_cannot_be_smuggled_into_a_signed_choice() {
    let acme = org();
    let mut m = machine(&[&acme], Some(MANAGED));
    let text = bundle(&acme, 1, "2099-01-01T00:00:00Z", STRICT);
    let mut first = request(&text, "se-1");
    let mut alternatives = vec![request(&text, "de-1"), TunnelConfig::example()];
    let err =
        crate::failover::admit(&mut first, &mut alternatives, &mut m.system, NOW).unwrap_err();
    assert!(
        err.message.starts_with("alternatives[1]: ") && err.message.contains("carries none"),
        "{}",
        err.message
    );
}

#[test]
fn an_alternative_outside_the_machine_policy_refuses_the_whole_choice() {
    let acme = org();
    let mut m = machine(
        &[&acme],
        Some(r#"{"organization": "ACME IT", "allowed_countries": ["SE"]}"#),
    );
    let text = bundle(&acme, 1, "2099-01-01T00:00:00Z", LOOSE);
    let mut first = request(&text, "se-1");
    let mut alternatives = vec![request(&text, "de-1")];
    let err =
        crate::failover::admit(&mut first, &mut alternatives, &mut m.system, NOW).unwrap_err();
    assert!(
        err.message.starts_with("alternatives[0]: ")
            && err.message.contains("servers in DE are not allowed"),
        "{}",
        err.message
    );
    // A lying client's policy is replaced in every candidate, not only the first.
    let mut m = machine(&[&acme], None);
    let strict = bundle(&acme, 2, "2099-01-01T00:00:00Z", STRICT);
    let mut first = request(&strict, "se-1");
    let mut alternatives = vec![request(&strict, "de-1")];
    alternatives[0].policy = None;
    crate::failover::admit(&mut first, &mut alternatives, &mut m.system, NOW).unwrap();
    assert_eq!(
        alternatives[0]
            .policy
            .as_ref()
            .map(|p| p.policy.min_kill_switch),
        Some(KillSwitchMode::Auto)
    );
}

#[test]
fn a_tampered_alternative_is_refused_with_its_field_named() {
    let mut m = machine(&[], None);
    let mut first = TunnelConfig::example();
    let mut other = TunnelConfig::example();
    other.peers[0].public_key = Key([9; 32]);
    other.peers[0].endpoint = "0.0.0.0:51820".into();
    let err = crate::failover::admit(&mut first, &mut [other], &mut m.system, NOW).unwrap_err();
    assert!(
        err.message
            .starts_with("invalid connect request: alternatives[0]: peers[0].endpoint"),
        "{}",
        err.message
    );
}
