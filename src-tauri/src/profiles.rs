//! Profiles for the app: the same store as the CLI (`underpass_profile`), used unchanged.
//! Importing a file, a folder, a zip or a signed bundle; deleting; the server catalog; and
//! turning a choice of server plus the user's settings into a connect request.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use underpass_profile::batch::{self, Candidate, ImportKind};
use underpass_profile::bundle::{SessionRequest, MAX_BUNDLE_BYTES};
use underpass_profile::{
    location, wgquick, Catalog, ImportOptions, KillSwitchMode, ProfileName, ProfileSummary,
    SignerKey, Store, StoreError, TrustStore,
};
use underpass_proto::TunnelConfig;

use crate::options::Options;
use crate::settings::Settings;

/// The result of importing one path (a file, a folder or a zip).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImportOutcome {
    /// The file or folder name, as the user sees it.
    pub source: String,
    /// Names of the profiles imported (or updated).
    pub imported: Vec<String>,
    /// One message per file that was refused, naming the file and the reason.
    pub failed: Vec<String>,
    /// Hook commands (`PostUp = ...`) found and dropped: they are never run.
    pub ignored_hooks: usize,
    /// A signed bundle whose key this user has not trusted yet: ask, then import again with
    /// `trust`.
    pub untrusted: Option<UntrustedSigner>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UntrustedSigner {
    pub organization: String,
    pub signer: SignerKey,
}

pub struct Profiles {
    options: Options,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn explain(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::AlreadyExists(name) => {
            anyhow!("a profile named \"{name}\" already exists; delete it first to import it again")
        }
        other => other.into(),
    }
}

impl Profiles {
    pub fn new(options: Options) -> Profiles {
        Profiles { options }
    }

    pub fn store(&self) -> Result<Store> {
        let dir = match &self.options.config_dir {
            Some(d) => d.clone(),
            None => underpass_profile::default_config_dir().context(
                "cannot tell where your profiles live: set HOME or XDG_CONFIG_HOME, or pass --config-dir",
            )?,
        };
        Store::open_with(&dir, self.options.keystore)
            .with_context(|| format!("opening the profile store in {}", dir.display()))
    }

    pub fn list(&self) -> Result<Vec<ProfileSummary>> {
        Ok(self.store()?.list()?)
    }

