//! One function per subcommand. Each prints its result and returns `Err` on failure; `main`
//! prints the error chain and sets the exit code.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use serde::Serialize;
use underpass_profile::bundle::SessionRequest;
use underpass_profile::{
    default_config_dir, Keystore, KillSwitchMode, LoadedProfile, ProfileName, ProfileSummary,
    Store, StoreError,
};
use underpass_proto::client::Client;
use underpass_proto::{Event, Request, Response, SelfTestOptions, Status};

use crate::cli::{Cli, Command};
use crate::diagnostics;
use crate::output;
use crate::profile_cmds;
use crate::session::{self, Outcome};

/// How the CLI introduces itself to the helper.
pub(crate) const CLIENT_NAME: &str = "underpass-cli";

pub struct Ctx {
    pub socket: PathBuf,
    config_dir: Option<PathBuf>,
    pub json: bool,
    keystore: Keystore,
    pub trusted_keys_dir: PathBuf,
}

impl Ctx {
    pub fn config_dir(&self) -> Result<PathBuf> {
        match &self.config_dir {
            Some(dir) => Ok(dir.clone()),
            None => default_config_dir().context(
                "cannot tell where your profiles live: set HOME or XDG_CONFIG_HOME, or pass --config-dir",
            ),
        }
    }

    /// Opens the store. With the keyring, keys that an older Underpass left in files are
    /// moved into it first (each read back before its file goes).
    pub fn store(&self) -> Result<Store> {
        let dir = self.config_dir()?;
        let store = Store::open_with(&dir, self.keystore)
            .with_context(|| format!("opening the profile store in {}", dir.display()))?;
        for m in store.migrate_legacy_keys()? {
            match m.result {
                Ok(()) => eprintln!(
                    "underpass: moved the private key of \"{}\" from {} into the OS keyring",
                    m.name,
                    store.key_path(&m.name).display()
                ),
                Err(e) => eprintln!(
                    "underpass: warning: the private key of \"{}\" stays in {}: {e}",
                    m.name,
                    store.key_path(&m.name).display()
                ),
            }
        }
        Ok(store)
    }

    pub fn print_json<T: Serialize>(&self, value: &T) -> Result<()> {
        emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        socket: cli.socket,
        config_dir: cli.config_dir,
        json: cli.json,
        keystore: cli.keystore,
        trusted_keys_dir: cli.trusted_keys_dir,
    };
    match cli.command {
        Command::Import {
            file,
            name,
            replace,
            location,
            trust,
        } => profile_cmds::import(&ctx, &file, name, replace, &location, trust),
        Command::Profiles => profiles(&ctx),
        Command::Profile(cmd) => profile_cmds::profile(&ctx, cmd),
        Command::Servers { country, search } => profile_cmds::servers(&ctx, country, search),
        Command::Connect {
            name,
            country,
            include,
            exclude,
            timeout,
            server,
            kill_switch,
        } => {
            let (name, server) = match country {
                Some(cc) => {
                    let (profile, server) = best_server(&ctx, &cc).await?;
                    (Some(profile), server)
                }
                None => (name, server),
            };
            let session = SessionArgs {
                include,
                exclude,
                server,
                kill_switch,
            };
            connect(&ctx, name, session, Duration::from_secs(timeout)).await
        }
        Command::Disconnect { timeout } => disconnect(&ctx, Duration::from_secs(timeout)).await,
        Command::Status { follow } => status(&ctx, follow).await,
        Command::Logs => {
            let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
            match client.request(Request::RecentLogs).await? {
                Response::Logs { lines } if ctx.json => ctx.print_json(&lines),
                Response::Logs { lines } => {
                    emit(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())
                }
                other => bail!("the helper answered {other:?} to a log request"),
            }
        }
        Command::Doctor {
            apply_mtu,
            target,
            test_address,
        } => {
            let options = underpass_proto::DoctorOptions {
                target,
                test_address,
            };
            crate::doctor::doctor(&ctx, options, apply_mtu).await
        }
        Command::Killswitch { mode } => {
            set(&ctx, Request::SetKillSwitch { mode }).await?;
            emit(&format!("Kill switch: {mode}\n"))
        }
        Command::LanAccess { allow } => {
            set(&ctx, Request::SetLanAccess { allow }).await?;
            emit(&format!(
                "Local network access: {}\n",
                if allow { "on" } else { "off" }
            ))
        }
        Command::Selftest {
            test,
            domain,
            names,
            probes,
            drop_secs,
        } => {
            let options = SelfTestOptions {
                domain,
                names,
                probe_targets: probes,
                drop_secs,
            };
            diagnostics::selftest(&ctx, test, options).await
        }
    }
}

