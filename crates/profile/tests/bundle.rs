//! Signed profile bundles: each way a bundle must be refused, and the ones it must accept,
//! including a signature made by the Debian `minisign` tool.

use std::process::Command;

use underpass_profile::bundle::{signing, BundleError, TrustStore, TrustedBy};
use underpass_profile::store::{ProfileName, Store, StoreError};
use underpass_profile::{Keystore, KillSwitchMode};

const SERVER_KEY_SE: &str = "PsvPX3MfJ4JVnNpUy/tflueDBxs2S0Ne2kEHsslTkDg=";
const SERVER_KEY_DE: &str = "bIJjUkhArZ+Nx4EbyfI7lIUaWmNTDXsbjVV9b8PCeaI=";
const CLIENT_KEY: &str = "zZiojYAvembIIhBW3jIPI91uexSn1oYWC3/vVrAbMj0=";

struct Signer {
    sk: minisign::SecretKey,
    public_key: String,
}

fn signer() -> Signer {
    let (sk_text, pk_text, key) = signing::keygen(None).unwrap();
    assert!(pk_text.contains(&key.public_key));
    Signer {
        sk: signing::load_secret_key(&sk_text, None).unwrap(),
        public_key: key.public_key,
    }
}

fn payload(signer_pk: &str, serial: u64, expires: Option<&str>, private_key: &str) -> String {
    let expires = expires
        .map(|e| format!("\"expires\": \"{e}\","))
        .unwrap_or_default();
    format!(
        r#"{{
  "format": "underpass-profile/1",
  "signer_public_key": "{signer_pk}",
  "organization": "Example Corp IT",
  "name": "corp",
  "description": "Office VPN",
  "serial": {serial},
  {expires}
  "interface": {{"addresses": ["10.70.0.2/32", "fd70::2/128"], "dns": ["10.70.0.1", "corp.example"], "mtu": 1380}},
  "servers": [
    {{"id": "se-sto-1", "country": "SE", "city": "Stockholm", "endpoint": "192.0.2.10:51820", "public_key": "{SERVER_KEY_SE}"}},
    {{"id": "de-fra-1", "country": "DE", "city": "Frankfurt", "endpoint": "[2001:db8::10]:51820", "public_key": "{SERVER_KEY_DE}", "allowed_ips": ["10.0.0.0/8"], "persistent_keepalive": 25}}
  ],
  "policy": {{"min_kill_switch": "auto", "split_tunnel_allowed": false, "lan_access_allowed": true, "dns_locked": true}},
  "private_key": {private_key}
}}
"#
    )
}

fn embedded() -> String {
    format!("{{\"embedded\": \"{CLIENT_KEY}\"}}")
}

fn signed(s: &Signer, serial: u64) -> Vec<u8> {
    let p = payload(&s.public_key, serial, None, &embedded());
    signing::sign(&s.sk, p.as_bytes(), "timestamp:1700000000\tfile:corp.json").unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path().join("cfg"), Keystore::File).unwrap();
    (dir, store)
}

#[test]
fn valid_bundle_opens_with_its_signer_and_servers() {
    let s = signer();
    let b = underpass_profile::bundle::open("corp.underpass", &signed(&s, 7)).unwrap();
    assert_eq!(b.name.as_str(), "corp");
    assert_eq!(b.signer.public_key, s.public_key);
    assert_eq!(b.trusted_comment, "timestamp:1700000000\tfile:corp.json");
    assert_eq!(b.payload.serial, 7);
    assert_eq!(b.payload.policy.min_kill_switch, KillSwitchMode::Auto);
    let configs =
        underpass_profile::bundle::server_configs(&b, underpass_proto::Key([9; 32])).unwrap();
    assert_eq!(configs.len(), 2);
    assert_eq!(
        configs[0].peers[0].allowed_ips,
        vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        "AllowedIPs default to everything"
    );
    assert_eq!(configs[1].interface.dns_search, ["corp.example"]);
}

