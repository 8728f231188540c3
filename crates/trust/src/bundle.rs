//! Signed profile bundles (`.underpass` files): how an IT department hands out a profile.
//!
//! A bundle is a minisign signature (4 lines) followed by the JSON payload it signs, byte for
//! byte. `docs/profile-bundles.md` is the reference; in short:
//!
//! ```text
//! untrusted comment: underpass profile bundle v1      <- fixed text
//! RUQ...                                               <- minisign signature (base64)
//! trusted comment: ...                                 <- signed, shown to the user
//! ...                                                  <- minisign global signature
//! {"format": "underpass-profile/1", ...}               <- the payload, exactly as signed
//! ```
//!
//! Why this shape: the standard `minisign` tool signs and verifies it (`head -n4` is the
//! `.minisig`, the rest is the signed file), verification needs one well-kept crate
//! (`minisign-verify`), and the file is one self-contained download. The payload names its
//! signer's public key so that a first import can show the fingerprint for the user to accept;
//! the key only *verifies*, trust comes from pinned keys: the system's
//! ([`crate::system::SystemDir`]) and the user's (kept by `underpass-profile`).
//!
//! The whole envelope must be in canonical form (the fixed untrusted comment, canonical
//! base64, `\n` line ends): minisign does not sign the untrusted comment, and a decoder may
//! accept more than one spelling of the same base64, but "any changed byte is refused" is the
//! promise made to IT, so the parser re-renders the envelope and compares.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use underpass_proto::{check_text, Key, PeerConfig, RoutingConfig, SessionPolicy, TunnelConfig};

/// The first line of every bundle.
pub const UNTRUSTED_COMMENT: &str = "untrusted comment: underpass profile bundle v1";
/// The payload's `format` value this build reads.
pub const PAYLOAD_FORMAT: &str = "underpass-profile/1";
/// Bundles are a few KiB; anything bigger is refused before parsing.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// The most servers one bundle may list.
pub const MAX_SERVERS: usize = 1024;

/// Kill-switch modes (weakest first), the policy and the session request are the IPC
/// contract's own types: the helper enforces exactly what a bundle says.
pub use underpass_proto::{KillSwitchMode, Policy, SessionRequest};

