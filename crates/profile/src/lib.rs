//! Profiles: the wg-quick files providers hand out, the signed bundles IT departments hand
//! out, and keeping both per user.
//!
//! - [`wgquick`] parses and writes wg-quick `.conf` files. Hook lines (`PostUp = iptables …`)
//!   are read but **never executed**: a profile is data, and the helper only ever receives a
//!   [`underpass_proto::TunnelConfig`]. The importer shows the user what was dropped.
//! - [`bundle`] reads and verifies signed profile bundles (`.underpass`: a minisign signature
//!   and a JSON payload) with `underpass-trust`, the code the helper verifies them with too,
//!   and keeps the keys a user chose to trust. Its format is documented in
//!   `docs/profile-bundles.md`; a bundle carries a [`bundle::Policy`] the session must obey.
//! - [`store`] keeps profiles under the user's config dir, every write atomic, with a format
//!   version so a newer file is refused clearly rather than misread. Private keys go to the
//!   OS keyring ([`secrets`]), or to 0600 files only when the user opts in.
//! - [`foreign`] recognises OpenVPN and IPsec files, so importing one says plainly what it is
//!   and what to ask for instead of failing on its first line.
//! - [`batch`] reads a folder or `.zip` of wg-quick files; [`location`] infers a server's
//!   country and city from its file name; [`catalog`] groups every server by country;
//!   [`choice`] is the candidates of a user's choice ("the fastest in Sweden"), ranked, for
//!   the CLI and the app alike.
//!
//! This crate does no networking: resolving an endpoint's host name is the helper's job,
//! just before it installs routes.

pub mod batch;
pub mod bundle;
pub mod catalog;
pub mod choice;
pub mod foreign;
pub mod location;
pub mod secrets;
pub mod store;
pub mod wgquick;

pub use bundle::{Bundle, BundleError, KillSwitchMode, Policy, SignerKey, TrustStore};
pub use catalog::{Catalog, CatalogCountry, CatalogServer};
pub use location::Location;
pub use secrets::Keystore;
pub use store::{
    default_config_dir, BundleInfo, ImportOptions, ImportReport, LoadedProfile, NameError,
    ProfileName, ProfileSummary, ServerInfo, Store, StoreError,
};
pub use wgquick::{parse, IgnoredHook, Interface, ParseError, Parsed, Peer, WgQuickConfig};