/// The server in `country` that completes a WireGuard handshake fastest, measured by the
/// helper: every candidate at once, each bounded by a timeout, so silent ones cost little.
async fn best_server(ctx: &Ctx, country: &str) -> Result<(ProfileName, Option<String>)> {
    let store = ctx.store()?;
    let cc = country.to_ascii_uppercase();
    let servers: Vec<_> = store
        .servers()?
        .into_iter()
        .filter(|s| s.country.as_deref() == Some(cc.as_str()))
        .collect();
    if servers.is_empty() {
        bail!("no server in {cc}; `underpass servers` lists the countries you have");
    }
    let candidates =
        underpass_profile::catalog::probe_candidates(&store, &servers).map_err(hint)?;
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    let results = match client.request(Request::ProbeServers { candidates }).await? {
        Response::Probed { results } => results,
        other => bail!("the helper answered {other:?} to a probe"),
    };
    let label = |i: usize| match &servers[i].server {
        Some(id) => format!("{} --server {id}", servers[i].profile),
        None => servers[i].profile.to_string(),
    };
    for r in &results {
        let Some(i) = r.id.parse::<usize>().ok().filter(|&i| i < servers.len()) else {
            continue;
        };
        match r.rtt_ms {
            Some(ms) => eprintln!("  {}: {ms:.1} ms", label(i)),
            None => eprintln!(
                "  {}: {}",
                label(i),
                r.error.as_deref().unwrap_or("no answer")
            ),
        }
    }
    let best = underpass_profile::catalog::fastest(&results, servers.len());
    let Some((i, ms)) = best else {
        bail!(
            "none of the {} servers in {cc} answered a handshake in time (a kill switch in \
             lockdown with no tunnel up also stops the measurement)",
            servers.len()
        );
    };
    eprintln!("Best server in {cc}: {} ({ms:.1} ms)", label(i));
    Ok((servers[i].profile.clone(), servers[i].server.clone()))
}

/// Sends one settings request to the helper.
async fn set(ctx: &Ctx, request: Request) -> Result<()> {
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    client.request(request).await?;
    Ok(())
}

fn profiles(ctx: &Ctx) -> Result<()> {
    let list = ctx.store()?.list()?;
    if ctx.json {
        ctx.print_json(&list)
    } else {
        emit(&output::profiles_table(&list))
    }
}

/// What the user asked of this session, beyond the profile.
struct SessionArgs {
    include: Vec<IpNet>,
    exclude: Vec<IpNet>,
    server: Option<String>,
    kill_switch: Option<KillSwitchMode>,
}

/// Refuses a session the profile's policy forbids, or a bundle that expired since import.
/// Returns the kill-switch mode the session runs with.
fn check_policy(profile: &LoadedProfile, args: &SessionArgs, now: u64) -> Result<KillSwitchMode> {
    let Some(bundle) = &profile.bundle else {
        return Ok(args.kill_switch.unwrap_or(KillSwitchMode::Off));
    };
    if let (Some(at), Some(text)) = (bundle.expires_at, &bundle.expires) {
        if at <= now {
            bail!(
                "profile \"{}\" expired on {text}; ask {} for a new one",
                profile.name,
                bundle.organization
            );
        }
    }
    let mode = args.kill_switch.unwrap_or(bundle.policy.min_kill_switch);
    let request = SessionRequest {
        kill_switch: mode,
        split_tunnel: !args.include.is_empty() || !args.exclude.is_empty(),
        lan_access: false,
    };
    let violations = bundle.policy.violations(&request);
    if !violations.is_empty() {
        bail!(
            "refusing to connect \"{}\": the policy of {} (serial {}) says {}",
            profile.name,
            bundle.organization,
            bundle.serial,
            violations.join("; ")
        );
    }
    Ok(mode)
}

async fn connect(
    ctx: &Ctx,
    name: Option<ProfileName>,
    args: SessionArgs,
    timeout: Duration,
) -> Result<()> {
    let store = ctx.store()?;
    let name = match name {
        Some(n) => n,
        None => select_profile(&store.list()?)?,
    };
    let profile = store.load(&name).map_err(hint)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Checked here to fail early with the profile's words; the helper holds the session to the
    // same policy (it travels in the connect request) and raises the kill switch to its minimum.
    check_policy(&profile, &args, now)?;
    let explicit_kill_switch = args.kill_switch;
    let mut config = profile
        .tunnel_config(args.server.as_deref())
        .map_err(hint)?;
    // The profile's own routing (Table = off) stays; the user's lists come on top.
    config.routing.include = args.include;
    config.routing.exclude = args.exclude;
    for host in config.include_resolvers() {
        eprintln!("underpass: the profile's resolver {host} goes through the tunnel too");
    }
    config
        .validate()
        .map_err(|reason| anyhow!("profile \"{name}\" cannot be used: {reason}"))?;
    for warning in output::routing_warnings(&config) {
        eprintln!("underpass: warning: {warning}");
    }

    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    if let Some(mode) = explicit_kill_switch {
        client.request(Request::SetKillSwitch { mode }).await?;
    }
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

async fn status(ctx: &Ctx, follow: bool) -> Result<()> {
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    let status = client.status().await?;
    let show = |s: &Status| {
        if ctx.json {
            ctx.print_json(s)
        } else {
            emit(&output::status(s))
        }
    };
    show(&status)?;
    if !follow {
        return Ok(());
    }
    // Every state change as the helper pushes it, until the helper or the user ends it.
    match client.request(Request::Subscribe).await? {
        Response::Subscribed => {}
        other => bail!("the helper answered {other:?} to a subscription"),
    }
    let mut last = status;
    loop {
        match client.next_event().await? {
            Event::State { status } if *status != last => {
                if !ctx.json {
                    emit("\n")?;
                }
                show(&status)?;
                last = *status;
            }
            _ => {}
        }
    }
}

/// Writes to stdout, returning an error instead of panicking when stdout is gone
/// (`underpass profiles --json | head -1`); `main` exits quietly on that error.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn error_text(status: &Status) -> String {
    if let Some(r) = &status.reconnect {
        return output::healing(r);
    }
    status.error.clone().unwrap_or_else(|| {
        "the helper reported an error without saying why (see its log: `journalctl -u underpassd`)"
            .to_string()
    })
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
pub fn hint(e: StoreError) -> anyhow::Error {
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
            country: None,
            city: None,
            keystore: Keystore::File,
            bundle: None,
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
