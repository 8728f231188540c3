//! Linux DNS through systemd-resolved, over D-Bus (`org.freedesktop.resolve1` on the system bus).
//!
//! Used when /etc/resolv.conf is resolved's stub (see `linux.rs`). The tunnel's servers and
//! domains go on the tunnel's own link, as `resolvectl dns/domain/default-route` would put them:
//!
//! - `SetLinkDNS(ifindex, [(family, address bytes)])`
//! - `SetLinkDomains(ifindex, [(domain, routing_only)])`: the profile's search domains, plus, for
//!   a full tunnel, the routing-only root domain (`~.` in resolvectl's notation, sent as
//!   `(".", true)`), so that every name is resolved through the tunnel. A split tunnel gets its
//!   search domains only: those names go to the tunnel's DNS, the rest to the usual resolver.
//! - `SetLinkDefaultRoute(ifindex, full_tunnel)`
//!
//! Restoring is `RevertLink(ifindex)`. The link disappears with the helper anyway (and resolved
//! forgets its settings then), but a disconnect reverts it while it still exists. The link is
//! recorded in the state dir before anything is set, so that a helper that crashed mid-way is
//! cleaned up after by the next one; a link that no longer exists is not an error.
//!
//! The bus is the system bus, whose address zbus takes from `DBUS_SYSTEM_BUS_ADDRESS` when set;
//! tests point [`Resolved::new`] at a private bus instead.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use zbus::zvariant::{DynamicType, OwnedObjectPath, OwnedValue};

use super::DnsConfig;

const DESTINATION: &str = "org.freedesktop.resolve1";
const MANAGER_PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
const LINK: &str = "org.freedesktop.resolve1.Link";
const NO_SUCH_LINK: &str = "org.freedesktop.resolve1.NoSuchLink";
/// Where a crashed helper's link is found by the next one.
const MARKER: &str = "resolved.link";
/// A resolved that does not answer must not wedge the helper.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a just-created tunnel link may stay unknown to resolved (it learns about links from
/// netlink, asynchronously) before "no such link" is the answer.
const NEW_LINK_WAIT: Duration = Duration::from_secs(2);

/// A network interface, by index (what resolved's API takes) and name (for messages, and to
/// tell that an index still means the same interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: i32,
    pub name: String,
}

impl Link {
    pub fn by_name(name: &str) -> Result<Link> {
        let c_name = CString::new(name).with_context(|| format!("bad interface name {name:?}"))?;
        // SAFETY: a valid NUL-terminated string; the call only reads it.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            bail!(
                "no network interface named {name}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Link {
            index: i32::try_from(index).context("interface index out of range")?,
            name: name.to_string(),
        })
    }

    /// Whether the interface still exists under the same index and name.
    fn exists(&self) -> bool {
        let Ok(index) = u32::try_from(self.index) else {
            return false;
        };
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `buf` has the IF_NAMESIZE bytes the call may write, NUL included.
        let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if name.is_null() {
            return false;
        }
        // SAFETY: on success the buffer holds a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
        name.to_bytes() == self.name.as_bytes()
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link {} ({})", self.index, self.name)
    }
}

/// What goes on the link, in the shapes of resolved's D-Bus API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// `a(iay)`: address family (AF_INET, AF_INET6) and the address's bytes.
    pub dns: Vec<(i32, Vec<u8>)>,
    /// `a(sb)`: domain and whether it is routing-only.
    pub domains: Vec<(String, bool)>,
    pub default_route: bool,
}

impl LinkSettings {
    pub fn from_config(config: &DnsConfig) -> LinkSettings {
        let dns = config
            .servers
            .iter()
            .map(|ip| match ip {
                std::net::IpAddr::V4(v4) => (libc::AF_INET, v4.octets().to_vec()),
                std::net::IpAddr::V6(v6) => (libc::AF_INET6, v6.octets().to_vec()),
            })
            .collect();
        let mut domains: Vec<(String, bool)> =
            config.search.iter().map(|d| (d.clone(), false)).collect();
        if config.full_tunnel {
            // resolvectl's "~.": the root as a routing-only domain, so every name matches here.
            domains.push((".".to_string(), true));
        }
        LinkSettings {
            dns,
            domains,
            default_route: config.full_tunnel,
        }
    }
}

