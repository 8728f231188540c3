//! Importing (one file, a folder, a zip, a signed bundle), the `profile` subcommands and the
//! server catalog.

use std::fs;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use underpass_profile::batch::{self, Candidate, ImportKind};
use underpass_profile::bundle::{signing, TrustedBy};
use underpass_profile::store::public_key_of;
use underpass_profile::{
    location, wgquick, Bundle, BundleError, Catalog, IgnoredHook, ImportOptions, ImportReport,
    Location, ParseError, ProfileName, ProfileSummary, SignerKey, Store, StoreError, TrustStore,
};

use crate::cli::{LocationArgs, ProfileCommand};
use crate::commands::{emit, hint, Ctx};
use crate::output;

/// Above this many files, a batch import reports progress on stderr.
const PROGRESS_FROM: usize = 20;

/// `--json` output of `underpass import` for one wg-quick file.
#[derive(Serialize)]
struct ImportJson<'a> {
    #[serde(flatten)]
    summary: &'a ProfileSummary,
    replaced: bool,
    ignored_hooks: &'a [IgnoredHook],
}

/// One refused file of a batch import.
#[derive(Serialize)]
struct BatchFailure {
    file: String,
    line: Option<usize>,
    key: Option<String>,
    reason: String,
    /// The whole message, as printed on stderr.
    message: String,
}

#[derive(Serialize)]
struct BatchJson {
    imported: Vec<ProfileSummary>,
    failed: Vec<BatchFailure>,
}

impl LocationArgs {
    fn is_given(&self) -> bool {
        self.country.is_some() || self.city.is_some()
    }

    /// The given location, with inferred values filling what was not given.
    fn or_inferred(&self, inferred: Location) -> Location {
        Location {
            country: self.country.clone().or(inferred.country),
            city: self.city.clone().or(inferred.city),
        }
    }
}

pub fn import(
    ctx: &Ctx,
    path: &Path,
    name: Option<ProfileName>,
    replace: bool,
    location: &LocationArgs,
    trust: bool,
) -> Result<()> {
    let kind = batch::import_kind(path).with_context(|| format!("reading {}", path.display()))?;
    let is_batch = matches!(kind, ImportKind::Folder | ImportKind::Zip);
    if is_batch && name.is_some() {
        bail!("--name names one profile; a folder or zip holds several (each is named after its file)");
    }
    match kind {
        ImportKind::Bundle => {
            if location.is_given() {
                bail!("a signed bundle's servers carry the locations its organization signed; --country and --city apply to wg-quick files");
            }
            import_bundle(ctx, path, replace, trust)
        }
        ImportKind::Folder => import_batch(ctx, path, batch::read_folder(path)?, replace, location),
        ImportKind::Zip => import_batch(ctx, path, batch::read_zip(path)?, replace, location),
        ImportKind::Single(len) => import_one(ctx, path, len, name, replace, location),
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn import_one(
    ctx: &Ctx,
    file: &Path,
    size: u64,
    name: Option<ProfileName>,
    replace: bool,
    location: &LocationArgs,
) -> Result<()> {
    let display = display_name(file);
    if size > batch::MAX_CONF_BYTES {
        bail!(
            "{}: {size} bytes is far too big for a wg-quick file; is it the right file?",
            file.display()
        );
    }
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = wgquick::parse(&display, &text)?;
    let name = match name {
        Some(n) => n,
        None => ProfileName::from_file_name(file).map_err(|e| anyhow!("{e} with --name"))?,
    };
    let store = ctx.store()?;
    let opts = ImportOptions {
        source: Some(display.clone()),
        replace,
        location: location.or_inferred(location::infer(&display, &text)),
    };
    let report = store
        .import(&name, &parsed.config, &opts)
        .map_err(hint)
        .with_context(|| format!("importing {}", file.display()))?;
    if !parsed.ignored_hooks.is_empty() {
        eprint!("{}", output::hooks_warning(&display, &parsed.ignored_hooks));
    }
    if ctx.json {
        ctx.print_json(&ImportJson {
            summary: &report.summary,
            replaced: report.replaced,
            ignored_hooks: &parsed.ignored_hooks,
        })
    } else {
        emit(&format!("{}\n", output::imported(&report)))
    }
}

fn import_batch(
    ctx: &Ctx,
    source: &Path,
    candidates: Vec<Candidate>,
    replace: bool,
    location: &LocationArgs,
) -> Result<()> {
    let store = ctx.store()?;
    let origin = display_name(source);
    let total = candidates.len();
    if total == 0 {
        bail!("{}: no .conf files in it", source.display());
    }
    let mut imported = Vec::new();
    let mut failed = Vec::new();
    let mut no_keyring = None;
    for (i, c) in candidates.into_iter().enumerate() {
        let shown = format!("{origin}/{}", c.display);
        match import_candidate(&store, &shown, &c, replace, location) {
            Ok((report, hooks)) => {
                if !hooks.is_empty() {
                    eprint!("{}", output::hooks_warning(&shown, &hooks));
                }
                imported.push(report.summary);
            }
            Err(Refused::File(f)) => {
                eprintln!("underpass: {}", f.message);
                failed.push(f);
            }
            Err(Refused::NoKeyring(f)) => {
                no_keyring = Some(f.reason.clone());
                failed.push(f);
                break;
            }
        }
        let done = i + 1;
        if total >= PROGRESS_FROM && (done % 10 == 0 || done == total) {
            eprintln!(
                "underpass: progress: {done}/{total} files ({} imported, {} failed)",
                imported.len(),
                failed.len()
            );
        }
    }
    let not_tried = total - imported.len() - failed.len();
    let tried = failed.len() + imported.len();
    let kept = match imported.len() {
        0 => "none was imported".to_string(),
        n => format!("the other {n} {} kept", if n == 1 { "was" } else { "were" }),
    };
    let summary = format!(
        "Imported {} of {} from {origin}{}\n",
        imported.len(),
        plural_files(total),
        match (&no_keyring, failed.len()) {
            (Some(_), _) => "; stopped: no keyring (see below)".to_string(),
            (None, 0) => String::new(),
            (None, n) => format!("; {n} refused (see above)"),
        }
    );
    if ctx.json {
        ctx.print_json(&BatchJson {
            imported,
            failed: failed.iter().map(clone_failure).collect(),
        })?;
    } else {
        for s in &imported {
            emit(&format!("  {}\n", profile_line(s)))?;
        }
        emit(&summary)?;
    }
    if let Some(why) = no_keyring {
        bail!(
            "{why}\nunderpass: stopped after {} of {} in {origin}, since every one needs the \
             keyring ({not_tried} not tried); {kept}. A headless machine's setup is described in \
             {HEADLESS_DOC} (Linux packages)",
            tried,
            plural_files(total),
        )
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} of {} in {origin} could not be imported; {kept}",
            failed.len(),
            plural_files(total)
        )
    }
}