    pub fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::build(self.store()?.servers()?))
    }

    /// The profile's WireGuard public key (base64), which IT registers for a bundle whose
    /// key was generated on this device.
    pub fn public_key(&self, name: &str) -> Result<String> {
        let name = ProfileName::new(name)?;
        let loaded = self.store()?.load(&name).map_err(explain)?;
        Ok(
            underpass_profile::store::public_key_of(&loaded.config.interface.private_key)
                .to_base64(),
        )
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let name = ProfileName::new(name)?;
        Ok(self.store()?.remove(&name)?)
    }

    /// Imports `path`: a `.conf`, an `.underpass` bundle, a folder or a `.zip`. Never fails
    /// as a whole: every problem is in the outcome, named after its file.
    pub fn import(&self, path: &Path, trust: bool) -> ImportOutcome {
        let source = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let mut out = ImportOutcome {
            source: source.clone(),
            imported: vec![],
            failed: vec![],
            ignored_hooks: 0,
            untrusted: None,
        };
        if let Err(e) = self.import_into(path, &source, trust, &mut out) {
            out.failed.push(format!("{source}: {e:#}"));
        }
        out
    }

    fn import_into(
        &self,
        path: &Path,
        source: &str,
        trust: bool,
        out: &mut ImportOutcome,
    ) -> Result<()> {
        let kind =
            batch::import_kind(path).with_context(|| format!("reading {}", path.display()))?;
        let store = self.store()?;
        let candidates = match kind {
            ImportKind::Bundle => return self.import_bundle(&store, path, source, trust, out),
            ImportKind::Folder => batch::read_folder(path)?,
            ImportKind::Zip => batch::read_zip(path)?,
            ImportKind::Single(len) => {
                if len > batch::MAX_CONF_BYTES {
                    bail!("far too big for a wg-quick file; is it the right file?");
                }
                vec![Candidate {
                    display: source.to_string(),
                    text: fs::read_to_string(path).map_err(|e| e.to_string()),
                }]
            }
        };
        if candidates.is_empty() {
            bail!("no .conf files in it");
        }
        for c in candidates {
            match import_conf(&store, &c) {
                Ok((name, hooks)) => {
                    out.imported.push(name);
                    out.ignored_hooks += hooks;
                }
                Err(e) => out.failed.push(format!("{}: {e:#}", c.display)),
            }
        }
        Ok(())
    }

    fn import_bundle(
        &self,
        store: &Store,
        path: &Path,
        source: &str,
        trust: bool,
        out: &mut ImportOutcome,
    ) -> Result<()> {
        if fs::metadata(path)?.len() > MAX_BUNDLE_BYTES as u64 {
            bail!("larger than 1 MiB; not an Underpass profile bundle");
        }
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let bundle = underpass_profile::bundle::open(source, &bytes)?;
        bundle.check_expiry(source, now())?;
        let trust_store = TrustStore {
            system_dir: self.options.trusted_keys_dir.clone(),
            user_dir: store.user_trust_dir(),
        };
        let known = trust_store.check(&bundle.signer).map_err(|e| anyhow!(e))?;
        if known.is_none() {
            if !trust {
                out.untrusted = Some(UntrustedSigner {
                    organization: bundle.payload.organization.clone(),
                    signer: bundle.signer.clone(),
                });
                return Ok(());
            }
            trust_store
                .trust_for_user(&bundle.signer)
                .map_err(|e| anyhow!("pinning the key: {e}"))?;
        }
        let report = store
            .import_bundle(&bundle, Some(source.to_string()), false)
            .map_err(explain)?;
        out.imported.push(report.summary.name.to_string());
        Ok(())
    }

    /// The connect request for `profile` (and `server`, for a bundle), with the user's
    /// split-tunnel settings, refused when it breaks the profile's policy or has expired.
    pub fn tunnel_config(
        &self,
        profile: &str,
        server: Option<&str>,
        settings: &Settings,
        kill_switch: underpass_proto::KillSwitchMode,
        lan_access: bool,
    ) -> Result<TunnelConfig> {
        let name = ProfileName::new(profile)?;
        let loaded = self.store()?.load(&name).map_err(explain)?;
        // Expiry and policy, as the CLI checks them (`underpass_profile::choice`).
        let request = SessionRequest {
            kill_switch: profile_mode(kill_switch),
            split_tunnel: settings.is_split(),
            lan_access,
        };
        loaded
            .check_session(&request, now())
            .map_err(|e| anyhow!(e))?;
        let mut config = loaded.tunnel_config(server)?;
        config.routing.include = settings.split_include.clone();
        config.routing.exclude = settings.split_exclude.clone();
        config.include_resolvers();
        if !settings.custom_dns.is_empty() {
            if let Some(b) = loaded.bundle.as_ref().filter(|b| b.policy.dns_locked) {
                bail!(
                    "the policy of {} for \"{name}\" locks DNS to the tunnel's resolvers; clear \
                     the custom DNS in Settings",
                    b.organization
                );
            }
            if let Some(ip) = settings
                .custom_dns
                .iter()
                .find(|ip| !config.routes_into_tunnel(**ip))
            {
                bail!(
                    "the custom resolver {ip} would be reached outside the tunnel with these \
                     routes; add it to the included prefixes, or use the profile's DNS"
                );
            }
            config.dns = settings.custom_dns.clone();
        }
        config
            .validate()
            .map_err(|reason| anyhow!("profile \"{name}\" cannot be used: {reason}"))?;
        Ok(config)
    }

    /// The weakest kill switch the named profile allows (`off` for an unsigned one).
    pub fn min_kill_switch(&self, profile: &str) -> Result<underpass_proto::KillSwitchMode> {
        let name = ProfileName::new(profile)?;
        let loaded = self.store()?.load(&name).map_err(explain)?;
        Ok(match loaded.min_kill_switch() {
            KillSwitchMode::Off => underpass_proto::KillSwitchMode::Off,
            KillSwitchMode::Auto => underpass_proto::KillSwitchMode::Auto,
            KillSwitchMode::Lockdown => underpass_proto::KillSwitchMode::Lockdown,
        })
    }
}

fn profile_mode(m: underpass_proto::KillSwitchMode) -> KillSwitchMode {
    match m {
        underpass_proto::KillSwitchMode::Off => KillSwitchMode::Off,
        underpass_proto::KillSwitchMode::Auto => KillSwitchMode::Auto,
        underpass_proto::KillSwitchMode::Lockdown => KillSwitchMode::Lockdown,
    }
}

