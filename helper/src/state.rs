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

/// The tunnel's state. A state that has a session holds it (`S`: the daemon's live session;
/// `()` in the tests below), so "connected without a session" cannot be written, and a session
/// leaves a state only through the effect that tears it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State<S> {
    Disconnected,
    /// Bringing the tunnel up: the session once it is set up, waiting for its handshake.
    Connecting {
        profile: String,
        session: Option<S>,
    },
    Connected {
        profile: String,
        session: S,
    },
    /// Healing: the ladder says which attempt runs and when the next one starts. The session
    /// is the current attempt's, if it could be set up.
    Reconnecting {
        profile: String,
        ladder: Ladder,
        session: Option<S>,
    },
    /// No route reaches the server; nothing is sent until one does. A session that was up
    /// stays, held silent.
    Offline {
        profile: String,
        since: Instant,
        session: Option<S>,
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
pub enum Input<S> {
    ConnectRequested {
        profile: String,
    },
    DisconnectRequested,
    /// A session was set up (by a connect, or an attempt while healing).
    Up(S),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<S> {
    None,
    BringUp,
    /// Take this session down (if the state had one), then feed `TornDown`.
    TearDown(Option<S>),
}

/// A transition: the next state, and the effect the daemon carries out.
pub type Step<S> = (State<S>, Effect<S>);
/// An input that means nothing in a state, handed back with the state unchanged.
pub type Ignored<S> = (State<S>, Input<S>);

impl<S> State<S> {
    /// The next state and effect, or the state and input back when the input means nothing in
    /// this state (a handshake reported after the user already disconnected, or a session set
    /// up for a state that has moved on: the daemon then tears that session down).
    pub fn on(self, input: Input<S>) -> Result<Step<S>, Ignored<S>> {
        use Input::*;
        use State::*;
        let next = match (self, input) {
            (Disconnected | Error { .. }, ConnectRequested { profile }) => (
                Connecting {
                    profile,
                    session: None,
                },
                Effect::BringUp,
            ),
            (Disconnecting { .. }, ConnectRequested { profile }) => (
                Disconnecting {
                    then: AfterTeardown::Connect(profile),
                },
                Effect::None,
            ),
            (live, ConnectRequested { profile }) if live.is_live() => (
                Disconnecting {
                    then: AfterTeardown::Connect(profile),
                },
                Effect::TearDown(live.into_session()),
            ),
            (
                Connecting {
                    profile,
                    session: None,
                },
                Up(session),
            ) => (
                Connecting {
                    profile,
                    session: Some(session),
                },
                Effect::None,
            ),
            (
                Reconnecting {
                    profile,
                    ladder,
                    session: None,
                },
                Up(session),
            ) => (
                Reconnecting {
                    profile,
                    ladder,
                    session: Some(session),
                },
                Effect::None,
            ),
            (
                Connecting {
                    profile,
                    session: Some(session),
                }
                | Reconnecting {
                    profile,
                    session: Some(session),
                    ..
                },
                HandshakeCompleted,
            ) => (Connected { profile, session }, Effect::None),
            (live, Failed(reason)) if live.is_live() => (
                Disconnecting {
                    then: AfterTeardown::Fail(reason),
                },
                Effect::TearDown(live.into_session()),
            ),
            (Connecting { profile, session }, Lost { reason, now }) => (
                Reconnecting {
                    profile,
                    ladder: Ladder::start(now, reason).0,
                    session,
                },
                Effect::None,
            ),
            (Connected { profile, session }, Lost { reason, now }) => (
                Reconnecting {
                    profile,
                    ladder: Ladder::start(now, reason).0,
                    session: Some(session),
                },
                Effect::None,
            ),
            (
                Connecting { profile, session }
                | Reconnecting {
                    profile, session, ..
                },
                NoRoute { now },
            ) => (
                Offline {
                    profile,
                    since: now,
                    session,
                },
                Effect::None,
            ),
            (Connected { profile, session }, NoRoute { now }) => (
                Offline {
                    profile,
                    since: now,
                    session: Some(session),
                },
                Effect::None,
            ),
            (
                Offline {
                    profile, session, ..
                },
                RouteBack { now },
            ) => (
                Reconnecting {
                    profile,
                    ladder: Ladder::start(now, ReconnectReason::NetworkChanged).0,
                    session,
                },
                Effect::None,
            ),
            (live, DisconnectRequested) if live.is_live() => (
                Disconnecting {
                    then: AfterTeardown::Idle,
                },
                Effect::TearDown(live.into_session()),
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
                AfterTeardown::Fail(reason) => (Error { reason }, Effect::None),
                AfterTeardown::Connect(profile) => (
                    Connecting {
                        profile,
                        session: None,
                    },
                    Effect::BringUp,
                ),
            },
            (state, input) => return Err((state, input)),
        };
        Ok(next)
    }

    /// A state the user wants a tunnel in, which may hold a session.
    fn is_live(&self) -> bool {
        matches!(
            self,
            State::Connecting { .. }
                | State::Connected { .. }
                | State::Reconnecting { .. }
                | State::Offline { .. }
        )
    }

    /// The session this state holds, given up with the state.
    pub fn into_session(self) -> Option<S> {
        match self {
            State::Connected { session, .. } => Some(session),
            State::Connecting { session, .. }
            | State::Reconnecting { session, .. }
            | State::Offline { session, .. } => session,
            _ => None,
        }
    }

    /// The session this state holds.
    pub fn session(&self) -> Option<&S> {
        match self {
            State::Connected { session, .. } => Some(session),
            State::Connecting { session, .. }
            | State::Reconnecting { session, .. }
            | State::Offline { session, .. } => session.as_ref(),
            _ => None,
        }
    }

    pub fn session_mut(&mut self) -> Option<&mut S> {
        match self {
            State::Connected { session, .. } => Some(session),
            State::Connecting { session, .. }
            | State::Reconnecting { session, .. }
            | State::Offline { session, .. } => session.as_mut(),
            _ => None,
        }
    }

    /// Takes the session out of a healing state, to set up a fresh one (the ladder's new
    /// socket or next server). A connected state keeps its session: it must be lost first.
    pub fn take_session(&mut self) -> Option<S> {
        match self {
            State::Connecting { session, .. }
            | State::Reconnecting { session, .. }
            | State::Offline { session, .. } => session.take(),
            _ => None,
        }
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
            State::Connecting { profile, .. }
            | State::Connected { profile, .. }
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
    use super::{AfterTeardown, Ladder, ReconnectReason, TunnelState};
    use std::time::Instant;

    type State = super::State<()>;
    type Input = super::Input<()>;
    type Effect = super::Effect<()>;

    fn connect(p: &str) -> Input {
        Input::ConnectRequested { profile: p.into() }
    }

    /// Feeds inputs as the daemon does: a bring-up succeeds (`Up`), and a teardown is followed
    /// by `TornDown`.
    fn run(inputs: Vec<Input>) -> (State, Vec<Effect>) {
        let mut state = State::Disconnected;
        let mut effects = Vec::new();
        for input in inputs {
            let mut next = Some(input);
            while let Some(i) = next.take() {
                state = match state.on(i) {
                    Ok((s, e)) => {
                        next = match e {
                            Effect::TearDown(_) => Some(Input::TornDown),
                            Effect::BringUp => Some(Input::Up(())),
                            Effect::None => None,
                        };
                        effects.push(e);
                        s
                    }
                    Err((s, _)) => s,
                };
            }
        }
        (state, effects)
    }

    fn connected(p: &str) -> State {
        State::Connected {
            profile: p.into(),
            session: (),
        }
    }

    fn ignored(s: State, i: Input) -> bool {
        s.on(i).is_err()
    }

    #[test]
    fn connect_then_handshake_is_connected() {
        let (s, e) = run(vec![connect("se"), Input::HandshakeCompleted]);
        assert_eq!(s, connected("se"));
        assert_eq!(e, vec![Effect::BringUp, Effect::None, Effect::None]);
    }

    #[test]
    fn no_handshake_makes_a_connecting_state_without_a_session_connected() {
        let bare = State::Connecting {
            profile: "se".into(),
            session: None,
        };
        assert!(ignored(bare, Input::HandshakeCompleted));
    }

    #[test]
    fn a_session_set_up_for_a_state_that_moved_on_comes_back_to_be_torn_down() {
        for s in [State::Disconnected, connected("se")] {
            let (_, input) = s.on(Input::Up(())).unwrap_err();
            assert_eq!(input, Input::Up(()));
        }
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
        assert!(e.contains(&Effect::TearDown(Some(()))));
        assert_eq!(s.public(), TunnelState::Error);
        assert_eq!(s.error(), Some("no handshake"));
    }

    #[test]
    fn disconnect_from_connected_hands_its_session_to_the_teardown() {
        let (mid, effect) = connected("se").on(Input::DisconnectRequested).unwrap();
        assert_eq!(mid.public(), TunnelState::Disconnecting);
        assert_eq!(mid.session(), None);
        assert_eq!(effect, Effect::TearDown(Some(())));
        assert_eq!(
            mid.on(Input::TornDown).unwrap(),
            (State::Disconnected, Effect::None)
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
                profile: "de".into(),
                session: Some(()),
            }
        );
        assert_eq!(
            e,
            vec![
                Effect::BringUp,
                Effect::None,
                Effect::None,
                Effect::TearDown(Some(())),
                Effect::BringUp,
                Effect::None,
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
        assert_eq!(s.public(), TunnelState::Connecting);
        assert_eq!(s.profile(), Some("se"));
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
        assert!(ignored(State::Disconnected, Input::HandshakeCompleted));
        assert!(ignored(State::Disconnected, Input::TornDown));
        assert!(ignored(connected("se"), Input::HandshakeCompleted));
        assert!(ignored(
            State::Error { reason: "x".into() },
            Input::Failed("y".into())
        ));
    }

    #[test]
    fn a_late_disconnect_wins_over_a_pending_switch() {
        let s = State::Disconnecting {
            then: AfterTeardown::Connect("de".into()),
        };
        let (s, e) = s.on(Input::DisconnectRequested).unwrap();
        assert_eq!(e, Effect::None);
        assert_eq!(
            s.on(Input::TornDown).unwrap(),
            (State::Disconnected, Effect::None)
        );
    }

    fn lost(now: Instant) -> Input {
        Input::Lost {
            reason: ReconnectReason::ServerNotResponding,
            now,
        }
    }

    #[test]
    fn a_dead_tunnel_reconnects_instead_of_failing_and_keeps_its_session_for_the_ladder() {
        let t0 = Instant::now();
        let (s, e) = run(vec![connect("se"), Input::HandshakeCompleted, lost(t0)]);
        assert_eq!(s.public(), TunnelState::Reconnecting);
        assert_eq!(e.last(), Some(&Effect::None));
        assert_eq!(s.session(), Some(&()), "the session stays for the ladder");
        assert!(s.wants_connection());
        let State::Reconnecting { ladder, .. } = &s else {
            unreachable!()
        };
        assert_eq!(ladder.attempt, 0);
        let (s, _) = s.on(Input::HandshakeCompleted).unwrap();
        assert_eq!(s, connected("se"));
    }

    #[test]
    fn a_fresh_attempt_takes_the_session_out_and_puts_the_new_one_in() {
        let t0 = Instant::now();
        let (mut s, _) = run(vec![connect("se"), Input::HandshakeCompleted, lost(t0)]);
        assert_eq!(s.take_session(), Some(()));
        assert!(ignored(s.clone(), Input::HandshakeCompleted), "no session");
        let (s, _) = s.on(Input::Up(())).unwrap();
        let (s, _) = s.on(Input::HandshakeCompleted).unwrap();
        assert_eq!(s, connected("se"));
        let mut c = connected("se");
        assert_eq!(c.take_session(), None, "connected keeps its session");
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
        assert!(ignored(s, lost(t0)));
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
        assert_eq!(s.session(), Some(&()), "held silent");
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
                session: None,
            },
            connected("se"),
            State::Offline {
                profile: "se".into(),
                since: t0,
                session: Some(()),
            },
            State::Reconnecting {
                profile: "se".into(),
                ladder: Ladder::start(t0, ReconnectReason::NetworkChanged).0,
                session: None,
            },
        ] {
            let had = s.session().copied();
            let (mid, effect) = s.clone().on(Input::DisconnectRequested).unwrap();
            assert_eq!(effect, Effect::TearDown(had), "{s:?}");
            assert_eq!(
                mid.on(Input::TornDown).unwrap(),
                (State::Disconnected, Effect::None)
            );
            assert!(ignored(s, Input::TornDown));
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