#[test]
fn tampered_bundle_is_refused_whichever_byte_changed() {
    let s = signer();
    let good = signed(&s, 7);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let err = underpass_profile::bundle::open("corp.underpass", &bad)
            .expect_err(&format!("byte {i} flipped"));
        assert!(
            matches!(
                err,
                BundleError::Tampered { .. }
                    | BundleError::NotABundle { .. }
                    | BundleError::Invalid { .. }
            ),
            "byte {i}: {err}"
        );
    }
    // A change inside the payload is reported as tampering, in those words.
    let at = good.windows(9).position(|w| w == b"Stockholm").unwrap();
    let mut bad = good.clone();
    bad[at] = b'T';
    assert_eq!(
        underpass_profile::bundle::open("corp.underpass", &bad).unwrap_err().to_string(),
        "corp.underpass: refused: the bundle was modified after it was signed (the signature does not match the contents)"
    );
}

#[test]
fn bundle_signed_with_another_key_than_it_names_is_refused() {
    let (a, b) = (signer(), signer());
    let p = payload(&a.public_key, 7, None, &embedded());
    // Signing refuses to put a mismatched name on it...
    assert!(signing::sign(&b.sk, p.as_bytes(), "t").is_err());
    // ...and a hand-made one is refused on open.
    let sig = minisign::sign(None, &b.sk, p.as_bytes(), Some("t"), None).unwrap();
    let bundle = signing::assemble(&sig.into_string(), p.as_bytes()).unwrap();
    let err = underpass_profile::bundle::open("x.underpass", &bundle)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused: the bundle was modified"), "{err}");
    assert!(err.contains("but the payload names key ID"), "{err}");
}

#[test]
fn unknown_key_is_untrusted_until_pinned() {
    let (tmp, _store) = store();
    let s = signer();
    let b = underpass_profile::bundle::open("corp.underpass", &signed(&s, 1)).unwrap();
    let trust = TrustStore {
        system_dir: tmp.path().join("etc-keys"),
        user_dir: tmp.path().join("user-keys"),
    };
    assert_eq!(trust.check(&b.signer).unwrap(), None);
    let pinned = trust.trust_for_user(&b.signer).unwrap();
    assert_eq!(
        trust.check(&b.signer).unwrap(),
        Some(TrustedBy::User(pinned))
    );

    // System-wide pinning: a minisign.pub file dropped in the directory by IT.
    let other = signer();
    let ob = underpass_profile::bundle::open("o.underpass", &signed(&other, 1)).unwrap();
    std::fs::create_dir_all(&trust.system_dir).unwrap();
    let path = trust.system_dir.join("acme.pub");
    std::fs::write(&path, ob.signer.to_pub_file()).unwrap();
    assert_eq!(
        trust.check(&ob.signer).unwrap(),
        Some(TrustedBy::System(path))
    );
    // A broken key file is reported, naming it.
    std::fs::write(trust.system_dir.join("broken.pub"), "garbage\n").unwrap();
    let err = trust.check(&b.signer).unwrap_err();
    assert!(
        err.contains("broken.pub: not a minisign public key file"),
        "{err}"
    );
}

#[test]
fn expired_bundle_is_refused_with_the_date() {
    let s = signer();
    let p = payload(&s.public_key, 1, Some("2024-01-31T00:00:00Z"), &embedded());
    let bytes = signing::sign(&s.sk, p.as_bytes(), "t").unwrap();
    let b = underpass_profile::bundle::open("corp.underpass", &bytes).unwrap();
    let jan_30 = 1_706_572_800;
    b.check_expiry("corp.underpass", jan_30).unwrap();
    let err = b
        .check_expiry("corp.underpass", jan_30 + 86_400)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "corp.underpass: refused: the bundle expired on 2024-01-31T00:00:00Z; ask your IT department for a new one"
    );
}

