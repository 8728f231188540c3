//! What the app is asked to open: `underpass://` links and profile files, from its command
//! line or handed over by a second instance (the desktop runs `underpass-gui %u` for a link or
//! a double-clicked `.underpass` file).
//!
//! Links never act on their own: `underpass://connect` only selects the server on the Connect
//! screen (a web page must not be able to reroute someone's traffic), and a bundle from a link
//! is imported only after the user confirms it (signer, profile, serial shown), then goes
//! through the same signature check and trust prompt as a file. A link must not carry a
//! private key (links end up in browser histories, proxies and process lists), so a bundle
//! with an embedded key is refused; a link's bundle lets the device make its own key.
//!
//! - `underpass://connect` (the fastest server), `underpass://connect?country=SE`,
//!   `underpass://connect?profile=NAME[&server=ID]`
//! - `underpass://import?bundle=BASE64URL`: a signed bundle carried in the link itself.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use url::Url;

use underpass_profile::bundle::PrivateKeySource;

use crate::connect::Target;

pub const SCHEME: &str = "underpass";
/// Where links' bundles wait for their import, in the config dir (mode 0700).
pub const INBOX: &str = "inbox";
/// A link's bundle is at most this large once decoded (bundles are a few KiB).
pub const MAX_LINK_BUNDLE: usize = 64 * 1024;

/// One thing to open, for the webview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum OpenRequest {
    /// Select this on the Connect screen.
    Select { target: Target },
    /// Import these files (the Profiles screen runs its usual import, trust prompt included).
    Import { paths: Vec<String> },
    /// A signed bundle from a link, saved to `path`: import it only if the user agrees.
    /// What it claims is shown; the import checks the signature again.
    ImportLink {
        path: String,
        organization: String,
        profile: String,
        serial: u64,
    },
    /// Something that could not be understood, and why.
    Refused { what: String, reason: String },
}

/// A link's meaning, before any file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Select(Target),
    Bundle(Vec<u8>),
    File(PathBuf),
}

/// Reads one command-line item: an `underpass://` link or a path (relative to `cwd`).
pub fn parse(item: &str, cwd: &Path) -> Result<Parsed, String> {
    if item
        .get(..SCHEME.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{SCHEME}:")))
    {
        return parse_link(item);
    }
    if item
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
    {
        let url = Url::parse(item).map_err(|e| format!("not a valid file link: {e}"))?;
        let path = url
            .to_file_path()
            .map_err(|()| "not a local file".to_string())?;
        return Ok(Parsed::File(path));
    }
    Ok(Parsed::File(cwd.join(item)))
}

fn parse_link(link: &str) -> Result<Parsed, String> {
    let url = Url::parse(link).map_err(|e| format!("not a valid link: {e}"))?;
    let action = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match action.as_str() {
        "connect" | "import" => {}
        "" => return Err("the link names no action (connect or import)".into()),
        other => return Err(format!("unknown action {other:?}: Underpass links are {SCHEME}://connect and {SCHEME}://import")),
    }
    let mut country = None;
    let mut profile = None;
    let mut server = None;
    let mut bundle = None;
    for (k, v) in url.query_pairs() {
        let slot = match (action.as_str(), k.as_ref()) {
            ("connect", "country") => &mut country,
            ("connect", "profile") => &mut profile,
            ("connect", "server") => &mut server,
            ("import", "bundle") => &mut bundle,
            _ => return Err(format!("unknown parameter {k:?} for {SCHEME}://{action}")),
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(format!("parameter {k:?} appears twice"));
        }
    }
    match action.as_str() {
        "connect" => match (country, profile, server) {
            (None, None, None) => Ok(Parsed::Select(Target::Fastest { country: None })),
            (Some(cc), None, None) => {
                let code = underpass_profile::location::normalize_country(&cc)
                    .ok_or_else(|| format!("{cc:?} is not a country code like SE"))?;
                Ok(Parsed::Select(Target::Fastest {
                    country: Some(code.to_string()),
                }))
            }
            (None, Some(profile), server) => {
                underpass_profile::ProfileName::new(&profile).map_err(|e| e.to_string())?;
                Ok(Parsed::Select(Target::Server { profile, server }))
            }
            _ => Err("give either country, or profile (and server)".into()),
        },
        _ => {
            let text = bundle.ok_or("the link carries no bundle")?;
            if text.len() > MAX_LINK_BUNDLE * 4 / 3 + 4 {
                return Err(format!(
                    "the bundle is larger than {} KiB",
                    MAX_LINK_BUNDLE / 1024
                ));
            }
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|e| format!("the bundle is not base64url: {e}"))?;
            Ok(Parsed::Bundle(bytes))
        }
    }
}