/// The private key of a bundled profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PrivateKeySource {
    /// `{"embedded": "<base64>"}`: IT made the key; it goes to the keyring on import.
    Embedded(Key),
    /// `"generate_locally"`: the device makes its key on first import and shows the public key
    /// for IT to register. An update keeps the key already made.
    GenerateLocally,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInterface {
    pub addresses: Vec<String>,
    /// IP addresses (the tunnel's resolvers) and search domains, as in wg-quick's `DNS`.
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleServer {
    /// Unique within the bundle: `[A-Za-z0-9._-]`, 1 to 64 characters.
    pub id: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub city: String,
    pub endpoint: String,
    pub public_key: Key,
    /// Defaults to everything: `0.0.0.0/0, ::/0`.
    #[serde(default)]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    pub preshared_key: Option<Key>,
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

/// The signed JSON document. Unknown fields are refused, so a field this build does not
/// understand (a new policy rule, say) can never be silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    pub format: String,
    /// The minisign public key (`RW...`) that signed this payload.
    pub signer_public_key: String,
    pub organization: String,
    /// The profile name on the device (`underpass-profile` holds it to its name rules).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Strictly greater in every new edition of the profile.
    pub serial: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ` (UTC). After it, the bundle is refused.
    #[serde(default)]
    pub expires: Option<String>,
    pub interface: BundleInterface,
    pub servers: Vec<BundleServer>,
    pub policy: Policy,
    pub private_key: PrivateKeySource,
}

/// A minisign public key: its 8-byte id and its `RW...` text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SignerKey {
    /// `RW...`, 56 characters: the fingerprint the user compares.
    pub public_key: String,
    /// The key id as minisign prints it (16 upper-case hex digits).
    pub key_id: String,
}

impl SignerKey {
    /// Parses `RW...` or the text of a `minisign.pub` file (comment line, then the key).
    pub fn parse(text: &str) -> Result<SignerKey, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or("no public key in it")?;
        let bytes = STANDARD
            .decode(line)
            .map_err(|_| format!("{line:?} is not a minisign public key (not base64)"))?;
        if bytes.len() != 42 || bytes[0..2] != *b"Ed" || STANDARD.encode(&bytes) != line {
            return Err(format!("{line:?} is not a minisign Ed25519 public key"));
        }
        Ok(SignerKey {
            public_key: line.to_string(),
            key_id: key_id_hex(&bytes[2..10]),
        })
    }

    /// The contents of a `minisign.pub` file for this key.
    pub fn to_pub_file(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.key_id, self.public_key
        )
    }
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key ID {} (public key {})", self.key_id, self.public_key)
    }
}

/// minisign prints key ids as a little-endian u64 in hex.
fn key_id_hex(id: &[u8]) -> String {
    let mut le = [0u8; 8];
    le.copy_from_slice(id);
    format!("{:016X}", u64::from_le_bytes(le))
}

/// A bundle whose signature checked out against the key it names. Not yet *trusted*: that
/// takes a pinned key ([`find_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub payload: BundlePayload,
    pub signer: SignerKey,
    /// The signed minisign trusted comment (often `timestamp:...`).
    pub trusted_comment: String,
    /// Seconds since the epoch, from `payload.expires`.
    pub expires_at: Option<u64>,
    /// The name the profile is stored under (`payload.name`).
    pub name: String,
    /// The bundle exactly as signed: what a client hands the helper to verify for itself.
    pub raw: Vec<u8>,
}

/// Why a bundle was refused. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("{file}: not an Underpass profile bundle ({reason})")]
    NotABundle { file: String, reason: String },
    #[error("{file}: refused: the bundle was modified after it was signed ({reason})")]
    Tampered { file: String, reason: String },
    #[error("{file}: refused: signed by an unknown key, {signer}. If your IT department confirms this key, import again with --trust, or ask them to install it in {system_dir}")]
    UnknownKey {
        file: String,
        signer: SignerKey,
        system_dir: String,
    },
    #[error(
        "{file}: refused: the bundle expired on {expires}; ask your IT department for a new one"
    )]
    Expired { file: String, expires: String },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

impl Bundle {
    /// Parses `bytes` and verifies the signature with the key the payload names.
    pub fn open(file: &str, bytes: &[u8]) -> Result<Bundle, BundleError> {
        let not_bundle = |reason: &str| BundleError::NotABundle {
            file: file.to_string(),
            reason: reason.to_string(),
        };
        let tampered = |reason: &str| BundleError::Tampered {
            file: file.to_string(),
            reason: reason.to_string(),
        };
        let invalid = |reason: String| BundleError::Invalid {
            file: file.to_string(),
            reason,
        };
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(not_bundle("larger than 1 MiB"));
        }
        let (sig_text, payload) = split_envelope(bytes)
            .ok_or_else(|| not_bundle("it does not start with a 4-line minisign signature"))?;
        let lines: Vec<&str> = sig_text.lines().collect();
        if lines[0] != UNTRUSTED_COMMENT {
            return Err(if lines[0].starts_with("untrusted comment:") {
                tampered("the first line is not the bundle's fixed comment; a file signed with the minisign tool is assembled with `underpass profile sign --minisig`")
            } else {
                not_bundle(
                    "the first line is not \"untrusted comment: underpass profile bundle v1\"",
                )
            });
        }
        let canonical = |line: &str, len: usize| {
            STANDARD
                .decode(line)
                .ok()
                .filter(|b| b.len() == len && STANDARD.encode(b) == line)
        };
        let sig_bytes = canonical(lines[1], 74)
            .ok_or_else(|| tampered("the signature line is not a minisign signature"))?;
        canonical(lines[3], 64)
            .ok_or_else(|| tampered("the global signature line is not a minisign signature"))?;
        let Some(trusted_comment) = lines[2].strip_prefix("trusted comment: ") else {
            return Err(tampered("the third line is not a minisign trusted comment"));
        };
        let signature = minisign_verify::Signature::decode(sig_text)
            .map_err(|e| tampered(&format!("the signature cannot be read: {e}")))?;

