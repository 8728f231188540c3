//! Who may talk to the helper: root, a member of its group, or (on macOS) the user at the
//! console. Checked on every connection with the kernel's own record of the peer
//! (SO_PEERCRED on Linux, getpeereid/LOCAL_PEERCRED on macOS, both behind tokio's
//! `peer_cred`), not anything the client says.

use nix::unistd::{Gid, Group, Uid, User};

/// The credentials the kernel reports for the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Decides from credentials and group membership. The membership lookup is a parameter so the
/// rule itself is testable without real users.
pub struct Authorizer {
    /// The helper's group, when it exists on this system.
    pub group: Option<Gid>,
    pub group_name: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused(String),
}

impl Authorizer {
    pub fn new(group_name: &str) -> Authorizer {
        let group = Group::from_name(group_name).ok().flatten().map(|g| g.gid);
        Authorizer {
            group,
            group_name: group_name.to_string(),
        }
    }

    pub fn check(&self, peer: PeerCred) -> Verdict {
        self.check_with(peer, console_user(), is_member)
    }

    /// `console`: the uid of the user logged in at the console, if the OS admits them (as
    /// polkit's allow_active does for a local session).
    pub fn check_with(
        &self,
        peer: PeerCred,
        console: Option<u32>,
        is_member: impl Fn(u32, Gid) -> bool,
    ) -> Verdict {
        if peer.uid == 0 || console == Some(peer.uid) {
            return Verdict::Allowed;
        }
        if let Some(gid) = self.group {
            if peer.gid == gid.as_raw() || is_member(peer.uid, gid) {
                return Verdict::Allowed;
            }
        }
        Verdict::Refused(format!(
            "uid {} (pid {}) is not root and not in group {}",
            peer.uid,
            peer.pid.map_or("?".to_string(), |p| p.to_string()),
            self.group_name
        ))
    }
}

/// macOS: the owner of /dev/console is the user logged in at the screen (root at the login
/// window, who is admitted anyway).
#[cfg(target_os = "macos")]
fn console_user() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/dev/console").ok().map(|m| m.uid())
}

/// Linux admits root and the group; an active-session rule would go here.
#[cfg(not(target_os = "macos"))]
fn console_user() -> Option<u32> {
    None
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
        }
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
            auth(None).check_with(peer(0, 0), None, |_, _| false),
            Verdict::Allowed
        );
    }

    #[test]
    fn a_member_by_supplementary_group_is_allowed() {
        let verdict = auth(Some(900)).check_with(peer(1000, 1000), None, |uid, gid| {
            uid == 1000 && gid.as_raw() == 900
        });
        assert_eq!(verdict, Verdict::Allowed);
    }

    #[test]
    fn a_member_by_primary_group_is_allowed() {
        assert_eq!(
            auth(Some(900)).check_with(peer(1000, 900), None, |_, _| false),
            Verdict::Allowed
        );
    }

    #[test]
    fn anyone_else_is_refused_with_who_and_why() {
        let v = auth(Some(900)).check_with(peer(1001, 1001), None, |_, _| false);
        assert_eq!(
            v,
            Verdict::Refused("uid 1001 (pid 42) is not root and not in group underpass".into())
        );
    }

    #[test]
    fn without_the_group_only_root_may_talk() {
        assert!(matches!(
            auth(None).check_with(peer(1000, 900), None, |_, _| true),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn the_console_user_is_allowed_and_nobody_else_by_that_rule() {
        let a = auth(None);
        assert_eq!(
            a.check_with(peer(501, 20), Some(501), |_, _| false),
            Verdict::Allowed
        );
        assert!(matches!(
            a.check_with(peer(502, 20), Some(501), |_, _| false),
            Verdict::Refused(_)
        ));
    }
}
