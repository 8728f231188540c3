//! Turning results into the text a person reads. Pure functions, so they are unit-tested;
//! `--json` output does not come through here (it is the serde form of the same types).

use std::fmt::{Display, Write as _};

use ipnet::IpNet;
use underpass_profile::{IgnoredHook, ImportReport, ProfileSummary};
use underpass_proto::{FirewallState, ReconnectStatus, Status, TunnelConfig, TunnelState};

/// `Imported "se-sto" (1 peer, endpoint 192.0.2.1:51820, full tunnel)`
pub fn imported(report: &ImportReport) -> String {
    let s = &report.summary;
    format!(
        "Imported \"{}\" ({}, endpoint {}, {})",
        s.name,
        plural(s.peers, "peer"),
        s.endpoint,
        if s.full_tunnel {
            "full tunnel"
        } else {
            "split tunnel"
        }
    )
}

/// The stderr warning for hook lines that were dropped on import.
pub fn hooks_warning(file: &str, hooks: &[IgnoredHook]) -> String {
    let mut out = format!(
        "underpass: warning: {file} has {} that Underpass did NOT import and will never execute:\n",
        plural(hooks.len(), "hook command")
    );
    for h in hooks {
        let _ = writeln!(out, "  line {}: {} = {}", h.line, h.key, h.command);
    }
    out.push_str(
        "If the tunnel needs what they did (firewall rules, routes, sysctls), set that up \
         separately; Underpass itself handles routes, DNS and the kill switch.\n",
    );
    out
}

