//! Asking the helper for a state change and waiting until it happened.
//!
//! The helper answers `Connect`/`Disconnect` as soon as it accepts them; the outcome arrives
//! later as [`Event::State`]. Two things make waiting subtle:
//! - Events queued before our request (a snapshot on subscribe, or the end of a previous
//!   attempt) must not be mistaken for its outcome. So queued events are dropped before the
//!   request is sent, and a `connected` or `error` state counts only after the helper has
//!   shown that *this* attempt started (`connecting` for the profile).
//! - A subscriber may miss intermediate events. So when the wait times out, one last
//!   `Status` request decides, and only then is it a timeout.
//!
//! Everything here is generic over the transport, so the tests drive it with a fake helper
//! over an in-memory pipe.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::FutureExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use underpass_proto::client::{Client, ClientError};
use underpass_proto::{Event, Request, Response, Status, TunnelConfig, TunnelState};

/// How a wait ended, when it did not time out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The requested state was reached.
    Reached(Status),
    /// The helper reported [`TunnelState::Error`], or that it could not reach the server and
    /// keeps trying ([`TunnelState::Reconnecting`], [`TunnelState::Offline`]).
    Failed(Status),
}

/// Sends `Connect` for `config` (and the rest of the user's choice, `alternatives`) and waits
/// until the helper reports it connected or failed.
pub async fn connect<S>(
    client: &mut Client<S>,
    config: TunnelConfig,
    alternatives: Vec<TunnelConfig>,
    timeout: Duration,
) -> Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + timeout;
    let profile = config.profile.clone();
    let ours = |s: &Status| s.profile.as_deref() == Some(profile.as_str());
    subscribe(client).await?;
    expect_accepted(
        client
            .request(Request::Connect {
                config: Box::new(config),
                alternatives,
            })
            .await?,
    )?;

    // Set when the helper shows this attempt began; see the module docs.
    let mut started = false;
    let mut last = None;
    while let Some(status) = next_state(client, deadline).await? {
        match status.state {
            TunnelState::Connecting if ours(&status) => started = true,
            TunnelState::Connected if started && ours(&status) => {
                return Ok(Outcome::Reached(status))
            }
            TunnelState::Error | TunnelState::Reconnecting | TunnelState::Offline if started => {
                return Ok(Outcome::Failed(status))
            }
            TunnelState::Disconnected if started => bail!(
                "the tunnel went down before \"{profile}\" connected (was `underpass disconnect` run meanwhile?)"
            ),
            _ => {}
        }
        last = Some(status.state);
    }

    let status = client.status().await?;
    match status.state {
        TunnelState::Connected if ours(&status) => Ok(Outcome::Reached(status)),
        TunnelState::Error | TunnelState::Reconnecting | TunnelState::Offline => {
            Ok(Outcome::Failed(status))
        }
        state => bail!(
            "\"{profile}\" did not connect within {} (last state: {}). The helper keeps \
             trying; `underpass disconnect` stops it",
            secs(timeout),
            last.unwrap_or(state)
        ),
    }
}

/// Sends `Disconnect` (unless there is nothing to disconnect) and waits for `disconnected`.
pub async fn disconnect<S>(client: &mut Client<S>, timeout: Duration) -> Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + timeout;
    subscribe(client).await?;
    let status = client.status().await?;
    if status.state == TunnelState::Disconnected {
        return Ok(Outcome::Reached(status));
    }
    drop_queued_events(client).await?;
    expect_accepted(client.request(Request::Disconnect).await?)?;

    // An `error` on the way is not a failure to disconnect: a connect attempt may have failed
    // just before our request, and the helper goes on from `error` to `disconnected`.
    let mut last = None;
    while let Some(status) = next_state(client, deadline).await? {
        match status.state {
            TunnelState::Disconnected => return Ok(Outcome::Reached(status)),
            state => last = Some(state),
        }
    }
    let status = client.status().await?;
    match status.state {
        TunnelState::Disconnected => Ok(Outcome::Reached(status)),
        TunnelState::Error => Ok(Outcome::Failed(status)),
        state => bail!(
            "the tunnel did not go down within {} (last state: {})",
            secs(timeout),
            last.unwrap_or(state)
        ),
    }
}

async fn subscribe<S>(client: &mut Client<S>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match client.request(Request::Subscribe).await? {
        Response::Subscribed => drop_queued_events(client).await,
        other => Err(unexpected("subscribed", &other)),
    }
}

