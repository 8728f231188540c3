//! One function per subcommand. Each prints its result and returns `Err` on failure; `main`
//! prints the error chain and sets the exit code.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use serde::Serialize;
use underpass_profile::{
    default_config_dir, wgquick, IgnoredHook, ImportOptions, ProfileName, ProfileSummary, Store,
    StoreError,
};
use underpass_proto::client::Client;
use underpass_proto::{RoutingConfig, Status};

use crate::cli::{Cli, Command};
use crate::output;
use crate::session::{self, Outcome};

/// How the CLI introduces itself to the helper.
const CLIENT_NAME: &str = "underpass-cli";

/// wg-quick files are a few hundred bytes; anything this big is the wrong file.
const MAX_CONF_BYTES: u64 = 1024 * 1024;

struct Ctx {
    socket: PathBuf,
    config_dir: Option<PathBuf>,
    json: bool,
}

impl Ctx {
    fn store(&self) -> Result<Store> {
        let dir = match &self.config_dir {
            Some(dir) => dir.clone(),
            None => default_config_dir().context(
                "cannot tell where your profiles live: set HOME or XDG_CONFIG_HOME, or pass --config-dir",
            )?,
        };
        Store::open(&dir).with_context(|| format!("opening the profile store in {}", dir.display()))
    }

    fn print_json<T: Serialize>(&self, value: &T) -> Result<()> {
        emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        socket: cli.socket,
        config_dir: cli.config_dir,
        json: cli.json,
    };
    match cli.command {
        Command::Import {
            file,
            name,
            replace,
        } => import(&ctx, &file, name, replace),
        Command::Profiles => profiles(&ctx),
        Command::Connect {
            name,
            include,
            exclude,
            timeout,
        } => connect(&ctx, name, include, exclude, Duration::from_secs(timeout)).await,
        Command::Disconnect { timeout } => disconnect(&ctx, Duration::from_secs(timeout)).await,
        Command::Status => status(&ctx).await,
    }
}

/// `--json` output of `underpass import`.
#[derive(Serialize)]
struct ImportJson<'a> {
    #[serde(flatten)]
    summary: &'a ProfileSummary,
    replaced: bool,
    ignored_hooks: &'a [IgnoredHook],
}

fn import(ctx: &Ctx, file: &Path, name: Option<ProfileName>, replace: bool) -> Result<()> {
    let display = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let size = fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > MAX_CONF_BYTES {
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

fn profiles(ctx: &Ctx) -> Result<()> {
    let list = ctx.store()?.list()?;
    if ctx.json {
        ctx.print_json(&list)
    } else {
        emit(&output::profiles_table(&list))
    }
}

async fn connect(
    ctx: &Ctx,
    name: Option<ProfileName>,
    include: Vec<IpNet>,
    exclude: Vec<IpNet>,
    timeout: Duration,
) -> Result<()> {
    let store = ctx.store()?;
    let name = match name {
        Some(n) => n,
        None => select_profile(&store.list()?)?,
    };
    let profile = store.load(&name).map_err(hint)?;
    let mut config = profile.tunnel_config();
    config.routing = RoutingConfig { include, exclude };
    config
        .validate()
        .map_err(|reason| anyhow!("profile \"{name}\" cannot be used: {reason}"))?;
    for warning in output::routing_warnings(&config) {
        eprintln!("underpass: warning: {warning}");
    }

    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    match session::connect(&mut client, config, timeout).await? {
        Outcome::Reached(status) => {
            if ctx.json {
                ctx.print_json(&status)
            } else {
                emit(&format!("{}\n", output::connected(name.as_str(), &status)))
            }
        }
        Outcome::Failed(status) => {
            if ctx.json {
                ctx.print_json(&status)?;
            }
            bail!("could not connect to \"{name}\": {}", error_text(&status))
        }
    }
}

async fn disconnect(ctx: &Ctx, timeout: Duration) -> Result<()> {
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    match session::disconnect(&mut client, timeout).await? {
        Outcome::Reached(status) => {
            if ctx.json {
                ctx.print_json(&status)
            } else {
                emit("Disconnected\n")
            }
        }
        Outcome::Failed(status) => {
            if ctx.json {
                ctx.print_json(&status)?;
            }
            bail!("could not disconnect: {}", error_text(&status))
        }
    }
}

async fn status(ctx: &Ctx) -> Result<()> {
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    let status = client.status().await?;
    if ctx.json {
        ctx.print_json(&status)
    } else {
        emit(&output::status(&status))
    }
}

/// Writes to stdout, returning an error instead of panicking when stdout is gone
/// (`underpass profiles --json | head -1`); `main` exits quietly on that error.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn error_text(status: &Status) -> &str {
    status.error.as_deref().unwrap_or(
        "the helper reported an error without saying why (see its log: `journalctl -u underpassd`)",
    )
}

/// The profile to use when none was named: the only one there is.
fn select_profile(profiles: &[ProfileSummary]) -> Result<ProfileName> {
    match profiles {
        [] => bail!("there are no profiles yet; import one with `underpass import FILE.conf`"),
        [only] => Ok(only.name.clone()),
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "there are {} profiles; say which one: {}",
                many.len(),
                names.join(", ")
            )
        }
    }
}

/// Adds what to type next to the store errors a CLI user can fix.
fn hint(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(name) => {
            anyhow!("profile \"{name}\" not found; `underpass profiles` lists them")
        }
        StoreError::AlreadyExists(name) => anyhow!(
            "a profile named \"{name}\" already exists; pass --replace to overwrite it, or --name to pick another name"
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str) -> ProfileSummary {
        ProfileSummary {
            name: ProfileName::new(name).unwrap(),
            source: None,
            endpoint: "192.0.2.1:51820".into(),
            addresses: vec![],
            peers: 1,
            full_tunnel: true,
            imported_at: 0,
        }
    }

    #[test]
    fn the_only_profile_is_chosen_when_none_is_named() {
        assert_eq!(select_profile(&[summary("se")]).unwrap().as_str(), "se");
    }

    #[test]
    fn several_profiles_need_a_name_and_are_listed() {
        let err = select_profile(&[summary("de"), summary("se")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "there are 2 profiles; say which one: de, se"
        );
    }

    #[test]
    fn no_profile_says_how_to_import_one() {
        let err = select_profile(&[]).unwrap_err();
        assert!(err.to_string().contains("underpass import"), "{err}");
    }

    #[test]
    fn missing_profile_points_at_the_list() {
        assert_eq!(
            hint(StoreError::NotFound("x".into())).to_string(),
            "profile \"x\" not found; `underpass profiles` lists them"
        );
    }
}
