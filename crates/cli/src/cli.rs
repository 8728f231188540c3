//! The command-line grammar. Command and option names are a contract: scripts use them.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use underpass_profile::{NameError, ProfileName};

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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a wg-quick .conf file as a profile (hook commands in it are never run)
    Import {
        /// The wg-quick file, as handed out by the VPN provider
        #[arg(value_name = "FILE.conf")]
        file: PathBuf,
        /// Profile name [default: the file name without .conf]
        #[arg(long, value_parser = parse_name)]
        name: Option<ProfileName>,
        /// Overwrite a profile of the same name
        #[arg(long)]
        replace: bool,
    },
    /// List the stored profiles
    Profiles,
    /// Bring the tunnel up with a profile
    Connect {
        /// The profile [default: the only one there is]
        #[arg(value_parser = parse_name)]
        name: Option<ProfileName>,
        /// Route only this prefix into the tunnel (repeatable; makes a split tunnel)
        #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
        include: Vec<IpNet>,
        /// Keep this prefix out of the tunnel (repeatable)
        #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
        exclude: Vec<IpNet>,
        /// Give up waiting after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Tear the tunnel down
    Disconnect {
        /// Give up waiting after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Show the tunnel's state, addresses, handshake and traffic
    Status,
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
