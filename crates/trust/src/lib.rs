//! What Underpass trusts, and why: signed profile bundles and the machine's own policy.
//!
//! - [`bundle`]: the `.underpass` format (a minisign signature over a JSON payload), its
//!   verification, and the tunnel each of its servers describes. `docs/profile-bundles.md`
//!   is the reference.
//! - [`system`]: the root-owned system directory (`/etc/underpass/` by default) that IT
//!   provisions: pinned organization keys in `trusted-keys/`, and an optional managed policy
//!   (`policy.json`) the whole machine obeys.
//!
//! Why a crate of its own: the root helper verifies every bundle itself and must not take on
//! the per-user profile store or the OS keyring to do it; the profile store and the CLI use
//! the very same code, so a bundle the app accepts is one the helper accepts. Signing (the
//! `minisign` crate and its scrypt) is behind the `signing` feature, which only the tools
//! that sign enable.
//!
//! The policy types themselves ([`Policy`], [`SessionPolicy`]) are the IPC contract's, since
//! the helper reports them in its status.

pub mod bundle;
pub mod system;

pub use bundle::{Bundle, BundleError, BundlePayload, SignerKey};
pub use system::{ManagedPolicy, SystemDir, SystemError};
pub use underpass_proto::{KillSwitchMode, Policy, SessionPolicy};