/// The `underpass profiles` table.
pub fn profiles_table(profiles: &[ProfileSummary]) -> String {
    if profiles.is_empty() {
        return "No profiles yet. Import one with `underpass import FILE.conf`.\n".into();
    }
    let rows: Vec<[String; 3]> = profiles
        .iter()
        .map(|p| [p.name.to_string(), p.endpoint.clone(), join(&p.addresses)])
        .collect();
    table(&["NAME", "ENDPOINT", "ADDRESSES"], &rows)
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Connected to se-sto: interface up0, addresses 10.64.1.2/32, endpoint 192.0.2.10:51820`
pub fn connected(profile: &str, status: &Status) -> String {
    let mut parts = Vec::new();
    if let Some(i) = &status.interface {
        parts.push(format!("interface {i}"));
    }
    if !status.addresses.is_empty() {
        parts.push(format!("addresses {}", join(&status.addresses)));
    }
    if let Some(e) = &status.endpoint {
        parts.push(format!("endpoint {e}"));
    }
    if parts.is_empty() {
        format!("Connected to {profile}")
    } else {
        format!("Connected to {profile}: {}", parts.join(", "))
    }
}

/// The human form of `underpass status`: one `Label: value` line per known fact.
/// "de-fra-wg-001 (2 of 3 of your choice)", for a choice of more than one server.
fn server_in_use(u: &underpass_proto::ServerInUse) -> String {
    let name = match &u.server {
        Some(id) => format!("{} --server {id}", u.profile),
        None => u.profile.clone(),
    };
    format!("{name} ({} of {} of your choice)", u.position, u.of)
}

pub fn status(s: &Status) -> String {
    let mut lines: Vec<(&str, String)> = vec![("State", s.state.to_string())];
    if let Some(p) = &s.profile {
        lines.push(("Profile", p.clone()));
    }
    if let Some(i) = &s.interface {
        lines.push(("Interface", i.clone()));
    }
    if !s.addresses.is_empty() {
        lines.push(("Addresses", join(&s.addresses)));
    }
    if let Some(e) = &s.endpoint {
        lines.push(("Endpoint", e.to_string()));
    }
    if let Some(u) = s.server_in_use.as_ref().filter(|u| u.of > 1) {
        lines.push(("Server", server_in_use(u)));
    }
    if let Some(r) = &s.routing {
        let mode = if r.full_tunnel {
            "full tunnel".to_string()
        } else if r.include.is_empty() {
            "no routes (Table = off)".to_string()
        } else {
            "split tunnel".to_string()
        };
        let mut extra = Vec::new();
        if !r.include.is_empty() {
            extra.push(format!("{} included", plural(r.include.len(), "prefix")));
        }
        if !r.exclude.is_empty() {
            extra.push(format!("{} excluded", plural(r.exclude.len(), "prefix")));
        }
        let text = if extra.is_empty() {
            mode
        } else {
            format!("{mode} ({})", extra.join(", "))
        };
        lines.push(("Routing", text));
    }
    if let Some(r) = &s.reconnect {
        lines.push(("Reason", r.reason.describe().to_string()));
        if r.attempt > 0 {
            lines.push(("Attempt", format!("{} ({})", r.attempt, r.action)));
        } else {
            lines.push(("Waiting", r.action.clone()));
        }
        lines.push(("Since", human_age(r.since_secs)));
        if let Some(a) = r.last_answer_secs {
            lines.push(("Last answer", human_age(a)));
        }
        if let Some(e) = &r.last_error {
            lines.push(("Last error", e.clone()));
        }
    }
    let tunnel_exists = matches!(
        s.state,
        TunnelState::Connecting
            | TunnelState::Connected
            | TunnelState::Reconnecting
            | TunnelState::Offline
            | TunnelState::Disconnecting
    );
    if tunnel_exists {
        let handshake = match s.last_handshake_secs {
            Some(secs) => human_age(secs),
            None => "none yet".into(),
        };
        lines.push(("Handshake", handshake));
        lines.push((
            "Transfer",
            format!(
                "{} received, {} sent",
                human_bytes(s.rx_bytes),
                human_bytes(s.tx_bytes)
            ),
        ));
    }
    if let Some(d) = &s.dns {
        lines.push((
            "DNS",
            format!("{} (through {})", join(&d.servers), d.method),
        ));
    }
    let firewall = match s.firewall {
        FirewallState::Open => "not blocking",
        FirewallState::TunnelOnly => "only the tunnel may pass",
        FirewallState::Blocking => "BLOCKING all traffic outside the tunnel",
    };
    lines.push(("Kill switch", format!("{} ({firewall})", s.kill_switch)));
    if s.lan_access {
        lines.push(("LAN access", "allowed".to_string()));
    }
    if let Some(p) = &s.policy {
        lines.push((
            "Policy",
            format!(
                "{} (serial {}): kill switch at least {}{}{}",
                p.organization,
                p.serial,
                p.policy.effective_min_kill_switch(),
                if p.policy.split_tunnel_allowed {
                    ""
                } else {
                    ", no split tunnel"
                },
                if p.policy.lan_access_allowed {
                    ""
                } else {
                    ", no LAN access"
                },
            ),
        ));
    }
    if let Some(m) = &s.managed {
        lines.push((
            "Managed by",
            format!("{} (policy in {})", m.organization, m.source),
        ));
        for l in &m.locked {
            lines.push((
                "  Locked",
                format!("{}: {}", l.setting.replace('_', " "), l.reason),
            ));
        }
    }
    if let Some(e) = &s.error {
        lines.push(("Error", e.clone()));
    }
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect()
}

/// One sentence on what the helper does about a tunnel that does not work, for errors.
pub fn healing(r: &ReconnectStatus) -> String {
    let mut text = r.reason.describe().to_string();
    if let Some(e) = &r.last_error {
        text.push_str(&format!(" ({e})"));
    }
    if r.attempt > 0 {
        text.push_str(&format!(
            ". The helper keeps trying (attempt {}: {})",
            r.attempt, r.action
        ));
    } else {
        text.push_str(&format!(". The helper is {}", r.action));
    }
    text.push_str(
        " while the kill switch holds, as it is set; `underpass status --follow` shows progress, \
         `underpass disconnect` stops it",
    );
    text
}

/// Warnings about `--include`/`--exclude` that cannot do what the user likely expects.
pub fn routing_warnings(config: &TunnelConfig) -> Vec<String> {
    let allowed: Vec<&IpNet> = config.peers.iter().flat_map(|p| &p.allowed_ips).collect();
    config
        .routing
        .include
        .iter()
        .filter(|inc| !allowed.iter().any(|a| a.contains(*inc)))
        .map(|inc| {
            format!(
                "--include {inc} is outside every peer's AllowedIPs; WireGuard will drop that traffic"
            )
        })
        .collect()
}

/// Binary units, one decimal: `0 B`, `1023 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB"; say "1.0 MiB" instead.
    if format!("{value:.1}") == "1024.0" && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `5 s ago`, `2 min 5 s ago`, `1 h 2 min ago`, `3 d 4 h ago`.
pub fn human_age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let text = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    };
    format!("{text} ago")
}