#[test]
fn lower_serial_is_refused_and_higher_replaces_in_place() {
    let (_tmp, store) = store();
    let s = signer();
    let open =
        |serial| underpass_profile::bundle::open("corp.underpass", &signed(&s, serial)).unwrap();
    let r = store.import_bundle(&open(5), None, false).unwrap();
    assert!(!r.replaced);
    let name = ProfileName::new("corp").unwrap();
    let loaded = store.load(&name).unwrap();
    assert_eq!(loaded.bundle.as_ref().unwrap().serial, 5);
    assert_eq!(loaded.min_kill_switch(), KillSwitchMode::Auto);
    assert_eq!(loaded.servers.len(), 2);

    let err = store.import_bundle(&open(4), None, false).unwrap_err();
    assert!(matches!(
        err,
        StoreError::RolledBack {
            installed: 5,
            offered: 4,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "refused: profile \"corp\" is installed with serial 5; this bundle has serial 4, which is older (a rollback)"
    );
    let err = store.import_bundle(&open(5), None, false).unwrap_err();
    assert!(
        matches!(err, StoreError::SameSerial { serial: 5, .. }),
        "{err}"
    );

    let r = store.import_bundle(&open(6), None, false).unwrap();
    assert!(r.replaced);
    assert_eq!(r.previous_serial, Some(5));
    assert_eq!(store.list().unwrap().len(), 1, "replaced in place");
    assert_eq!(store.load(&name).unwrap().bundle.unwrap().serial, 6);

    // Another organization key cannot take over the profile, even with a higher serial.
    let intruder = signer();
    let b = underpass_profile::bundle::open("x.underpass", &signed(&intruder, 99)).unwrap();
    let err = store.import_bundle(&b, None, false).unwrap_err();
    assert!(matches!(err, StoreError::DifferentSigner { .. }), "{err}");
}

#[test]
fn a_connection_uses_one_chosen_server_of_a_bundle() {
    let (_tmp, store) = store();
    let s = signer();
    let b = underpass_profile::bundle::open("corp.underpass", &signed(&s, 1)).unwrap();
    store.import_bundle(&b, None, false).unwrap();
    let p = store.load(&ProfileName::new("corp").unwrap()).unwrap();
    let first = p.tunnel_config(None).unwrap();
    assert_eq!(first.peers.len(), 1);
    assert_eq!(first.peers[0].endpoint, "192.0.2.10:51820");
    let de = p.tunnel_config(Some("de-fra-1")).unwrap();
    assert_eq!(de.peers[0].endpoint, "[2001:db8::10]:51820");
    assert_eq!(de.peers[0].persistent_keepalive, Some(25));
    let err = p.tunnel_config(Some("nope")).unwrap_err().to_string();
    assert_eq!(
        err,
        "profile \"corp\" has no server \"nope\"; it has: se-sto-1, de-fra-1"
    );
}

#[test]
fn generated_key_is_made_once_and_kept_across_updates() {
    let (_tmp, store) = store();
    let s = signer();
    let make = |serial| {
        let p = payload(&s.public_key, serial, None, "\"generate_locally\"");
        underpass_profile::bundle::open("c", &signing::sign(&s.sk, p.as_bytes(), "t").unwrap())
            .unwrap()
    };
    let r1 = store.import_bundle(&make(1), None, false).unwrap();
    let pk = r1.generated_public_key.expect("a public key to register");
    let r2 = store.import_bundle(&make(2), None, false).unwrap();
    assert_eq!(
        r2.generated_public_key,
        Some(pk.clone()),
        "same key after update"
    );
    let loaded = store.load(&ProfileName::new("corp").unwrap()).unwrap();
    assert_eq!(
        underpass_profile::store::public_key_of(&loaded.config.interface.private_key),
        pk
    );
}

#[test]
fn invalid_payloads_say_what_is_wrong() {
    let s = signer();
    for (from, to, why) in [
        (
            "\"SE\"",
            "\"Sweden\"",
            "servers[0].country \"Sweden\" is not an upper-case ISO",
        ),
        (
            "\"de-fra-1\"",
            "\"se-sto-1\"",
            "servers[1].id \"se-sto-1\" is used twice",
        ),
        (
            "\"auto\"",
            "\"sometimes\"",
            "the payload is not a valid bundle: unknown variant `sometimes`",
        ),
        (
            "\"dns_locked\": true",
            "\"dns_locked\": true, \"extra\": 1",
            "unknown field `extra`",
        ),
        (
            "\"192.0.2.10:51820\"",
            "\"192.0.2.10\"",
            "servers[0] (se-sto-1): peer 1: endpoint \"192.0.2.10\" has no port",
        ),
    ] {
        let p = payload(&s.public_key, 1, None, &embedded()).replacen(from, to, 1);
        let bytes = signing::sign(&s.sk, p.as_bytes(), "t").unwrap();
        let err = underpass_profile::bundle::open("corp.underpass", &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("corp.underpass: "), "{err}");
        assert!(err.contains(why), "{why}: {err}");
    }
}

/// The Debian `minisign` binary, if installed (scripts/install-deps.sh installs it; with
/// CI=true its absence is a failure).
fn minisign_bin() -> Option<&'static str> {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    if !found && std::env::var_os("CI").is_some() {
        panic!("the minisign binary is missing; run scripts/install-deps.sh");
    }
    if !found {
        eprintln!("SKIPPED: the minisign binary is not installed");
    }
    found.then_some("minisign")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bundle_signed_with_the_minisign_tool_is_accepted_and_ours_verify_with_it() {
    let Some(bin) = minisign_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = |f: &str| tmp.path().join(f);
    run(Command::new(bin)
        .args(["-G", "-W", "-p"])
        .arg(d("it.pub"))
        .arg("-s")
        .arg(d("it.key")));
    let pk_text = std::fs::read_to_string(d("it.pub")).unwrap();
    let pk = underpass_profile::SignerKey::parse(&pk_text).unwrap();
    let p = payload(&pk.public_key, 3, None, &embedded());
    std::fs::write(d("corp.json"), &p).unwrap();
    run(Command::new(bin)
        .args(["-S", "-s"])
        .arg(d("it.key"))
        .arg("-m")
        .arg(d("corp.json"))
        .args(["-t", "Example Corp IT, release 3"]));
    let sig = std::fs::read_to_string(d("corp.json.minisig")).unwrap();
    let bundle = signing::assemble(&sig, p.as_bytes()).unwrap();
    let b = underpass_profile::bundle::open("corp.underpass", &bundle).unwrap();
    assert_eq!(b.signer, pk);
    assert_eq!(b.trusted_comment, "Example Corp IT, release 3");
    // As the tool wrote it (its own untrusted comment), the file is not a bundle yet.
    let mut raw = sig.clone().into_bytes();
    raw.extend_from_slice(p.as_bytes());
    let err = underpass_profile::bundle::open("raw.underpass", &raw)
        .unwrap_err()
        .to_string();
    assert!(err.contains("underpass profile sign --minisig"), "{err}");

    // The other way: a bundle we sign verifies with `minisign -V` (head -n4 is the .minisig).
    // (Our own key: minisign 0.11 writes unencrypted `-W` keys without the checksum the
    // minisign crate checks, so that key is not loaded here.)
    let (sk_text, pub_text, key) = signing::keygen(None).unwrap();
    std::fs::write(d("ours.pub"), pub_text).unwrap();
    let sk = signing::load_secret_key(&sk_text, None).unwrap();
    let p = payload(&key.public_key, 3, None, &embedded());
    let ours = signing::sign(&sk, p.as_bytes(), "ours").unwrap();
    let text = String::from_utf8(ours).unwrap();
    let split = text.match_indices('\n').nth(3).unwrap().0 + 1;
    std::fs::write(d("ours.minisig"), &text[..split]).unwrap();
    std::fs::write(d("ours.json"), &text[split..]).unwrap();
    run(Command::new(bin)
        .args(["-V", "-p"])
        .arg(d("ours.pub"))
        .arg("-m")
        .arg(d("ours.json"))
        .arg("-x")
        .arg(d("ours.minisig")));
}
