//! The Unix-socket transport: a 0660 socket owned by the helper's group, and every peer's
//! credentials (SO_PEERCRED) checked against the [`Authorizer`] before anything is read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use underpass_proto::codec::JsonFrames;
use underpass_proto::ErrorCode;

use super::peer::{Authorizer, PeerCred, Verdict};
use super::{fatal, handle, Conn, Shared, Who, MAX_CONNECTIONS};

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
            let why = format!("{MAX_CONNECTIONS} clients are already connected; try again later");
            tracing::warn!("connection refused: {why}");
            // Told why, within the write timeout, then closed: never a silent hang-up.
            tokio::spawn(async move {
                let mut conn: Conn<UnixStream> = Framed::new(stream, JsonFrames::default());
                fatal(&mut conn, ErrorCode::Busy, why).await;
            });
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            admit(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn admit(stream: UnixStream, shared: &Shared) {
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
    let mut conn: Conn<UnixStream> = Framed::new(stream, JsonFrames::default());
    if let Verdict::Refused(why) = shared.authorizer.check(cred).await {
        tracing::warn!("refused IPC connection: {why}");
        fatal(&mut conn, ErrorCode::PermissionDenied, why).await;
        return;
    }
    let who = Who {
        uid: Some(cred.uid),
        pid: cred.pid.and_then(|p| u32::try_from(p).ok()),
    };
    handle(conn, who, shared).await;
}