fn plural_files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

fn clone_failure(f: &BatchFailure) -> BatchFailure {
    BatchFailure {
        file: f.file.clone(),
        line: f.line,
        key: f.key.clone(),
        reason: f.reason.clone(),
        message: f.message.clone(),
    }
}

fn profile_line(s: &ProfileSummary) -> String {
    let place = match (&s.country, &s.city) {
        (Some(cc), Some(city)) => format!("{city}, {}", location::country_name(cc).unwrap_or(cc)),
        (Some(cc), None) => location::country_name(cc).unwrap_or(cc).to_string(),
        _ => "location unknown".into(),
    };
    format!("{} ({place}, endpoint {})", s.name, s.endpoint)
}

fn import_candidate(
    store: &Store,
    shown: &str,
    c: &Candidate,
    replace: bool,
    location: &LocationArgs,
) -> Result<(ImportReport, Vec<IgnoredHook>), Refused> {
    let fail = |reason: String| BatchFailure {
        file: shown.to_string(),
        line: None,
        key: None,
        message: format!("{shown}: {reason}"),
        reason,
    };
    let text = c.text.clone().map_err(|e| Refused::File(fail(e)))?;
    let parsed = wgquick::parse(shown, &text).map_err(|e: ParseError| {
        Refused::File(BatchFailure {
            file: e.file.clone(),
            line: e.line,
            key: e.key.clone(),
            reason: e.reason.clone(),
            message: e.to_string(),
        })
    })?;
    let name = ProfileName::from_file_name(Path::new(&c.display))
        .map_err(|e| Refused::File(fail(format!("{e} (rename the file)"))))?;
    let opts = ImportOptions {
        source: Some(c.display.clone()),
        replace,
        location: location.or_inferred(location::infer(&c.display, &text)),
    };
    let report = store
        .import(&name, &parsed.config, &opts)
        .map_err(|e| match e {
            StoreError::NoKeyring { .. } => Refused::NoKeyring(fail(e.to_string())),
            e => Refused::File(fail(hint(e).to_string())),
        })?;
    Ok((report, parsed.ignored_hooks))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where Linux packages document setting up a machine without a keyring.
const HEADLESS_DOC: &str = "/usr/share/doc/underpass-daemon/README";

/// Why one file of a batch was not imported: its own fault, or no keyring at all, when every
/// other file would fail the same way.
enum Refused {
    File(BatchFailure),
    NoKeyring(BatchFailure),
}

/// `--json` output of a bundle import.
#[derive(Serialize)]
struct BundleImportJson<'a> {
    #[serde(flatten)]
    summary: &'a ProfileSummary,
    replaced: bool,
    previous_serial: Option<u64>,
    /// Set when the device generated the key: the public key to register with IT.
    generated_public_key: Option<String>,
    trusted_by: String,
}

