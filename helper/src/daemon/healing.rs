//! The healing: the liveness monitor, the reconnect ladder's rungs (a forced handshake, a fresh
//! session, the next server of the user's choice), and what a network change, a resume or a
//! power event sets off. The decisions are `health.rs`'s; this carries them out.

use super::*;

impl<P: Platform> Daemon<P> {
    /// Once a second: sleep detection, liveness while connected, the ladder while healing.
    pub(super) async fn monitor(&mut self, now: Instant) {
        if self.healing.sleep.resumed(P::suspended_so_far()) {
            tracing::info!("resumed from sleep (the clock jumped)");
            self.on_resume(now).await;
        }
        let Some(session) = self.state.session() else {
            return self.climb_if_due(now).await;
        };
        let unreachable = session.plane.unreachable_sends();
        if unreachable > self.healing.unreachable {
            // The kernel refused a send for want of a path: look at the routes again now.
            self.healing.unreachable = unreachable;
            self.healing.network.changed(now);
        }
        let sample = session.plane.sample();
        match self.state {
            State::Connected { .. } => {
                let liveness = self
                    .healing
                    .liveness
                    .get_or_insert_with(|| Liveness::new(now, sample));
                match liveness.observe(now, sample) {
                    Check::Fine => {}
                    Check::Probe => {
                        tracing::info!(
                            "no answer from the server lately: probing with a handshake"
                        );
                        session.plane.force_handshake();
                    }
                    Check::Dead(reason) => {
                        tracing::warn!(reason = reason.describe(), "the tunnel is dead");
                        self.healing.last_error = None;
                        self.lose(reason, now).await;
                    }
                }
            }
            State::Reconnecting { .. }
                if sample.rx_packets > self.healing.rx_mark && session.dns_settled() =>
            {
                tracing::info!("the server answers again");
                self.feed(Input::HandshakeCompleted).await;
            }
            _ => self.climb_if_due(now).await,
        }
    }

    /// The tunnel stopped working: start healing it, first rung at once.
    pub(super) async fn lose(&mut self, reason: ReconnectReason, now: Instant) {
        self.feed(Input::Lost { reason, now }).await;
        if matches!(self.state, State::Reconnecting { .. }) {
            self.climb(Rung::ForceHandshake, 0).await;
        }
    }

    /// Runs the next rung of the ladder once the current attempt has had its time.
    pub(super) async fn climb_if_due(&mut self, now: Instant) {
        let State::Reconnecting { ladder, .. } = &mut self.state else {
            return;
        };
        if let Some(rung) = ladder.on_tick(now) {
            let attempt = ladder.attempt;
            self.climb(rung, attempt).await;
            return;
        }
        // Between rungs, ask again every few seconds (WireGuard itself waits 5 s between
        // handshake retries): the server is then back in use within moments of answering.
        if let Some(s) = self.state.session() {
            let due = self
                .healing
                .forced_at
                .is_none_or(|t| now.duration_since(t) >= health::RETRY_HANDSHAKE_EVERY);
            if due {
                self.healing.forced_at = Some(now);
                s.plane.force_handshake();
            }
        }
    }

    pub(super) async fn climb(&mut self, rung: Rung, attempt: u32) {
        tracing::info!(
            attempt = attempt + 1,
            action = rung.describe(),
            "reconnecting"
        );
        match (rung, self.state.session()) {
            (Rung::ForceHandshake, Some(s)) => {
                self.healing.rx_mark = s.plane.sample().rx_packets;
                self.healing.forced_at = Some(now());
                s.plane.force_handshake();
            }
            // The next server of the user's choice (a named server is set up afresh), or a
            // new socket to the same one.
            _ => {
                self.next_server(rung);
                self.rebuild().await
            }
        }
        self.publish_state();
    }

    /// On the `NextServer` rung, makes the next server of the choice the wanted one (held to
    /// its policy, persisted); `rebuild` then sets it up, its endpoint in the kill switch
    /// before its first packet.
    pub(super) fn next_server(&mut self, rung: Rung) {
        let Some(current) = self.intent.wanted.as_mut() else {
            return;
        };
        if !self.intent.rotation.on_rung(rung, current) {
            return;
        }
        let now_in_use = self.intent.rotation.in_use(current);
        tracing::info!(profile = %now_in_use.profile, server = ?now_in_use.server, endpoint = %now_in_use.endpoint, position = now_in_use.position, of = now_in_use.of, "moving to the next server of the choice");
        self.hold_to_policy();
        if let Err(e) = self.save_intent() {
            tracing::error!(error = %e, "saving the server in use");
        }
    }

