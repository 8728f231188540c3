//! The tunnel state machine, free of I/O.
//!
//! Every transition is in [`State::on`]: the state, the input, the next state and the one
//! effect the daemon must carry out (bring a tunnel up, or tear it down). The daemon performs the
//! effect and feeds its outcome back as the next input. Because the machine never touches the
//! system, its whole transition table is unit-tested below, without root.
//!
//! Only the user's Disconnect leads to `Disconnected`, and only what retrying cannot fix (an
//! invalid configuration, a policy refusal) to `Error`. Everything else that goes wrong (a
//! silent server, a failed setup, a changed network) is `Reconnecting`, or `Offline` while no
//! route reaches the server; the ladder in [`crate::health`] paces the attempts, forever.

use std::time::Instant;

use underpass_proto::{ReconnectReason, TunnelState};

use crate::health::Ladder;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Disconnected,
    Connecting {
        profile: String,
    },
    Connected {
        profile: String,
    },
    /// Healing: the ladder says which attempt runs and when the next one starts.
    Reconnecting {
        profile: String,
        ladder: Ladder,
    },
    /// No route reaches the server; nothing is sent until one does.
    Offline {
        profile: String,
        since: Instant,
    },
    Disconnecting {
        then: AfterTeardown,
    },
    Error {
        reason: String,
    },
}

/// What happens once a teardown has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterTeardown {
    /// Stay down.
    Idle,
    /// Report this failure.
    Fail(String),
    /// Bring up this profile (a server switch).
    Connect(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    ConnectRequested {
        profile: String,
    },
    DisconnectRequested,
    HandshakeCompleted,
    /// What retrying cannot fix; the reason is for the user.
    Failed(String),
    /// The tunnel stopped working, or could not be set up, for a reason that retrying may fix.
    Lost {
        reason: ReconnectReason,
        now: Instant,
    },
    /// No route reaches the server any more.
    NoRoute {
        now: Instant,
    },
    /// A route to the server is back.
    RouteBack {
        now: Instant,
    },
    TornDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    BringUp,
    TearDown,
}

impl State {
    /// The next state and effect, or `None` when the input means nothing in this state (for
    /// example a handshake reported after the user already disconnected).
    pub fn on(&self, input: Input) -> Option<(State, Effect)> {
        use Input::*;
        use State::*;
        let next = match (self, input) {
            (Disconnected | Error { .. }, ConnectRequested { profile }) => {
                (Connecting { profile }, Effect::BringUp)
            }
            (
                Connecting { .. } | Connected { .. } | Reconnecting { .. } | Offline { .. },
                ConnectRequested { profile },
            ) => (
                Disconnecting {
                    then: AfterTeardown::Connect(profile),
                },
                Effect::TearDown,
            ),
            (Disconnecting { .. }, ConnectRequested { profile }) => (
                Disconnecting {
                    then: AfterTeardown::Connect(profile),
                },
                Effect::None,
            ),
            (Connecting { profile } | Reconnecting { profile, .. }, HandshakeCompleted) => (
                Connected {
                    profile: profile.clone(),
                },
                Effect::None,
            ),
            (
                Connecting { .. } | Connected { .. } | Reconnecting { .. } | Offline { .. },
                Failed(reason),
            ) => (
                Disconnecting {
                    then: AfterTeardown::Fail(reason),
                },
                Effect::TearDown,
            ),
            (Connecting { profile } | Connected { profile }, Lost { reason, now }) => (
                Reconnecting {
                    profile: profile.clone(),
                    ladder: Ladder::start(now, reason).0,
                },
                Effect::None,
            ),
            // A failed attempt while healing: the ladder already paces the next one.
            (Reconnecting { .. }, Lost { .. }) => return None,
            (
                Connecting { profile } | Connected { profile } | Reconnecting { profile, .. },
                NoRoute { now },
            ) => (
                Offline {
                    profile: profile.clone(),
                    since: now,
                },
                Effect::None,
            ),
            (Offline { profile, .. }, RouteBack { now }) => (
                Reconnecting {
                    profile: profile.clone(),
                    ladder: Ladder::start(now, ReconnectReason::NetworkChanged).0,
                },
                Effect::None,
            ),
            (
                Connecting { .. } | Connected { .. } | Reconnecting { .. } | Offline { .. },
                DisconnectRequested,
            ) => (
                Disconnecting {
                    then: AfterTeardown::Idle,
                },
                Effect::TearDown,
            ),
            (Disconnecting { .. }, DisconnectRequested) => (
                Disconnecting {
                    then: AfterTeardown::Idle,
                },
                Effect::None,
            ),
            (Disconnected | Error { .. }, DisconnectRequested) => (Disconnected, Effect::None),
            (Disconnecting { then }, TornDown) => match then {
                AfterTeardown::Idle => (Disconnected, Effect::None),
                AfterTeardown::Fail(reason) => (
                    Error {
                        reason: reason.clone(),
                    },
                    Effect::None,
                ),
                AfterTeardown::Connect(profile) => (
                    Connecting {
                        profile: profile.clone(),
                    },
                    Effect::BringUp,
                ),
            },
            _ => return None,
        };
        Some(next)
    }