fn read_bundle(path: &Path) -> Result<(String, Bundle)> {
    let display = display_name(path);
    let size = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > underpass_profile::bundle::MAX_BUNDLE_BYTES as u64 {
        bail!("{display}: larger than 1 MiB; not an Underpass profile bundle");
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bundle = underpass_profile::bundle::open(&display, &bytes)?;
    Ok((display, bundle))
}

fn import_bundle(ctx: &Ctx, path: &Path, replace: bool, trust: bool) -> Result<()> {
    let (display, bundle) = read_bundle(path)?;
    bundle.check_expiry(&display, now())?;
    let store = ctx.store()?;
    let trust_store = TrustStore {
        system_dir: ctx.trusted_keys_dir.clone(),
        user_dir: store.user_trust_dir(),
    };
    let trusted_by = match trust_store
        .check(&bundle.signer)
        .map_err(|e| anyhow!("reading the trusted keys: {e}"))?
    {
        Some(by) => by,
        None => {
            let accept = trust || ask_to_trust(&bundle)?;
            if !accept {
                return Err(BundleError::UnknownKey {
                    file: display,
                    signer: bundle.signer.clone(),
                    system_dir: ctx.trusted_keys_dir.display().to_string(),
                }
                .into());
            }
            let file = trust_store
                .trust_for_user(&bundle.signer)
                .map_err(|e| anyhow!("pinning the key: {e}"))?;
            TrustedBy::User(file)
        }
    };
    let report = store
        .import_bundle(&bundle, Some(display.clone()), replace)
        .map_err(hint)
        .with_context(|| format!("importing {}", path.display()))?;
    let by = match &trusted_by {
        TrustedBy::System(p) => format!("pinned by your organization ({})", p.display()),
        TrustedBy::User(p) => format!("accepted by you ({})", p.display()),
    };
    let generated = report.generated_public_key.as_ref().map(|k| k.to_base64());
    if ctx.json {
        return ctx.print_json(&BundleImportJson {
            summary: &report.summary,
            replaced: report.replaced,
            previous_serial: report.previous_serial,
            generated_public_key: generated,
            trusted_by: by,
        });
    }
    let p = &bundle.payload;
    let mut out = match report.previous_serial {
        Some(old) => format!(
            "Updated \"{}\" from {} (serial {old} -> {})\n",
            bundle.name, p.organization, p.serial
        ),
        None => format!(
            "Imported \"{}\" from {} (serial {})\n",
            bundle.name, p.organization, p.serial
        ),
    };
    out.push_str(&format!("  Signed by {}, {by}\n", bundle.signer));
    out.push_str(&format!(
        "  Signature comment: {}\n",
        bundle.trusted_comment
    ));
    out.push_str(&format!(
        "  {} server(s); policy: kill switch at least {}, split tunnel {}, LAN access {}, DNS {}\n",
        p.servers.len(),
        p.policy.min_kill_switch,
        allowed(p.policy.split_tunnel_allowed),
        allowed(p.policy.lan_access_allowed),
        if p.policy.dns_locked {
            "locked to the tunnel"
        } else {
            "not locked"
        }
    ));
    if let Some(exp) = &p.expires {
        out.push_str(&format!("  Expires {exp}\n"));
    }
    if let Some(k) = &generated {
        out.push_str(&format!(
            "  This device generated its own key. Give this public key to {} to register it:\n  {k}\n",
            p.organization
        ));
    }
    emit(&out)
}

fn allowed(b: bool) -> &'static str {
    if b {
        "allowed"
    } else {
        "not allowed"
    }
}