pub struct Resolved {
    state_dir: PathBuf,
    /// A D-Bus address to use instead of the system bus (tests).
    bus: Option<String>,
    conn: Option<zbus::Connection>,
    /// The link we set and what we put on it, for `reassert` and `restore`.
    applied: Option<(Link, LinkSettings)>,
}

impl Resolved {
    /// `bus`: None for the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured), or the address of
    /// another bus.
    pub fn new(state_dir: PathBuf, bus: Option<String>) -> Resolved {
        Resolved {
            state_dir,
            bus,
            conn: None,
            applied: None,
        }
    }

    fn marker_path(&self) -> PathBuf {
        self.state_dir.join(MARKER)
    }

    pub async fn set(&mut self, config: &DnsConfig) -> Result<()> {
        let link = Link::by_name(&config.interface)?;
        let settings = LinkSettings::from_config(config);
        // Recorded first: whatever happens next, this link is reverted by `restore`, also by
        // the next helper if this one dies.
        write_marker(&self.marker_path(), &link)?;
        self.applied = Some((link.clone(), settings.clone()));
        self.apply(&link, &settings).await
    }

    async fn apply(&mut self, link: &Link, settings: &LinkSettings) -> Result<()> {
        let i = link.index;
        let on = |method: &str| format!("{method} on {link}");
        let deadline = tokio::time::Instant::now() + NEW_LINK_WAIT;
        loop {
            let dns = &(i, &settings.dns);
            match self
                .call(MANAGER_PATH, MANAGER, "SetLinkDNS", dns, on("SetLinkDNS"))
                .await
            {
                Err(e) if is_no_such_link(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => {
                    result?;
                    break;
                }
            }
        }
        let domains = &(i, &settings.domains);
        self.call(
            MANAGER_PATH,
            MANAGER,
            "SetLinkDomains",
            domains,
            on("SetLinkDomains"),
        )
        .await?;
        let route = &(i, settings.default_route);
        self.call(
            MANAGER_PATH,
            MANAGER,
            "SetLinkDefaultRoute",
            route,
            on("SetLinkDefaultRoute"),
        )
        .await?;
        Ok(())
    }

    /// Compares the link's DNS servers, as resolved reports them, with ours, and sets the link
    /// again when they differ (someone reverted or rewrote it).
    pub async fn reassert(&mut self) -> Result<bool> {
        let Some((link, settings)) = self.applied.clone() else {
            return Ok(false);
        };
        let reply = self
            .call(
                MANAGER_PATH,
                MANAGER,
                "GetLink",
                &(link.index,),
                format!("GetLink on {link}"),
            )
            .await?;
        let path: OwnedObjectPath = reply
            .body()
            .deserialize()
            .with_context(|| format!("reading systemd-resolved's answer to GetLink on {link}"))?;
        let reply = self
            .call(
                path.as_str(),
                "org.freedesktop.DBus.Properties",
                "Get",
                &(LINK, "DNS"),
                format!("reading the DNS property of {link} ({path})"),
            )
            .await?;
        let value: OwnedValue = reply
            .body()
            .deserialize()
            .with_context(|| format!("reading the DNS property of {link} ({path})"))?;
        let current = Vec::<(i32, Vec<u8>)>::try_from(value)
            .with_context(|| format!("reading the DNS property of {link} ({path})"))?;
        if current == settings.dns {
            return Ok(false);
        }
        tracing::warn!(%link, ?current, "systemd-resolved has other DNS servers on the tunnel link");
        self.apply(&link, &settings).await?;
        Ok(true)
    }

    /// Reverts the link we set, or the one a crashed helper recorded. Nothing to do is fine, and
    /// so is a link that is gone.
    pub async fn restore(&mut self) -> Result<()> {
        let marker = self.marker_path();
        let link = match self.applied.take() {
            Some((link, _)) => Some(link),
            None => read_marker(&marker),
        };
        match link {
            None => {}
            Some(link) if !link.exists() => {
                tracing::info!(%link, "the tunnel link is gone, and its DNS settings with it");
            }
            Some(link) => {
                let what = format!("RevertLink on {link}");
                match self
                    .call(MANAGER_PATH, MANAGER, "RevertLink", &(link.index,), what)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_no_such_link(&e) => {
                        tracing::info!(%link, "systemd-resolved no longer knows the tunnel link");
                    }
                    // The record stays, so that the next restore tries again.
                    Err(e) => return Err(e),
                }
            }
        }
        match std::fs::remove_file(&marker) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", marker.display())),
        }
    }

    async fn connection(&mut self) -> Result<zbus::Connection> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let builder = match &self.bus {
            Some(address) => zbus::connection::Builder::address(address.as_str()),
            None => zbus::connection::Builder::system(),
        };
        let conn = async { builder?.method_timeout(CALL_TIMEOUT).build().await }
            .await
            .with_context(|| format!("connecting to the D-Bus system bus ({})", self.address()))?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn address(&self) -> String {
        self.bus
            .clone()
            .or_else(|| std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok())
            .unwrap_or_else(|| "unix:path=/run/dbus/system_bus_socket".to_string())
    }

    /// One method call to resolved; its error says `what` was tried, and what came back.
    async fn call<B>(
        &mut self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
        what: String,
    ) -> Result<zbus::Message>
    where
        B: serde::Serialize + DynamicType,
    {
        let conn = self.connection().await?;
        let reply = conn
            .call_method(Some(DESTINATION), path, Some(interface), method, body)
            .await;
        match reply {
            Ok(reply) => Ok(reply),
            Err(e) => {
                if !matches!(e, zbus::Error::MethodError(..)) {
                    // The connection may be broken; the next call makes a new one.
                    self.conn = None;
                }
                Err(anyhow::Error::new(e).context(what))
            }
        }
    }
}

