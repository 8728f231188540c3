//! The IPC listener: one task per connection, a peer check, a version handshake, then
//! requests dispatched to the daemon and events pushed back.
//!
//! Nothing a client does can stall the helper: each connection has its own task, the number of
//! connections is capped, a client must say hello within a few seconds, writes to a client that
//! stops reading time out, and garbage or oversized frames end that one connection.

#[cfg(unix)]
pub mod peer;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{bind, serve};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{bind, serve};

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::codec::Framed;
use underpass_proto::codec::{FrameError, JsonFrames};
use underpass_proto::{
    ClientMessage, ErrorBody, ErrorCode, Event, Request, Response, ServerMessage, Status,
    PROTOCOL_VERSION,
};

use crate::daemon::Command;

pub const MAX_CONNECTIONS: usize = 128;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that has not subscribed and sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Event subscriptions one user may hold at once (the app, the tray, a few CLIs).
const MAX_SUBSCRIPTIONS_PER_UID: usize = 8;

/// The per-uid budget of event subscriptions, shared by all connections.
pub fn subscription_slots() -> std::sync::Arc<crate::limits::Slots> {
    crate::limits::Slots::new(MAX_SUBSCRIPTIONS_PER_UID)
}

pub type Conn<S> = Framed<S, JsonFrames<ClientMessage, ServerMessage>>;

/// Who is on the other end, as the OS reports it (for the log).
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub uid: Option<u32>,
    pub pid: Option<u32>,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(uid) = self.uid {
            write!(f, "uid {uid} ")?;
        }
        match self.pid {
            Some(pid) => write!(f, "pid {pid}"),
            None => write!(f, "pid ?"),
        }
    }
}

pub struct Shared {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<Status>,
    pub events: broadcast::Sender<Event>,
    /// Who may connect (on Windows the pipe's DACL decides, before a connection exists).
    #[cfg(unix)]
    pub authorizer: peer::Authorizer,
    pub log: crate::logring::LogRing,
    /// Event subscriptions held, per uid ([`MAX_SUBSCRIPTIONS_PER_UID`] each).
    pub subscriptions: std::sync::Arc<crate::limits::Slots>,
}