/// On a terminal, shows the signer and asks; elsewhere, answers no.
fn ask_to_trust(bundle: &Bundle) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "The profile \"{}\" from \"{}\" is signed by a key this computer does not know:\n  {}\n\
         Check this fingerprint with your IT department before you accept it.\n\
         Trust this key for your account? [y/N] ",
        bundle.name, bundle.payload.organization, bundle.signer
    )?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub fn profile(ctx: &Ctx, cmd: ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::Set { name, location } => {
            if !location.is_given() {
                bail!("say what to set: --country CC and/or --city NAME");
            }
            let store = ctx.store()?;
            let current = store.list()?.into_iter().find(|p| p.name == name);
            let current = current
                .ok_or_else(|| hint(underpass_profile::StoreError::NotFound(name.to_string())))?;
            let loc = location.or_inferred(Location {
                country: current.country,
                city: current.city,
            });
            store.set_location(&name, loc.clone()).map_err(hint)?;
            emit(&format!(
                "\"{name}\" is now in {}\n",
                match (&loc.city, &loc.country) {
                    (Some(city), Some(cc)) =>
                        format!("{city}, {}", location::country_name(cc).unwrap_or(cc)),
                    (None, Some(cc)) => location::country_name(cc).unwrap_or(cc).to_string(),
                    (Some(city), None) => city.clone(),
                    (None, None) => "an unknown location".into(),
                }
            ))
        }
        ProfileCommand::Remove { name } => {
            ctx.store()?.remove(&name).map_err(hint)?;
            emit(&format!("Removed \"{name}\" and its keys\n"))
        }
        ProfileCommand::Export { name } => {
            let profile = ctx.store()?.load(&name).map_err(hint)?;
            emit(&profile.config.to_wg_quick())
        }
        ProfileCommand::PublicKey { name } => {
            let profile = ctx.store()?.load(&name).map_err(hint)?;
            emit(&format!(
                "{}\n",
                public_key_of(&profile.config.interface.private_key).to_base64()
            ))
        }
        ProfileCommand::Keygen {
            secret_key,
            public_key,
            no_password,
        } => keygen(&secret_key, &public_key, no_password),
        ProfileCommand::Sign {
            payload,
            secret_key,
            minisig,
            trusted_comment,
            output,
        } => sign(
            &payload,
            secret_key.as_deref(),
            minisig.as_deref(),
            trusted_comment,
            &output,
        ),
        ProfileCommand::Verify { file, public_key } => verify(ctx, &file, public_key.as_deref()),
    }
}

fn signing_password() -> Option<String> {
    std::env::var("UNDERPASS_SIGNING_PASSWORD").ok()
}