        // The payload must be readable before its signature can be checked, since it names
        // the key. It is only trusted once the check passes.
        let payload_text =
            std::str::from_utf8(payload).map_err(|_| tampered("the payload is not UTF-8 text"))?;
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            signer_public_key: Option<String>,
        }
        let probe: Probe = serde_json::from_str(payload_text)
            .map_err(|e| tampered(&format!("the payload is not valid JSON: {e}")))?;
        match probe.format.as_deref() {
            Some(PAYLOAD_FORMAT) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "bundle format {other:?} is not one this Underpass reads ({PAYLOAD_FORMAT}); upgrade Underpass"
                )))
            }
            None => return Err(tampered("the payload has no \"format\"")),
        }
        let signer = SignerKey::parse(probe.signer_public_key.as_deref().unwrap_or(""))
            .map_err(|e| tampered(&format!("signer_public_key: {e}")))?;
        if key_id_hex(&sig_bytes[2..10]) != signer.key_id {
            return Err(tampered(&format!(
                "signed by key ID {}, but the payload names key ID {}",
                key_id_hex(&sig_bytes[2..10]),
                signer.key_id
            )));
        }
        let pk = minisign_verify::PublicKey::from_base64(&signer.public_key)
            .map_err(|e| tampered(&format!("signer_public_key: {e}")))?;
        pk.verify(payload, &signature, false).map_err(|e| match e {
            minisign_verify::Error::UnexpectedAlgorithm => {
                tampered("legacy (non-prehashed) minisign signatures are not accepted")
            }
            _ => tampered("the signature does not match the contents"),
        })?;

        // Signed: now the full, strict parse.
        let payload: BundlePayload = serde_json::from_str(payload_text)
            .map_err(|e| invalid(format!("the payload is not a valid bundle: {e}")))?;
        let name = payload.name.clone();
        let expires_at = match &payload.expires {
            Some(text) => Some(parse_utc(text).ok_or_else(|| {
                invalid(format!(
                    "\"expires\": {text:?} is not a UTC time like 2027-01-31T00:00:00Z"
                ))
            })?),
            None => None,
        };
        let bundle = Bundle {
            signer,
            trusted_comment: trusted_comment.to_string(),
            expires_at,
            name,
            payload,
            raw: bytes.to_vec(),
        };
        bundle.validate().map_err(invalid)?;
        Ok(bundle)
    }

    /// Refuses a bundle whose expiry is at or before `now` (seconds since the epoch).
    pub fn check_expiry(&self, file: &str, now: u64) -> Result<(), BundleError> {
        match (self.expires_at, &self.payload.expires) {
            (Some(at), Some(text)) if at <= now => Err(BundleError::Expired {
                file: file.to_string(),
                expires: text.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let p = &self.payload;
        if p.organization.trim().is_empty() {
            return Err("\"organization\" must be a non-empty line of text".into());
        }
        check_text("organization", &p.organization)?;
        if p.name.is_empty() {
            return Err("\"name\" is empty".into());
        }
        check_text("name", &p.name)?;
        if let Some(d) = &p.description {
            check_text("description", d)?;
        }
        if p.servers.is_empty() {
            return Err("\"servers\" is empty; the profile needs a server".into());
        }
        if p.servers.len() > MAX_SERVERS {
            return Err(format!("more than {MAX_SERVERS} servers"));
        }
        let mut ids = BTreeSet::new();
        for (i, s) in p.servers.iter().enumerate() {
            let at = format!("servers[{i}]");
            let id_ok = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !id_ok {
                return Err(format!(
                    "{at}.id {:?}: use 1 to 64 letters, digits, '.', '_' or '-'",
                    s.id
                ));
            }
            if !ids.insert(&s.id) {
                return Err(format!("{at}.id {:?} is used twice", s.id));
            }
            if s.country.len() != 2 || !s.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "{at}.country {:?} is not an upper-case ISO 3166-1 code such as SE",
                    s.country
                ));
            }
            check_text(&format!("{at}.city"), &s.city)?;
        }
        for (i, s) in p.servers.iter().enumerate() {
            self.server_tunnel(i, Key([1; 32]))?
                .validate()
                .map_err(|e| format!("servers[{i}] ({}): {e}", s.id))?;
        }
        Ok(())
    }

    /// The position of the server with this id.
    pub fn server_index(&self, id: &str) -> Option<usize> {
        self.payload.servers.iter().position(|s| s.id == id)
    }

    /// The connect request for server `index` with `private_key`: the bundle's interface, that
    /// one server as the peer, default routing, and the bundle's policy.
    pub fn server_tunnel(&self, index: usize, private_key: Key) -> Result<TunnelConfig, String> {
        let p = &self.payload;
        let s = p
            .servers
            .get(index)
            .ok_or_else(|| format!("the bundle has no server {index}"))?;
        let mut addresses = Vec::new();
        for a in &p.interface.addresses {
            addresses.push(parse_prefix(a).map_err(|e| format!("interface.addresses: {e}"))?);
        }
        if addresses.is_empty() {
            return Err("interface.addresses is empty".into());
        }
        let (mut dns, mut dns_search) = (Vec::new(), Vec::new());
        for d in &p.interface.dns {
            match d.parse::<IpAddr>() {
                Ok(ip) => dns.push(ip),
                Err(_) if is_domain(d) => dns_search.push(d.clone()),
                Err(_) => {
                    return Err(format!(
                        "interface.dns: {d:?} is neither an IP address nor a search domain"
                    ))
                }
            }
        }
        let allowed_ips = match &s.allowed_ips {
            None => vec![
                "0.0.0.0/0".parse().expect("v4"),
                "::/0".parse().expect("v6"),
            ],
            Some(list) => list
                .iter()
                .map(|a| parse_prefix(a).map(|n: IpNet| n.trunc()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("servers[{index}].allowed_ips: {e}"))?,
        };
        Ok(TunnelConfig {
            profile: p.name.clone(),
            private_key,
            addresses,
            dns,
            dns_search,
            mtu: p.interface.mtu,
            peers: vec![PeerConfig {
                public_key: s.public_key.clone(),
                preshared_key: s.preshared_key.clone(),
                endpoint: s.endpoint.clone(),
                allowed_ips,
                persistent_keepalive: s.persistent_keepalive.filter(|k| *k != 0),
            }],
            routing: RoutingConfig::default(),
            policy: Some(SessionPolicy {
                organization: p.organization.clone(),
                serial: p.serial,
                policy: p.policy,
            }),
            signed: None,
        })
    }
}

