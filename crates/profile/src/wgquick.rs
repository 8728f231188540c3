//! wg-quick `.conf` files: the format every WireGuard provider hands out.
//!
//! [`parse`] reads what `wg-quick` reads, with two deliberate differences:
//! - `PreUp`/`PostUp`/`PreDown`/`PostDown` are shell commands. They are accepted, **never
//!   executed**, and returned in [`Parsed::ignored_hooks`] so the importer can tell the user.
//! - A client needs more than `wg` does: an `[Interface]` with `PrivateKey` and `Address`, and
//!   at least one `[Peer]`, each with `PublicKey` and `Endpoint`. Missing ones are errors that
//!   point at the section's header line.
//!
//! Keys and section names are case-insensitive. Unknown keys are errors, as in wg-quick, so a
//! typo never silently drops a setting.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use underpass_trust::bundle::is_domain;
pub use underpass_trust::bundle::parse_prefix;

use ipnet::IpNet;
use underpass_proto::{Key, KeyError, PeerConfig, RoutingConfig, TunnelConfig, MAX_MTU, MIN_MTU};

/// The settings of one wg-quick file. Comments, key order and hooks are not kept:
/// `parse(&config.to_wg_quick())` gives back an equal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickConfig {
    pub interface: Interface,
    pub peers: Vec<Peer>,
}

/// The `[Interface]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub private_key: Key,
    /// Interface addresses. A bare IPv4 address in the file means /32, a bare IPv6 one /128.
    pub addresses: Vec<IpNet>,
    /// The `DNS` entries that are IP addresses: the tunnel's resolvers.
    pub dns: Vec<IpAddr>,
    /// The `DNS` entries that are not IP addresses: search domains.
    pub dns_search: Vec<String>,
    pub mtu: Option<u16>,
    /// Kept for export; a client lets the OS pick its port.
    pub listen_port: Option<u16>,
    /// Kept for export; the helper chooses its own mark. `off` and 0 are `None`.
    pub fwmark: Option<u32>,
    /// Kept for export: `off`, `auto`, a table number or name.
    pub table: Option<String>,
    /// Kept for export; Underpass never writes back to the file.
    pub save_config: Option<bool>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    /// Normalized prefixes (host bits cleared; a bare address is a /32 or /128).
    pub allowed_ips: Vec<IpNet>,
    /// `host:port`, `a.b.c.d:port` or `[v6]:port`, checked for shape, not resolved.
    pub endpoint: String,
    /// Seconds; `off` and 0 are `None`.
    pub persistent_keepalive: Option<u16>,
}

/// A `PreUp`/`PostUp`/`PreDown`/`PostDown` line that was read and will never be run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredHook {
    /// The key as wg-quick spells it, e.g. `PostUp`.
    pub key: String,
    /// 1-based line number in the file.
    pub line: usize,
    /// The shell command, verbatim.
    pub command: String,
}

/// What [`parse`] returns: the config, plus what was deliberately left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: WgQuickConfig,
    pub ignored_hooks: Vec<IgnoredHook>,
}

/// Why a file was refused: which file, which line, which key, and what is wrong.
///
/// Displays as `se-sto.conf:7: key "PublicKey": not a valid WireGuard key (…)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ParseError {
    /// The display name the caller passed in (usually the file name).
    pub file: String,
    /// 1-based; `None` when the problem is the file as a whole (e.g. no `[Peer]` at all).
    pub line: Option<usize>,
    /// The key, spelled as wg-quick documents it (or as written, when unknown).
    pub key: Option<String>,
    pub reason: String,
}

impl ParseError {
    fn render(&self) -> String {
        let mut s = self.file.clone();
        if let Some(line) = self.line {
            let _ = write!(s, ":{line}");
        }
        s.push_str(": ");
        if let Some(key) = &self.key {
            let _ = write!(s, "key \"{key}\": ");
        }
        s.push_str(&self.reason);
        s
    }
}

