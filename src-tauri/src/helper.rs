//! The app's link to underpassd: one long-lived subscription that mirrors the helper's state,
//! and short-lived connections for requests.
//!
//! The subscription never invents a tunnel state: [`HelperView::status`] is exactly the last
//! [`Status`] the helper reported, and it is `None` whenever the helper cannot be reached, so
//! the UI shows "no helper" rather than a stale "connected". When the link drops, the watcher
//! retries with a short backoff, so the app recovers by itself when the helper comes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use underpass_proto::client::{Client, ClientError};
use underpass_proto::{Event, Request, Response, SelfTestKind, Status};

/// How the app introduces itself to the helper.
pub const CLIENT_NAME: &str = "underpass-gui";
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Plain requests answer at once; a self-test captures for a few seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// The troubleshooter probes for a few seconds (longer when packets are lost).
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the app can talk to the helper, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum LinkState {
    /// First attempt under way.
    Connecting,
    Connected,
    /// No socket, or nobody listening on it, and the helper is installed.
    NotRunning,
    /// No socket, and no helper on this computer (the `underpass-daemon` package is missing).
    NotInstalled,
    /// The helper refuses this user: not root, not in group `underpass`, and not the user of
    /// the active local session (an SSH session, or a policy that wants the group).
    PermissionDenied,
    /// The helper speaks another protocol version.
    Incompatible,
    /// Anything else (the link broke, a protocol error); retried like the others.
    Lost,
}

/// What the UI shows about the helper. Sent whole on every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HelperView {
    pub link: LinkState,
    /// Why the helper cannot be reached and what to do, in the client library's words.
    pub message: Option<String>,
    /// The socket the app uses (shown on the "no helper" screen).
    pub socket: String,
    pub helper_version: Option<String>,
    /// The last status the helper reported; `None` unless `link` is `connected`.
    pub status: Option<Status>,
}

impl HelperView {
    pub fn connecting(socket: &Path) -> HelperView {
        HelperView {
            link: LinkState::Connecting,
            message: None,
            socket: socket.display().to_string(),
            helper_version: None,
            status: None,
        }
    }

    /// `installed`: the helper is on this computer (found on disk, or seen running earlier).
    fn unreachable(socket: &Path, err: &ClientError, installed: bool) -> HelperView {
        let link = match err {
            ClientError::NotRunning { .. } if !installed => LinkState::NotInstalled,
            ClientError::NotRunning { .. } => LinkState::NotRunning,
            ClientError::PermissionDenied { .. } => LinkState::PermissionDenied,
            ClientError::VersionMismatch { .. } => LinkState::Incompatible,
            _ => LinkState::Lost,
        };
        let message = match err {
            ClientError::Closed => "the helper closed the connection (stopped or restarted)".into(),
            e => e.to_string(),
        };
        HelperView {
            link,
            message: Some(message),
            ..HelperView::connecting(socket)
        }
    }
}

/// Where the packages (and `make install`-style setups) put the helper. On other OSes the
/// helper's service is not written yet, so "not installed" is what is true there.
const HELPER_PATHS: &[&str] = &["/usr/sbin/underpassd", "/usr/local/sbin/underpassd"];

fn helper_installed() -> bool {
    cfg!(unix) && HELPER_PATHS.iter().any(|p| Path::new(p).exists())
}

/// A self-test step, forwarded as the helper reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SelfTestProgress {
    pub test: SelfTestKind,
    pub step: String,
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    View(Box<HelperView>),
    Progress(SelfTestProgress),
}