/// Turns command-line items into requests for the webview. A link's bundle is written to
/// `inbox` (a private directory) so that it is imported like any file.
pub fn requests(items: &[String], cwd: &Path, inbox: &Path) -> Vec<OpenRequest> {
    let mut out = Vec::new();
    let mut paths = Vec::new();
    for item in items {
        let refused = |reason: String| OpenRequest::Refused {
            what: shorten(item),
            reason,
        };
        match parse(item, cwd) {
            Ok(Parsed::Select(target)) => out.push(OpenRequest::Select { target }),
            Ok(Parsed::File(p)) => paths.push(p.display().to_string()),
            Ok(Parsed::Bundle(bytes)) => match link_bundle(inbox, &bytes) {
                Ok(request) => out.push(request),
                Err(e) => out.push(refused(e)),
            },
            Err(e) => out.push(refused(e)),
        }
    }
    if !paths.is_empty() {
        out.push(OpenRequest::Import { paths });
    }
    out
}

/// A link as shown in a message: its start (a link's bundle runs to kilobytes).
fn shorten(item: &str) -> String {
    match item.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &item[..i]),
        None => item.to_string(),
    }
}

/// Checks a link's bundle (a valid signature, no embedded key) and saves it for the import.
fn link_bundle(inbox: &Path, bytes: &[u8]) -> Result<OpenRequest, String> {
    let bundle =
        underpass_profile::bundle::open("the link's bundle", bytes).map_err(|e| e.to_string())?;
    if matches!(bundle.payload.private_key, PrivateKeySource::Embedded(_)) {
        return Err(format!(
            "the bundle of {} carries a private key, which a link must never do; ask them for \
             the .underpass file, or for a bundle that lets this device make its own key",
            bundle.payload.organization
        ));
    }
    // Named so that the import's messages read well ("corp from a link.underpass is signed
    // by ..."); the profile name is a validated one, safe as a file name.
    let path = save_bundle(inbox, &format!("{} from a link", bundle.name), bytes)?;
    Ok(OpenRequest::ImportLink {
        path: path.display().to_string(),
        organization: bundle.payload.organization.clone(),
        profile: bundle.name.to_string(),
        serial: bundle.payload.serial,
    })
}

