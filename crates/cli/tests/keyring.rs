//! Private keys in the real OS keyring (the Secret Service, here gnome-keyring).
//!
//! Needs a session bus with an unlocked keyring; scripts/test.sh runs it as
//! `dbus-run-session -- sh -c 'printf "\n" | gnome-keyring-daemon --unlock --components=secrets;
//! UNDERPASS_KEYRING_TEST=1 cargo test -p underpass-cli --test keyring'`. Without
//! UNDERPASS_KEYRING_TEST=1 it skips, loudly.
//!
//! Every step runs the `underpass` binary, so each read is from another process than the
//! write: a keyring that only kept the secret in memory (keyring 3.x's silent mock) fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use underpass_profile::secrets;
use underpass_profile::store::public_key_of;
use underpass_proto::Key;

const PRIV: &str = "jlRpASJbfI3UlYNX8lqggOEPwAllNTzKr8Hgnr96qX8=";
const PSK: &str = "d4s9I17fl9MLmsLcu7aUntjZVm9i3D3DWBvCteWWTh0=";
const SE_STO: &str = "[Interface]
PrivateKey = jlRpASJbfI3UlYNX8lqggOEPwAllNTzKr8Hgnr96qX8=
Address = 10.64.1.2/32
DNS = 10.64.0.1

[Peer]
PublicKey = nA+giqGJWzTQGpuu82A79gUB1ZIIlnp91b4+XgKN4/w=
PresharedKey = d4s9I17fl9MLmsLcu7aUntjZVm9i3D3DWBvCteWWTh0=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 192.0.2.10:51820
";

fn enabled() -> bool {
    if std::env::var_os("UNDERPASS_KEYRING_TEST").is_some() {
        return true;
    }
    eprintln!(
        "SKIPPED: keyring tests need an unlocked Secret Service; run them through scripts/test.sh \
         (or set UNDERPASS_KEYRING_TEST=1 inside dbus-run-session with gnome-keyring-daemon)"
    );
    false
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_underpass"))
        .args(args)
        .env("UNDERPASS_CONFIG_DIR", config)
        .env("UNDERPASS_KEYSTORE", "keyring")
        .env_remove("UNDERPASS_SOCKET")
        .output()
        .unwrap()
}

fn ok(config: &Path, args: &[&str]) -> (String, String) {
    let o = run(config, args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{args:?}: {err}");
    (out, err)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Fails if any file under `dir` holds `secret`, as base64 or as raw bytes.
fn assert_not_on_disk(dir: &Path, secret: &str) {
    let raw = Key::from_base64(secret).unwrap().0;
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(secret),
            "{} holds the key (base64)",
            f.display()
        );
        assert!(
            !bytes.windows(32).any(|w| w == raw),
            "{} holds the key (raw)",
            f.display()
        );
    }
}

fn keyring_user(config: &Path, name: &str) -> String {
    let id = std::fs::read_to_string(config.join("store-id")).unwrap();
    format!("{}/{name}", id.trim())
}

#[test]
fn key_is_stored_read_back_by_another_process_and_deleted_and_never_on_disk() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let conf = tmp.path().join("se-sto.conf");
    std::fs::write(&conf, SE_STO).unwrap();

    ok(&config, &["import", conf.to_str().unwrap()]);
    assert_not_on_disk(&config, PRIV);
    assert_not_on_disk(&config, PSK);
    let json = std::fs::read_to_string(config.join("profiles/se-sto.json")).unwrap();
    assert!(json.contains("\"keystore\": \"keyring\""), "{json}");

    // A second process reads it back from the keyring.
    let (out, _) = ok(&config, &["profile", "public-key", "se-sto"]);
    let expected = public_key_of(&Key::from_base64(PRIV).unwrap()).to_base64();
    assert_eq!(out.trim(), expected);
    // And this (third) process sees the very entry, with the preshared key.
    let user = keyring_user(&config, "se-sto");
    let stored = secrets::keyring_load(&user).unwrap();
    assert_eq!(stored.private_key.to_base64(), PRIV);
    assert_eq!(
        stored.preshared_keys.values().next().unwrap().to_base64(),
        PSK
    );

    ok(&config, &["profile", "remove", "se-sto"]);
    assert!(matches!(
        secrets::keyring_load(&user),
        Err(secrets::KeyringError::Missing(_))
    ));
    assert_not_on_disk(&config, PRIV);
}

#[test]
fn legacy_key_files_move_into_the_keyring() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let conf = tmp.path().join("old.conf");
    std::fs::write(&conf, SE_STO).unwrap();
    // Written with keys in files, then turned into what version 1 wrote.
    let o = Command::new(env!("CARGO_BIN_EXE_underpass"))
        .args(["import", conf.to_str().unwrap(), "--keystore", "file"])
        .env("UNDERPASS_CONFIG_DIR", &config)
        .output()
        .unwrap();
    assert!(o.status.success());
    let path = config.join("profiles/old.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["version"] = 1.into();
    v.as_object_mut().unwrap().remove("keystore");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    assert!(config.join("keys/old.key").exists());

    let (_, err) = ok(&config, &["profiles"]);
    assert!(
        err.contains("moved the private key of \"old\""),
        "migration is reported: {err}"
    );
    assert!(!config.join("keys/old.key").exists());
    assert!(!config.join("keys/old.psk").exists());
    assert_not_on_disk(&config, PRIV);
    let (out, _) = ok(&config, &["profile", "public-key", "old"]);
    let expected = public_key_of(&Key::from_base64(PRIV).unwrap()).to_base64();
    assert_eq!(out.trim(), expected);
    ok(&config, &["profile", "remove", "old"]);
}
