//! Signed profile bundles as the per-user store sees them.
//!
//! The format, the signature check and the tunnel each server describes live in
//! `underpass-trust` (shared with the helper, which verifies every bundle again itself). This
//! module adds what only a user's device needs: the profile-name and country rules of the
//! store, the bundle as wg-quick profiles, and the keys this user chose to trust
//! ([`TrustStore`]).

use std::fs;
use std::path::PathBuf;

use underpass_proto::TunnelConfig;
pub use underpass_trust::bundle::*;
pub use underpass_trust::system::DEFAULT_SYSTEM_TRUST_DIR;

/// Kill-switch modes (weakest first), the policy and the session request are the IPC
/// contract's own types: the helper enforces exactly what a bundle says.
pub use underpass_proto::{KillSwitchMode, Policy, SessionRequest};

use crate::location::normalize_country;
use crate::store::ProfileName;
use crate::wgquick::{Interface, Peer, WgQuickConfig};

/// Opens and verifies a bundle ([`Bundle::open`]), then holds it to the store's rules: a
/// valid profile name and known country codes.
pub fn open(file: &str, bytes: &[u8]) -> Result<Bundle, BundleError> {
    let bundle = Bundle::open(file, bytes)?;
    let invalid = |reason: String| BundleError::Invalid {
        file: file.to_string(),
        reason,
    };
    ProfileName::new(&bundle.name).map_err(|e| invalid(e.to_string()))?;
    for (i, s) in bundle.payload.servers.iter().enumerate() {
        if normalize_country(&s.country) != Some(s.country.as_str()) {
            return Err(invalid(format!(
                "servers[{i}].country {:?} is not an ISO 3166-1 code such as SE",
                s.country
            )));
        }
    }
    Ok(bundle)
}

/// One single-peer wg-quick config per server, in order, with `private_key`.
pub fn server_configs(
    bundle: &Bundle,
    private_key: underpass_proto::Key,
) -> Result<Vec<WgQuickConfig>, String> {
    (0..bundle.payload.servers.len())
        .map(|i| {
            bundle
                .server_tunnel(i, private_key.clone())
                .map(from_tunnel)
        })
        .collect()
}

fn from_tunnel(t: TunnelConfig) -> WgQuickConfig {
    WgQuickConfig {
        interface: Interface {
            private_key: t.private_key,
            addresses: t.addresses,
            dns: t.dns,
            dns_search: t.dns_search,
            mtu: t.mtu,
            listen_port: None,
            fwmark: None,
            table: None,
            save_config: None,
        },
        peers: t
            .peers
            .into_iter()
            .map(|p| Peer {
                public_key: p.public_key,
                preshared_key: p.preshared_key,
                allowed_ips: p.allowed_ips,
                endpoint: p.endpoint,
                persistent_keepalive: p.persistent_keepalive,
            })
            .collect(),
    }
}

/// Where a trusted key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedBy {
    /// Pinned system-wide by IT, in this file.
    System(PathBuf),
    /// Accepted by this user, in this file.
    User(PathBuf),
}

/// The pinned organization keys: a system directory IT provisions, and the user's own.
/// Each holds minisign public key files (`*.pub`).
#[derive(Debug, Clone)]
pub struct TrustStore {
    pub system_dir: PathBuf,
    pub user_dir: PathBuf,
}

impl TrustStore {
    /// Where `signer` is trusted, if anywhere. A key file that cannot be read or parsed is an
    /// error naming it: IT should learn that its provisioning is broken.
    pub fn check(&self, signer: &SignerKey) -> Result<Option<TrustedBy>, String> {
        if let Some(p) = find_key(&self.system_dir, signer)? {
            return Ok(Some(TrustedBy::System(p)));
        }
        Ok(find_key(&self.user_dir, signer)?.map(TrustedBy::User))
    }

    /// Pins `signer` for this user (the user accepted its fingerprint).
    pub fn trust_for_user(&self, signer: &SignerKey) -> Result<PathBuf, String> {
        fs::create_dir_all(&self.user_dir)
            .map_err(|e| format!("{}: {e}", self.user_dir.display()))?;
        let path = self.user_dir.join(format!("{}.pub", signer.key_id));
        crate::store::write_file_atomic(&path, signer.to_pub_file().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(path)
    }
}