fn is_no_such_link(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<zbus::Error>(),
        Some(zbus::Error::MethodError(name, _, _)) if name.as_str() == NO_SUCH_LINK
    )
}

fn write_marker(path: &Path, link: &Link) -> Result<()> {
    underpass_durable::write(path, format!("{} {}\n", link.index, link.name).as_bytes())
        .context("recording the tunnel link")?;
    Ok(())
}

/// The link a crashed helper recorded. An unreadable record is logged and dropped: the link it
/// named died with that helper, and a restore that fails at every start would help nobody.
fn read_marker(path: &Path) -> Option<Link> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "unreadable record of a tunnel link");
            return None;
        }
    };
    let parsed = text.trim().split_once(' ').and_then(|(index, name)| {
        Some(Link {
            index: index.parse().ok()?,
            name: name.to_string(),
        })
    });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), content = ?text, "malformed record of a tunnel link");
    }
    parsed
}

/// Against a stand-in for systemd-resolved: python-dbusmock with `resolved_mock.py`, on a private
/// dbus-daemon that each test starts. The tests assert the exact calls the stand-in received.
/// Without `dbus-daemon` or python3's dbusmock module they skip, loudly; with CI=true a skip is a
/// failure.
#[cfg(test)]
mod tests {
    use std::io::{BufRead, Write};
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::dns::linux::LinuxDns;
    use crate::dns::{DnsManager, DnsPaths};

    const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/dns/resolved_mock.py");
    const STUB: &str = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";

    /// A call as the stand-in logged it.
    #[derive(Debug, PartialEq)]
    enum Call {
        GetLink(i32),
        SetLinkDns(i32, Vec<(i32, Vec<u8>)>),
        SetLinkDomains(i32, Vec<(String, bool)>),
        SetLinkDefaultRoute(i32, bool),
        RevertLink(i32),
    }

    struct Mock {
        address: String,
        conn: zbus::Connection,
        mock: Reaped,
        _bus: Reaped,
        dir: tempfile::TempDir,
        lo: i32,
    }

