//! `underpass import` of folders, zips and signed bundles, `profile`, `servers`, and the
//! policy check of `connect`, as a user runs them. Keys go to files here (no session bus in
//! `cargo test`); tests/keyring.rs covers the OS keyring.

use std::io::Write as _;
use std::path::PathBuf;

const SERVER: &str = "nA+giqGJWzTQGpuu82A79gUB1ZIIlnp91b4+XgKN4/w=";

fn conf(private_key: &str, endpoint: &str) -> String {
    format!(
        "[Interface]\nPrivateKey = {private_key}\nAddress = 10.64.1.2/32\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = {SERVER}\nAllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = {endpoint}\n"
    )
}

const KEY_A: &str = "jlRpASJbfI3UlYNX8lqggOEPwAllNTzKr8Hgnr96qX8=";
const KEY_B: &str = "zZiojYAvembIIhBW3jIPI91uexSn1oYWC3/vVrAbMj0=";

mod common;
use common::{stderr, stdout, Env};

#[test]
fn zip_import_keeps_good_files_and_names_each_bad_one() {
    let env = Env::new();
    let zip_path = env.path("provider.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let files = [
        ("wg/se-sto-wg-001.conf", conf(KEY_A, "192.0.2.10:51820")),
        ("wg/de-fra-wg-002.conf", conf(KEY_B, "192.0.2.11:51820")),
        (
            "wg/us-nyc-wg-003.conf",
            conf(KEY_A, "192.0.2.12:51820").replace(SERVER, "AAAA"),
        ),
        ("wg/readme.txt", "not a profile".into()),
        ("__MACOSX/wg/._se-sto-wg-001.conf", "junk".into()),
    ];
    for (name, text) in &files {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();

    let o = env.run(&["import", zip_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("underpass: provider.zip/wg/us-nyc-wg-003.conf:7: key \"PublicKey\": not a valid WireGuard key"),
        "{err}"
    );
    assert!(
        err.ends_with(
            "underpass: 1 of 3 files in provider.zip could not be imported; the other 2 were kept\n"
        ),
        "{err}"
    );
    let out = stdout(&o);
    assert!(
        out.contains("se-sto-wg-001 (Stockholm, Sweden, endpoint 192.0.2.10:51820)"),
        "{out}"
    );
    assert!(
        out.contains("Imported 2 of 3 files from provider.zip; 1 refused"),
        "{out}"
    );
    let names = env.ok(&["profiles"]);
    assert!(
        names.contains("de-fra-wg-002") && names.contains("se-sto-wg-001"),
        "{names}"
    );
    assert!(!names.contains("us-nyc"), "{names}");
}

#[test]
fn folder_import_reports_progress_and_json() {
    let env = Env::new();
    for i in 0..25 {
        env.write(
            &format!("many/se-sto-wg-{i:03}.conf"),
            &conf(KEY_A, "192.0.2.10:51820"),
        );
    }
    env.write("many/broken.conf", "[Interface]\nPrivateKey = x\n");
    let o = env.run(&["--json", "import", env.path("many").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("underpass: progress: 10/26 files"), "{err}");
    assert!(
        err.contains("underpass: progress: 26/26 files (25 imported, 1 failed)"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["imported"].as_array().unwrap().len(), 25);
    assert_eq!(json["failed"][0]["file"], "many/broken.conf");
    assert_eq!(json["failed"][0]["line"], 2);
    assert_eq!(json["failed"][0]["key"], "PrivateKey");
}

#[test]
fn location_is_inferred_and_can_be_corrected() {
    let env = Env::new();
    let f = env.write("se-sto-wg-001.conf", &conf(KEY_A, "192.0.2.10:51820"));
    env.ok(&["import", f.to_str().unwrap()]);
    let f = env.write("office.conf", &conf(KEY_B, "192.0.2.20:51820"));
    env.ok(&[
        "import",
        f.to_str().unwrap(),
        "--country",
        "de",
        "--city",
        "Berlin",
    ]);
    let f = env.write("home.conf", &conf(KEY_B, "192.0.2.30:51820"));
    env.ok(&["import", f.to_str().unwrap()]);

    let servers = env.ok(&["servers"]);
    assert!(
        servers.starts_with("🇩🇪 Germany (DE): 1\n  Berlin"),
        "{servers}"
    );
    assert!(
        servers.contains("🇸🇪 Sweden (SE): 1\n  Stockholm      se-sto-wg-001"),
        "{servers}"
    );
    assert!(servers.contains("Unknown location: 1\n"), "{servers}");

    assert_eq!(
        env.ok(&["profile", "set", "home", "--country", "NO"]),
        "\"home\" is now in Norway\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["servers", "--country", "no", "--json"])).unwrap();
    assert_eq!(json["countries"][0]["code"], "NO");
    assert_eq!(json["countries"][0]["flag"], "🇳🇴");
    assert_eq!(json["countries"][0]["servers"][0]["profile"], "home");
    assert_eq!(env.ok(&["servers", "--search", "stock"]).lines().count(), 2);
    assert!(env
        .fails(&["profile", "set", "home", "--country", "XX"])
        .contains("\"XX\" is not an ISO 3166-1 country code"));
}

/// Makes a signing key with the CLI and signs a payload; returns the bundle's path.
fn make_bundle(env: &Env, serial: u64, min_kill_switch: &str, expires: Option<&str>) -> PathBuf {
    if !env.path("it.key").exists() {
        env.ok(&[
            "profile",
            "keygen",
            "--no-password",
            "--secret-key",
            "it.key",
            "--public-key",
            "it.pub",
        ]);
    }
    let pk = std::fs::read_to_string(env.path("it.pub")).unwrap();
    let pk = pk.lines().nth(1).unwrap();
    let expires = expires
        .map(|e| format!("\"expires\": \"{e}\","))
        .unwrap_or_default();
    let payload = format!(
        r#"{{"format": "underpass-profile/1", "signer_public_key": "{pk}", "organization": "Example Corp IT",
  "name": "corp", "serial": {serial}, {expires}
  "interface": {{"addresses": ["10.70.0.2/32"], "dns": ["10.70.0.1"]}},
  "servers": [{{"id": "se-1", "country": "SE", "city": "Stockholm", "endpoint": "192.0.2.10:51820", "public_key": "{SERVER}"}}],
  "policy": {{"min_kill_switch": "{min_kill_switch}", "split_tunnel_allowed": false, "lan_access_allowed": false, "dns_locked": true}},
  "private_key": "generate_locally"}}
"#
    );
    env.write(&format!("corp-{serial}.json"), &payload);
    let out = format!("corp-{serial}.underpass");
    env.ok(&[
        "profile",
        "sign",
        &format!("corp-{serial}.json"),
        "--secret-key",
        "it.key",
        "-o",
        &out,
    ]);
    env.path(&out)
}

#[test]
fn unknown_signer_is_refused_without_trust_and_shows_the_fingerprint() {
    let env = Env::new();
    let b = make_bundle(&env, 1, "auto", None);
    let pk = std::fs::read_to_string(env.path("it.pub")).unwrap();
    let pk = pk.lines().nth(1).unwrap().to_string();
    let err = env.fails(&["import", b.to_str().unwrap()]);
    assert!(
        err.contains("corp-1.underpass: refused: signed by an unknown key"),
        "{err}"
    );
    assert!(err.contains(&pk), "the fingerprint is shown: {err}");
    assert!(err.contains("--trust"), "{err}");
    assert!(env.ok(&["profiles"]).starts_with("No profiles yet"));

    let out = env.ok(&["import", b.to_str().unwrap(), "--trust"]);
    assert!(
        out.starts_with("Imported \"corp\" from Example Corp IT (serial 1)\n"),
        "{out}"
    );
    assert!(out.contains("accepted by you"), "{out}");
    assert!(
        out.contains("Give this public key to Example Corp IT"),
        "{out}"
    );
    // The key is now pinned for this user: the next edition needs no --trust.
    let b2 = make_bundle(&env, 2, "auto", None);
    let out = env.ok(&["import", b2.to_str().unwrap()]);
    assert!(
        out.starts_with("Updated \"corp\" from Example Corp IT (serial 1 -> 2)"),
        "{out}"
    );
    // And the older one is now a rollback.
    let err = env.fails(&["import", b.to_str().unwrap()]);
    assert!(
        err.contains("installed with serial 2; this bundle has serial 1, which is older"),
        "{err}"
    );
}

#[test]
fn system_pinned_key_verifies_and_expired_bundle_is_refused() {
    let env = Env::new();
    let b = make_bundle(&env, 1, "auto", Some("2020-01-01T00:00:00Z"));
    std::fs::create_dir_all(env.path("system-keys")).unwrap();
    std::fs::copy(env.path("it.pub"), env.path("system-keys/example.pub")).unwrap();
    let err = env.fails(&["import", b.to_str().unwrap()]);
    assert!(
        err.contains("corp-1.underpass: refused: the bundle expired on 2020-01-01T00:00:00Z"),
        "{err}"
    );
    let err = env.fails(&["profile", "verify", b.to_str().unwrap()]);
    assert!(err.contains("expired"), "{err}");
    let ok = make_bundle(&env, 2, "auto", Some("2999-01-01T00:00:00Z"));
    let out = env.ok(&["profile", "verify", ok.to_str().unwrap()]);
    assert!(out.contains("valid."), "{out}");
    assert!(out.contains("pinned system-wide"), "{out}");
    let out = env.ok(&["import", ok.to_str().unwrap()]);
    assert!(out.contains("pinned by your organization"), "{out}");
}

#[test]
fn tampered_bundle_is_refused_on_import() {
    let env = Env::new();
    let b = make_bundle(&env, 1, "auto", None);
    let mut bytes = std::fs::read(&b).unwrap();
    let at = bytes.windows(9).position(|w| w == b"Stockholm").unwrap();
    bytes[at] = b's';
    std::fs::write(&b, bytes).unwrap();
    let err = env.fails(&["import", b.to_str().unwrap(), "--trust"]);
    assert_eq!(
        err,
        "underpass: corp-1.underpass: refused: the bundle was modified after it was signed (the signature does not match the contents)\n"
    );
}

#[test]
fn profile_that_requires_the_kill_switch_cannot_connect_with_it_off() {
    let env = Env::new();
    let b = make_bundle(&env, 1, "auto", None);
    env.ok(&["import", b.to_str().unwrap(), "--trust"]);
    // Refused before the helper is even asked (there is no helper here).
    let err = env.fails(&["connect", "corp", "--kill-switch", "off"]);
    assert_eq!(
        err,
        "underpass: refusing to connect \"corp\": the policy of Example Corp IT (serial 1) says the kill switch must be at least \"auto\" (asked for \"off\")\n"
    );
    let err = env.fails(&["connect", "corp", "--include", "10.0.0.0/8"]);
    assert!(
        err.contains("split tunneling (--include/--exclude) is not allowed"),
        "{err}"
    );
    // Allowed requests get as far as the (absent) helper.
    for ks in ["auto", "lockdown"] {
        let err = env.fails(&["connect", "corp", "--kill-switch", ks]);
        assert!(
            err.contains("the Underpass helper is not running"),
            "{ks}: {err}"
        );
    }
    let err = env.fails(&["connect", "corp", "--server", "nope"]);
    assert!(
        err.contains("has no server \"nope\"; it has: se-1"),
        "{err}"
    );
}

#[test]
fn keyring_store_without_a_secret_service_explains_the_file_opt_in() {
    let env = Env::new();
    let f = env.write("se.conf", &conf(KEY_A, "192.0.2.10:51820"));
    let o = env
        .cmd(&["import", f.to_str().unwrap(), "--keystore", "keyring"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("Underpass keeps private keys in the OS keyring"),
        "{err}"
    );
    assert!(err.contains("pass --keystore file"), "{err}");
    assert!(!env.path("config/profiles/se.json").exists());
}

#[test]
fn a_batch_without_a_keyring_says_so_once_and_counts_truly() {
    let env = Env::new();
    let dir = env.path("provider");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, cc) in ["se-sto", "de-fra", "us-nyc", "nl-ams"].iter().enumerate() {
        env.write(
            &format!("provider/{cc}-wg-00{i}.conf"),
            &conf(KEY_A, &format!("192.0.2.{}:51820", 10 + i)),
        );
    }
    let o = env
        .cmd(&["import", dir.to_str().unwrap(), "--keystore", "keyring"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(
        err.matches("Underpass keeps private keys in the OS keyring")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("stopped after 1 of 4 files in provider, since every one needs the keyring (3 not tried); none was imported"),
        "{err}"
    );
    assert!(err.contains("pass --keystore file"), "{err}");
    assert!(
        err.contains("/usr/share/doc/underpass-daemon/README"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("Imported 0 of 4 files from provider; stopped: no keyring"),
        "{}",
        stdout(&o)
    );
    assert!(!env.path("config/profiles/se-sto-wg-000.json").exists());
}
