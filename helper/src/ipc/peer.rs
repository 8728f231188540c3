//! Who may talk to the helper: root, or a member of its group. Checked on every connection
//! with the kernel's own record of the peer (SO_PEERCRED), not anything the client says.

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

/// The credentials the kernel reports for the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Decides from credentials and group membership. Group lookups go through a function so the
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
        self.check_with(peer, supplementary_groups)
    }

    pub fn check_with(&self, peer: PeerCred, groups_of: impl Fn(u32, u32) -> Vec<u32>) -> Verdict {
        if peer.uid == 0 {
            return Verdict::Allowed;
        }
        if let Some(gid) = self.group {
            if peer.gid == gid.as_raw() || groups_of(peer.uid, peer.gid).contains(&gid.as_raw()) {
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

/// The groups the user database gives `uid` (as a fresh login would have them).
fn supplementary_groups(uid: u32, primary: u32) -> Vec<u32> {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    getgrouplist(&name, Gid::from_raw(primary))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
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
            auth(None).check_with(peer(0, 0), |_, _| vec![]),
            Verdict::Allowed
        );
    }

    #[test]
    fn a_member_by_supplementary_group_is_allowed() {
        let verdict = auth(Some(900)).check_with(peer(1000, 1000), |uid, _| {
            if uid == 1000 {
                vec![1000, 900]
            } else {
                vec![]
            }
        });
        assert_eq!(verdict, Verdict::Allowed);
    }

    #[test]
    fn a_member_by_primary_group_is_allowed() {
        assert_eq!(
            auth(Some(900)).check_with(peer(1000, 900), |_, _| vec![]),
            Verdict::Allowed
        );
    }

    #[test]
    fn anyone_else_is_refused_with_who_and_why() {
        let v = auth(Some(900)).check_with(peer(1001, 1001), |_, _| vec![1001]);
        assert_eq!(
            v,
            Verdict::Refused("uid 1001 (pid 42) is not root and not in group underpass".into())
        );
    }

    #[test]
    fn without_the_group_only_root_may_talk() {
        assert!(matches!(
            auth(None).check_with(peer(1000, 900), |_, _| vec![900]),
            Verdict::Refused(_)
        ));
    }
}
