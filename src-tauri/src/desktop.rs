//! Desktop integration that does not need a window: which notification a state change or a
//! self-test deserves, showing it, and the tray's texts. Kept free of Tauri so it can be
//! tested.

use underpass_profile::Catalog;
use underpass_proto::{FirewallState, SelfTestKind, SelfTestReport, Status, TunnelState, Verdict};

/// How long reconnecting may take before the user hears about it.
const RECONNECT_NOTICE_SECS: u64 = 30;

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A notification to show: title and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub title: String,
    pub body: String,
}

/// What changed between two reported statuses that a user should hear about, if anything.
/// A tunnel that goes from connected to disconnected with no error was asked to (by the app,
/// the tray or the CLI: the helper heals every other drop by itself), so only an error is
/// "unexpected".
pub fn notification_for(prev: Option<&Status>, next: &Status) -> Option<Note> {
    let was = prev.map(|p| p.state);
    let profile = next.profile.as_deref().unwrap_or("the server");
    let blocked_now = next.firewall == FirewallState::Blocking;
    let blocked_before = prev.map(|p| p.firewall == FirewallState::Blocking) == Some(true);
    if next.state == TunnelState::Connected && was != Some(TunnelState::Connected) {
        let healed = matches!(was, Some(TunnelState::Reconnecting | TunnelState::Offline));
        return Some(Note {
            title: if healed {
                "Underpass: reconnected".into()
            } else {
                "Underpass: connected".into()
            },
            body: format!("Your traffic now goes through {profile}."),
        });
    }
    // Healing that takes long is worth a word, once, as it passes 30 s.
    let long = |s: Option<&Status>| {
        s.and_then(|s| s.reconnect.as_ref())
            .is_some_and(|r| r.since_secs >= RECONNECT_NOTICE_SECS)
    };
    if long(Some(next)) && !long(prev) {
        let r = next.reconnect.as_ref().expect("checked above");
        return Some(Note {
            title: "Underpass: still reconnecting".into(),
            body: format!(
                "{} Underpass keeps trying{}.",
                capitalized(r.reason.describe()),
                if next.firewall == FirewallState::Open {
                    ""
                } else {
                    "; the kill switch holds your traffic back meanwhile"
                }
            ),
        });
    }
    if blocked_now && !blocked_before && next.state != TunnelState::Connected {
        return Some(Note {
            title: "Underpass: blocked by the kill switch".into(),
            body: "The tunnel is down, so the kill switch is holding all traffic back.".into(),
        });
    }
    if was == Some(TunnelState::Connected)
        && (next.state == TunnelState::Error || next.error.is_some())
    {
        return Some(Note {
            title: "Underpass: disconnected unexpectedly".into(),
            body: next
                .error
                .clone()
                .unwrap_or_else(|| "The tunnel went down.".into()),
        });
    }
    None
}

/// The notification for a finished self-test: only a failure is worth interrupting for.
pub fn self_test_note(report: &SelfTestReport) -> Option<Note> {
    if report.verdict != Verdict::Fail {
        return None;
    }
    let name = match report.test {
        SelfTestKind::Dns => "DNS-leak test",
        SelfTestKind::KillSwitch => "kill-switch self-test",
    };
    let n = report.leaks.len();
    Some(Note {
        title: format!("Underpass: {name} failed"),
        body: format!(
            "{n} packet{} left outside the tunnel. Open Diagnostics for the evidence.",
            if n == 1 { "" } else { "s" }
        ),
    })
}

/// Shows `title` and `body` as a desktop notification, without blocking. Without a
/// notification server (no session bus, a bare window manager) it is logged and dropped.
pub fn notify(title: &str, body: &str) {
    let (title, body) = (title.to_string(), body.to_string());
    std::thread::spawn(move || {
        if let Err(e) = notify_rust::Notification::new()
            .appname("Underpass")
            .summary(&title)
            .body(&body)
            .show()
        {
            tracing::info!("notification not shown ({e}): {title}");
        }
    });
}

/// Whether a tray host (a StatusNotifierWatcher) is on the session bus, asked within 2 s.
pub async fn tray_host_present() -> bool {
    let ask = async {
        let bus = zbus::Connection::session().await?;
        let dbus = zbus::fdo::DBusProxy::new(&bus).await?;
        let name = zbus::names::BusName::try_from("org.kde.StatusNotifierWatcher")?;
        dbus.name_has_owner(name).await.map_err(zbus::Error::from)
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), ask).await,
        Ok(Ok(true))
    )
}

/// The tray's "Connect to" entries: the fastest server anywhere (id ""), then each known
/// country by its code, with its flag, name and server count. Windows has no flag emoji (it
/// would show the letter pair), so its native menu shows the name alone.
pub fn tray_countries(catalog: &Catalog) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "Fastest server".to_string())];
    for c in &catalog.countries {
        if let Some(code) = &c.code {
            let flag = if cfg!(windows) {
                ""
            } else {
                c.flag.as_deref().unwrap_or_default()
            };
            let n = c.servers.len();
            out.push((
                code.clone(),
                format!(
                    "{flag} {} ({n} server{})",
                    c.name,
                    if n == 1 { "" } else { "s" }
                )
                .trim_start()
                .to_string(),
            ));
        }
    }
    out
}