/// One connection, after the transport admitted its peer: handshake, then requests and events.
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    who: Who,
    shared: &Shared,
) {
    match tokio::time::timeout(HELLO_TIMEOUT, conn.next()).await {
        Ok(Some(Ok(ClientMessage::Hello { protocol, client }))) if protocol == PROTOCOL_VERSION => {
            tracing::debug!(%who, %client, "client connected");
            let hello = ServerMessage::Hello {
                protocol: PROTOCOL_VERSION,
                helper_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            if !send(&mut conn, hello).await {
                return;
            }
        }
        Ok(Some(Ok(ClientMessage::Hello { protocol, .. }))) => {
            let msg =
                format!("client speaks protocol {protocol}, helper speaks {PROTOCOL_VERSION}");
            // Answer with our version so the client can say which side to update.
            let hello = ServerMessage::Hello {
                protocol: PROTOCOL_VERSION,
                helper_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            send(&mut conn, hello).await;
            tracing::info!(%who, "{msg}");
            return;
        }
        Ok(Some(Ok(_))) => {
            fatal(
                &mut conn,
                ErrorCode::Handshake,
                "the first message must be a hello",
            )
            .await;
            return;
        }
        Ok(Some(Err(e))) => {
            refuse_frame(&mut conn, who, e).await;
            return;
        }
        Ok(None) => return,
        Err(_) => {
            fatal(&mut conn, ErrorCode::Handshake, "no hello within 5 s").await;
            return;
        }
    }
    // Without a uid (a Windows pipe client), all such clients share one budget.
    let uid = who.uid.unwrap_or(u32::MAX);
    let mut events: Option<(broadcast::Receiver<Event>, crate::limits::Slot)> = None;
    loop {
        let idle = if events.is_some() {
            Duration::MAX
        } else {
            IDLE_TIMEOUT
        };
        tokio::select! {
            message = tokio::time::timeout(idle, conn.next()) => match message {
                Ok(Some(Ok(ClientMessage::Request { id, request }))) => {
                    if matches!(request, Request::Subscribe) && events.is_none() {
                        let Some(slot) = shared.subscriptions.take(uid) else {
                            let why = format!(
                                "{who} already holds {} event subscriptions; close one first",
                                shared.subscriptions.per_uid()
                            );
                            tracing::warn!("closing IPC connection: {why}");
                            fatal(&mut conn, ErrorCode::Busy, why).await;
                            return;
                        };
                        events = Some((shared.events.subscribe(), slot));
                    }
                    let result = dispatch(request, uid, shared).await;
                    if !send(&mut conn, ServerMessage::Response { id, result }).await {
                        return;
                    }
                }
                Ok(Some(Ok(ClientMessage::Hello { .. }))) => {
                    fatal(&mut conn, ErrorCode::Handshake, "hello was already done").await;
                    return;
                }
                Ok(Some(Err(e))) => {
                    refuse_frame(&mut conn, who, e).await;
                    return;
                }
                Ok(None) => return,
                Err(_) => return,
            },
            event = next_event(&mut events) => {
                let event = match event {
                    Ok(e) => e,
                    // Too slow to keep up: skip to the present state.
                    Err(broadcast::error::RecvError::Lagged(_)) => Event::State {
                        status: Box::new(shared.status.borrow().clone()),
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !send(&mut conn, ServerMessage::Event { event }).await {
                    return;
                }
            }
        }
    }
}

async fn next_event(
    events: &mut Option<(broadcast::Receiver<Event>, crate::limits::Slot)>,
) -> Result<Event, broadcast::error::RecvError> {
    match events {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn dispatch(request: Request, uid: u32, shared: &Shared) -> Result<Response, ErrorBody> {
    match request {
        Request::Status => Ok(Response::Status {
            status: Box::new(shared.status.borrow().clone()),
        }),
        Request::Subscribe => Ok(Response::Subscribed),
        Request::RecentLogs => Ok(Response::Logs {
            lines: shared.log.lines(),
        }),
        Request::Connect {
            config,
            alternatives,
        } => ask(shared, |tx| Command::Connect(config, alternatives, tx)).await,
        Request::Disconnect => ask(shared, Command::Disconnect).await,
        Request::SetKillSwitch { mode } => ask(shared, |tx| Command::SetKillSwitch(mode, tx)).await,
        Request::SetLanAccess { allow } => ask(shared, |tx| Command::SetLanAccess(allow, tx)).await,
        Request::ProbeServers { candidates } => {
            let (tx, rx) = oneshot::channel();
            shared
                .commands
                .send(Command::Probe(uid, candidates, tx))
                .await
                .map_err(|_| helper_gone())?;
            let results = rx.await.map_err(|_| helper_gone())??;
            Ok(Response::Probed { results })
        }
        Request::Doctor { options } => {
            let (tx, rx) = oneshot::channel();
            shared
                .commands
                .send(Command::Doctor(options, tx))
                .await
                .map_err(|_| helper_gone())?;
            let report = rx.await.map_err(|_| helper_gone())??;
            Ok(Response::Doctor {
                report: Box::new(report),
            })
        }
        Request::SetMtu { mtu } => ask(shared, |tx| Command::SetMtu(mtu, tx)).await,
        Request::SelfTest { test, options } => {
            let (tx, rx) = oneshot::channel();
            shared
                .commands
                .send(Command::SelfTest(uid, test, options, tx))
                .await
                .map_err(|_| helper_gone())?;
            let report = rx.await.map_err(|_| helper_gone())??;
            Ok(Response::SelfTest {
                report: Box::new(report),
            })
        }
    }
}

/// Hands a command to the daemon and waits for its verdict.
async fn ask(
    shared: &Shared,
    command: impl FnOnce(oneshot::Sender<Result<(), ErrorBody>>) -> Command,
) -> Result<Response, ErrorBody> {
    let (tx, rx) = oneshot::channel();
    shared
        .commands
        .send(command(tx))
        .await
        .map_err(|_| helper_gone())?;
    rx.await
        .map_err(|_| helper_gone())?
        .map(|()| Response::Accepted)
}

fn helper_gone() -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, "the helper is shutting down")
}

async fn refuse_frame<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    who: Who,
    e: FrameError,
) {
    let code = match e {
        FrameError::TooLarge => ErrorCode::FrameTooLarge,
        FrameError::Malformed(_) => ErrorCode::Malformed,
        FrameError::Io(_) => return,
    };
    tracing::warn!(%who, "closing IPC connection: {e}");
    fatal(conn, code, e.to_string()).await;
}

async fn fatal<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    code: ErrorCode,
    message: impl Into<String>,
) {
    send(
        conn,
        ServerMessage::Fatal {
            error: ErrorBody::new(code, message),
        },
    )
    .await;
}

/// Sends one message; false when the client is gone or too slow to take it.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    message: ServerMessage,
) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, conn.send(message)).await,
        Ok(Ok(()))
    )
}
