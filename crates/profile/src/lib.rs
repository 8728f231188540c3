//! Profiles: importing the wg-quick files providers hand out, and keeping them per user.
//!
//! - [`wgquick`] parses and writes wg-quick `.conf` files. Hook lines (`PostUp = iptables …`)
//!   are read but **never executed**: a profile is data, and the helper only ever receives a
//!   [`underpass_proto::TunnelConfig`]. The importer shows the user what was dropped.
//! - [`store`] keeps profiles under the user's config dir, with secrets in separate 0600
//!   files, every write atomic, and a format version so a newer file is refused clearly
//!   rather than misread.
//!
//! This crate does no I/O beyond the store's own directory, and no networking: resolving an
//! endpoint's host name is the helper's job, just before it installs routes.

pub mod store;
pub mod wgquick;

pub use store::{
    default_config_dir, ImportOptions, ImportReport, LoadedProfile, NameError, ProfileName,
    ProfileSummary, Store, StoreError,
};
pub use wgquick::{parse, IgnoredHook, Interface, ParseError, Parsed, Peer, WgQuickConfig};
