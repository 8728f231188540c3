//! The per-user profile store, in throwaway directories.

use std::fs;
use std::path::Path;

use underpass_profile::store::{ImportOptions, ProfileName, Store, StoreError};
use underpass_profile::wgquick::{parse, WgQuickConfig};
use underpass_profile::Keystore;
use underpass_proto::Key;

fn corpus(file: &str) -> WgQuickConfig {
    let path = format!("{}/tests/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(&path).unwrap();
    parse(file, &text).unwrap().config
}

fn name(s: &str) -> ProfileName {
    ProfileName::new(s).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path().join("underpass"), Keystore::File).unwrap();
    (dir, store)
}

fn import(store: &Store, n: &str, file: &str) {
    let opts = ImportOptions {
        source: Some(file.into()),
        replace: false,
        ..Default::default()
    };
    store.import(&name(n), &corpus(file), &opts).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn imported_profile_loads_back_with_its_keys() {
    let (_tmp, store) = store();
    let original = corpus("homelab.conf");
    let report = store
        .import(&name("homelab"), &original, &ImportOptions::default())
        .unwrap();
    assert!(!report.replaced);
    assert_eq!(report.summary.peers, 2);
    assert_eq!(report.summary.endpoint, "vpn.home.example:51820");

    let loaded = store.load(&name("homelab")).unwrap();
    assert_eq!(loaded.config, original, "keys, PSKs and settings survive");
    let t = loaded.tunnel_config(None).unwrap();
    assert_eq!(t.profile, "homelab");
    assert_eq!(t.private_key, original.interface.private_key);
    t.validate().unwrap();
}

#[test]
fn stored_profile_json_holds_no_secret_and_a_version() {
    let (_tmp, store) = store();
    let config = corpus("homelab.conf");
    import(&store, "homelab", "homelab.conf");
    let json = fs::read_to_string(store.profile_path(&name("homelab"))).unwrap();
    assert!(!json.contains(&config.interface.private_key.to_base64()));
    for p in &config.peers {
        assert!(!json.contains(&p.preshared_key.as_ref().unwrap().to_base64()));
        assert!(json.contains(&p.public_key.to_base64()));
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["keystore"], "file");
    assert_eq!(v["name"], "homelab");
    assert_eq!(v["source"], "homelab.conf");
    assert!(v["imported_at"].as_u64().unwrap() > 1_600_000_000);

    let key = fs::read_to_string(store.key_path(&name("homelab"))).unwrap();
    assert_eq!(key.trim(), config.interface.private_key.to_base64());
}

#[cfg(unix)]
#[test]
fn key_files_are_0600_in_a_0700_dir() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, store) = store();
    import(&store, "homelab", "homelab.conf");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keys = tmp.path().join("underpass/keys");
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("homelab.key")), 0o600);
    assert_eq!(mode(&keys.join("homelab.psk")), 0o600);
    assert_eq!(mode(&tmp.path().join("underpass/profiles")), 0o700);
}

#[test]
fn writes_leave_no_temp_files_behind() {
    let (tmp, store) = store();
    import(&store, "mullvad", "mullvad-se-sto-wg-001.conf");
    import(&store, "homelab", "homelab.conf");
    let replace = ImportOptions {
        source: None,
        replace: true,
        ..Default::default()
    };
    // Replacing a PSK profile with one without PSKs also drops the stale .psk file.
    store
        .import(&name("homelab"), &corpus("protonvpn-SE-42.conf"), &replace)
        .unwrap();
    let root = tmp.path().join("underpass");
    assert_eq!(
        entries(&root.join("profiles")),
        ["homelab.json", "mullvad.json"]
    );
    assert_eq!(entries(&root.join("keys")), ["homelab.key", "mullvad.key"]);
}

#[test]
fn existing_name_is_refused_unless_replace() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    let proton = corpus("protonvpn-SE-42.conf");
    let err = store
        .import(&name("se"), &proton, &ImportOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists(ref n) if n == "se"),
        "{err}"
    );
    assert_eq!(err.to_string(), "a profile named \"se\" already exists");
    assert_eq!(
        store.load(&name("se")).unwrap().config,
        corpus("mullvad-se-sto-wg-001.conf"),
        "a refused import changes nothing"
    );

    let opts = ImportOptions {
        source: None,
        replace: true,
        ..Default::default()
    };
    let report = store.import(&name("se"), &proton, &opts).unwrap();
    assert!(report.replaced);
    assert_eq!(store.load(&name("se")).unwrap().config, proton);
}