/// An IP prefix, or a bare address as its host prefix (`10.0.0.2` is `10.0.0.2/32`).
pub fn parse_prefix(item: &str) -> Result<IpNet, String> {
    if let Ok(net) = item.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{item:?} is not an IP address or prefix (e.g. 10.0.0.0/24, fd00::/64)"
    ))
}

/// A DNS search domain as wg-quick's `DNS =` takes it (a trailing dot allowed).
pub fn is_domain(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Splits after the fourth `\n`.
fn split_envelope(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let mut newlines = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            newlines += 1;
            if newlines == 4 {
                let head = std::str::from_utf8(&bytes[..=i]).ok()?;
                if head.contains('\r') {
                    return None;
                }
                return Some((head, &bytes[i + 1..]));
            }
        }
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SSZ` to seconds since the epoch.
pub fn parse_utc(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = &text[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || d == 0
        || d > month_days[(m - 1) as usize]
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The `*.pub` file in `dir` that holds `signer`, if any. A key file that cannot be read or
/// parsed is an error naming it: IT (or the user) should learn that the directory is broken.
pub fn find_key(dir: &Path, signer: &SignerKey) -> Result<Option<PathBuf>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = SignerKey::parse(&text).map_err(|e| {
            format!(
                "{}: not a minisign public key file ({e}); fix or remove it",
                path.display()
            )
        })?;
        if key == *signer {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Signing, for `underpass profile keygen|sign`. The same files the `minisign` tool uses.
#[cfg(feature = "signing")]
pub mod signing {
    use super::*;

    /// A new key pair: (`minisign.key` text, `minisign.pub` text, the key).
    /// With a password the secret key is encrypted (scrypt), as minisign does by default.
    pub fn keygen(password: Option<String>) -> Result<(String, String, SignerKey), String> {
        let kp = match password {
            Some(pw) => minisign::KeyPair::generate_encrypted_keypair(Some(pw)),
            None => minisign::KeyPair::generate_unencrypted_keypair(),
        }
        .map_err(|e| e.to_string())?;
        let sk = kp
            .sk
            .to_box(Some("underpass signing key"))
            .map_err(|e| e.to_string())?
            .into_string();
        let signer = SignerKey::parse(&kp.pk.to_base64())?;
        Ok((sk, signer.to_pub_file(), signer))
    }

    /// Reads a minisign secret key file. `password` is used if the key is encrypted; `None`
    /// for an encrypted key prompts on the terminal.
    pub fn load_secret_key(
        text: &str,
        password: Option<String>,
    ) -> Result<minisign::SecretKey, String> {
        let boxed = minisign::SecretKeyBox::from_string(text).map_err(|e| e.to_string())?;
        match minisign::SecretKey::from_unencrypted_box(boxed.clone()) {
            Ok(sk) => Ok(sk),
            Err(_) => minisign::SecretKey::from_box(boxed, password).map_err(|e| e.to_string()),
        }
    }

    /// The signer key of a secret key.
    pub fn signer_of(sk: &minisign::SecretKey) -> Result<SignerKey, String> {
        let pk = minisign::PublicKey::from_secret_key(sk).map_err(|e| e.to_string())?;
        SignerKey::parse(&pk.to_base64())
    }

    /// Signs `payload` into a bundle. The payload's `signer_public_key` must be this key's.
    pub fn sign(
        sk: &minisign::SecretKey,
        payload: &[u8],
        trusted_comment: &str,
    ) -> Result<Vec<u8>, String> {
        check_payload_signer(payload, &signer_of(sk)?)?;
        let sig = minisign::sign(None, sk, payload, Some(trusted_comment), None)
            .map_err(|e| e.to_string())?;
        assemble(&sig.into_string(), payload)
    }

    /// Builds a bundle from a payload and its `.minisig` (made by the minisign tool). The
    /// untrusted comment, which minisign does not sign, is replaced by the fixed one.
    pub fn assemble(minisig: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let lines: Vec<&str> = minisig.lines().filter(|l| !l.is_empty()).collect();
        if lines.len() != 4 || !lines[0].starts_with("untrusted comment:") {
            return Err("not a minisign signature file (4 lines)".into());
        }
        let mut out = format!(
            "{UNTRUSTED_COMMENT}\n{}\n{}\n{}\n",
            lines[1], lines[2], lines[3]
        )
        .into_bytes();
        out.extend_from_slice(payload);
        Ok(out)
    }

    fn check_payload_signer(payload: &[u8], signer: &SignerKey) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Probe {
            signer_public_key: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(payload)
            .map_err(|e| format!("the payload is not valid JSON: {e}"))?;
        match probe.signer_public_key {
            Some(k) if k == signer.public_key => Ok(()),
            Some(k) => Err(format!(
                "the payload names signer_public_key {k:?}, but this secret key's public key is {:?}",
                signer.public_key
            )),
            None => Err(format!(
                "the payload has no signer_public_key; add \"signer_public_key\": \"{}\"",
                signer.public_key
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_strictly() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_utc("2024-02-29T12:34:56Z"), Some(1_709_210_096));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00+01:00",
            "2024-1-01T00:00:00Z",
            "+024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn kill_switch_modes_are_ordered_and_policy_names_each_violation() {
        let p = Policy {
            min_kill_switch: KillSwitchMode::Auto,
            split_tunnel_allowed: false,
            lan_access_allowed: true,
            dns_locked: true,
        };
        let ok = SessionRequest {
            kill_switch: KillSwitchMode::Lockdown,
            split_tunnel: false,
            lan_access: true,
        };
        assert!(p.violations(&ok).is_empty());
        let bad = SessionRequest {
            kill_switch: KillSwitchMode::Off,
            split_tunnel: true,
            lan_access: false,
        };
        assert_eq!(
            p.violations(&bad),
            [
                "the kill switch must be at least \"auto\" (asked for \"off\")",
                "split tunneling (--include/--exclude) is not allowed"
            ]
        );
    }
}
