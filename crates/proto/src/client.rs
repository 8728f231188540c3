//! The client side of the contract, used by the CLI and the app.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::{FrameError, JsonFrames};
use crate::{
    ClientMessage, ErrorBody, Event, Request, Response, ServerMessage, Status, DEFAULT_GROUP,
    PROTOCOL_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the Underpass helper is not running (no socket at {path}). Start it with `sudo underpassd` or `systemctl start underpassd`")]
    NotRunning { path: PathBuf },
    #[error("permission denied on {path}{}: add your user to group `{DEFAULT_GROUP}` (`sudo usermod -aG {DEFAULT_GROUP} $USER`), then log in again", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    PermissionDenied {
        path: PathBuf,
        /// The helper's own reason, when it was the helper (not the socket's mode) that refused.
        reason: Option<String>,
    },
    #[error("the helper speaks protocol {helper}, this client speaks {PROTOCOL_VERSION}: update both to the same release")]
    VersionMismatch { helper: u32 },
    #[error("the helper refused: {0}")]
    Refused(ErrorBody),
    #[error("the helper closed the connection")]
    Closed,
    #[error("no answer from the helper within {0:?}")]
    Timeout(Duration),
    #[error("IPC protocol error: {0}")]
    Protocol(String),
    #[error("IPC I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("refusing {path}: the pipe is owned by {owner}, not by LocalSystem, so it is not the Underpass helper's")]
    NotSystemOwned { path: PathBuf, owner: String },
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ClientError::Io(e),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// One authenticated connection to the helper.
pub struct Client<S> {
    framed: Framed<S, JsonFrames<ServerMessage, ClientMessage>>,
    next_id: u64,
    events: VecDeque<Event>,
    helper_version: String,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(unix)]
impl Client<tokio::net::UnixStream> {
    /// Connects to the helper's Unix socket and does the version handshake.
    pub async fn connect(path: &Path, client_name: &str) -> Result<Self, ClientError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning { path: path.into() }
                }
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    path: path.into(),
                    reason: None,
                },
                _ => ClientError::Io(e),
            })?;
        Client::handshake_at(stream, client_name, path).await
    }
}

#[cfg(windows)]
impl Client<tokio::net::windows::named_pipe::NamedPipeClient> {
    /// Connects to the helper's named pipe, refuses it unless LocalSystem owns it (so a process
    /// that grabbed the name first is not trusted), and does the version handshake.
    pub async fn connect(path: &Path, client_name: &str) -> Result<Self, ClientError> {
        let pipe = crate::pipe::open(path).await?;
        crate::pipe::check_owner_is_system(&pipe, path)?;
        Client::handshake_at(pipe, client_name, path).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// [`Client::handshake`] on a stream to `path`, with the helper's permission refusal
    /// reported as such, naming the endpoint and the helper's reason.
    async fn handshake_at(stream: S, client_name: &str, path: &Path) -> Result<Self, ClientError> {
        match Client::handshake(stream, client_name).await {
            Err(ClientError::Refused(body)) if body.code == crate::ErrorCode::PermissionDenied => {
                Err(ClientError::PermissionDenied {
                    path: path.into(),
                    reason: Some(body.message),
                })
            }
            other => other,
        }
    }

    /// Does the version handshake on an already connected stream.
    pub async fn handshake(stream: S, client_name: &str) -> Result<Self, ClientError> {
        let mut framed = Framed::new(stream, JsonFrames::default());
        let sent = framed
            .send(ClientMessage::Hello {
                protocol: PROTOCOL_VERSION,
                client: client_name.to_string(),
            })
            .await;
        // A helper that refuses us may close before our hello is written; its reason is
        // still waiting to be read, and says more than "broken pipe".
        if let Err(e) = sent {
            return match framed.next().await {
                Some(Ok(ServerMessage::Fatal { error })) => Err(ClientError::Refused(error)),
                _ => Err(e.into()),
            };
        }
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next())
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))?;
        match reply {
            Some(Ok(ServerMessage::Hello {
                protocol,
                helper_version,
            })) if protocol == PROTOCOL_VERSION => Ok(Client {
                framed,
                next_id: 1,
                events: VecDeque::new(),
                helper_version,
            }),
            Some(Ok(ServerMessage::Hello { protocol, .. })) => {
                Err(ClientError::VersionMismatch { helper: protocol })
            }
            Some(Ok(ServerMessage::Fatal { error })) => Err(ClientError::Refused(error)),
            Some(Ok(other)) => Err(ClientError::Protocol(format!(
                "expected hello, got {other:?}"
            ))),
            Some(Err(e)) => Err(e.into()),
            None => Err(ClientError::Closed),
        }
    }

    pub fn helper_version(&self) -> &str {
        &self.helper_version
    }

    /// Sends one request and waits for its response. Events that arrive meanwhile are kept for
    /// [`Client::next_event`].
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed
            .send(ClientMessage::Request { id, request })
            .await?;
        loop {
            match self.framed.next().await {
                Some(Ok(ServerMessage::Response { id: rid, result })) if rid == id => {
                    return result.map_err(ClientError::Refused)
                }
                Some(Ok(ServerMessage::Event { event })) => self.events.push_back(event),
                Some(Ok(ServerMessage::Fatal { error })) => {
                    return Err(ClientError::Refused(error))
                }
                Some(Ok(other)) => {
                    return Err(ClientError::Protocol(format!("unexpected {other:?}")))
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed),
            }
        }
    }

    pub async fn status(&mut self) -> Result<Status, ClientError> {
        match self.request(Request::Status).await? {
            Response::Status { status } => Ok(*status),
            other => Err(ClientError::Protocol(format!(
                "expected status, got {other:?}"
            ))),
        }
    }

    /// The next pushed event (after [`Request::Subscribe`]).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            match self.framed.next().await {
                Some(Ok(ServerMessage::Event { event })) => return Ok(event),
                Some(Ok(ServerMessage::Fatal { error })) => {
                    return Err(ClientError::Refused(error))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed),
            }
        }
    }
}