#[test]
fn list_is_sorted_and_summarized() {
    let (tmp, store) = store();
    assert!(store.list().unwrap().is_empty());
    import(&store, "zz-proton", "protonvpn-SE-42.conf");
    import(&store, "homelab", "homelab.conf");
    import(&store, "Mullvad", "mullvad-se-sto-wg-001.conf");
    // Stray files are not profiles.
    let profiles = tmp.path().join("underpass/profiles");
    fs::write(profiles.join(".tmpAbC123"), "{half a fi").unwrap();
    fs::write(profiles.join("notes.txt"), "hello").unwrap();

    let list = store.list().unwrap();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Mullvad", "homelab", "zz-proton"]);
    let m = &list[0];
    assert_eq!(m.endpoint, "203.0.113.42:51820");
    assert_eq!(m.addresses.len(), 2);
    assert!(m.full_tunnel);
    assert_eq!(m.source.as_deref(), Some("mullvad-se-sto-wg-001.conf"));
    assert!(!list[1].full_tunnel);
    assert_eq!(list[1].peers, 2);
}

#[test]
fn remove_deletes_the_profile_and_its_keys() {
    let (tmp, store) = store();
    import(&store, "homelab", "homelab.conf");
    import(&store, "mullvad", "mullvad-se-sto-wg-001.conf");
    store.remove(&name("homelab")).unwrap();
    let root = tmp.path().join("underpass");
    assert_eq!(entries(&root.join("profiles")), ["mullvad.json"]);
    assert_eq!(entries(&root.join("keys")), ["mullvad.key"]);
    let err = store.remove(&name("homelab")).unwrap_err();
    assert_eq!(err.to_string(), "profile \"homelab\" not found");
}

#[test]
fn loading_a_missing_profile_says_not_found() {
    let (_tmp, store) = store();
    let err = store.load(&name("nope")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(ref n) if n == "nope"));
}

#[test]
fn corrupt_profile_error_names_the_file() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    let path = store.profile_path(&name("se"));
    fs::write(&path, "{\"version\": 1, \"name\": \"se\", \"peers\": [").unwrap();
    for err in [
        store.load(&name("se")).unwrap_err(),
        store.list().unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: not a valid Underpass profile",
                path.display()
            )),
            "{msg}"
        );
        assert!(
            msg.ends_with("remove it or import the profile again"),
            "{msg}"
        );
    }
}

#[test]
fn profile_from_a_future_version_is_refused_clearly() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    let path = store.profile_path(&name("se"));
    fs::write(&path, r#"{"version": 3, "name": "se", "servers": {}}"#).unwrap();
    let err = store.load(&name("se")).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { found: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: written by a newer Underpass (profile format version 3; this one reads version 2). Upgrade Underpass to use it",
            path.display()
        )
    );
}

#[test]
fn renamed_profile_file_is_reported_not_misread() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    fs::rename(
        store.profile_path(&name("se")),
        store.profile_path(&name("de")),
    )
    .unwrap();
    let err = store.load(&name("de")).unwrap_err();
    assert!(err.to_string().contains("it is named \"se\""), "{err}");
}

#[test]
fn missing_key_file_says_to_import_again() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    fs::remove_file(store.key_path(&name("se"))).unwrap();
    let err = store.load(&name("se")).unwrap_err();
    assert!(matches!(err, StoreError::MissingKey { .. }));
    assert!(
        err.to_string().ends_with("import the profile again"),
        "{err}"
    );
}

#[test]
fn corrupt_key_file_names_the_file() {
    let (_tmp, store) = store();
    import(&store, "se", "mullvad-se-sto-wg-001.conf");
    let path = store.key_path(&name("se"));
    fs::write(&path, "AAAA\n").unwrap();
    let err = store.load(&name("se")).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("decodes to 3 bytes"), "{err}");
}

#[test]
fn config_the_helper_would_refuse_is_not_stored() {
    let (tmp, store) = store();
    let mut c = corpus("mullvad-se-sto-wg-001.conf");
    c.interface.private_key = Key([0; 32]);
    let err = store
        .import(&name("zero"), &c, &ImportOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "profile \"zero\" cannot be used: private key is all zeroes"
    );
    assert!(entries(&tmp.path().join("underpass/profiles")).is_empty());
}