fn plural(n: usize, word: &str) -> String {
    match (n, word) {
        (1, _) => format!("1 {word}"),
        (_, "prefix") => format!("{n} prefixes"),
        _ => format!("{n} {word}s"),
    }
}

fn join<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_profile::ProfileName;
    use underpass_proto::RoutingSummary;

    fn summary(name: &str, peers: usize, full: bool) -> ProfileSummary {
        ProfileSummary {
            name: ProfileName::new(name).unwrap(),
            source: None,
            endpoint: "192.0.2.1:51820".into(),
            addresses: vec![
                "10.64.0.2/32".parse().unwrap(),
                "fd00::2/128".parse().unwrap(),
            ],
            peers,
            full_tunnel: full,
            imported_at: 0,
            country: None,
            city: None,
            keystore: underpass_profile::Keystore::File,
            bundle: None,
        }
    }

    #[test]
    fn import_line_names_peers_endpoint_and_mode() {
        let r = ImportReport {
            summary: summary("se-sto", 1, true),
            replaced: false,
            previous_serial: None,
            generated_public_key: None,
        };
        assert_eq!(
            imported(&r),
            "Imported \"se-sto\" (1 peer, endpoint 192.0.2.1:51820, full tunnel)"
        );
        let r = ImportReport {
            summary: summary("lab", 2, false),
            replaced: true,
            previous_serial: None,
            generated_public_key: None,
        };
        assert_eq!(
            imported(&r),
            "Imported \"lab\" (2 peers, endpoint 192.0.2.1:51820, split tunnel)"
        );
    }

    #[test]
    fn hook_warning_lists_every_line() {
        let hooks = vec![
            IgnoredHook {
                key: "PostUp".into(),
                line: 7,
                command: "iptables -A FORWARD -j ACCEPT".into(),
            },
            IgnoredHook {
                key: "PostDown".into(),
                line: 8,
                command: "iptables -D FORWARD -j ACCEPT".into(),
            },
        ];
        let w = hooks_warning("lab.conf", &hooks);
        assert!(w.starts_with(
            "underpass: warning: lab.conf has 2 hook commands that Underpass did NOT import and will never execute:\n"
        ));
        assert!(w.contains("\n  line 7: PostUp = iptables -A FORWARD -j ACCEPT\n"));
        assert!(w.contains("\n  line 8: PostDown = iptables -D FORWARD -j ACCEPT\n"));
    }

    #[test]
    fn profiles_table_aligns_columns() {
        let t = profiles_table(&[summary("a", 1, true), summary("longer-name", 1, true)]);
        assert_eq!(
            t,
            "NAME         ENDPOINT         ADDRESSES\n\
             a            192.0.2.1:51820  10.64.0.2/32, fd00::2/128\n\
             longer-name  192.0.2.1:51820  10.64.0.2/32, fd00::2/128\n"
        );
        assert!(profiles_table(&[]).contains("underpass import"));
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(0), "0 s ago");
        assert_eq!(human_age(59), "59 s ago");
        assert_eq!(human_age(125), "2 min 5 s ago");
        assert_eq!(human_age(3720), "1 h 2 min ago");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600 + 5), "3 d 4 h ago");
    }

    fn connected_status() -> Status {
        Status {
            state: TunnelState::Connected,
            profile: Some("se-sto".into()),
            interface: Some("underpass0".into()),
            addresses: vec!["10.64.1.2/32".parse().unwrap()],
            endpoint: Some("192.0.2.10:51820".parse().unwrap()),
            rx_bytes: 1536,
            tx_bytes: 200,
            last_handshake_secs: Some(12),
            error: None,
            mtu: Some(1420),
            routing: Some(RoutingSummary {
                full_tunnel: true,
                include: vec![],
                exclude: vec!["192.168.0.0/16".parse().unwrap()],
                fwmark: 0xca6c,
                table: 51820,
            }),
            peers: vec![],
            ..Status::disconnected()
        }
    }

    #[test]
    fn connected_line_names_interface_addresses_endpoint() {
        assert_eq!(
            connected("se-sto", &connected_status()),
            "Connected to se-sto: interface underpass0, addresses 10.64.1.2/32, endpoint 192.0.2.10:51820"
        );
    }

    #[test]
    fn status_shows_a_line_per_fact() {
        assert_eq!(
            status(&connected_status()),
            "State:       connected\n\
             Profile:     se-sto\n\
             Interface:   underpass0\n\
             Addresses:   10.64.1.2/32\n\
             Endpoint:    192.0.2.10:51820\n\
             Routing:     full tunnel (1 prefix excluded)\n\
             Handshake:   12 s ago\n\
             Transfer:    1.5 KiB received, 200 B sent\n\
             Kill switch: auto (not blocking)\n"
        );
    }

    #[test]
    fn disconnected_status_is_short_and_shows_the_error() {
        assert_eq!(
            status(&Status::disconnected()),
            "State:       disconnected\nKill switch: auto (not blocking)\n"
        );
        let mut s = Status::disconnected();
        s.state = TunnelState::Error;
        s.error = Some("the endpoint vpn.example.com does not resolve".into());
        assert_eq!(
            status(&s),
            "State:       error\n\
             Kill switch: auto (not blocking)\n\
             Error:       the endpoint vpn.example.com does not resolve\n"
        );
        s.state = TunnelState::Connecting;
        s.error = None;
        assert!(status(&s).contains("Handshake:   none yet\n"));
    }

    #[test]
    fn a_managed_machine_says_who_manages_it_and_what_is_locked() {
        let mut s = Status::disconnected();
        s.managed = Some(underpass_proto::ManagedStatus::describe(
            "ACME IT",
            "/etc/underpass/policy.json",
            &underpass_proto::Policy {
                min_kill_switch: underpass_proto::KillSwitchMode::Auto,
                split_tunnel_allowed: false,
                lan_access_allowed: true,
                dns_locked: false,
            },
            true,
            None,
        ));
        let text = status(&s);
        assert!(
            text.contains("Managed by:  ACME IT (policy in /etc/underpass/policy.json)\n")
                && text.contains("  Locked:    kill switch: at least \"auto\"\n")
                && text.contains("  Locked:    split tunnel: not allowed\n")
                && text.contains("  Locked:    profiles: only profiles signed by a key your organization installed\n"),
            "{text}"
        );
    }

    #[test]
    fn include_outside_allowed_ips_is_warned_about() {
        let mut config = TunnelConfig::example();
        config.addresses = vec!["10.10.0.5/24".parse().unwrap()];
        config.peers[0].allowed_ips = vec!["10.10.0.0/16".parse().unwrap()];
        config.routing.include = vec![
            "10.10.5.0/24".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ];
        assert_eq!(
            routing_warnings(&config),
            ["--include 198.51.100.0/24 is outside every peer's AllowedIPs; WireGuard will drop that traffic"]
        );
    }
}
