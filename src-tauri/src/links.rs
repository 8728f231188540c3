//! What the app is asked to open: `underpass://` links and profile files, from its command
//! line or handed over by a second instance (the desktop runs `underpass-gui %u` for a link or
//! a double-clicked `.underpass` file).
//!
//! Links never act on their own: `underpass://connect` only selects the server on the Connect
//! screen (a web page must not be able to reroute someone's traffic), and an imported bundle
//! goes through the same signature check and trust prompt as a file.
//!
//! - `underpass://connect` (the fastest server), `underpass://connect?country=SE`,
//!   `underpass://connect?profile=NAME[&server=ID]`
//! - `underpass://import?bundle=BASE64URL`: a signed bundle carried in the link itself.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use url::Url;

use crate::connect::Target;

pub const SCHEME: &str = "underpass";
/// A link's bundle is at most this large once decoded (bundles are a few KiB).
pub const MAX_LINK_BUNDLE: usize = 64 * 1024;

/// One thing to open, for the webview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpenRequest {
    /// Select this on the Connect screen.
    Select { target: Target },
    /// Import these files (the Profiles screen runs its usual import, trust prompt included).
    Import { paths: Vec<String> },
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
            what: item.clone(),
            reason,
        };
        match parse(item, cwd) {
            Ok(Parsed::Select(target)) => out.push(OpenRequest::Select { target }),
            Ok(Parsed::File(p)) => paths.push(p.display().to_string()),
            Ok(Parsed::Bundle(bytes)) => match save_bundle(inbox, &bytes) {
                Ok(p) => paths.push(p.display().to_string()),
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

fn save_bundle(inbox: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(inbox)
        .map_err(|e| format!("{}: {e}", inbox.display()))?;
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = inbox.join(format!("link-{n}.underpass"));
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
        let link = format!(
            "underpass://import?bundle={}",
            URL_SAFE_NO_PAD.encode(b"bundle")
        );
        let out = requests(
            &[link, "x.conf".into(), "underpass://nope".into()],
            dir.path(),
            &inbox,
        );
        assert!(
            matches!(&out[0], OpenRequest::Refused { reason, .. } if reason.contains("unknown action"))
        );
        let OpenRequest::Import { paths } = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"bundle");
        assert!(paths[1].ends_with("x.conf"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&inbox).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