/// Removes the bundles that links left in `inbox` (after an import, and at start).
pub fn clear_inbox(inbox: &Path) {
    for entry in std::fs::read_dir(inbox).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "underpass") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn save_bundle(inbox: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(inbox)
        .map_err(|e| format!("{}: {e}", inbox.display()))?;
    let path = inbox.join(format!("{name}.underpass"));
    underpass_profile::store::write_file_atomic(&path, bytes).map_err(|e| e.to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, String> {
        parse(s, Path::new("/home/u"))
    }

    #[test]
    fn connect_links_select_and_never_connect() {
        assert_eq!(
            p("underpass://connect").unwrap(),
            Parsed::Select(Target::Fastest { country: None })
        );
        assert_eq!(
            p("underpass://connect?country=uk").unwrap(),
            Parsed::Select(Target::Fastest {
                country: Some("GB".into())
            })
        );
        assert_eq!(
            p("UNDERPASS://connect?profile=acme&server=sto-1").unwrap(),
            Parsed::Select(Target::Server {
                profile: "acme".into(),
                server: Some("sto-1".into())
            })
        );
    }

    #[test]
    fn bad_links_say_why() {
        let e = |s: &str| p(s).unwrap_err();
        assert!(e("underpass://connect?country=XX").contains("not a country code"));
        assert!(e("underpass://connect?country=SE&profile=a").contains("either country"));
        assert!(e("underpass://connect?country=SE&country=DE").contains("twice"));
        assert!(e("underpass://connect?profile=../../etc").contains("profile"));
        assert!(e("underpass://delete?profile=a").contains("unknown action"));
        assert!(e("underpass://import").contains("no bundle"));
        assert!(e("underpass://import?bundle=***").contains("not base64url"));
        assert!(e("underpass://connect?evil=1").contains("unknown parameter"));
        let huge = "A".repeat(MAX_LINK_BUNDLE * 2);
        assert!(e(&format!("underpass://import?bundle={huge}")).contains("larger than"));
    }

    #[test]
    fn files_are_resolved_against_the_callers_directory_and_bundles_saved_privately() {
        assert_eq!(
            p("acme.underpass").unwrap(),
            Parsed::File("/home/u/acme.underpass".into())
        );
        assert_eq!(
            p("file:///tmp/my%20profiles/a.underpass").unwrap(),
            Parsed::File("/tmp/my profiles/a.underpass".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let link = |bytes: &[u8]| {
            format!(
                "underpass://import?bundle={}",
                URL_SAFE_NO_PAD.encode(bytes)
            )
        };
        let out = requests(
            &[
                link(b"bundle"),
                link(&signed_bundle("\"generate_locally\"")),
                link(&signed_bundle(
                    r#"{"embedded": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}"#,
                )),
                "x.conf".into(),
                "underpass://nope".into(),
            ],
            dir.path(),
            &inbox,
        );
        let OpenRequest::Refused { what, reason } = &out[0] else {
            panic!("{out:?}")
        };
        assert!(reason.contains("the link's bundle"), "{reason}");
        assert_eq!(what, "underpass://import?bundle=YnVuZGxl");
        let OpenRequest::ImportLink {
            path,
            organization,
            profile,
            serial,
        } = &out[1]
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            (organization.as_str(), profile.as_str(), *serial),
            ("ACME IT", "acme", 7)
        );
        assert!(path.ends_with("/acme from a link.underpass"), "{path}");
        assert!(underpass_profile::bundle::open("saved", &std::fs::read(path).unwrap()).is_ok());
        let OpenRequest::Refused { what, reason } = &out[2] else {
            panic!("{out:?}")
        };
        assert!(reason.contains("carries a private key"), "{reason}");
        assert!(what.ends_with('…') && what.chars().count() == 61, "{what}");
        assert!(
            matches!(&out[3], OpenRequest::Refused { reason, .. } if reason.contains("unknown action"))
        );
        let OpenRequest::Import { paths } = &out[4] else {
            panic!("{out:?}")
        };
        assert!(paths[0].ends_with("x.conf"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&inbox).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        clear_inbox(&inbox);
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
    }

    /// A bundle signed with a fresh key, with `private_key` as given (JSON).
    fn signed_bundle(private_key: &str) -> Vec<u8> {
        use underpass_profile::bundle::signing;
        let (sk, _, signer) = signing::keygen(None).unwrap();
        let sk = signing::load_secret_key(&sk, None).unwrap();
        let payload = format!(
            r#"{{"format": "underpass-profile/1", "signer_public_key": "{}", "organization": "ACME IT",
               "name": "acme", "serial": 7, "interface": {{"addresses": ["10.64.1.2/32"]}},
               "servers": [{{"id": "sto-1", "country": "SE", "city": "Stockholm", "endpoint": "192.0.2.10:51820",
                            "public_key": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}}],
               "policy": {{"min_kill_switch": "off", "split_tunnel_allowed": true,
                          "lan_access_allowed": true, "dns_locked": false}},
               "private_key": {private_key}}}"#,
            signer.public_key
        );
        signing::sign(&sk, payload.as_bytes(), "timestamp:1700000000").unwrap()
    }
}
