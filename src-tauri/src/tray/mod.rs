//! The tray: the state in one line, Connect (to the last choice), a "Connect to" submenu with
//! the fastest server anywhere and in each country, Disconnect, Show and Quit.
//!
//! - **On Linux it is a process of its own**, `underpass-tray` ([`process`]): a
//!   StatusNotifierItem whose menu is exported over D-Bus ([`sni`], ksni), the helper link,
//!   notifications and connect-on-launch, with no toolkit and no webview, so the state a VPN
//!   client lives in weighs a few MiB. "Show Underpass" starts the window process
//!   (`underpass-gui`), which ends when its window closes; the window process starts the tray
//!   when a tray host is there and none runs. The GUI test reads and clicks the menu over D-Bus.
//! - **On Windows and macOS** the window process keeps the tray itself ([`in_app`], Tauri's
//!   tray icon), as before; that path has not run.
//!
//! Both draw the same [`Entries`] and act through [`action`].

#[cfg(not(target_os = "linux"))]
pub mod in_app;
#[cfg(target_os = "linux")]
pub mod process;
#[cfg(target_os = "linux")]
mod sni;

use underpass_proto::{Request, Status};

use crate::connect::Target;
use crate::core::Core;
use crate::{desktop, helper};

/// The id of a "Connect to" entry: `fastest:` for anywhere, `fastest:SE` for a country.
pub const FASTEST: &str = "fastest:";

/// What a click on a menu entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// To `target`, or to the last choice.
    Connect(Option<Target>),
    Disconnect,
    Show,
    Quit,
}

/// The action of the entry `id`. A tray host may deliver clicks on disabled entries: Connect
/// while a tunnel is up does nothing ("Connect to" switches servers on purpose).
pub fn action(id: &str, tunnel_up: bool) -> Option<Action> {
    match id {
        "quit" => Some(Action::Quit),
        "show" => Some(Action::Show),
        "connect" => (!tunnel_up).then_some(Action::Connect(None)),
        "disconnect" => Some(Action::Disconnect),
        other => other.strip_prefix(FASTEST).map(|cc| {
            Action::Connect(Some(Target::Fastest {
                country: (!cc.is_empty()).then(|| cc.to_string()),
            }))
        }),
    }
}

/// The state line and which entries can be used, from what the helper reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entries {
    pub state: String,
    pub connect: bool,
    pub countries: bool,
    pub disconnect: bool,
}

impl Entries {
    pub fn of(status: Option<&Status>) -> Entries {
        let connected = status.is_some_and(|s| s.state.wants_tunnel());
        Entries {
            state: desktop::tray_label(status),
            connect: status.is_some() && !connected,
            countries: status.is_some(),
            disconnect: connected,
        }
    }
}

/// The tray's Disconnect, telling the user if the helper did not take it.
pub async fn disconnect(core: &Core) {
    if let Err(e) = helper::request(
        &core.options.socket,
        Request::Disconnect,
        helper::REQUEST_TIMEOUT,
    )
    .await
    {
        desktop::notify("Underpass: could not disconnect", &e.to_string());
    }
}

/// Carries out Connect and Disconnect; Show and Quit are the caller's.
pub async fn act(core: &Core, action: Action) {
    match action {
        Action::Connect(target) => {
            core.connect_or_notify(target, "Underpass: could not connect")
                .await
        }
        Action::Disconnect => disconnect(core).await,
        Action::Show | Action::Quit => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::{FirewallState, TunnelState};

    #[test]
    fn entries_map_to_actions_and_connect_is_ignored_while_a_tunnel_is_up() {
        assert_eq!(action("connect", false), Some(Action::Connect(None)));
        assert_eq!(action("connect", true), None);
        assert_eq!(
            action("fastest:SE", true),
            Some(Action::Connect(Some(Target::Fastest {
                country: Some("SE".into())
            })))
        );
        assert_eq!(
            action("fastest:", false),
            Some(Action::Connect(Some(Target::Fastest { country: None })))
        );
        assert_eq!(action("disconnect", false), Some(Action::Disconnect));
        assert_eq!(action("show", true), Some(Action::Show));
        assert_eq!(action("quit", true), Some(Action::Quit));
        assert_eq!(action("state", true), None);
    }

    #[test]
    fn entries_follow_the_helper() {
        let none = Entries::of(None);
        assert_eq!(none.state, "Helper not running");
        assert!(!none.connect && !none.countries && !none.disconnect);
        let mut s = Status::disconnected();
        s.firewall = FirewallState::Open;
        let idle = Entries::of(Some(&s));
        assert!(idle.connect && idle.countries && !idle.disconnect);
        s.state = TunnelState::Reconnecting;
        let healing = Entries::of(Some(&s));
        assert!(!healing.connect && healing.countries && healing.disconnect);
    }
}
