//! The services a client asks for beside the tunnel: the self-tests, the doctor (and the MTU it
//! may set), and server measurements. Each runs in a task of its own, off the actor.

use super::*;

impl<P: Platform> Daemon<P> {
    /// Starts a self-test in its own task (it takes seconds; the daemon keeps serving), with a
    /// view of the tunnel as it is now; the gate runs one at a time and budgets them.
    pub(super) fn self_test(
        &self,
        uid: u32,
        test: SelfTestKind,
        options: SelfTestOptions,
        reply: oneshot::Sender<Result<SelfTestReport, ErrorBody>>,
    ) {
        if let Err(reason) = selftest::validate(&options) {
            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
            return;
        }
        let tunnel = self.state.session().map(|s| selftest::TunnelView {
            interface: s.plane.interface().to_string(),
            endpoints: s.hole.endpoints.clone(),
            paused: s.plane.pause_switch(),
        });
        let (lan_access, events) = (self.intent.lan_access, self.events.clone());
        let run = |allow_drop| {
            let ctx = selftest::Context {
                tunnel,
                lan_access,
                events,
                allow_drop,
            };
            selftest::run(test, options.clone(), ctx)
                .map(|r| {
                    r.map_err(|e| {
                        ErrorBody::new(
                            ErrorCode::Internal,
                            format!("self-test failed to run: {e:#}"),
                        )
                    })
                })
                .boxed()
        };
        match self.self_tests.admit(uid, test, &options, now(), run) {
            Ok(admitted) => {
                tokio::spawn(async move {
                    let _ = reply.send(admitted.outcome().await);
                });
            }
            Err(busy) => {
                let _ = reply.send(Err(busy));
            }
        }
    }

    /// Runs the troubleshooter in its own task, on the status and configuration as they are now.
    pub(super) fn doctor(
        &self,
        options: DoctorOptions,
        reply: oneshot::Sender<Result<DoctorReport, ErrorBody>>,
    ) {
        if let Err(reason) = doctor::validate(&options) {
            let _ = reply.send(Err(ErrorBody::new(ErrorCode::InvalidConfig, reason)));
            return;
        }
        let ctx = doctor::Context {
            status: self.snapshot(),
            config: self.intent.wanted.clone(),
            resolv_conf: self.settings.resolv_conf.clone(),
        };
        tokio::spawn(async move {
            let result = doctor::run(ctx, options).await.map_err(|e| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!("the doctor failed to run: {e:#}"),
                )
            });
            let _ = reply.send(result);
        });
    }

    /// Applies an MTU the doctor measured to the live tunnel. The profile's own `MTU =` wins,
    /// and the data plane's buffers are sized for the MTU it started with, so only lowering is
    /// allowed (a reconnect derives it afresh).
    pub(super) async fn set_mtu(&mut self, mtu: u16) -> Result<(), ErrorBody> {
        let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidConfig, m));
        if let Some(explicit) = self.intent.wanted.as_ref().and_then(|c| c.mtu) {
            return invalid(format!(
                "the profile sets MTU = {explicit}, which always wins; change it in the profile"
            ));
        }
        let Some(session) = self.state.session_mut() else {
            return invalid("there is no tunnel".into());
        };
        let floor = mtu::floor(session.addresses.iter().any(|a| a.addr().is_ipv6()));
        if !(floor..=session.mtu).contains(&mtu) {
            return invalid(format!(
                "the MTU can be set between {floor} and the current {}; reconnect to derive it afresh",
                session.mtu
            ));
        }
        doctor::set_mtu(session.plane.interface(), mtu)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("{e:#}")))?;
        tracing::info!(from = session.mtu, to = mtu, "tunnel MTU set");
        session.mtu = mtu;
        self.publish_state();
        Ok(())
    }

    /// Measures servers in their own task, held to the kill switch (`tunnel::probe`).
    pub(super) fn probe(
        &mut self,
        uid: u32,
        candidates: Vec<ProbeCandidate>,
        reply: oneshot::Sender<Result<Vec<ProbeResult>, ErrorBody>>,
    ) {
        let route = match self.state.session() {
            Some(s) => probe::Route::Tunnel(s.hole.clone()),
            // An unknown firewall state counts as blocking: admit, or fail clearly.
            None => probe::Route::Direct {
                blocking: !matches!(self.firewall_applied, Some(None)),
                via: Resolvers::helper(self.system_resolvers()),
            },
        };
        let prober = self.probes.clone();
        tokio::spawn(async move {
            let _ = reply.send(prober.measure(uid, candidates, route).await);
        });
    }
}