fn keygen(secret_key: &Path, public_key: &Path, no_password: bool) -> Result<()> {
    for p in [secret_key, public_key] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    let password = if no_password {
        None
    } else {
        Some(match signing_password() {
            Some(p) => p,
            None => {
                if !std::io::stdin().is_terminal() {
                    bail!("no password for the secret key: set UNDERPASS_SIGNING_PASSWORD, or pass --no-password");
                }
                let (a, b) = (prompt("Password: ")?, prompt("Password (again): ")?);
                if a != b {
                    bail!("the passwords differ");
                }
                a
            }
        })
    };
    let (sk, pk, signer) = signing::keygen(password).map_err(|e| anyhow!("keygen: {e}"))?;
    write_new(secret_key, sk.as_bytes(), true)?;
    write_new(public_key, pk.as_bytes(), false)?;
    emit(&format!(
        "Secret key: {}\nPublic key: {} ({signer})\nInstall the public key in the clients' trusted-keys directory ({}).\n",
        secret_key.display(),
        public_key.display(),
        underpass_profile::bundle::DEFAULT_SYSTEM_TRUST_DIR
    ))
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn sign(
    payload: &Path,
    secret_key: Option<&Path>,
    minisig: Option<&Path>,
    trusted_comment: Option<String>,
    output: &Path,
) -> Result<()> {
    let bytes = fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    let bundle = match (secret_key, minisig) {
        (Some(key), _) => {
            let text =
                fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
            let sk = signing::load_secret_key(&text, signing_password())
                .map_err(|e| anyhow!("{}: {e}", key.display()))?;
            let comment = trusted_comment.unwrap_or_else(|| format!("timestamp:{}", now()));
            signing::sign(&sk, &bytes, &comment)
                .map_err(|e| anyhow!("{}: {e}", payload.display()))?
        }
        (None, Some(sig)) => {
            if trusted_comment.is_some() {
                bail!("--trusted-comment is part of the signature; give it to minisign (-t)");
            }
            let text =
                fs::read_to_string(sig).with_context(|| format!("reading {}", sig.display()))?;
            signing::assemble(&text, &bytes).map_err(|e| anyhow!("{}: {e}", sig.display()))?
        }
        (None, None) => bail!("pass --secret-key or --minisig"),
    };
    // Check the result exactly as a client will (signature, payload, servers).
    let display = display_name(output);
    let checked = underpass_profile::bundle::open(&display, &bundle)?;
    underpass_profile::store::write_file_atomic(output, &bundle)
        .with_context(|| format!("writing {}", output.display()))?;
    emit(&format!(
        "Wrote {} (\"{}\" from {}, serial {}, signed by {})\n",
        output.display(),
        checked.name,
        checked.payload.organization,
        checked.payload.serial,
        checked.signer
    ))
}

fn verify(ctx: &Ctx, file: &Path, public_key: Option<&Path>) -> Result<()> {
    let (display, bundle) = read_bundle(file)?;
    let trusted = match public_key {
        Some(pk) => {
            let text =
                fs::read_to_string(pk).with_context(|| format!("reading {}", pk.display()))?;
            let key = SignerKey::parse(&text).map_err(|e| anyhow!("{}: {e}", pk.display()))?;
            if key != bundle.signer {
                bail!(
                    "{display}: refused: signed by {}, not by {}",
                    bundle.signer,
                    key
                );
            }
            format!("the key in {}", pk.display())
        }
        None => {
            let user_dir = ctx.config_dir().map(|d| d.join("trusted-keys"));
            let trust_store = TrustStore {
                system_dir: ctx.trusted_keys_dir.clone(),
                user_dir: user_dir.unwrap_or_default(),
            };
            match trust_store.check(&bundle.signer).map_err(|e| anyhow!(e))? {
                Some(TrustedBy::System(p)) => format!("pinned system-wide ({})", p.display()),
                Some(TrustedBy::User(p)) => format!("accepted by you ({})", p.display()),
                None => {
                    return Err(BundleError::UnknownKey {
                        file: display,
                        signer: bundle.signer.clone(),
                        system_dir: ctx.trusted_keys_dir.display().to_string(),
                    }
                    .into())
                }
            }
        }
    };
    bundle.check_expiry(&display, now())?;
    let p = &bundle.payload;
    if ctx.json {
        #[derive(Serialize)]
        struct VerifyJson<'a> {
            valid: bool,
            name: &'a str,
            signer: &'a SignerKey,
            trusted_by: &'a str,
            trusted_comment: &'a str,
            payload: &'a underpass_profile::bundle::BundlePayload,
        }
        let mut payload = p.clone();
        if let underpass_profile::bundle::PrivateKeySource::Embedded(_) = payload.private_key {
            // Never print a private key.
            payload.private_key = underpass_profile::bundle::PrivateKeySource::GenerateLocally;
        }
        return ctx.print_json(&VerifyJson {
            valid: true,
            name: bundle.name.as_str(),
            signer: &bundle.signer,
            trusted_by: &trusted,
            trusted_comment: &bundle.trusted_comment,
            payload: &payload,
        });
    }
    emit(&format!(
        "{display}: valid. \"{}\" from {}, serial {}, {} server(s), signed by {}, trusted: {trusted}\n",
        bundle.name,
        p.organization,
        p.serial,
        p.servers.len(),
        bundle.signer
    ))
}

pub fn servers(ctx: &Ctx, country: Option<String>, search: Option<String>) -> Result<()> {
    let mut catalog = Catalog::build(ctx.store()?.servers()?);
    if let Some(cc) = &country {
        if location::normalize_country(cc).is_none() {
            bail!("{cc:?} is not an ISO 3166-1 country code (e.g. SE, DE, US)");
        }
        catalog = catalog.country(cc);
    }
    if let Some(q) = &search {
        catalog = catalog.search(q);
    }
    if ctx.json {
        return ctx.print_json(&catalog);
    }
    if catalog.countries.is_empty() {
        return emit(if country.is_some() || search.is_some() {
            "No server matches.\n"
        } else {
            "No servers yet. Import profiles with `underpass import PATH`.\n"
        });
    }
    let mut out = String::new();
    for c in &catalog.countries {
        let head = match (&c.flag, &c.code) {
            (Some(f), Some(code)) => format!("{f} {} ({code})", c.name),
            _ => c.name.clone(),
        };
        out.push_str(&format!("{head}: {}\n", c.servers.len()));
        for s in &c.servers {
            let target = match &s.server {
                Some(id) => format!("{} --server {id}", s.profile),
                None => s.profile.to_string(),
            };
            let city = s.city.as_deref().unwrap_or("-");
            let org = s
                .organization
                .as_deref()
                .map(|o| format!("  [{o}]"))
                .unwrap_or_default();
            out.push_str(&format!("  {city:<14} {target:<32} {}{org}\n", s.endpoint));
        }
    }
    emit(&out)
}
