//! Who may talk to the helper: root, a member of its group, or (unless turned off) the user of
//! the active local login session, as polkit's `allow_active` admits the person at the
//! desktop. Checked on every connection with the kernel's own record of the peer (SO_PEERCRED)
//! and logind's record of its session (on macOS: the console's owner), not anything the client
//! says.

use nix::unistd::{Gid, Group, Uid, User};

/// The credentials the kernel reports for the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// What logind says about the login session a peer process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub uid: u32,
    /// In the foreground of its seat (logind's `Active`).
    pub active: bool,
    /// Opened from another host, as SSH sessions are (logind's `Remote`).
    pub remote: bool,
    /// The seat (screen, keyboard) it runs on; empty for sessions without one (SSH, cron,
    /// services). polkit counts only a session on a seat as local.
    pub seat: String,
    /// `user` for people; `greeter`, `lock-screen` and `background` are not.
    pub class: String,
}

/// Decides from credentials, group membership and the peer's session. The lookups are
/// parameters of [`Authorizer::check_with`] so the rule itself is testable without real users.
pub struct Authorizer {
    /// The helper's group, when it exists on this system.
    pub group: Option<Gid>,
    pub group_name: String,
    /// Admit the user of the active local session without the group (`--no-active-session`
    /// turns this off, as a managed policy may).
    pub active_session: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused(String),
}

impl Authorizer {
    pub fn new(group_name: &str, active_session: bool) -> Authorizer {
        let group = Group::from_name(group_name).ok().flatten().map(|g| g.gid);
        Authorizer {
            group,
            group_name: group_name.to_string(),
            active_session,
        }
    }

    /// The socket's mode: open to everyone when active sessions are admitted (the check here
    /// decides), else to the group, else root only.
    pub fn socket_mode(&self) -> u32 {
        match (self.active_session, self.group) {
            (true, _) => 0o666,
            (false, Some(_)) => 0o660,
            (false, None) => 0o600,
        }
    }

    pub async fn check(&self, peer: PeerCred) -> Verdict {
        // Group membership goes through NSS (files, LDAP, sssd...), which may block: off the
        // async runtime.
        let member = peer.uid == 0
            || match self.group {
                Some(gid) => tokio::task::spawn_blocking(move || is_member(peer.uid, gid))
                    .await
                    .unwrap_or(false),
                None => false,
            };
        let session = match (member, self.active_session, peer.pid) {
            (false, true, Some(pid)) => Some(session_of(pid).await),
            _ => None,
        };
        self.check_with(peer, |_, _| member, session)
    }

    /// `session` is logind's answer for the peer's pid (or why there is none), when asked.
    pub fn check_with(
        &self,
        peer: PeerCred,
        is_member: impl Fn(u32, Gid) -> bool,
        session: Option<Result<Session, String>>,
    ) -> Verdict {
        if peer.uid == 0 {
            return Verdict::Allowed;
        }
        if let Some(gid) = self.group {
            if peer.gid == gid.as_raw() || is_member(peer.uid, gid) {
                return Verdict::Allowed;
            }
        }
        let who = format!(
            "uid {} (pid {}) is not root and not in group {}",
            peer.uid,
            peer.pid.map_or("?".to_string(), |p| p.to_string()),
            self.group_name
        );
        if !self.active_session {
            return Verdict::Refused(who);
        }
        let why = match session {
            None => "no session to check".to_string(),
            Some(Err(e)) => e,
            // A pid reused by someone else's process must not lend its session.
            Some(Ok(s)) if s.uid != peer.uid => format!("session {} is uid {}'s", s.id, s.uid),
            Some(Ok(s)) if s.remote => format!("session {} is remote (SSH needs the group)", s.id),
            Some(Ok(s)) if s.seat.is_empty() => format!("session {} has no seat", s.id),
            Some(Ok(s)) if !s.active => format!("session {} is not the active one", s.id),
            Some(Ok(s)) if s.class != "user" => format!("session {} is a {}", s.id, s.class),
            Some(Ok(_)) => return Verdict::Allowed,
        };
        Verdict::Refused(format!("{who}, nor the active local session's user: {why}"))
    }
}

/// The logind session of `pid`, read over the system bus.
#[cfg(target_os = "linux")]
async fn session_of(pid: i32) -> Result<Session, String> {
    logind_session(pid).await.map_err(|e| format!("{e:#}"))
}

/// macOS has no logind: the owner of /dev/console is the user at the screen (root at the login
/// window, who is admitted anyway), and that is the active local session.
#[cfg(target_os = "macos")]
async fn session_of(_pid: i32) -> Result<Session, String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/dev/console")
        .map_err(|e| format!("reading the console's owner: {e}"))?
        .uid();
    Ok(Session {
        id: "console".into(),
        uid,
        active: true,
        remote: false,
        seat: "console".into(),
        class: "user".into(),
    })
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
async fn session_of(_pid: i32) -> Result<Session, String> {
    Err("login sessions are read from logind, which this OS does not have".to_string())
}

