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
    let mut events: Option<broadcast::Receiver<Event>> = None;
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
                        events = Some(shared.events.subscribe());
                    }
                    let result = dispatch(request, shared).await;
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
    events: &mut Option<broadcast::Receiver<Event>>,
) -> Result<Event, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn dispatch(request: Request, shared: &Shared) -> Result<Response, ErrorBody> {
    match request {
        Request::Status => Ok(Response::Status {
            status: Box::new(shared.status.borrow().clone()),
        }),
        Request::Subscribe => Ok(Response::Subscribed),
        Request::RecentLogs => Ok(Response::Logs {
            lines: shared.log.lines(),
        }),
        Request::Connect { config } => ask(shared, |tx| Command::Connect(config, tx)).await,
        Request::Disconnect => ask(shared, Command::Disconnect).await,
        Request::SetKillSwitch { mode } => ask(shared, |tx| Command::SetKillSwitch(mode, tx)).await,
        Request::SetLanAccess { allow } => ask(shared, |tx| Command::SetLanAccess(allow, tx)).await,
        Request::ProbeServers { candidates } => {
            let (tx, rx) = oneshot::channel();
            shared
                .commands
                .send(Command::Probe(candidates, tx))
                .await
                .map_err(|_| helper_gone())?;
            let results = rx.await.map_err(|_| helper_gone())??;
            Ok(Response::Probed { results })
        }
        Request::SelfTest { test, options } => {
            let (tx, rx) = oneshot::channel();
            shared
                .commands
                .send(Command::SelfTest(test, options, tx))
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
