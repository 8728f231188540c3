//! The IPC contract between `underpassd` (the privileged helper) and its unprivileged
//! clients: the `underpass` CLI and the desktop app.
//!
//! Design decisions, so they need not be re-litigated:
//! - **Rust types are the contract.** Both sides depend on this crate; the UI's TypeScript
//!   types are derived from these.
//! - **JSON in length-delimited frames.** Each frame is a 4-byte big-endian length followed by
//!   one serde_json document. Frames above [`MAX_FRAME_LEN`] are refused *before* their body is
//!   read, so a client cannot make the helper allocate unbounded memory.
//! - **Version handshake first.** A client sends [`ClientMessage::Hello`]; the helper answers
//!   [`ServerMessage::Hello`] or an error and closes. Nothing else is accepted before it.
//! - **Requests are data, never commands.** A client can ask only for what [`Request`] lists;
//!   the helper validates every field (see `validate` on each type).
//! - **Events are pushed**, to every subscribed connection, and never block the helper: a slow
//!   subscriber misses intermediate events rather than stalling the others.

pub mod client;
pub mod codec;
mod doctor_text;
mod key;
mod messages;
#[cfg(windows)]
mod pipe;

pub use key::{Key, KeyError};
pub use messages::*;

/// Bumped on every incompatible change of the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Hard cap on one frame's JSON body, in bytes. A connect request with 64 peers and hundreds of
/// prefixes is far below this.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Where the helper listens unless told otherwise.
#[cfg(not(any(windows, target_os = "macos")))]
pub const DEFAULT_SOCKET: &str = "/run/underpass/underpassd.sock";
/// macOS has no /run (its system volume is read-only): the socket lives in /var/run.
#[cfg(target_os = "macos")]
pub const DEFAULT_SOCKET: &str = "/var/run/underpass/underpassd.sock";
/// Where the helper listens unless told otherwise: a named pipe on Windows.
#[cfg(windows)]
pub const DEFAULT_SOCKET: &str = r"\\.\pipe\underpassd";

/// The group whose members may talk to the helper.
pub const DEFAULT_GROUP: &str = "underpass";