impl WgQuickConfig {
    /// The request the helper needs to bring this tunnel up, named `profile`. Routing is left
    /// at its default: every peer's AllowedIPs, nothing excluded.
    pub fn to_tunnel_config(&self, profile: &str) -> TunnelConfig {
        TunnelConfig {
            profile: profile.to_string(),
            private_key: self.interface.private_key.clone(),
            addresses: self.interface.addresses.clone(),
            dns: self.interface.dns.clone(),
            dns_search: self.interface.dns_search.clone(),
            mtu: self.interface.mtu,
            peers: self
                .peers
                .iter()
                .map(|p| PeerConfig {
                    public_key: p.public_key.clone(),
                    preshared_key: p.preshared_key.clone(),
                    endpoint: p.endpoint.clone(),
                    allowed_ips: p.allowed_ips.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
            routing: RoutingConfig {
                no_routes: self
                    .interface
                    .table
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("off")),
                ..RoutingConfig::default()
            },
            policy: None,
            signed: None,
        }
    }

    /// True when the peers' AllowedIPs together cover all of IPv4 or all of IPv6
    /// (`0.0.0.0/0`, `::/0`, or pieces that add up to it such as `0.0.0.0/1, 128.0.0.0/1`).
    pub fn is_full_tunnel(&self) -> bool {
        covers_everything(self.peers.iter().flat_map(|p| &p.allowed_ips))
    }

    /// The first peer's endpoint: the server, for a typical provider file.
    pub fn endpoint(&self) -> Option<&str> {
        self.peers.first().map(|p| p.endpoint.as_str())
    }

    /// Writes the config back as a wg-quick file (without comments or hooks).
    pub fn to_wg_quick(&self) -> String {
        let mut out = String::new();
        let i = &self.interface;
        let _ = writeln!(out, "[Interface]");
        let _ = writeln!(out, "PrivateKey = {}", i.private_key.to_base64());
        let _ = writeln!(out, "Address = {}", join(&i.addresses));
        if !i.dns.is_empty() || !i.dns_search.is_empty() {
            let entries: Vec<String> = i
                .dns
                .iter()
                .map(ToString::to_string)
                .chain(i.dns_search.iter().cloned())
                .collect();
            let _ = writeln!(out, "DNS = {}", entries.join(", "));
        }
        if let Some(mtu) = i.mtu {
            let _ = writeln!(out, "MTU = {mtu}");
        }
        if let Some(port) = i.listen_port {
            let _ = writeln!(out, "ListenPort = {port}");
        }
        if let Some(mark) = i.fwmark {
            let _ = writeln!(out, "FwMark = {mark:#x}");
        }
        if let Some(table) = &i.table {
            let _ = writeln!(out, "Table = {table}");
        }
        if let Some(save) = i.save_config {
            let _ = writeln!(out, "SaveConfig = {save}");
        }
        for p in &self.peers {
            let _ = writeln!(out, "\n[Peer]");
            let _ = writeln!(out, "PublicKey = {}", p.public_key.to_base64());
            if let Some(psk) = &p.preshared_key {
                let _ = writeln!(out, "PresharedKey = {}", psk.to_base64());
            }
            if !p.allowed_ips.is_empty() {
                let _ = writeln!(out, "AllowedIPs = {}", join(&p.allowed_ips));
            }
            let _ = writeln!(out, "Endpoint = {}", p.endpoint);
            if let Some(ka) = p.persistent_keepalive {
                let _ = writeln!(out, "PersistentKeepalive = {ka}");
            }
        }
        out
    }
}

/// True when `nets` together cover all of IPv4 or all of IPv6.
pub(crate) fn covers_everything<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> bool {
    let all: Vec<IpNet> = nets.into_iter().copied().collect();
    IpNet::aggregate(&all)
        .iter()
        .any(|net| net.prefix_len() == 0)
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses the text of a wg-quick file. `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Parsed, ParseError> {
    if let Some(kind) = crate::foreign::detect(text) {
        return Err(ParseError {
            file: file.to_string(),
            line: None,
            key: None,
            reason: kind.explanation(),
        });
    }
    let mut p = Parser {
        file,
        section: Section::None,
        interface: None,
        peers: Vec::new(),
        hooks: Vec::new(),
    };
    for (idx, raw) in text.lines().enumerate() {
        let raw = if idx == 0 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        p.line(idx + 1, raw)?;
    }
    p.finish()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

#[derive(Clone, Copy)]
enum Field {
    PrivateKey,
    Address,
    Dns,
    Mtu,
    ListenPort,
    FwMark,
    Table,
    SaveConfig,
    Hook,
    PublicKey,
    PresharedKey,
    AllowedIps,
    Endpoint,
    PersistentKeepalive,
}

/// The known keys: canonical spelling, and the section they belong to.
fn lookup(key: &str) -> Option<(Field, &'static str, Section)> {
    use Field::*;
    Some(match key.to_ascii_lowercase().as_str() {
        "privatekey" => (PrivateKey, "PrivateKey", Section::Interface),
        "address" => (Address, "Address", Section::Interface),
        "dns" => (Dns, "DNS", Section::Interface),
        "mtu" => (Mtu, "MTU", Section::Interface),
        "listenport" => (ListenPort, "ListenPort", Section::Interface),
        "fwmark" => (FwMark, "FwMark", Section::Interface),
        "table" => (Table, "Table", Section::Interface),
        "saveconfig" => (SaveConfig, "SaveConfig", Section::Interface),
        "preup" => (Hook, "PreUp", Section::Interface),
        "postup" => (Hook, "PostUp", Section::Interface),
        "predown" => (Hook, "PreDown", Section::Interface),
        "postdown" => (Hook, "PostDown", Section::Interface),
        "publickey" => (PublicKey, "PublicKey", Section::Peer),
        "presharedkey" => (PresharedKey, "PresharedKey", Section::Peer),
        "allowedips" => (AllowedIps, "AllowedIPs", Section::Peer),
        "endpoint" => (Endpoint, "Endpoint", Section::Peer),
        "persistentkeepalive" => (PersistentKeepalive, "PersistentKeepalive", Section::Peer),
        _ => return None,
    })
}

/// A single-valued setting and the line that set it.
type Once<T> = Option<(T, usize)>;

struct InterfaceDraft {
    header: usize,
    private_key: Once<Key>,
    addresses: Vec<IpNet>,
    dns: Vec<IpAddr>,
    dns_search: Vec<String>,
    mtu: Once<u16>,
    listen_port: Once<u16>,
    fwmark: Once<Option<u32>>,
    table: Once<String>,
    save_config: Once<bool>,
}

struct PeerDraft {
    header: usize,
    public_key: Once<Key>,
    preshared_key: Once<Key>,
    allowed_ips: Vec<IpNet>,
    endpoint: Once<String>,
    persistent_keepalive: Once<Option<u16>>,
}

struct Parser<'a> {
    file: &'a str,
    section: Section,
    interface: Option<InterfaceDraft>,
    peers: Vec<PeerDraft>,
    hooks: Vec<IgnoredHook>,
}

impl Parser<'_> {
    fn err(&self, line: Option<usize>, key: Option<&str>, reason: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            key: key.map(str::to_string),
            reason: reason.into(),
        }
    }

    fn line(&mut self, n: usize, raw: &str) -> Result<(), ParseError> {
        let content = match raw.find('#') {
            Some(i) => &raw[..i],
            None => raw,
        }
        .trim();
        if content.is_empty() {
            return Ok(());
        }
        if content.starts_with('[') {
            return self.header(n, content);
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(self.err(
                Some(n),
                None,
                format!("expected `Key = Value` or a [Section], found {content:?}"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(self.err(Some(n), None, "there is no key before '='"));
        }
        let Some((field, canonical, home)) = lookup(key) else {
            let reason = match self.section {
                Section::None => "unknown key (and outside any section)".to_string(),
                Section::Interface => "unknown key in [Interface]".to_string(),
                Section::Peer => "unknown key in [Peer]".to_string(),
            };
            return Err(self.err(Some(n), Some(key), reason));
        };
        match (self.section, home) {
            (Section::None, _) => Err(self.err(
                Some(n),
                Some(canonical),
                format!("outside any section; put it under {}", section_name(home)),
            )),
            (current, home) if current != home => Err(self.err(
                Some(n),
                Some(canonical),
                format!(
                    "belongs in {}, not in {}",
                    section_name(home),
                    section_name(current)
                ),
            )),
            _ => self
                .field(n, field, canonical, value)
                .map_err(|reason| self.err(Some(n), Some(canonical), reason)),
        }
    }

    fn header(&mut self, n: usize, content: &str) -> Result<(), ParseError> {
        let Some(name) = content.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
            return Err(self.err(
                Some(n),
                None,
                format!("malformed section header {content:?}; expected [Interface] or [Peer]"),
            ));
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "interface" => {
                if let Some(first) = &self.interface {
                    return Err(self.err(
                        Some(n),
                        None,
                        format!(
                            "a second [Interface] section (the first is on line {})",
                            first.header
                        ),
                    ));
                }
                self.interface = Some(InterfaceDraft {
                    header: n,
                    private_key: None,
                    addresses: Vec::new(),
                    dns: Vec::new(),
                    dns_search: Vec::new(),
                    mtu: None,
                    listen_port: None,
                    fwmark: None,
                    table: None,
                    save_config: None,
                });
                self.section = Section::Interface;
            }
            "peer" => {
                self.peers.push(PeerDraft {
                    header: n,
                    public_key: None,
                    preshared_key: None,
                    allowed_ips: Vec::new(),
                    endpoint: None,
                    persistent_keepalive: None,
                });
                self.section = Section::Peer;
            }
            _ => {
                return Err(self.err(
                    Some(n),
                    None,
                    format!("unknown section [{name}]; a wg-quick file has [Interface] and [Peer]"),
                ))
            }
        }
        Ok(())
    }

    /// Applies one `key = value` to the current section. Errors are the reason only; the
    /// caller adds file, line and key.
    fn field(&mut self, n: usize, field: Field, key: &str, value: &str) -> Result<(), String> {
        use Field::*;
        if let Hook = field {
            self.hooks.push(IgnoredHook {
                key: key.to_string(),
                line: n,
                command: value.to_string(),
            });
            return Ok(());
        }
        let multi = matches!(field, Address | Dns | AllowedIps);
        if value.is_empty() && !multi {
            return Err("has no value".into());
        }
        if self.section == Section::Peer {
            let peer = self
                .peers
                .last_mut()
                .expect("section is [Peer], so one exists");
            match field {
                PublicKey => set_once(&mut peer.public_key, parse_key(value)?, n),
                PresharedKey => set_once(&mut peer.preshared_key, parse_key(value)?, n),
                AllowedIps => {
                    for item in list(value) {
                        peer.allowed_ips.push(parse_prefix(item)?.trunc());
                    }
                    Ok(())
                }
                Endpoint => set_once(&mut peer.endpoint, parse_endpoint(value)?, n),
                PersistentKeepalive => {
                    let ka = if value.eq_ignore_ascii_case("off") {
                        None
                    } else {
                        Some(value.parse::<u16>().map_err(|_| {
                            format!(
                                "{value:?} is neither a number of seconds (0 to 65535) nor \"off\""
                            )
                        })?)
                    };
                    set_once(&mut peer.persistent_keepalive, ka.filter(|s| *s != 0), n)
                }
                _ => unreachable!("lookup() routes only [Peer] keys here"),
            }
        } else {
            let iface = self
                .interface
                .as_mut()
                .expect("section is [Interface], so it exists");
            match field {
                PrivateKey => set_once(&mut iface.private_key, parse_key(value)?, n),
                Address => {
                    for item in list(value) {
                        iface.addresses.push(parse_prefix(item)?);
                    }
                    Ok(())
                }
                Dns => {
                    for item in list(value) {
                        match item.parse::<IpAddr>() {
                            Ok(ip) => iface.dns.push(ip),
                            Err(_) if is_domain(item) => iface.dns_search.push(item.to_string()),
                            Err(_) => {
                                return Err(format!(
                                    "{item:?} is neither an IP address nor a search domain"
                                ))
                            }
                        }
                    }
                    Ok(())
                }
                Mtu => {
                    let mtu = value
                        .parse::<u16>()
                        .ok()
                        .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
                        .ok_or_else(|| {
                            format!("{value:?} is not an MTU between {MIN_MTU} and {MAX_MTU}")
                        })?;
                    set_once(&mut iface.mtu, mtu, n)
                }
                ListenPort => {
                    let port = value
                        .parse::<u16>()
                        .map_err(|_| format!("{value:?} is not a port number (0 to 65535)"))?;
                    set_once(&mut iface.listen_port, port, n)
                }
                FwMark => {
                    let mark = parse_fwmark(value)?;
                    set_once(&mut iface.fwmark, mark, n)
                }
                Table => {
                    let table = parse_table(value)?;
                    set_once(&mut iface.table, table, n)
                }
                SaveConfig => {
                    let save = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("{value:?} is neither true nor false")),
                    };
                    set_once(&mut iface.save_config, save, n)
                }
                _ => unreachable!("lookup() routes only [Interface] keys here"),
            }
        }
    }

    fn finish(self) -> Result<Parsed, ParseError> {
        let Some(iface) = &self.interface else {
            return Err(self.err(
                None,
                None,
                "no [Interface] section; is this a wg-quick .conf file?",
            ));
        };
        let at_iface = Some(iface.header);
        let Some((private_key, _)) = iface.private_key.clone() else {
            return Err(self.err(
                at_iface,
                None,
                "[Interface] has no PrivateKey; the profile cannot work without it",
            ));
        };
        if iface.addresses.is_empty() {
            return Err(self.err(
                at_iface,
                None,
                "[Interface] has no Address; the provider's file should give one (e.g. Address = 10.64.0.2/32)",
            ));
        }
        if self.peers.is_empty() {
            return Err(self.err(
                None,
                None,
                "no [Peer] section; the profile needs a server to connect to",
            ));
        }
        let mut seen: HashMap<Key, usize> = HashMap::new();
        let mut peers = Vec::with_capacity(self.peers.len());
        for d in &self.peers {
            let at = Some(d.header);
            let Some((public_key, key_line)) = d.public_key.clone() else {
                return Err(self.err(at, None, "[Peer] has no PublicKey"));
            };
            if let Some(first) = seen.insert(public_key.clone(), d.header) {
                return Err(self.err(
                    Some(key_line),
                    Some("PublicKey"),
                    format!("same key as the [Peer] on line {first}"),
                ));
            }
            let Some((endpoint, _)) = d.endpoint.clone() else {
                return Err(self.err(
                    at,
                    None,
                    "[Peer] has no Endpoint; a client needs to know where the server is (Endpoint = host:port)",
                ));
            };
            peers.push(Peer {
                public_key,
                preshared_key: d.preshared_key.clone().map(|(k, _)| k),
                allowed_ips: d.allowed_ips.clone(),
                endpoint,
                persistent_keepalive: d.persistent_keepalive.and_then(|(ka, _)| ka),
            });
        }
        let config = WgQuickConfig {
            interface: Interface {
                private_key,
                addresses: iface.addresses.clone(),
                dns: iface.dns.clone(),
                dns_search: iface.dns_search.clone(),
                mtu: iface.mtu.map(|(v, _)| v),
                listen_port: iface.listen_port.map(|(v, _)| v),
                fwmark: iface.fwmark.and_then(|(v, _)| v),
                table: iface.table.clone().map(|(v, _)| v),
                save_config: iface.save_config.map(|(v, _)| v),
            },
            peers,
        };
        Ok(Parsed {
            config,
            ignored_hooks: self.hooks,
        })
    }
}

fn section_name(s: Section) -> &'static str {
    match s {
        Section::Interface => "[Interface]",
        Section::Peer => "[Peer]",
        Section::None => "no section",
    }
}

fn set_once<T>(slot: &mut Once<T>, value: T, line: usize) -> Result<(), String> {
    if let Some((_, first)) = slot {
        return Err(format!("set twice (first on line {first})"));
    }
    *slot = Some((value, line));
    Ok(())
}

/// The non-empty items of a comma-separated value.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_key(value: &str) -> Result<Key, String> {
    Key::from_base64(value).map_err(|e| match e {
        KeyError::Base64 => {
            "not a valid WireGuard key (not base64; a WireGuard key is 44 base64 characters)".into()
        }
        KeyError::Length(n) => {
            format!("not a valid WireGuard key (decodes to {n} bytes; a WireGuard key is 32 bytes)")
        }
    })
}

fn parse_endpoint(value: &str) -> Result<String, String> {
    let no_port = || format!("{value:?} has no port (write host:port, or [v6]:port for IPv6)");
    if value.len() > 255 || value.contains(char::is_whitespace) {
        return Err(format!("{value:?} is not a valid endpoint"));
    }
    let port = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{value:?} opens '[' but never closes it"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} in brackets is not an IPv6 address"))?;
        after.strip_prefix(':').ok_or_else(no_port)?
    } else {
        let (host, port) = value.rsplit_once(':').ok_or_else(no_port)?;
        if host.contains(':') {
            return if value.parse::<Ipv6Addr>().is_ok() {
                Err(no_port())
            } else {
                Err(format!(
                    "{value:?}: an IPv6 endpoint needs brackets, as in [2001:db8::1]:51820"
                ))
            };
        }
        let numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
        if numeric && host.parse::<Ipv4Addr>().is_err() {
            return Err(format!("{host:?} is not a valid IPv4 address"));
        }
        if !numeric && !is_domain(host) {
            return Err(format!("{host:?} is not a valid host name"));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(value.to_string()),
        _ if port.is_empty() => Err(no_port()),
        _ => Err(format!("{port:?} is not a port number (1 to 65535)")),
    }
}

fn parse_fwmark(value: &str) -> Result<Option<u32>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let parsed = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => value.parse::<u32>(),
    };
    parsed
        .map(|m| Some(m).filter(|m| *m != 0))
        .map_err(|_| format!("{value:?} is neither a 32-bit number nor \"off\""))
}

fn parse_table(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if lower == "off" || lower == "auto" {
        return Ok(lower);
    }
    let ok = value.parse::<u32>().is_ok()
        || value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not \"off\", \"auto\", a table number or a table name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIV: &str = "YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk+ANZ1sNh7W0=";
    const PUB: &str = "pL6WcdCkUR2/ocZsbaG6Q5cHr2Y+0a8F1yJ6hG4mQHs=";

    fn minimal(extra_iface: &str, extra_peer: &str) -> String {
        format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.2\n{extra_iface}\n[Peer]\nPublicKey = {PUB}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n{extra_peer}\n"
        )
    }

    #[test]
    fn bare_addresses_get_host_prefixes() {
        let text = minimal("Address = fd00::2", "");
        let c = parse("t.conf", &text).unwrap().config;
        assert_eq!(
            c.interface.addresses,
            vec![
                "10.0.0.2/32".parse::<IpNet>().unwrap(),
                "fd00::2/128".parse().unwrap()
            ]
        );
    }

    #[test]
    fn allowed_ips_host_bits_are_cleared() {
        let c = parse("t.conf", &minimal("", "AllowedIPs = 10.1.2.3/8"))
            .unwrap()
            .config;
        assert_eq!(
            c.peers[0].allowed_ips[1],
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn keepalive_off_and_zero_mean_none() {
        for v in ["off", "0", "OFF"] {
            let text = minimal("", &format!("PersistentKeepalive = {v}"));
            assert_eq!(
                parse("t.conf", &text).unwrap().config.peers[0].persistent_keepalive,
                None
            );
        }
    }

    #[test]
    fn fwmark_accepts_hex_decimal_and_off() {
        assert_eq!(parse_fwmark("0xca6c"), Ok(Some(0xca6c)));
        assert_eq!(parse_fwmark("51820"), Ok(Some(51820)));
        assert_eq!(parse_fwmark("off"), Ok(None));
        assert!(parse_fwmark("mark").is_err());
    }

    #[test]
    fn endpoint_shapes() {
        for ok in [
            "vpn.example.com:51820",
            "192.0.2.1:51820",
            "[2001:db8::1]:51820",
        ] {
            assert_eq!(parse_endpoint(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("vpn.example.com", "no port"),
            ("192.0.2.1:", "no port"),
            ("2001:db8::1", "no port"),
            ("2001:db8::1:51820", "needs brackets"),
            ("[2001:db8::1]", "no port"),
            ("[2001:db8::1:51820", "never closes"),
            ("192.0.2.1:99999", "not a port"),
            ("192.0.2.1:0", "not a port"),
            ("192.0.2.300:51820", "not a valid IPv4"),
            ("bad host:51820", "not a valid endpoint"),
        ] {
            let err = parse_endpoint(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn full_tunnel_is_detected_from_covering_halves() {
        let half = parse("t.conf", &minimal("", "")).unwrap().config;
        assert!(half.is_full_tunnel());
        let mut split = half.clone();
        split.peers[0].allowed_ips = vec!["0.0.0.0/1".parse().unwrap()];
        assert!(!split.is_full_tunnel());
        split.peers[0]
            .allowed_ips
            .push("128.0.0.0/1".parse().unwrap());
        assert!(split.is_full_tunnel());
    }

    #[test]
    fn tunnel_config_carries_everything_the_helper_needs() {
        let c = parse(
            "t.conf",
            &minimal("DNS = 10.0.0.1, corp.example\nMTU = 1380", ""),
        )
        .unwrap()
        .config;
        let t = c.to_tunnel_config("office");
        assert_eq!(t.profile, "office");
        assert_eq!(t.dns, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.mtu, Some(1380));
        assert_eq!(t.peers[0].endpoint, "192.0.2.1:51820");
        assert_eq!(t.routing, RoutingConfig::default());
        t.validate().unwrap();
    }
}
