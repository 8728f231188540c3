//! The webview's TypeScript types, generated from the Rust types (ts-rs), so the UI and the
//! helper have one source of truth. Every type the webview receives or sends derives
//! `ts_rs::TS` (in crates/proto, crates/trust and crates/profile behind their `ts` feature,
//! here under `cfg(test)`), and this test writes their declarations, with their doc comments,
//! to `ui/src/generated/contract.ts`. The UI imports its types from there; `tsc`
//! (`npm run ui:check`) then holds every view to the Rust types.
//!
//! The test fails when the committed file is stale, or when a listed type refers to one that is
//! not listed. `npm run contract` (`UPDATE_CONTRACT=1 cargo test -p underpass-gui --lib
//! contract`) rewrites the file. Neither ts-rs nor the `ts` features reach a build of the app,
//! the helper or the CLI: only tests enable them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ts_rs::{Config, TS};

use underpass_profile::{
    BundleInfo, Catalog, CatalogCountry, CatalogServer, Keystore, ProfileName, ProfileSummary,
    SignerKey,
};
use underpass_proto::{
    DnsStatus, DoctorReport, FirewallState, KillSwitchMode, Layer, LayerId, LayerVerdict,
    LeakedPacket, LockedSetting, ManagedStatus, MtuFinding, PeerStatus, Policy, ReconnectReason,
    ReconnectStatus, ResolverRoute, RoutingSummary, SelfTestKind, SelfTestReport, ServerInUse,
    SessionPolicy, Status, TunnelState, Verdict,
};

use crate::connect::{Connecting, Target};
use crate::doctor::DoctorRun;
use crate::helper::{HelperView, LinkState, SelfTestProgress};
use crate::links::OpenRequest;
use crate::profiles::{ImportOutcome, UntrustedSigner};
use crate::settings::{Settings, SettingsForm};

/// One exported declaration: its name, its text, and the names it refers to.
struct Decl {
    name: String,
    text: String,
    uses: Vec<String>,
}

fn decl<T: TS + 'static>(cfg: &Config) -> Decl {
    let docs = T::docs().unwrap_or_default();
    Decl {
        name: T::ident(cfg),
        text: format!("{docs}export {}\n", T::decl(cfg)),
        uses: T::dependencies(cfg)
            .into_iter()
            .map(|d| d.ts_name)
            .collect(),
    }
}

/// The types of the contract, in the order the file lists them. Adding a type to the webview's
/// side means adding it here; forgetting one it refers to fails the test below.
fn declarations(cfg: &Config) -> Vec<Decl> {
    vec![
        // The helper's status (crates/proto).
        decl::<TunnelState>(cfg),
        decl::<ReconnectReason>(cfg),
        decl::<ReconnectStatus>(cfg),
        decl::<KillSwitchMode>(cfg),
        decl::<FirewallState>(cfg),
        decl::<RoutingSummary>(cfg),
        decl::<PeerStatus>(cfg),
        decl::<DnsStatus>(cfg),
        decl::<Policy>(cfg),
        decl::<SessionPolicy>(cfg),
        decl::<ManagedStatus>(cfg),
        decl::<LockedSetting>(cfg),
        decl::<ServerInUse>(cfg),
        decl::<Status>(cfg),
        // Self-tests and the doctor (crates/proto).
        decl::<SelfTestKind>(cfg),
        decl::<Verdict>(cfg),
        decl::<LeakedPacket>(cfg),
        decl::<ResolverRoute>(cfg),
        decl::<SelfTestReport>(cfg),
        decl::<LayerId>(cfg),
        decl::<LayerVerdict>(cfg),
        decl::<Layer>(cfg),
        decl::<MtuFinding>(cfg),
        decl::<DoctorReport>(cfg),
        // Profiles and the server catalog (crates/profile, crates/trust).
        decl::<ProfileName>(cfg),
        decl::<Keystore>(cfg),
        decl::<SignerKey>(cfg),
        decl::<BundleInfo>(cfg),
        decl::<ProfileSummary>(cfg),
        decl::<CatalogServer>(cfg),
        decl::<CatalogCountry>(cfg),
        decl::<Catalog>(cfg),
        // The app's own (src-tauri).
        decl::<LinkState>(cfg),
        decl::<HelperView>(cfg),
        decl::<SelfTestProgress>(cfg),
        decl::<DoctorRun>(cfg),
        decl::<UntrustedSigner>(cfg),
        decl::<ImportOutcome>(cfg),
        decl::<Target>(cfg),
        decl::<Connecting>(cfg),
        decl::<OpenRequest>(cfg),
        decl::<Settings>(cfg),
        decl::<SettingsForm>(cfg),
    ]
}

/// The names the declarations refer to but do not declare.
fn undeclared(decls: &[Decl]) -> BTreeSet<String> {
    let declared: BTreeSet<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    decls
        .iter()
        .flat_map(|d| d.uses.iter())
        .filter(|u| !declared.contains(u.as_str()))
        .cloned()
        .collect()
}

/// serde_json writes u64 as a JSON number, which is what the webview gets.
fn config() -> Config {
    Config::new().with_large_int("number")
}

fn generate() -> Result<String, String> {
    let decls = declarations(&config());
    let missing = undeclared(&decls);
    if !missing.is_empty() {
        return Err(format!(
            "src-tauri/src/contract.rs: declarations() lacks {missing:?}, which listed types refer to"
        ));
    }
    let mut out = String::from(
        "// GENERATED from the Rust types by ts-rs (src-tauri/src/contract.rs). Do not edit:\n\
         // change the Rust type, then run `npm run contract`.\n",
    );
    for d in &decls {
        out.push('\n');
        out.push_str(&d.text);
    }
    Ok(out)
}

#[test]
fn generated_typescript_contract_matches_the_rust_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/generated/contract.ts");
    let fresh = generate().unwrap();
    if std::env::var_os("UPDATE_CONTRACT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: the Rust types changed. Run `npm run contract`, then `npm run ui:check`",
        path.display()
    );
}

#[test]
fn a_type_missing_from_the_list_is_named() {
    let cfg = config();
    let missing = undeclared(&[decl::<Status>(&cfg), decl::<PeerStatus>(&cfg)]);
    assert!(missing.contains("TunnelState"), "{missing:?}");
    assert!(!missing.contains("PeerStatus"), "{missing:?}");
}
