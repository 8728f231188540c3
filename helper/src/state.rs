//! The tunnel state machine, free of I/O.
//!
//! Every transition is in [`State::on`]: the state, the input, the next state and the one
//! effect the daemon must carry out (bring a tunnel up, or tear it down). The daemon performs the
//! effect and feeds its outcome back as the next input. Because the machine never touches the
//! system, its whole transition table is unit-tested below, without root.

use underpass_proto::TunnelState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Disconnected,
    Connecting { profile: String },
    Connected { profile: String },
    Disconnecting { then: AfterTeardown },
    Error { reason: String },
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
    /// Setup failed, or a live tunnel broke; the reason is for the user.
    Failed(String),
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
            (Connecting { .. } | Connected { .. }, ConnectRequested { profile }) => (
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
            (Connecting { profile }, HandshakeCompleted) => (
                Connected {
                    profile: profile.clone(),
                },
                Effect::None,
            ),
            (Connecting { .. } | Connected { .. }, Failed(reason)) => (
                Disconnecting {
                    then: AfterTeardown::Fail(reason),
                },
                Effect::TearDown,
            ),
            (Connecting { .. } | Connected { .. }, DisconnectRequested) => (
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
            State::Disconnecting { .. } => TunnelState::Disconnecting,
            State::Error { .. } => TunnelState::Error,
        }
    }

    pub fn profile(&self) -> Option<&str> {
        match self {
            State::Connecting { profile } | State::Connected { profile } => Some(profile),
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
}