    /// A process this test started, killed (by its own handle) when the test ends, however it ends.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn skip(why: &str) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}; with CI=true this test must not skip (scripts/install-deps.sh)");
        }
        // Past the test harness's capture, so that the skip shows in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED a systemd-resolved D-Bus test: {why} ***\n"
        );
    }

    fn python_with_dbusmock() -> Option<&'static str> {
        // pyenv and the like may shadow Debian's python3, which is where python3-dbusmock is.
        ["python3", "/usr/bin/python3"].into_iter().find(|py| {
            Command::new(py)
                .args(["-c", "import dbusmock"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// A private bus with the stand-in on it, or None (after saying so) when the tools are missing.
    async fn start() -> Option<Mock> {
        let Some(python) = python_with_dbusmock() else {
            skip("no python3 with the dbusmock module (Debian: python3-dbusmock)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let bus_err = dir.path().join("dbus-daemon.err");
        let spawned = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It complains about fd limits when not allowed to raise them; only shown on failure.
            .stderr(std::fs::File::create(&bus_err).unwrap())
            .spawn();
        let mut bus = match spawned {
            Ok(child) => Reaped(child),
            Err(e) => {
                skip(&format!(
                    "cannot run dbus-daemon (Debian: dbus-daemon): {e}"
                ));
                return None;
            }
        };
        let mut address = String::new();
        std::io::BufReader::new(bus.0.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(
            !address.is_empty(),
            "dbus-daemon printed no address: {:?}",
            std::fs::read_to_string(&bus_err)
        );

        let lo = Link::by_name("lo").unwrap().index;
        let mock = Reaped(
            Command::new(python)
                .args(["-m", "dbusmock", "--session", "-t", TEMPLATE])
                .arg("-l")
                .arg(dir.path().join("mock.log"))
                .args(["-p", &format!("{{\"links\": [{lo}]}}")])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("mock.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        let conn = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let mut mock = Mock {
            address,
            conn,
            _bus: bus,
            mock,
            dir,
            lo,
        };
        let dbus = zbus::fdo::DBusProxy::new(&mock.conn).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let name = DESTINATION.try_into().unwrap();
            if dbus.name_has_owner(name).await.unwrap() {
                break;
            }
            let exited = mock.mock.0.try_wait().unwrap();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let err = std::fs::read_to_string(mock.dir.path().join("mock.err"));
                panic!("the dbusmock stand-in did not come up ({exited:?}): {err:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(mock)
    }

    impl Mock {
        async fn mock_call<B>(&self, method: &str, body: &B) -> zbus::Message
        where
            B: serde::Serialize + DynamicType,
        {
            let iface = if method == "ForgetLink" || method == "LearnLink" {
                "org.underpass.MockControl"
            } else {
                "org.freedesktop.DBus.Mock"
            };
            self.conn
                .call_method(Some(DESTINATION), MANAGER_PATH, Some(iface), method, body)
                .await
                .unwrap()
        }

        /// The calls since the last `take_calls`, then forgets them.
        async fn take_calls(&self) -> Vec<Call> {
            let reply = self.mock_call("GetCalls", &()).await;
            let log: Vec<(u64, String, Vec<OwnedValue>)> = reply.body().deserialize().unwrap();
            self.mock_call("ClearCalls", &()).await;
            log.into_iter()
                .filter(|(_, method, _)| method != "ForgetLink" && method != "LearnLink")
                .map(|(_, method, args)| {
                    let mut args = args.into_iter();
                    let mut next = || args.next().expect("too few arguments");
                    let link = i32::try_from(next()).unwrap();
                    match method.as_str() {
                        "GetLink" => Call::GetLink(link),
                        "SetLinkDNS" => Call::SetLinkDns(link, Vec::try_from(next()).unwrap()),
                        "SetLinkDomains" => {
                            Call::SetLinkDomains(link, Vec::try_from(next()).unwrap())
                        }
                        "SetLinkDefaultRoute" => {
                            Call::SetLinkDefaultRoute(link, bool::try_from(next()).unwrap())
                        }
                        "RevertLink" => Call::RevertLink(link),
                        other => panic!("unexpected call {other}"),
                    }
                })
                .collect()
        }

        /// A LinuxDns whose resolv.conf is resolved's stub and whose resolved is this stand-in.
        fn dns(&self) -> LinuxDns {
            let state = self.dir.path().join("state");
            let _ = std::fs::create_dir(&state);
            let resolv_conf = self.dir.path().join("resolv.conf");
            if !resolv_conf.exists() {
                std::fs::write(&resolv_conf, STUB).unwrap();
            }
            LinuxDns::with_resolved_bus(
                DnsPaths {
                    resolv_conf,
                    state_dir: state,
                },
                Some(self.address.clone()),
            )
        }

        fn resolv_conf(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("resolv.conf")).unwrap()
        }

        fn marker(&self) -> PathBuf {
            self.dir.path().join("state").join(MARKER)
        }
    }

    fn config(search: &[&str], full_tunnel: bool) -> DnsConfig {
        DnsConfig {
            servers: vec![
                "10.64.1.1".parse().unwrap(),
                "fd00:64:1::1".parse().unwrap(),
            ],
            search: search.iter().map(|s| s.to_string()).collect(),
            interface: "lo".into(),
            full_tunnel,
        }
    }

    fn servers() -> Vec<(i32, Vec<u8>)> {
        let v6: std::net::Ipv6Addr = "fd00:64:1::1".parse().unwrap();
        vec![(2, vec![10, 64, 1, 1]), (10, v6.octets().to_vec())]
    }

    fn domains(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    #[tokio::test]
    async fn full_tunnel_routes_every_name_to_the_tunnel_then_reverts_the_link() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        let mut dns = mock.dns();
        dns.set(&config(&["corp.example"], true)).await.unwrap();
        assert_eq!(dns.method(), "systemd-resolved");
        assert_eq!(
            mock.take_calls().await,
            [
                Call::SetLinkDns(lo, servers()),
                Call::SetLinkDomains(lo, domains(&[("corp.example", false), (".", true)])),
                Call::SetLinkDefaultRoute(lo, true),
            ]
        );
        // The stub file is resolved's: not touched, nothing backed up.
        assert_eq!(mock.resolv_conf(), STUB);
        assert!(!mock.dir.path().join("state/resolv.conf.backup").exists());
        assert!(mock.marker().exists());

        dns.restore().await.unwrap();
        assert_eq!(mock.take_calls().await, [Call::RevertLink(lo)]);
        assert!(!mock.marker().exists());
        assert_eq!(mock.resolv_conf(), STUB);
        // Nothing left to undo: no call at all.
        dns.restore().await.unwrap();
        assert_eq!(mock.take_calls().await, []);
    }

    #[tokio::test]
    async fn split_tunnel_gets_its_search_domains_only_and_no_default_route() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        let mut dns = mock.dns();
        dns.set(&config(&["corp.example", "lab.example"], false))
            .await
            .unwrap();
        assert_eq!(
            mock.take_calls().await,
            [
                Call::SetLinkDns(lo, servers()),
                Call::SetLinkDomains(
                    lo,
                    domains(&[("corp.example", false), ("lab.example", false)])
                ),
                Call::SetLinkDefaultRoute(lo, false),
            ]
        );
        dns.restore().await.unwrap();
        assert_eq!(mock.take_calls().await, [Call::RevertLink(lo)]);

        // No search domains: an empty domain list, and still no default route.
        dns.set(&config(&[], false)).await.unwrap();
        assert_eq!(
            mock.take_calls().await,
            [
                Call::SetLinkDns(lo, servers()),
                Call::SetLinkDomains(lo, vec![]),
                Call::SetLinkDefaultRoute(lo, false),
            ]
        );
        dns.restore().await.unwrap();
        assert_eq!(mock.take_calls().await, [Call::RevertLink(lo)]);
    }

    #[tokio::test]
    async fn reassert_reads_the_links_dns_and_sets_it_again_when_it_changed() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        let mut dns = mock.dns();
        dns.set(&config(&[], true)).await.unwrap();
        mock.take_calls().await;

        assert!(!dns.reassert().await.unwrap());
        assert_eq!(mock.take_calls().await, [Call::GetLink(lo)]);

        // Someone else (a network manager) puts the ISP's resolver on the link.
        let isp = vec![(libc::AF_INET, vec![198, 51, 100, 1])];
        mock.conn
            .call_method(
                Some(DESTINATION),
                MANAGER_PATH,
                Some(MANAGER),
                "SetLinkDNS",
                &(lo, isp),
            )
            .await
            .unwrap();
        mock.take_calls().await;
        assert!(dns.reassert().await.unwrap());
        assert_eq!(
            mock.take_calls().await,
            [
                Call::GetLink(lo),
                Call::SetLinkDns(lo, servers()),
                Call::SetLinkDomains(lo, domains(&[(".", true)])),
                Call::SetLinkDefaultRoute(lo, true),
            ]
        );
        // And it stuck.
        assert!(!dns.reassert().await.unwrap());
        assert_eq!(mock.take_calls().await, [Call::GetLink(lo)]);
    }

    #[tokio::test]
    async fn a_crashed_helpers_link_is_reverted_by_the_next_one_and_a_gone_link_is_fine() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        let mut first = mock.dns();
        first.set(&config(&[], true)).await.unwrap();
        drop(first); // The helper dies here, without restoring.
        mock.take_calls().await;
        let mut second = mock.dns();
        second.restore().await.unwrap();
        assert_eq!(mock.take_calls().await, [Call::RevertLink(lo)]);
        assert!(!mock.marker().exists());

        // The usual case: the link died with the helper. Nothing to call, nothing to fail.
        std::fs::write(mock.marker(), "2147483000 up-gone\n").unwrap();
        mock.dns().restore().await.unwrap();
        assert_eq!(mock.take_calls().await, []);
        assert!(!mock.marker().exists());

        // resolved no longer knows the link (it went away and its index came back): ignored.
        let mut third = mock.dns();
        third.set(&config(&[], true)).await.unwrap();
        drop(third);
        mock.mock_call("ForgetLink", &(lo,)).await;
        mock.take_calls().await;
        mock.dns().restore().await.unwrap();
        assert_eq!(mock.take_calls().await, [Call::RevertLink(lo)]);
        assert!(!mock.marker().exists());

        // A record that cannot be read is dropped, not retried at every start.
        std::fs::write(mock.marker(), "garbage").unwrap();
        mock.dns().restore().await.unwrap();
        assert_eq!(mock.take_calls().await, []);
        assert!(!mock.marker().exists());
    }

    #[tokio::test]
    async fn a_link_resolved_has_not_learnt_about_yet_is_waited_for() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        mock.mock_call("ForgetLink", &(lo,)).await;
        let conn = mock.conn.clone();
        let learn = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            conn.call_method(
                Some(DESTINATION),
                MANAGER_PATH,
                Some("org.underpass.MockControl"),
                "LearnLink",
                &(lo,),
            )
            .await
            .unwrap();
        });
        let mut dns = mock.dns();
        dns.set(&config(&[], false)).await.unwrap();
        learn.await.unwrap();
        let calls = mock.take_calls().await;
        let (retries, last) = calls.split_at(calls.len() - 3);
        assert!(!retries.is_empty(), "{calls:?}");
        assert!(
            retries
                .iter()
                .all(|c| *c == Call::SetLinkDns(lo, servers())),
            "{calls:?}"
        );
        assert_eq!(
            last,
            [
                Call::SetLinkDns(lo, servers()),
                Call::SetLinkDomains(lo, vec![]),
                Call::SetLinkDefaultRoute(lo, false),
            ]
        );
    }

    #[tokio::test]
    async fn errors_say_what_was_called_on_which_link_and_what_resolved_answered() {
        let Some(mock) = start().await else { return };
        let lo = mock.lo;
        mock.mock_call("ForgetLink", &(lo,)).await;
        let mut dns = mock.dns();
        let err = dns.set(&config(&[], true)).await.unwrap_err();
        // As the daemon reports it.
        let err = format!(
            "{:#}",
            err.context(format!("setting DNS through {}", dns.method()))
        );
        assert_eq!(
            err,
            format!(
                "setting DNS through systemd-resolved: SetLinkDNS on link {lo} (lo): \
                 org.freedesktop.resolve1.NoSuchLink: Link {lo} not known"
            )
        );
        let err = format!(
            "{:#}",
            Resolved::new(mock.dir.path().into(), None)
                .set(&DnsConfig {
                    interface: "up-missing0".into(),
                    ..config(&[], true)
                })
                .await
                .unwrap_err()
        );
        assert!(
            err.starts_with("no network interface named up-missing0"),
            "{err}"
        );
    }
}