/// The tray's one-line state, from what the helper reported (`None`: no helper).
pub fn tray_label(status: Option<&Status>) -> String {
    match status {
        None => "Helper not running".into(),
        Some(s) if s.state == TunnelState::Offline => "No network; waiting".into(),
        Some(s) if s.state == TunnelState::Reconnecting => match &s.reconnect {
            Some(r) => format!("Reconnecting (attempt {})…", r.attempt),
            None => "Reconnecting…".into(),
        },
        Some(s) if s.firewall == FirewallState::Blocking && s.state != TunnelState::Connected => {
            "Blocked by the kill switch".into()
        }
        Some(s) => match (s.state, &s.profile) {
            (TunnelState::Connected, Some(p)) => format!("Connected to {p}"),
            (TunnelState::Connecting, Some(p)) => format!("Connecting to {p}…"),
            (state, _) => {
                let mut t = state.to_string();
                t[..1].make_ascii_uppercase();
                t
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::{ReconnectReason, ReconnectStatus};

    fn healing(since_secs: u64) -> Status {
        let mut s = status(TunnelState::Reconnecting, FirewallState::TunnelOnly);
        s.reconnect = Some(ReconnectStatus {
            reason: ReconnectReason::ServerNotResponding,
            attempt: 2,
            since_secs,
            last_answer_secs: Some(since_secs + 15),
            action: "opening a new socket".into(),
            last_error: None,
        });
        s
    }

    #[test]
    fn reconnecting_for_30_s_notifies_once_and_recovery_says_reconnected() {
        assert_eq!(notification_for(Some(&healing(28)), &healing(29)), None);
        let n = notification_for(Some(&healing(29)), &healing(30)).unwrap();
        assert_eq!(n.title, "Underpass: still reconnecting");
        assert!(
            n.body.contains("The server is not responding"),
            "{}",
            n.body
        );
        assert!(n.body.contains("kill switch"), "{}", n.body);
        assert_eq!(notification_for(Some(&healing(30)), &healing(31)), None);
        let back = status(TunnelState::Connected, FirewallState::TunnelOnly);
        let n = notification_for(Some(&healing(40)), &back).unwrap();
        assert_eq!(n.title, "Underpass: reconnected");
        assert_eq!(tray_label(Some(&healing(3))), "Reconnecting (attempt 2)…");
    }

    fn status(state: TunnelState, firewall: FirewallState) -> Status {
        Status {
            state,
            profile: Some("se-sto-wg-001".into()),
            firewall,
            ..Status::disconnected()
        }
    }

    #[test]
    fn connecting_then_connected_notifies_once() {
        let a = status(TunnelState::Connecting, FirewallState::Open);
        let b = status(TunnelState::Connected, FirewallState::TunnelOnly);
        let n = notification_for(Some(&a), &b).unwrap();
        assert!(n.title.contains("connected"));
        assert_eq!(notification_for(Some(&b), &b), None);
    }

    #[test]
    fn a_drop_with_an_error_is_reported_and_an_asked_for_disconnect_is_not() {
        let a = status(TunnelState::Connected, FirewallState::TunnelOnly);
        let mut b = status(TunnelState::Error, FirewallState::Open);
        b.error = Some("no handshake for 180 s".into());
        let n = notification_for(Some(&a), &b).unwrap();
        assert_eq!(n.body, "no handshake for 180 s");
        // Disconnected without an error: someone asked (this app, the tray or the CLI).
        let c = status(TunnelState::Disconnected, FirewallState::Open);
        assert_eq!(notification_for(Some(&a), &c), None);
        // A disconnect the helper made, with its reason, is reported.
        let mut d = c.clone();
        d.error = Some("the profile's bundle expired".into());
        assert!(notification_for(Some(&a), &d).is_some());
    }

    #[test]
    fn kill_switch_block_is_reported_and_shown_in_the_tray() {
        let a = status(TunnelState::Connected, FirewallState::TunnelOnly);
        let b = status(TunnelState::Error, FirewallState::Blocking);
        assert!(notification_for(Some(&a), &b)
            .unwrap()
            .title
            .contains("kill switch"));
        assert_eq!(tray_label(Some(&b)), "Blocked by the kill switch");
        assert_eq!(tray_label(None), "Helper not running");
        assert_eq!(
            tray_label(Some(&status(
                TunnelState::Disconnected,
                FirewallState::Open
            ))),
            "Disconnected"
        );
    }

    #[test]
    fn only_a_failed_self_test_notifies() {
        let mut report = SelfTestReport {
            test: SelfTestKind::KillSwitch,
            verdict: Verdict::Pass,
            duration_ms: 1,
            captured_on: vec![],
            sent: vec![],
            leaks: vec![],
            resolvers: vec![],
            notes: vec![],
        };
        assert_eq!(self_test_note(&report), None);
        report.verdict = Verdict::Inconclusive;
        assert_eq!(self_test_note(&report), None);
        report.verdict = Verdict::Fail;
        let n = self_test_note(&report).unwrap();
        assert_eq!(n.title, "Underpass: kill-switch self-test failed");
    }

    #[test]
    fn the_tray_lists_the_fastest_server_then_each_known_country() {
        use underpass_profile::{CatalogServer, ProfileName};
        let server = |p: &str, cc: Option<&str>| CatalogServer {
            profile: ProfileName::new(p).unwrap(),
            server: None,
            country: cc.map(Into::into),
            city: None,
            endpoint: "192.0.2.1:51820".into(),
            public_key: underpass_proto::Key([7; 32]),
            organization: None,
        };
        let catalog = Catalog::build(vec![
            server("se-1", Some("SE")),
            server("se-2", Some("SE")),
            server("de-1", Some("DE")),
            server("home", None),
        ]);
        let entries = tray_countries(&catalog);
        assert_eq!(
            entries,
            vec![
                ("".into(), "Fastest server".into()),
                ("DE".into(), "🇩🇪 Germany (1 server)".into()),
                ("SE".into(), "🇸🇪 Sweden (2 servers)".into()),
            ]
        );
    }
}
