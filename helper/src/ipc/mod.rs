//! The IPC listener: one task per connection, a peer check, a version handshake, then
//! requests dispatched to the daemon and events pushed back.
//!
//! Nothing a client does can stall the helper: each connection has its own task, the number of
//! connections is capped, a client must say hello within a few seconds, writes to a client that
//! stops reading time out, and garbage or oversized frames end that one connection.

pub mod peer;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio_util::codec::Framed;
use underpass_proto::codec::{FrameError, JsonFrames};
use underpass_proto::{
    ClientMessage, ErrorBody, ErrorCode, Event, Request, Response, ServerMessage, Status,
    PROTOCOL_VERSION,
};

use crate::daemon::Command;
use peer::{Authorizer, PeerCred, Verdict};

const MAX_CONNECTIONS: usize = 128;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that has not subscribed and sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type Conn = Framed<UnixStream, JsonFrames<ClientMessage, ServerMessage>>;

pub struct Shared {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<Status>,
    pub events: broadcast::Sender<Event>,
    pub authorizer: Authorizer,
    pub log: crate::logring::LogRing,
}

/// Binds the socket: removes a stale one, refuses to steal a live one, and sets mode 0660 with
/// the helper's group (0600, root only, when the group does not exist).
pub fn bind(path: &Path, authorizer: &Authorizer) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another underpassd is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    match authorizer.group {
        Some(gid) => {
            nix::unistd::chown(path, None, Some(gid)).with_context(|| {
                format!(
                    "giving {} to group {}",
                    path.display(),
                    authorizer.group_name
                )
            })?;
        }
        None if !authorizer.active_session => {
            tracing::warn!(
                group = %authorizer.group_name,
                "group does not exist: the socket is root-only. Create it (`groupadd {}`) to let users connect",
                authorizer.group_name
            );
        }
        None => {}
    }
    let mode = authorizer.socket_mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>, socket: PathBuf) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, socket = %socket.display(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: {MAX_CONNECTIONS} clients already connected");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handle(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn handle(stream: UnixStream, shared: &Shared) {
    let cred = match stream.peer_cred() {
        Ok(c) => PeerCred {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "refused a connection whose credentials are unreadable");
            return;
        }
    };
    let mut conn: Conn = Framed::new(stream, JsonFrames::default());
    if let Verdict::Refused(why) = shared.authorizer.check(cred).await {
        tracing::warn!("refused IPC connection: {why}");
        fatal(&mut conn, ErrorCode::PermissionDenied, why).await;
        return;
    }
    match tokio::time::timeout(HELLO_TIMEOUT, conn.next()).await {
        Ok(Some(Ok(ClientMessage::Hello { protocol, client }))) if protocol == PROTOCOL_VERSION => {
            tracing::debug!(uid = cred.uid, %client, "client connected");
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
            tracing::info!(uid = cred.uid, "{msg}");
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
            refuse_frame(&mut conn, cred, e).await;
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
                    refuse_frame(&mut conn, cred, e).await;
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

async fn refuse_frame(conn: &mut Conn, cred: PeerCred, e: FrameError) {
    let code = match e {
        FrameError::TooLarge => ErrorCode::FrameTooLarge,
        FrameError::Malformed(_) => ErrorCode::Malformed,
        FrameError::Io(_) => return,
    };
    tracing::warn!(uid = cred.uid, pid = ?cred.pid, "closing IPC connection: {e}");
    fatal(conn, code, e.to_string()).await;
}

async fn fatal(conn: &mut Conn, code: ErrorCode, message: impl Into<String>) {
    send(
        conn,
        ServerMessage::Fatal {
            error: ErrorBody::new(code, message),
        },
    )
    .await;
}

/// Sends one message; false when the client is gone or too slow to take it.
async fn send(conn: &mut Conn, message: ServerMessage) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, conn.send(message)).await,
        Ok(Ok(()))
    )
}