    pub fn public(&self) -> TunnelState {
        match self {
            State::Disconnected => TunnelState::Disconnected,
            State::Connecting { .. } => TunnelState::Connecting,
            State::Connected { .. } => TunnelState::Connected,
            State::Reconnecting { .. } => TunnelState::Reconnecting,
            State::Offline { .. } => TunnelState::Offline,
            State::Disconnecting { .. } => TunnelState::Disconnecting,
            State::Error { .. } => TunnelState::Error,
        }
    }

    pub fn profile(&self) -> Option<&str> {
        match self {
            State::Connecting { profile }
            | State::Connected { profile }
            | State::Reconnecting { profile, .. }
            | State::Offline { profile, .. } => Some(profile),
            State::Disconnecting {
                then: AfterTeardown::Connect(profile),
            } => Some(profile),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            State::Error { reason } => Some(reason),
            _ => None,
        }
    }

    /// True while the user wants a tunnel: the kill switch in `auto` blocks then.
    pub fn wants_connection(&self) -> bool {
        match self {
            State::Disconnecting { then } => !matches!(then, AfterTeardown::Idle),
            State::Disconnected => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(p: &str) -> Input {
        Input::ConnectRequested { profile: p.into() }
    }

    /// Feeds inputs, carrying out no effect but `TornDown` after each teardown, as the daemon does.
    fn run(inputs: Vec<Input>) -> (State, Vec<Effect>) {
        let mut state = State::Disconnected;
        let mut effects = Vec::new();
        for input in inputs {
            let mut next = Some(input);
            while let Some(i) = next.take() {
                if let Some((s, e)) = state.on(i) {
                    state = s;
                    effects.push(e);
                    if e == Effect::TearDown {
                        next = Some(Input::TornDown);
                    }
                }
            }
        }
        (state, effects)
    }

    #[test]
    fn connect_then_handshake_is_connected() {
        let (s, e) = run(vec![connect("se"), Input::HandshakeCompleted]);
        assert_eq!(
            s,
            State::Connected {
                profile: "se".into()
            }
        );
        assert_eq!(e, vec![Effect::BringUp, Effect::None]);
    }

    #[test]
    fn failed_setup_tears_down_and_reports_the_reason() {
        let (s, e) = run(vec![connect("se"), Input::Failed("no handshake".into())]);
        assert_eq!(
            s,
            State::Error {
                reason: "no handshake".into()
            }
        );
        assert!(e.contains(&Effect::TearDown));
        assert_eq!(s.public(), TunnelState::Error);
        assert_eq!(s.error(), Some("no handshake"));
    }

    #[test]
    fn disconnect_from_connected_goes_through_disconnecting() {
        let start = State::Connected {
            profile: "se".into(),
        };
        let (mid, effect) = start.on(Input::DisconnectRequested).unwrap();
        assert_eq!(mid.public(), TunnelState::Disconnecting);
        assert_eq!(effect, Effect::TearDown);
        assert_eq!(
            mid.on(Input::TornDown),
            Some((State::Disconnected, Effect::None))
        );
    }

    #[test]
    fn switching_server_tears_down_then_brings_up_the_new_one() {
        let (s, e) = run(vec![
            connect("se"),
            Input::HandshakeCompleted,
            connect("de"),
        ]);
        assert_eq!(
            s,
            State::Connecting {
                profile: "de".into()
            }
        );
        assert_eq!(
            e,
            vec![
                Effect::BringUp,
                Effect::None,
                Effect::TearDown,
                Effect::BringUp
            ]
        );
    }

    #[test]
    fn connect_after_an_error_retries() {
        let (s, _) = run(vec![
            connect("se"),
            Input::Failed("x".into()),
            connect("se"),
        ]);
        assert_eq!(
            s,
            State::Connecting {
                profile: "se".into()
            }
        );
    }

    #[test]
    fn disconnect_clears_an_error() {
        let (s, _) = run(vec![
            connect("se"),
            Input::Failed("x".into()),
            Input::DisconnectRequested,
        ]);
        assert_eq!(s, State::Disconnected);
    }

    #[test]
    fn stray_inputs_are_ignored() {
        assert_eq!(State::Disconnected.on(Input::HandshakeCompleted), None);
        assert_eq!(State::Disconnected.on(Input::TornDown), None);
        assert_eq!(
            State::Connected {
                profile: "se".into()
            }
            .on(Input::HandshakeCompleted),
            None
        );
        assert_eq!(
            State::Error { reason: "x".into() }.on(Input::Failed("y".into())),
            None
        );
    }

    #[test]
    fn a_late_disconnect_wins_over_a_pending_switch() {
        let s = State::Disconnecting {
            then: AfterTeardown::Connect("de".into()),
        };
        let (s, e) = s.on(Input::DisconnectRequested).unwrap();
        assert_eq!(e, Effect::None);
        assert_eq!(
            s.on(Input::TornDown),
            Some((State::Disconnected, Effect::None))
        );
    }

    fn lost(now: Instant) -> Input {
        Input::Lost {
            reason: ReconnectReason::ServerNotResponding,
            now,
        }
    }

    #[test]
    fn a_dead_tunnel_reconnects_instead_of_failing() {
        let t0 = Instant::now();
        let (s, e) = run(vec![connect("se"), Input::HandshakeCompleted, lost(t0)]);
        assert_eq!(s.public(), TunnelState::Reconnecting);
        assert_eq!(
            e.last(),
            Some(&Effect::None),
            "the session stays for the ladder"
        );
        assert!(s.wants_connection());
        let State::Reconnecting { ladder, .. } = &s else {
            unreachable!()
        };
        assert_eq!(ladder.attempt, 0);
        let (s, _) = s.on(Input::HandshakeCompleted).unwrap();
        assert_eq!(
            s,
            State::Connected {
                profile: "se".into()
            }
        );
    }

    #[test]
    fn a_handshake_that_never_comes_at_connect_is_retried_not_an_error() {
        let (s, _) = run(vec![connect("se"), lost(Instant::now())]);
        assert_eq!(s.public(), TunnelState::Reconnecting);
        assert_eq!(s.error(), None);
    }

    #[test]
    fn failures_while_healing_leave_the_ladder_alone() {
        let t0 = Instant::now();
        let (s, _) = run(vec![connect("se"), lost(t0)]);
        assert_eq!(s.on(lost(t0)), None);
    }

    #[test]
    fn no_route_is_offline_and_a_route_back_restarts_the_ladder() {
        let t0 = Instant::now();
        let (s, _) = run(vec![
            connect("se"),
            Input::HandshakeCompleted,
            Input::NoRoute { now: t0 },
        ]);
        assert_eq!(s.public(), TunnelState::Offline);
        assert!(s.wants_connection(), "offline still blocks in auto");
        let (s, e) = s.on(Input::RouteBack { now: t0 }).unwrap();
        assert_eq!(e, Effect::None);
        let State::Reconnecting { ladder, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(ladder.reason, ReconnectReason::NetworkChanged);
        assert_eq!(s.profile(), Some("se"));
    }

    #[test]
    fn only_disconnect_leads_to_disconnected_from_every_live_state() {
        let t0 = Instant::now();
        for s in [
            State::Connecting {
                profile: "se".into(),
            },
            State::Connected {
                profile: "se".into(),
            },
            State::Offline {
                profile: "se".into(),
                since: t0,
            },
            State::Reconnecting {
                profile: "se".into(),
                ladder: Ladder::start(t0, ReconnectReason::NetworkChanged).0,
            },
        ] {
            let (mid, effect) = s.on(Input::DisconnectRequested).unwrap();
            assert_eq!(effect, Effect::TearDown, "{s:?}");
            assert_eq!(
                mid.on(Input::TornDown),
                Some((State::Disconnected, Effect::None))
            );
            assert!(s.on(Input::TornDown).is_none());
        }
    }

    #[test]
    fn an_invalid_configuration_while_healing_is_an_error() {
        let (s, _) = run(vec![
            connect("se"),
            lost(Instant::now()),
            Input::Failed("bad key".into()),
        ]);
        assert_eq!(s.error(), Some("bad key"));
    }
}