    /// A fresh session for the wanted tunnel (new socket, new source port, fresh endpoint
    /// lookups) while the kill switch holds: the old session's rules stay until the new ones
    /// replace them.
    pub(super) async fn rebuild(&mut self) {
        if let Some(old) = self.state.take_session() {
            self.tear_down(old).await;
        }
        let Some(config) = self.intent.wanted.clone() else {
            return;
        };
        if let Some(input) = self.start_bring_up(config).await {
            self.feed(input).await;
        }
    }

    /// The system is about to sleep, or woke up (`power`).
    pub(super) async fn on_power(&mut self, event: PowerEvent) {
        match event {
            // The actor makes one system change at a time, so here it is between two: sleep
            // cuts none in half, and the intent on disk is current (saved on every change).
            PowerEvent::Suspending { ready } => {
                tracing::info!(state = %self.state.public(), "the machine is going to sleep");
                let _ = ready.send(());
            }
            PowerEvent::Resumed => {
                tracing::info!("resumed from sleep (the system says so)");
                self.on_resume(now()).await;
            }
        }
    }

    /// The machine woke up (however many sources say so, acted on once): probe the server at
    /// once with a handshake (its session may have expired while the clock that dates it stood
    /// still), look at the network as after a change, and put the tunnel's DNS back, which
    /// other daemons rewrite on wake.
    pub(super) async fn on_resume(&mut self, now: Instant) {
        if !self.healing.resumes.admit(now) {
            return;
        }
        if let State::Connected { session, .. } = &self.state {
            session.plane.force_handshake();
        }
        self.on_network_change(now, true).await;
        // Not while DNS is being set: that set is what the resolver gets then.
        if let Ok(mut dns) = self.dns.try_lock() {
            if let Err(e) = dns.reassert().await {
                tracing::error!(error = %format!("{e:#}"), "re-asserting DNS after a resume");
            }
        }
    }

    /// Links, addresses or routes changed (debounced), or the machine woke up: is the server
    /// still reachable, and by the same path?
    pub(super) async fn on_network_change(&mut self, now: Instant, resumed: bool) {
        let reason = if resumed {
            ReconnectReason::ResumedFromSleep
        } else {
            ReconnectReason::NetworkChanged
        };
        let Some(session) = self.state.session() else {
            // Nothing to look at: if the helper waits or heals, try again at once.
            match self.state {
                State::Offline { .. } => {
                    self.feed(Input::RouteBack { now }).await;
                    self.climb(Rung::NewSocket, 0).await;
                }
                State::Reconnecting { ref mut ladder, .. } => {
                    ladder.reset(now, reason);
                    self.climb(Rung::NewSocket, 0).await;
                }
                _ => {}
            }
            return;
        };
        let Some(endpoint) = session.endpoint() else {
            return;
        };
        let path = session
            .routes
            .lookup(endpoint.ip(), Some(session.plan.fwmark))
            .await;
        let changed = match (&path, &self.healing.path) {
            (Some(a), Some(b)) => !a.same_path(b),
            (a, b) => a.is_some() != b.is_some(),
        };
        self.healing.path = path.clone();
        let online = path.is_some();
        session.plane.set_offline(!online);
        match (online, &mut self.state) {
            (
                false,
                State::Connecting { .. } | State::Connected { .. } | State::Reconnecting { .. },
            ) => {
                tracing::warn!(%endpoint, "no route reaches the server: offline");
                self.feed(Input::NoRoute { now }).await;
            }
            (true, State::Offline { .. }) => {
                tracing::info!(%endpoint, ?path, "a route to the server is back");
                self.feed(Input::RouteBack { now }).await;
                self.climb(Rung::ForceHandshake, 0).await;
            }
            (true, State::Connected { session, .. }) if changed || resumed => {
                tracing::info!(%endpoint, ?path, resumed, "the path to the server changed: handshaking at once");
                let stale = session
                    .plane
                    .sample()
                    .handshake_age
                    .is_none_or(|age| !resumed || age > RESUME_HANDSHAKE_AGE);
                if stale || changed {
                    session.plane.force_handshake();
                }
                if let Some(l) = &mut self.healing.liveness {
                    l.kick(now);
                }
            }
            (true, State::Reconnecting { ladder, .. }) if changed || resumed => {
                ladder.reset(now, reason);
                self.climb(Rung::ForceHandshake, 0).await;
            }
            _ => {}
        }
    }
}
