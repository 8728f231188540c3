//! The published status: the snapshot every client reads, and the reconnect state in it.

use super::*;

impl<P: Platform> Daemon<P> {
    pub(super) fn publish_state(&self) {
        let status = self.snapshot();
        self.status.send_replace(status.clone());
        let _ = self.events.send(Event::State {
            status: Box::new(status),
        });
    }

    pub(super) fn snapshot(&self) -> Status {
        let mut status = Status::disconnected();
        status.state = self.state.public();
        status.profile = self.state.profile().map(str::to_string);
        status.error = self.state.error().map(str::to_string);
        status.kill_switch = self.intent.kill_switch;
        status.lan_access = self.intent.lan_access;
        status.policy = self.policy();
        status.managed = self.system.managed_status();
        status.reconnect = self.reconnect_status();
        status.server_in_use = self
            .intent
            .wanted
            .as_ref()
            .filter(|_| self.wants_connection())
            .map(|c| self.intent.rotation.in_use(c));
        status.firewall =
            firewall::state_of(self.firewall_applied.as_ref().and_then(Option::as_ref));
        if let Some(s) = self.state.session() {
            status.dns = s.dns.clone();
            status.interface = Some(s.plane.interface().to_string());
            status.addresses = s.addresses.clone();
            status.mtu = Some(s.mtu);
            status.routing = Some(s.plan.summary());
            status.peers = s.plane.peer_status();
            status.rx_bytes = status.peers.iter().map(|p| p.rx_bytes).sum();
            status.tx_bytes = status.peers.iter().map(|p| p.tx_bytes).sum();
            status.endpoint = status.peers.first().and_then(|p| p.endpoint);
            status.last_handshake_secs = status
                .peers
                .iter()
                .filter_map(|p| p.last_handshake_secs)
                .min();
        }
        status
    }

    pub(super) fn reconnect_status(&self) -> Option<ReconnectStatus> {
        let now = now();
        let secs_since = |t: Instant| now.saturating_duration_since(t).as_secs();
        let last_answer_secs = self
            .healing
            .liveness
            .as_ref()
            .map(|l| secs_since(l.last_answer()));
        let last_error = self.healing.last_error.clone();
        match &self.state {
            State::Reconnecting { ladder, .. } => Some(ReconnectStatus {
                reason: ladder.reason,
                attempt: ladder.attempt.saturating_add(1),
                since_secs: secs_since(ladder.since),
                last_answer_secs,
                action: ladder.rung().describe().to_string(),
                last_error,
            }),
            State::Offline { since, .. } => Some(ReconnectStatus {
                reason: ReconnectReason::NoNetwork,
                attempt: 0,
                since_secs: secs_since(*since),
                last_answer_secs,
                action: "waiting for a network that reaches the server".to_string(),
                last_error,
            }),
            _ => None,
        }
    }
}
