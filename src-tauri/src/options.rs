//! Command-line options and environment: the same names and variables as the CLI, so the app
//! and `underpass` always see the same helper and the same profile store.

use std::ffi::OsString;
use std::path::PathBuf;

use underpass_profile::Keystore;
use underpass_proto::SelfTestOptions;

/// Where the app finds the helper and the user's profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--socket PATH`, else `UNDERPASS_SOCKET`, else the helper's default socket.
    pub socket: PathBuf,
    /// `--config-dir DIR`, else `UNDERPASS_CONFIG_DIR`, else `~/.config/underpass`.
    pub config_dir: Option<PathBuf>,
    /// `--keystore keyring|file`, else `UNDERPASS_KEYSTORE`, else the OS keyring.
    pub keystore: Keystore,
    /// `--trusted-keys-dir DIR`, else `UNDERPASS_TRUSTED_KEYS_DIR`, else the system's.
    pub trusted_keys_dir: PathBuf,
    /// Where the self-tests aim: `UNDERPASS_SELFTEST_DOMAIN` (names are `<random>.<domain>`)
    /// and `UNDERPASS_SELFTEST_PROBES` (comma-separated addresses). Unset: the helper's
    /// defaults, which are reserved names and documentation addresses.
    pub self_test: SelfTestOptions,
    /// `--hidden`: start in the tray without showing the window (the autostart entry).
    pub hidden: bool,
    /// `--quit`: end the running app, window and tray (the tray's Quit asks the window so).
    pub quit: bool,
    /// The options with values, as given, to hand on to the app's other process (the tray
    /// starts the window with them, and the window the tray).
    pub forward: Vec<OsString>,
    /// Where the app's own log files go: `UNDERPASS_LOG_DIR`, else `$XDG_STATE_HOME/underpass`,
    /// else `~/.local/state/underpass`. `None` when none of these is known (no file log).
    pub log_dir: Option<PathBuf>,
    /// `underpass://` links and profile files to open (the arguments that are not options).
    pub open: Vec<String>,
}

/// The option the autostart entry passes.
pub const HIDDEN_FLAG: &str = "--hidden";
/// The option that ends a running app.
pub const QUIT_FLAG: &str = "--quit";
const VALUE_FLAGS: [&str; 4] = [
    "--socket",
    "--config-dir",
    "--keystore",
    "--trusted-keys-dir",
];

/// A command line split into options with values, switches, and the things to open.
#[derive(Default)]
struct Args {
    values: Vec<(String, OsString)>,
    hidden: bool,
    quit: bool,
    open: Vec<String>,
}

fn split_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        if arg == HIDDEN_FLAG {
            out.hidden = true;
            continue;
        }
        if arg == QUIT_FLAG {
            out.quit = true;
            continue;
        }
        if !arg.starts_with('-') {
            out.open.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !VALUE_FLAGS.contains(&flag.as_str()) {
            eprintln!("underpass-gui: ignoring argument {arg:?}");
            continue;
        }
        let value = match inline {
            Some(v) => OsString::from(v),
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        out.values.push((flag, value));
    }
    Ok(out)
}

impl Options {
    /// Reads `args` (program name first) over the environment. Unknown arguments are ignored
    /// with a warning: WebDriver and desktop launchers add their own.
    pub fn from_env_and_args(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
        Self::parse(args, |k| std::env::var_os(k))
    }

