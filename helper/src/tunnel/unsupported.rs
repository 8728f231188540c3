//! Placeholder for the operating systems whose data plane is not written yet (macOS utun,
//! Windows Wintun). It type-checks and refuses clearly; it never pretends to work.

use std::sync::Arc;

use anyhow::{bail, Result};
use tokio::sync::Notify;

use super::peers::PeerTable;
use super::DataPlaneConfig;

pub struct DataPlane {
    peers: PeerTable,
    interface: String,
}

impl DataPlane {
    pub async fn start(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let _ = DataPlane {
            peers: PeerTable::new(&cfg.private_key, &cfg.peers, cfg.roaming()),
            interface: cfg.interface,
        };
        bail!("the data plane is not supported on this OS yet (Linux only for now)")
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    pub fn handshakes(&self) -> Arc<Notify> {
        Arc::new(Notify::new())
    }

    pub fn pause_switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::default()
    }

    pub fn force_handshake(&self) {}

    pub fn set_offline(&self, _offline: bool) {}

    pub fn unreachable_sends(&self) -> u64 {
        0
    }

    pub async fn stop(self) {}
}