/// Follows the helper forever: connect, subscribe, forward every event to `sink`; on any
/// failure report why, wait (or until `retry` is notified) and start again.
pub async fn watch(socket: PathBuf, retry: Arc<Notify>, mut sink: impl FnMut(Update) + Send) {
    let mut delay = RETRY_MIN;
    let mut seen_helper = false;
    loop {
        let mut was_connected = false;
        let err = follow(&socket, &mut sink, &mut was_connected).await;
        seen_helper |= was_connected;
        sink(Update::View(Box::new(HelperView::unreachable(
            &socket,
            &err,
            seen_helper || helper_installed(),
        ))));
        if was_connected {
            delay = RETRY_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = retry.notified() => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn follow(
    socket: &Path,
    sink: &mut (impl FnMut(Update) + Send),
    was_connected: &mut bool,
) -> ClientError {
    let mut client = match Client::connect(socket, CLIENT_NAME).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Err(e) = client.request(Request::Subscribe).await {
        return e;
    }
    let status = match client.status().await {
        Ok(s) => s,
        Err(e) => return e,
    };
    *was_connected = true;
    let version = Some(client.helper_version().to_string());
    let view = |status: Status| HelperView {
        link: LinkState::Connected,
        message: None,
        socket: socket.display().to_string(),
        helper_version: version.clone(),
        status: Some(status),
    };
    sink(Update::View(Box::new(view(status))));
    loop {
        match client.next_event().await {
            Ok(Event::State { status }) | Ok(Event::Statistics { status }) => {
                sink(Update::View(Box::new(view(*status))))
            }
            Ok(Event::SelfTestProgress { test, step }) => {
                sink(Update::Progress(SelfTestProgress { test, step }))
            }
            Err(e) => return e,
        }
    }
}

/// One request on a connection of its own, bounded by `limit`.
pub async fn request(
    socket: &Path,
    request: Request,
    limit: Duration,
) -> Result<Response, ClientError> {
    let work = async {
        let mut client = Client::connect(socket, CLIENT_NAME).await?;
        client.request(request).await
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The app against a fake helper on a Unix socket; on Windows the client speaks a named
    /// pipe, which this fake does not.
    #[cfg(unix)]
    mod over_a_unix_socket {
        use super::*;
        use futures::{SinkExt, StreamExt};
        use std::sync::Mutex;
        use tokio::net::UnixListener;
        use tokio_util::codec::Framed;
        use underpass_proto::codec::JsonFrames;
        use underpass_proto::{ClientMessage, ServerMessage, TunnelState, PROTOCOL_VERSION};

        /// A fake helper that accepts one client and answers hello, subscribe and status.
        async fn fake_helper(listener: UnixListener, state: TunnelState) {
            let (stream, _) = listener.accept().await.unwrap();
            let mut framed: Framed<_, JsonFrames<ClientMessage, ServerMessage>> =
                Framed::new(stream, JsonFrames::default());
            let mut status = Status::disconnected();
            status.state = state;
            while let Some(Ok(msg)) = framed.next().await {
                let reply = match msg {
                    ClientMessage::Hello { .. } => ServerMessage::Hello {
                        protocol: PROTOCOL_VERSION,
                        helper_version: "test".into(),
                    },
                    ClientMessage::Request { id, request } => {
                        let response = match request {
                            Request::Subscribe => Response::Subscribed,
                            _ => Response::Status {
                                status: Box::new(status.clone()),
                            },
                        };
                        ServerMessage::Response {
                            id,
                            result: Ok(response),
                        }
                    }
                };
                framed.send(reply).await.unwrap();
            }
        }

        fn recorder() -> (Arc<Mutex<Vec<Update>>>, impl FnMut(Update) + Send) {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            (seen, move |u| s.lock().unwrap().push(u))
        }

        async fn wait_for(seen: &Arc<Mutex<Vec<Update>>>, what: impl Fn(&HelperView) -> bool) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if seen
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|u| matches!(u, Update::View(v) if what(v)))
                {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out; saw {:?}",
                    seen.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        #[tokio::test]
        async fn no_helper_is_reported_then_the_app_recovers_when_it_starts() {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("helper.sock");
            let (seen, sink) = recorder();
            let retry = Arc::new(Notify::new());
            let watcher = tokio::spawn(watch(socket.clone(), retry, sink));
            // Never seen, and (on a test machine) not installed under /usr/sbin.
            let first = if helper_installed() {
                LinkState::NotRunning
            } else {
                LinkState::NotInstalled
            };
            wait_for(&seen, |v| {
                v.link == first
                    && v.status.is_none()
                    && v.message.as_deref().unwrap_or("").contains("not running")
            })
            .await;
            let listener = UnixListener::bind(&socket).unwrap();
            let helper = tokio::spawn(fake_helper(listener, TunnelState::Connected));
            wait_for(&seen, |v| {
                v.link == LinkState::Connected
                    && v.status.as_ref().map(|s| s.state) == Some(TunnelState::Connected)
                    && v.helper_version.as_deref() == Some("test")
            })
            .await;
            // The helper goes away: the app must drop the status, not keep showing "connected".
            helper.abort();
            let _ = std::fs::remove_file(&socket);
            let n = seen.lock().unwrap().len();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let last = seen.lock().unwrap()[n - 1..].to_vec();
                if last.iter().any(|u| matches!(u, Update::View(v) if v.link != LinkState::Connected && v.status.is_none())) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            watcher.abort();
        }
    }

    #[tokio::test]
    async fn a_socket_without_permission_says_how_to_fix_it() {
        let err = ClientError::PermissionDenied {
            path: "/run/underpass/underpassd.sock".into(),
            reason: None,
        };
        let v = HelperView::unreachable(Path::new("/run/underpass/underpassd.sock"), &err, true);
        assert_eq!(v.link, LinkState::PermissionDenied);
        assert!(v.message.unwrap().contains("usermod -aG underpass"));
    }

    #[test]
    fn no_socket_is_not_installed_unless_the_helper_is_known_to_be_there() {
        let socket = Path::new("/run/underpass/underpassd.sock");
        let err = ClientError::NotRunning {
            path: socket.into(),
        };
        assert_eq!(
            HelperView::unreachable(socket, &err, false).link,
            LinkState::NotInstalled
        );
        assert_eq!(
            HelperView::unreachable(socket, &err, true).link,
            LinkState::NotRunning
        );
    }
}