fn expect_accepted(response: Response) -> Result<()> {
    match response {
        Response::Accepted => Ok(()),
        other => Err(unexpected("accepted", &other)),
    }
}

fn unexpected(wanted: &str, got: &Response) -> anyhow::Error {
    anyhow!(ClientError::Protocol(format!(
        "expected the helper to answer {wanted}, got {got:?}"
    )))
}

/// Discards the events that have already arrived: they describe the past.
async fn drop_queued_events<S>(client: &mut Client<S>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // One poll each, so this takes exactly what is ready (and, unlike a zero timeout, never
    // waits for the timer's next millisecond tick).
    while let Some(event) = client.next_event().now_or_never() {
        event?;
    }
    Ok(())
}

/// The next state change, or `None` at the deadline. Statistics and self-test progress are
/// skipped.
async fn next_state<S>(client: &mut Client<S>, deadline: Instant) -> Result<Option<Status>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_elapsed) => return Ok(None),
            Ok(Ok(Event::State { status })) => return Ok(Some(*status)),
            Ok(Ok(Event::Statistics { .. } | Event::SelfTestProgress { .. })) => continue,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_util::codec::Framed;
    use underpass_proto::codec::JsonFrames;
    use underpass_proto::{ClientMessage, ErrorBody, ErrorCode, ServerMessage, PROTOCOL_VERSION};

    /// What the fake helper sends back for one request: the result, then some events.
    type Reply = (Result<Response, ErrorBody>, Vec<Status>);

    /// Starts a fake helper that answers each request with `script(request)` and returns a
    /// client connected to it.
    async fn fake_helper(
        mut script: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> Client<DuplexStream> {
        let (client_end, helper_end) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut framed = Framed::new(
                helper_end,
                JsonFrames::<ClientMessage, ServerMessage>::default(),
            );
            while let Some(Ok(msg)) = framed.next().await {
                let out = match msg {
                    ClientMessage::Hello { .. } => vec![ServerMessage::Hello {
                        protocol: PROTOCOL_VERSION,
                        helper_version: "fake".into(),
                    }],
                    ClientMessage::Request { id, request } => {
                        let (result, events) = script(&request);
                        std::iter::once(ServerMessage::Response { id, result })
                            .chain(events.into_iter().map(|status| ServerMessage::Event {
                                event: Event::State {
                                    status: Box::new(status),
                                },
                            }))
                            .collect()
                    }
                };
                for m in out {
                    if framed.send(m).await.is_err() {
                        return;
                    }
                }
            }
        });
        Client::handshake(client_end, "test").await.unwrap()
    }

    fn status(state: TunnelState, profile: Option<&str>) -> Status {
        Status {
            state,
            profile: profile.map(Into::into),
            ..Status::disconnected()
        }
    }

    fn with_interface(mut s: Status, name: &str) -> Status {
        s.interface = Some(name.into());
        s
    }

    fn config() -> TunnelConfig {
        TunnelConfig {
            profile: "se-sto".into(),
            ..TunnelConfig::example()
        }
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn connect_returns_once_the_helper_reports_connected() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Connect { .. } => (
                Ok(Response::Accepted),
                vec![
                    status(Connecting, Some("se-sto")),
                    with_interface(status(Connected, Some("se-sto")), "up0"),
                ],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = connect(&mut client, config(), vec![], SHORT).await.unwrap();
        let Outcome::Reached(s) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(s.interface.as_deref(), Some("up0"));
    }

    #[tokio::test]
    async fn connect_cancelled_by_a_disconnect_is_reported() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Connect { .. } => (
                Ok(Response::Accepted),
                vec![
                    status(Connecting, Some("se-sto")),
                    status(Disconnecting, None),
                    status(Disconnected, None),
                ],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let err = connect(&mut client, config(), vec![], SHORT)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the tunnel went down before \"se-sto\" connected"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stale_connected_snapshot_is_not_taken_for_this_attempt() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            // The helper pushes its current state right after subscribing: the old tunnel.
            Request::Subscribe => (
                Ok(Response::Subscribed),
                vec![with_interface(status(Connected, Some("se-sto")), "old0")],
            ),
            Request::Connect { .. } => (
                Ok(Response::Accepted),
                vec![
                    with_interface(status(Connected, Some("se-sto")), "old0"),
                    // underpassd replaces a tunnel by tearing the old one down first.
                    status(Disconnecting, Some("se-sto")),
                    status(Connecting, Some("se-sto")),
                    with_interface(status(Connected, Some("se-sto")), "new0"),
                ],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = connect(&mut client, config(), vec![], SHORT).await.unwrap();
        assert!(
            matches!(&outcome, Outcome::Reached(s) if s.interface.as_deref() == Some("new0")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn connect_failure_carries_the_helpers_error_text() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Connect { .. } => {
                // What underpassd does: the failed tunnel is torn down (no profile while
                // that happens), then the state rests in `error`, also without a profile.
                let mut failed = status(Error, None);
                failed.error = Some("no handshake with 192.0.2.10:51820 after 5 s".into());
                (
                    Ok(Response::Accepted),
                    vec![
                        status(Connecting, Some("se-sto")),
                        status(Disconnecting, None),
                        failed,
                    ],
                )
            }
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = connect(&mut client, config(), vec![], SHORT).await.unwrap();
        let Outcome::Failed(s) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            s.error.as_deref(),
            Some("no handshake with 192.0.2.10:51820 after 5 s")
        );
    }

    #[tokio::test]
    async fn connect_that_never_finishes_times_out_clearly() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Connect { .. } => (
                Ok(Response::Accepted),
                vec![status(Connecting, Some("se-sto"))],
            ),
            Request::Status => (
                Ok(Response::Status {
                    status: Box::new(status(Connecting, Some("se-sto"))),
                }),
                vec![],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let err = connect(&mut client, config(), vec![], Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "\"se-sto\" did not connect within 1 s (last state: connecting). The helper keeps \
             trying; `underpass disconnect` stops it"
        );
    }

    #[tokio::test]
    async fn missed_events_are_caught_by_a_final_status_check() {
        use TunnelState::*;
        let connected = with_interface(status(Connected, Some("se-sto")), "up0");
        let for_status = connected.clone();
        let mut client = fake_helper(move |req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            // The "connecting" event was lost; "connected" alone is ambiguous.
            Request::Connect { .. } => (Ok(Response::Accepted), vec![connected.clone()]),
            Request::Status => (
                Ok(Response::Status {
                    status: Box::new(for_status.clone()),
                }),
                vec![],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = connect(&mut client, config(), vec![], SHORT).await.unwrap();
        assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn refused_connect_reports_the_helpers_reason() {
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            _ => (
                Err(ErrorBody::new(
                    ErrorCode::InvalidConfig,
                    "MTU 100 is outside 576..=9000",
                )),
                vec![],
            ),
        })
        .await;
        let err = connect(&mut client, config(), vec![], SHORT)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the helper refused: MTU 100 is outside 576..=9000"
        );
    }

    #[tokio::test]
    async fn disconnect_passes_through_a_late_error_state() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Status => (
                Ok(Response::Status {
                    status: Box::new(status(Connecting, Some("se-sto"))),
                }),
                vec![],
            ),
            Request::Disconnect => (
                Ok(Response::Accepted),
                vec![status(Error, None), status(Disconnected, None)],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = disconnect(&mut client, SHORT).await.unwrap();
        assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn disconnect_when_already_down_returns_at_once() {
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Status => (
                Ok(Response::Status {
                    status: Box::new(Status::disconnected()),
                }),
                vec![],
            ),
            other => panic!("nothing to disconnect, yet the client sent {other:?}"),
        })
        .await;
        let outcome = disconnect(&mut client, SHORT).await.unwrap();
        assert!(matches!(outcome, Outcome::Reached(_)));
    }

    #[tokio::test]
    async fn disconnect_waits_for_the_disconnected_state() {
        use TunnelState::*;
        let mut client = fake_helper(|req| match req {
            Request::Subscribe => (Ok(Response::Subscribed), vec![]),
            Request::Status => (
                Ok(Response::Status {
                    status: Box::new(status(Connected, Some("se-sto"))),
                }),
                vec![],
            ),
            Request::Disconnect => (
                Ok(Response::Accepted),
                vec![
                    status(Disconnecting, Some("se-sto")),
                    status(Disconnected, None),
                ],
            ),
            other => panic!("unexpected {other:?}"),
        })
        .await;
        let outcome = disconnect(&mut client, SHORT).await.unwrap();
        assert!(
            matches!(&outcome, Outcome::Reached(s) if s.state == Disconnected),
            "{outcome:?}"
        );
    }
}