#[cfg(target_os = "linux")]
async fn logind_session(pid: i32) -> anyhow::Result<Session> {
    use anyhow::Context as _;
    use zbus::zvariant::OwnedObjectPath;

    const DEST: &str = "org.freedesktop.login1";
    let conn = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        zbus::connection::Builder::system()?
            .method_timeout(std::time::Duration::from_secs(2))
            .build()
            .await
    })
    .await
    .map_err(|_| anyhow::anyhow!("the system bus did not answer within 2 s"))?
    .context("no system bus to ask logind")?;
    let manager = zbus::Proxy::new(
        &conn,
        DEST,
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
    )
    .await
    .context("logind's manager")?;
    let pid = u32::try_from(pid).context("a negative pid")?;
    let path: OwnedObjectPath = manager
        .call("GetSessionByPID", &(pid,))
        .await
        .context("not in a login session")?;
    let session = zbus::Proxy::new(&conn, DEST, path, "org.freedesktop.login1.Session")
        .await
        .context("logind's session")?;
    let (uid, _): (u32, OwnedObjectPath) = session.get_property("User").await.context("User")?;
    let (seat, _): (String, OwnedObjectPath) =
        session.get_property("Seat").await.context("Seat")?;
    Ok(Session {
        id: session.get_property("Id").await.context("Id")?,
        uid,
        active: session.get_property("Active").await.context("Active")?,
        remote: session.get_property("Remote").await.context("Remote")?,
        seat,
        class: session.get_property("Class").await.context("Class")?,
    })
}

/// Whether the user database puts `uid` in group `gid` (as a fresh login would have it):
/// as the user's primary group, or in the group's member list.
fn is_member(uid: u32, gid: Gid) -> bool {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    user.gid == gid
        || Group::from_gid(gid)
            .ok()
            .flatten()
            .is_some_and(|g| g.mem.contains(&user.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(gid: Option<u32>) -> Authorizer {
        Authorizer {
            group: gid.map(Gid::from_raw),
            group_name: "underpass".into(),
            active_session: false,
        }
    }

    fn with_sessions() -> Authorizer {
        Authorizer {
            active_session: true,
            ..auth(Some(900))
        }
    }

    /// The active, local session of uid 1001 on seat0.
    fn desktop() -> Session {
        Session {
            id: "3".into(),
            uid: 1001,
            active: true,
            remote: false,
            seat: "seat0".into(),
            class: "user".into(),
        }
    }

    fn session_verdict(session: Session) -> Verdict {
        with_sessions().check_with(peer(1001, 1001), |_, _| false, Some(Ok(session)))
    }

    fn peer(uid: u32, gid: u32) -> PeerCred {
        PeerCred {
            uid,
            gid,
            pid: Some(42),
        }
    }

    #[test]
    fn root_is_always_allowed() {
        assert_eq!(
            auth(None).check_with(peer(0, 0), |_, _| false, None),
            Verdict::Allowed
        );
    }

    #[test]
    fn a_member_by_supplementary_group_is_allowed() {
        let verdict = auth(Some(900)).check_with(
            peer(1000, 1000),
            |uid, gid| uid == 1000 && gid.as_raw() == 900,
            None,
        );
        assert_eq!(verdict, Verdict::Allowed);
    }

    #[test]
    fn a_member_by_primary_group_is_allowed() {
        assert_eq!(
            auth(Some(900)).check_with(peer(1000, 900), |_, _| false, None),
            Verdict::Allowed
        );
    }

    #[test]
    fn anyone_else_is_refused_with_who_and_why() {
        let v = auth(Some(900)).check_with(peer(1001, 1001), |_, _| false, None);
        assert_eq!(
            v,
            Verdict::Refused("uid 1001 (pid 42) is not root and not in group underpass".into())
        );
    }

    #[test]
    fn without_the_group_only_root_may_talk() {
        assert!(matches!(
            auth(None).check_with(peer(1000, 900), |_, _| true, None),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn the_user_of_the_active_local_session_is_allowed_without_the_group() {
        assert_eq!(session_verdict(desktop()), Verdict::Allowed);
    }

    #[test]
    fn a_remote_session_needs_the_group() {
        let v = session_verdict(Session {
            remote: true,
            ..desktop()
        });
        assert_eq!(
            v,
            Verdict::Refused(
                "uid 1001 (pid 42) is not root and not in group underpass, nor the active local \
                 session's user: session 3 is remote (SSH needs the group)"
                    .into()
            )
        );
    }

    #[test]
    fn an_inactive_or_seatless_session_a_greeter_or_another_users_session_is_refused() {
        for s in [
            Session {
                seat: String::new(),
                ..desktop()
            },
            Session {
                active: false,
                ..desktop()
            },
            Session {
                class: "greeter".into(),
                ..desktop()
            },
            Session {
                uid: 1002,
                ..desktop()
            },
        ] {
            assert!(matches!(session_verdict(s), Verdict::Refused(_)));
        }
    }

    #[test]
    fn no_session_is_refused_with_loginds_reason() {
        let v = with_sessions().check_with(
            peer(1001, 1001),
            |_, _| false,
            Some(Err("not in a login session".into())),
        );
        assert!(matches!(v, Verdict::Refused(why) if why.ends_with(": not in a login session")));
    }

    #[test]
    fn with_the_rule_off_even_the_active_session_is_refused() {
        let v = auth(Some(900)).check_with(peer(1001, 1001), |_, _| false, Some(Ok(desktop())));
        assert!(matches!(v, Verdict::Refused(_)));
    }

    #[test]
    fn the_socket_is_open_only_when_the_check_admits_sessions() {
        assert_eq!(with_sessions().socket_mode(), 0o666);
        assert_eq!(auth(Some(900)).socket_mode(), 0o660);
        assert_eq!(auth(None).socket_mode(), 0o600);
    }
}