/// Imports one wg-quick file; returns the profile name and how many hooks were dropped.
fn import_conf(store: &Store, c: &Candidate) -> Result<(String, usize)> {
    let text = c.text.as_ref().map_err(|e| anyhow!("{e}"))?;
    let parsed = wgquick::parse(&c.display, text)?;
    let file_name = c.display.rsplit('/').next().unwrap_or(&c.display);
    let name = ProfileName::from_file_name(Path::new(file_name))?;
    let opts = ImportOptions {
        source: Some(c.display.clone()),
        replace: false,
        location: location::infer(&c.display, text),
    };
    store
        .import(&name, &parsed.config, &opts)
        .map_err(explain)?;
    Ok((name.to_string(), parsed.ignored_hooks.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_profile::Keystore;

    const CONF: &str = "[Interface]\nPrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAddress = 10.64.1.2/32\nDNS = 10.64.1.1\nPostUp = iptables -A FORWARD\n\n[Peer]\nPublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n";

    fn profiles(dir: &Path) -> Profiles {
        Profiles::new(Options {
            socket: dir.join("none.sock"),
            config_dir: Some(dir.join("config")),
            keystore: Keystore::File,
            trusted_keys_dir: dir.join("trusted"),
            self_test: Default::default(),
            hidden: false,
            quit: false,
            forward: vec![],
            open: vec![],
            log_dir: None,
        })
    }

    /// A store holding CONF as profile de-fra-wg-001.
    fn with_de_fra() -> (tempfile::TempDir, Profiles) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("de-fra-wg-001.conf");
        fs::write(&file, CONF).unwrap();
        let p = profiles(dir.path());
        assert_eq!(p.import(&file, false).imported, ["de-fra-wg-001"]);
        (dir, p)
    }

    #[test]
    fn imported_file_shows_in_the_catalog_under_its_country() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("se-sto-wg-001.conf");
        fs::write(&file, CONF).unwrap();
        let p = profiles(dir.path());
        let out = p.import(&file, false);
        assert_eq!(out.imported, vec!["se-sto-wg-001"], "{out:?}");
        assert_eq!(out.ignored_hooks, 1);
        let catalog = p.catalog().unwrap();
        assert_eq!(catalog.countries[0].code.as_deref(), Some("SE"));
        assert_eq!(
            catalog.countries[0].servers[0].profile.as_str(),
            "se-sto-wg-001"
        );
        // importing the same file again is refused with a reason, nothing crashes
        let again = p.import(&file, false);
        assert!(again.imported.is_empty());
        assert!(again.failed[0].contains("already exists"), "{again:?}");
        // the public key of the private key in CONF (32 bytes of 1)
        assert_eq!(
            p.public_key("se-sto-wg-001").unwrap(),
            underpass_profile::store::public_key_of(&underpass_proto::Key([1; 32])).to_base64()
        );
        p.remove("se-sto-wg-001").unwrap();
        assert!(p.list().unwrap().is_empty());
    }

    #[test]
    fn a_broken_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.conf");
        fs::write(&file, "[Interface]\nPrivateKey = nope\n").unwrap();
        let out = profiles(dir.path()).import(&file, false);
        assert!(out.imported.is_empty());
        assert!(out.failed[0].starts_with("broken.conf"), "{out:?}");
    }

    #[test]
    fn connect_request_carries_the_split_tunnel_settings() {
        let (_dir, p) = with_de_fra();
        let settings = Settings {
            split_include: vec!["10.0.0.0/8".parse().unwrap()],
            split_exclude: vec!["10.9.0.0/16".parse().unwrap()],
            ..Settings::default()
        };
        let c = p
            .tunnel_config(
                "de-fra-wg-001",
                None,
                &settings,
                underpass_proto::KillSwitchMode::Off,
                false,
            )
            .unwrap();
        assert_eq!(c.routing.include, settings.split_include);
        assert_eq!(c.routing.exclude, settings.split_exclude);
        assert!(p
            .tunnel_config(
                "nope",
                None,
                &settings,
                underpass_proto::KillSwitchMode::Off,
                false
            )
            .is_err());
    }

    #[test]
    fn custom_dns_replaces_the_profiles_only_when_the_tunnel_carries_it() {
        let (_dir, p) = with_de_fra();
        let config = |settings: &Settings| {
            p.tunnel_config(
                "de-fra-wg-001",
                None,
                settings,
                underpass_proto::KillSwitchMode::Auto,
                false,
            )
        };
        let mut settings = Settings {
            custom_dns: vec!["192.0.2.53".parse().unwrap()],
            ..Settings::default()
        };
        assert_eq!(config(&settings).unwrap().dns, settings.custom_dns);
        settings.split_include = vec!["10.0.0.0/8".parse().unwrap()];
        let e = format!("{:#}", config(&settings).unwrap_err());
        assert!(
            e.contains("192.0.2.53 would be reached outside the tunnel"),
            "{e}"
        );
        settings.custom_dns.clear();
        assert_eq!(
            config(&settings).unwrap().dns,
            vec!["10.64.1.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }
}