    pub fn parse(
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Options, String> {
        let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut socket = env_nonempty("UNDERPASS_SOCKET").map(PathBuf::from);
        let mut config_dir = env_nonempty("UNDERPASS_CONFIG_DIR").map(PathBuf::from);
        let mut keystore = env_nonempty("UNDERPASS_KEYSTORE");
        let mut trusted = env_nonempty("UNDERPASS_TRUSTED_KEYS_DIR").map(PathBuf::from);
        let args = split_args(args.into_iter().skip(1))?;
        let forward = args
            .values
            .iter()
            .flat_map(|(flag, value)| [OsString::from(flag), value.clone()])
            .collect();
        for (flag, value) in args.values {
            match flag.as_str() {
                "--socket" => socket = Some(value.into()),
                "--config-dir" => config_dir = Some(value.into()),
                "--keystore" => keystore = Some(value),
                _ => trusted = Some(value.into()),
            }
        }
        let mut self_test = SelfTestOptions {
            domain: env_nonempty("UNDERPASS_SELFTEST_DOMAIN")
                .map(|d| d.to_string_lossy().into_owned()),
            ..SelfTestOptions::default()
        };
        if let Some(list) = env_nonempty("UNDERPASS_SELFTEST_PROBES") {
            for item in list.to_string_lossy().split(',').map(str::trim) {
                let ip = item.parse().map_err(|_| {
                    format!("UNDERPASS_SELFTEST_PROBES: {item:?} is not an IP address")
                })?;
                self_test.probe_targets.push(ip);
            }
        }
        let keystore = match keystore {
            Some(k) => k.to_string_lossy().parse::<Keystore>()?,
            None => Keystore::Keyring,
        };
        Ok(Options {
            socket: socket.unwrap_or_else(|| underpass_proto::DEFAULT_SOCKET.into()),
            config_dir,
            keystore,
            trusted_keys_dir: trusted
                .unwrap_or_else(|| underpass_profile::bundle::DEFAULT_SYSTEM_TRUST_DIR.into()),
            self_test,
            hidden: args.hidden,
            quit: args.quit,
            forward,
            open: args.open,
            log_dir: env_nonempty("UNDERPASS_LOG_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    env_nonempty("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("underpass"))
                })
                .or_else(|| {
                    env_nonempty("HOME").map(|h| PathBuf::from(h).join(".local/state/underpass"))
                }),
        })
    }

    /// The links and files in another instance's command line (program name removed).
    pub fn items_to_open(args: impl IntoIterator<Item = String>) -> Vec<String> {
        split_args(args.into_iter().map(OsString::from))
            .map(|a| a.open)
            .unwrap_or_default()
    }

    /// Whether another instance's command line (program name removed) asks to quit.
    pub fn asks_to_quit(args: &[String]) -> bool {
        args.iter().any(|a| a == QUIT_FLAG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::parse(
            std::iter::once("underpass-gui")
                .chain(args.iter().copied())
                .map(OsString::from),
            |k| {
                env.iter()
                    .find(|(ek, _)| ek == k)
                    .map(|(_, v)| OsString::from(v))
            },
        )
    }

    #[test]
    fn environment_is_honoured_like_the_cli() {
        let o = parse(
            &[],
            &[
                ("UNDERPASS_SOCKET", "/tmp/s.sock"),
                ("UNDERPASS_CONFIG_DIR", "/tmp/cfg"),
                ("UNDERPASS_KEYSTORE", "file"),
            ],
        )
        .unwrap();
        assert_eq!(o.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(o.config_dir, Some(PathBuf::from("/tmp/cfg")));
        assert_eq!(o.keystore, Keystore::File);
    }

    #[test]
    fn flags_override_the_environment() {
        let o = parse(
            &[
                "--socket",
                "/a.sock",
                "--config-dir=/cfg",
                "--keystore",
                "keyring",
            ],
            &[
                ("UNDERPASS_SOCKET", "/b.sock"),
                ("UNDERPASS_KEYSTORE", "file"),
            ],
        )
        .unwrap();
        assert_eq!(o.socket, PathBuf::from("/a.sock"));
        assert_eq!(o.config_dir, Some(PathBuf::from("/cfg")));
        assert_eq!(o.keystore, Keystore::Keyring);
    }

    #[test]
    fn defaults_are_the_helper_socket_and_the_keyring() {
        let o = parse(&["--automation"], &[]).unwrap();
        assert_eq!(o.socket, PathBuf::from(underpass_proto::DEFAULT_SOCKET));
        assert_eq!(o.keystore, Keystore::Keyring);
        assert_eq!(o.config_dir, None);
        assert_eq!(o.log_dir, None);
        let o = parse(&[], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            o.log_dir,
            Some(PathBuf::from("/home/u/.local/state/underpass"))
        );
    }

    #[test]
    fn self_test_targets_come_from_the_environment() {
        let o = parse(
            &[],
            &[
                ("UNDERPASS_SELFTEST_DOMAIN", "example.test"),
                ("UNDERPASS_SELFTEST_PROBES", "198.51.100.1, 2001:db8::1"),
            ],
        )
        .unwrap();
        assert_eq!(o.self_test.domain.as_deref(), Some("example.test"));
        assert_eq!(o.self_test.probe_targets.len(), 2);
        assert!(parse(&[], &[("UNDERPASS_SELFTEST_PROBES", "nope")]).is_err());
    }

    #[test]
    fn a_bad_keystore_is_refused_with_the_choices() {
        let e = parse(&[], &[("UNDERPASS_KEYSTORE", "vault")]).unwrap_err();
        assert!(e.contains("keyring"), "{e}");
        assert!(parse(&["--socket"], &[])
            .unwrap_err()
            .contains("needs a value"));
    }

    #[test]
    fn links_and_files_are_the_arguments_that_are_not_options() {
        let o = parse(
            &[
                "--hidden",
                "--socket",
                "/a.sock",
                "underpass://connect",
                "x.underpass",
            ],
            &[],
        )
        .unwrap();
        assert!(o.hidden);
        assert!(!o.quit);
        assert_eq!(o.open, ["underpass://connect", "x.underpass"]);
        // Only the options with values go on to the other process, as given.
        assert_eq!(o.forward, ["--socket", "/a.sock"].map(OsString::from));
        let o = parse(&["--quit", "--config-dir=/cfg"], &[]).unwrap();
        assert!(o.quit && o.open.is_empty());
        assert_eq!(o.forward, ["--config-dir", "/cfg"].map(OsString::from));
        assert!(Options::asks_to_quit(&["--quit".into()]));
        assert!(!Options::asks_to_quit(&["x.conf".into()]));
        let items = Options::items_to_open(
            ["--config-dir", "/cfg", "a.conf", "--automation"].map(String::from),
        );
        assert_eq!(items, ["a.conf"]);
    }
}
