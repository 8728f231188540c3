//! Placeholder for the operating systems whose data plane is not written: it type-checks and
//! refuses clearly; it never pretends to work.

use anyhow::{bail, Result};

use super::peers::PeerTable;
use super::{Controls, DataPlaneConfig};

pub struct DataPlane {
    pub(super) interface: String,
    pub(super) controls: Controls,
}

impl DataPlane {
    pub(super) async fn open(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let _ = DataPlane {
            controls: Controls::new(PeerTable::new(&cfg.private_key, &cfg.peers, cfg.roaming())),
            interface: cfg.interface,
        };
        bail!("the data plane is not supported on this OS yet")
    }

    pub(super) async fn close(self) {}
}
