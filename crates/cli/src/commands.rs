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
use underpass_profile::choice;

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
            let session = SessionArgs {
                include,
                exclude,
                server,
                kill_switch,
            };
            let choice = match country {
                Some(cc) => ranked_servers(&ctx, &cc, &session).await?,
                None => vec![(name, session.server.clone())],
            };
            connect(&ctx, choice, session, Duration::from_secs(timeout)).await
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

/// The servers of `country` the session may use, fastest first (then the silent ones), as
/// the helper measures them by a WireGuard handshake: in requests of at most 64, each bounded
/// by a timeout, so silent ones cost little. The connect request carries them all, so the
/// helper can move to the next one when a server stops answering (`underpass_profile::choice`).
async fn ranked_servers(
    ctx: &Ctx,
    country: &str,
    args: &SessionArgs,
) -> Result<Vec<(Option<ProfileName>, Option<String>)>> {
    let store = ctx.store()?;
    let catalog = underpass_profile::Catalog::build(store.servers()?);
    let (servers, place) = choice::servers_in(&catalog, Some(country));
    let now = unix_now();
    let servers = choice::usable(servers, &place, |s| {
        let profile = store.load(&s.profile).map_err(|e| hint(e).to_string())?;
        check_policy(&profile, args, now)
    })
    .map_err(|e| anyhow!("{e}; `underpass servers` lists the countries you have"))?;
    let candidates =
        underpass_profile::catalog::probe_candidates(&store, &servers).map_err(hint)?;
    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    let mut results = Vec::with_capacity(candidates.len());
    for request in choice::probe_requests(&candidates) {
        match client.request(request).await? {
            Response::Probed { results: r } => results.extend(r),
            other => bail!("the helper answered {other:?} to a probe"),
        }
    }
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
    let Some(order) = choice::ranked(&results, servers.len()) else {
        bail!(
            "none of the {} servers {place} answered a handshake in time (a kill switch in \
             lockdown with no tunnel up also stops the measurement)",
            servers.len()
        );
    };
    if let Some(ms) = order[0].1 {
        let cc = country.to_ascii_uppercase();
        eprintln!("Best server in {cc}: {} ({ms:.1} ms)", label(order[0].0));
    }
    Ok(order
        .into_iter()
        .map(|(i, _)| (Some(servers[i].profile.clone()), servers[i].server.clone()))
        .collect())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Refuses a session the profile's policy forbids, or a bundle that expired since import
/// (`LoadedProfile::check_session`, which the app uses too). Without `--kill-switch` the
/// session runs with the helper's mode raised to the policy's minimum, which never violates it.
fn check_policy(profile: &LoadedProfile, args: &SessionArgs, now: u64) -> Result<(), String> {
    let min = profile
        .bundle
        .as_ref()
        .map_or(KillSwitchMode::Off, |b| b.policy.min_kill_switch);
    profile.check_session(
        &SessionRequest {
            kill_switch: args.kill_switch.unwrap_or(min),
            split_tunnel: !args.include.is_empty() || !args.exclude.is_empty(),
            lan_access: false,
        },
        now,
    )
}

/// The tunnel for one server of the choice, with the user's split-tunnel lists, checked here
/// to fail early with the profile's words (the helper holds the session to the same policy).
fn tunnel_config(
    store: &Store,
    name: &ProfileName,
    args: &SessionArgs,
    server: Option<&str>,
    now: u64,
    first: bool,
) -> Result<underpass_proto::TunnelConfig> {
    let profile = store.load(name).map_err(hint)?;
    check_policy(&profile, args, now).map_err(|e| anyhow!(e))?;
    let mut config = profile.tunnel_config(server).map_err(hint)?;
    // The profile's own routing (Table = off) stays; the user's lists come on top.
    config.routing.include = args.include.clone();
    config.routing.exclude = args.exclude.clone();
    for host in config.include_resolvers() {
        if first {
            eprintln!("underpass: the profile's resolver {host} goes through the tunnel too");
        }
    }
    config
        .validate()
        .map_err(|reason| anyhow!("profile \"{name}\" cannot be used: {reason}"))?;
    Ok(config)
}

/// Connects to the first server of `choice` (a profile named or, with `None`, the only one),
/// with the rest of the choice for the helper to move to when a server stops answering.
async fn connect(
    ctx: &Ctx,
    choice: Vec<(Option<ProfileName>, Option<String>)>,
    args: SessionArgs,
    timeout: Duration,
) -> Result<()> {
    let store = ctx.store()?;
    let now = unix_now();
    let mut configs = Vec::with_capacity(choice.len());
    for (i, (name, server)) in choice.into_iter().enumerate() {
        let name = match name {
            Some(n) => n,
            None => select_profile(&store.list()?)?,
        };
        configs.push(tunnel_config(
            &store,
            &name,
            &args,
            server.as_deref(),
            now,
            i == 0,
        )?);
    }
    let mut configs = configs.into_iter();
    let config = configs.next().context("no server to connect to")?;
    let alternatives: Vec<_> = configs.collect();
    let name = config.profile.clone();
    for warning in output::routing_warnings(&config) {
        eprintln!("underpass: warning: {warning}");
    }

    let mut client = Client::connect(&ctx.socket, CLIENT_NAME).await?;
    if let Some(mode) = args.kill_switch {
        client.request(Request::SetKillSwitch { mode }).await?;
    }
    match session::connect(&mut client, config, alternatives, timeout).await? {
        Outcome::Reached(status) => {
            if ctx.json {
                ctx.print_json(&status)
            } else {
                emit(&format!("{}\n", output::connected(&name, &status)))
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
