//! The command-line grammar. Command and option names are a contract: scripts use them.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use underpass_profile::{Keystore, KillSwitchMode, NameError, ProfileName};

#[derive(Debug, Parser)]
#[command(
    name = "underpass",
    version,
    about = "Underpass VPN: import WireGuard profiles and control the tunnel",
    long_about = None
)]
pub struct Cli {
    /// The helper's IPC socket
    #[arg(
        long,
        global = true,
        env = "UNDERPASS_SOCKET",
        value_name = "PATH",
        default_value = underpass_proto::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Where profiles are stored [default: $XDG_CONFIG_HOME/underpass, else ~/.config/underpass]
    #[arg(long, global = true, env = "UNDERPASS_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Where private keys are kept: the OS keyring, or (on a machine without one) files of
    /// mode 0600 in the config dir
    #[arg(
        long,
        global = true,
        env = "UNDERPASS_KEYSTORE",
        value_name = "keyring|file",
        default_value = "keyring"
    )]
    pub keystore: Keystore,

    /// The directory of organization keys pinned system-wide by IT
    #[arg(
        long,
        global = true,
        env = "UNDERPASS_TRUSTED_KEYS_DIR",
        value_name = "DIR",
        default_value = underpass_profile::bundle::DEFAULT_SYSTEM_TRUST_DIR
    )]
    pub trusted_keys_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a wg-quick .conf file, a folder or .zip of them, or a signed .underpass bundle
    /// (hook commands in wg-quick files are never run)
    Import {
        /// A .conf file, a folder of them, a .zip of them, or an .underpass bundle
        #[arg(value_name = "PATH")]
        file: PathBuf,
        /// Profile name [default: the file name without .conf] (single .conf files only)
        #[arg(long, value_parser = parse_name)]
        name: Option<ProfileName>,
        /// Overwrite a profile of the same name
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        location: LocationArgs,
        /// Trust the bundle's signing key for your account (after checking its fingerprint
        /// with your IT department)
        #[arg(long)]
        trust: bool,
    },
    /// List the stored profiles
    Profiles,
    /// Manage profiles, and sign bundles (IT)
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// List every server of every profile, grouped by country
    Servers {
        /// Only this country (ISO code, e.g. SE)
        #[arg(long, value_name = "CC")]
        country: Option<String>,
        /// Only servers matching every word (country, city, profile, server, organization)
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
    },
    /// Bring the tunnel up with a profile
    Connect {
        /// The profile [default: the only one there is]
        #[arg(value_parser = parse_name, conflicts_with = "country")]
        name: Option<ProfileName>,
        /// Connect to the best server in this country (ISO code, e.g. SE): every candidate is
        /// measured by a real handshake's round trip
        #[arg(long, value_name = "CC", conflicts_with = "server")]
        country: Option<String>,
        /// Route only this prefix into the tunnel (repeatable; makes a split tunnel)
        #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
        include: Vec<IpNet>,
        /// Keep this prefix out of the tunnel (repeatable)
        #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
        exclude: Vec<IpNet>,
        /// Give up waiting after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// The server of a signed profile to use (see `underpass servers`) [default: its first]
        #[arg(long, value_name = "ID")]
        server: Option<String>,
        /// Kill-switch mode for this session [default: the profile's policy minimum]
        #[arg(long, value_name = "off|auto|lockdown")]
        kill_switch: Option<KillSwitchMode>,
    },
    /// Tear the tunnel down
    Disconnect {
        /// Give up waiting after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Show the tunnel's state, addresses, handshake and traffic
    Status {
        /// Keep running and print every state change as it happens (reconnects included)
        #[arg(long)]
        follow: bool,
    },
    /// Set the kill switch: off, auto (block while you want the tunnel and it is not up) or
    /// lockdown (block whenever the tunnel is not up, even when disconnected)
    Killswitch {
        #[arg(value_name = "off|auto|lockdown")]
        mode: KillSwitchMode,
    },
    /// Allow or forbid the local network while the kill switch blocks
    LanAccess {
        #[arg(value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
        allow: bool,
    },
    /// Print the helper's newest log lines (for a bug report)
    Logs,
    /// Walk the tunnel's seven layers (control plane, outer path, interface, routes, firewall,
    /// DNS, MTU) and say what fails, why, and what to do; exits non-zero when a layer fails
    Doctor {
        /// Set the tunnel MTU to what the path-MTU probe measured, then check again
        #[arg(long)]
        apply_mtu: bool,
        /// The server's address inside the tunnel, for the probes [default: from the tunnel]
        #[arg(long, value_name = "IP")]
        target: Option<IpAddr>,
        /// Look up the route of this address [default: one inside the first routed prefix]
        #[arg(long, value_name = "IP")]
        test_address: Option<IpAddr>,
    },
    /// Run the built-in leak tests and show their evidence
    Selftest {
        #[arg(value_enum)]
        test: SelfTestChoice,
        /// Resolve names under this domain (DNS test) [default: underpass-leaktest.example]
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// How many fresh names the DNS test resolves (1-20) [default: 5]
        #[arg(long, value_name = "N")]
        names: Option<u8>,
        /// Probe this address (kill-switch test; repeatable) [default: 192.0.2.1, 2001:db8::1]
        #[arg(long = "probe", value_name = "IP")]
        probes: Vec<IpAddr>,
        /// Length of the simulated tunnel drop in seconds (1-10) [default: 3]
        #[arg(long, value_name = "SECS")]
        drop_secs: Option<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelfTestChoice {
    Dns,
    Killswitch,
    All,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

/// `--country` and `--city`, to set or correct where a server is.
#[derive(Debug, Clone, Default, Args)]
pub struct LocationArgs {
    /// The server's country (ISO 3166-1 code, e.g. SE) [default: inferred from the file name]
    #[arg(long, value_name = "CC", value_parser = parse_country)]
    pub country: Option<String>,
    /// The server's city [default: inferred from the file name]
    #[arg(long, value_name = "NAME")]
    pub city: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Set or correct where a profile's server is
    Set {
        #[arg(value_parser = parse_name)]
        name: ProfileName,
        #[command(flatten)]
        location: LocationArgs,
    },
    /// Delete a profile and its keys
    Remove {
        #[arg(value_parser = parse_name)]
        name: ProfileName,
    },
    /// Print a profile as a wg-quick file (it contains the private key: keep it private)
    Export {
        #[arg(value_parser = parse_name)]
        name: ProfileName,
    },
    /// Print a profile's WireGuard public key (to register a locally generated key with IT)
    PublicKey {
        #[arg(value_parser = parse_name)]
        name: ProfileName,
    },
    /// IT: make a minisign signing key pair (the same files the minisign tool uses)
    Keygen {
        /// Where to write the secret key
        #[arg(long, value_name = "FILE", default_value = "underpass-signing.key")]
        secret_key: PathBuf,
        /// Where to write the public key (install it in the trusted-keys directory)
        #[arg(long, value_name = "FILE", default_value = "underpass-signing.pub")]
        public_key: PathBuf,
        /// Do not encrypt the secret key (otherwise the password comes from
        /// UNDERPASS_SIGNING_PASSWORD, or is asked for)
        #[arg(long)]
        no_password: bool,
    },
    /// IT: sign a bundle payload (JSON) into an .underpass file
    Sign {
        /// The JSON payload (see docs/profile-bundles.md)
        #[arg(value_name = "PAYLOAD.json")]
        payload: PathBuf,
        /// The minisign secret key
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "minisig",
            conflicts_with = "minisig"
        )]
        secret_key: Option<PathBuf>,
        /// Instead of signing: assemble the bundle from a signature made by the minisign tool
        #[arg(long, value_name = "FILE.minisig")]
        minisig: Option<PathBuf>,
        /// The signed comment shown on import
        #[arg(long, value_name = "TEXT")]
        trusted_comment: Option<String>,
        /// The bundle to write
        #[arg(long, short, value_name = "FILE.underpass")]
        output: PathBuf,
    },
    /// Check a bundle: signature, signer, expiry and contents, without importing it
    Verify {
        #[arg(value_name = "FILE.underpass")]
        file: PathBuf,
        /// Check against this public key file instead of the trusted keys
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
}

fn parse_country(s: &str) -> Result<String, String> {
    underpass_profile::location::normalize_country(s)
        .map(str::to_string)
        .ok_or_else(|| format!("{s:?} is not an ISO 3166-1 country code (e.g. SE, DE, US)"))
}

fn parse_name(s: &str) -> Result<ProfileName, NameError> {
    ProfileName::new(s)
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits are cleared.
pub fn parse_prefix(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an IP prefix (e.g. 10.0.0.0/8 or 2001:db8::/32)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn prefixes_accept_bare_addresses_and_clear_host_bits() {
        assert_eq!(
            parse_prefix("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_prefix("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_prefix("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_prefix("10.0.0.0/33").is_err());
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "underpass",
            "connect",
            "se-sto",
            "--include",
            "198.51.100.0/24",
            "--exclude",
            "198.51.100.7",
            "--json",
            "--socket",
            "/tmp/s.sock",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket, PathBuf::from("/tmp/s.sock"));
        match cli.command {
            Command::Connect {
                name,
                include,
                exclude,
                timeout,
                ..
            } => {
                assert_eq!(name.unwrap().as_str(), "se-sto");
                assert_eq!(include.len(), 1);
                assert_eq!(exclude[0].to_string(), "198.51.100.7/32");
                assert_eq!(timeout, 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_profile_names_are_refused_by_the_parser() {
        let err = Cli::try_parse_from(["underpass", "import", "x.conf", "--name", "a b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("only letters, digits"), "{err}");
    }
}
