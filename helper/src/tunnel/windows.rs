//! The Windows data plane: a Wintun adapter (through tun-rs), one UDP socket, boringtun.
//!
//! - The adapter has a fixed GUID ([`ADAPTER_GUID`]), so Windows sees the same network every
//!   time instead of "Network 2, 3, ..." and its DNS registry keys have a known name.
//! - `wintun.dll` is loaded by absolute path from the helper's own directory (Program Files,
//!   where the MSI puts it), never from the search path or a user-writable directory.
//! - It is always the one adapter `underpass0` (`tunnel::interface_exists`). One a crashed
//!   helper left behind is removed when the service starts ([`remove_orphaned_adapters`], once
//!   the pipe is the helper's own, so no other helper runs): every network device whose
//!   `NetCfgInstanceId` is that GUID, present or not, through SetupAPI's `DIF_REMOVE`. Wintun
//!   (0.14) has no call for that; it removes orphans only when an adapter is created.
//! - The endpoint stays out of the tunnel by host routes (`routes/windows.rs`), not a mark.
//!
//! Packets are handled one at a time: Wintun has no segmentation offload to batch on.
//! Never run: Wine has no Wintun driver. It type-checks.

use std::io;

use anyhow::{Context, Result};
use ipnet::IpNet;
use tun_rs::{AsyncDevice, DeviceBuilder};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    SetupDiCallClassInstaller, SetupDiDestroyDeviceInfoList, SetupDiEnumDeviceInfo,
    SetupDiGetClassDevsW, SetupDiOpenDevRegKey, SetupDiSetClassInstallParamsW, DICS_FLAG_GLOBAL,
    DIF_REMOVE, DIREG_DRV, DI_REMOVEDEVICE_GLOBAL, GUID_DEVCLASS_NET, HDEVINFO,
    SP_CLASSINSTALL_HEADER, SP_DEVINFO_DATA, SP_REMOVEDEVICE_PARAMS,
};
use windows_sys::Win32::Foundation::{ERROR_NO_MORE_ITEMS, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Registry::KEY_QUERY_VALUE;
use winreg::RegKey;

use super::plane::{self, DataPlane};
use super::DataPlaneConfig;
use crate::winutil::guid_string;

/// The tunnel adapter's GUID, the same on every machine and every connect.
pub const ADAPTER_GUID: u128 = 0x8c9a_2f3e_5b71_4d0a_9e64_2c1f_7a0b_3d55;

impl DataPlane {
    pub(super) async fn open(cfg: DataPlaneConfig) -> Result<DataPlane> {
        let device = build_device(&cfg)?;
        plane::start(cfg, device, "Wintun").await
    }
}

fn build_device(cfg: &DataPlaneConfig) -> Result<AsyncDevice> {
    let exe = std::env::current_exe().context("finding the helper's own directory")?;
    let dll = exe
        .parent()
        .context("the helper's executable has no directory")?
        .join("wintun.dll");
    let mut builder = DeviceBuilder::new()
        .name(&cfg.interface)
        .description("Underpass")
        .device_guid(ADAPTER_GUID)
        .wintun_file(dll.to_string_lossy().into_owned())
        .mtu(cfg.mtu);
    for net in &cfg.addresses {
        builder = match net {
            IpNet::V4(n) => builder.ipv4(n.addr(), n.prefix_len(), None),
            IpNet::V6(n) => builder.ipv6(n.addr(), n.prefix_len()),
        };
    }
    builder.build_async().with_context(|| {
        format!(
            "creating Wintun adapter {} (with {})",
            cfg.interface,
            dll.display()
        )
    })
}

/// Removes the adapters a crashed helper left: every network device, present or not, whose
/// `NetCfgInstanceId` is [`ADAPTER_GUID`]. Called once at start, after the pipe is claimed (a
/// second helper stops there, before it could take the first one's live adapter). Returns
/// how many went.
pub fn remove_orphaned_adapters() -> Result<usize> {
    remove_adapters(ADAPTER_GUID)
}

fn remove_adapters(guid: u128) -> Result<usize> {
    let devices = DeviceSet::net_class()?;
    let found = devices.with_guid(guid)?;
    for device in &found {
        devices
            .remove(device)
            .with_context(|| format!("removing network adapter {}", guid_string(guid)))?;
    }
    Ok(found.len())
}

/// A SetupAPI device information set, destroyed on drop.
struct DeviceSet(HDEVINFO);

impl DeviceSet {
    /// Every device of the Net class, present or not (no `DIGCF_PRESENT`): a crashed helper's
    /// adapter may be a phantom whose GUID still blocks a new one.
    fn net_class() -> Result<DeviceSet> {
        // SAFETY: a static class GUID, no enumerator, no window.
        let set = unsafe {
            SetupDiGetClassDevsW(
                &GUID_DEVCLASS_NET,
                std::ptr::null(),
                std::ptr::null_mut(),
                0,
            )
        };
        if set == INVALID_HANDLE_VALUE as HDEVINFO {
            return Err(io::Error::last_os_error())
                .context("SetupDiGetClassDevsW(GUID_DEVCLASS_NET)");
        }
        Ok(DeviceSet(set))
    }

    /// The device at `index`, or `None` past the last one.
    fn device(&self, index: u32) -> Result<Option<SP_DEVINFO_DATA>> {
        let mut device = SP_DEVINFO_DATA {
            cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
            ..Default::default()
        };
        // SAFETY: a live set; `device` is sized as the call requires.
        if unsafe { SetupDiEnumDeviceInfo(self.0, index, &mut device) } != 0 {
            return Ok(Some(device));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_NO_MORE_ITEMS as i32) {
            Ok(None)
        } else {
            Err(e).with_context(|| format!("SetupDiEnumDeviceInfo({index})"))
        }
    }

    /// The devices whose `NetCfgInstanceId` is `guid`.
    fn with_guid(&self, guid: u128) -> Result<Vec<SP_DEVINFO_DATA>> {
        let wanted = guid_string(guid);
        let mut found = Vec::new();
        for index in 0.. {
            let Some(device) = self.device(index)? else {
                break;
            };
            if self
                .net_cfg_instance_id(&device)
                .is_some_and(|id| id.eq_ignore_ascii_case(&wanted))
            {
                found.push(device);
            }
        }
        Ok(found)
    }

    /// The `NetCfgInstanceId` in the device's driver key: the adapter's GUID. `None` for a
    /// device without a driver key (one that was never installed) or without the value.
    fn net_cfg_instance_id(&self, device: &SP_DEVINFO_DATA) -> Option<String> {
        // SAFETY: a live set and one of its devices.
        let key = unsafe {
            SetupDiOpenDevRegKey(
                self.0,
                device,
                DICS_FLAG_GLOBAL,
                0,
                DIREG_DRV,
                KEY_QUERY_VALUE,
            )
        };
        if key == INVALID_HANDLE_VALUE {
            return None;
        }
        // winreg closes the key on drop.
        RegKey::predef(key).get_value("NetCfgInstanceId").ok()
    }

    /// Uninstalls the device, as Device Manager's "Uninstall device" does: `DIF_REMOVE` with
    /// global scope. Parameters that cannot be set (Wine's `SetupDiSetClassInstallParamsW` is a
    /// stub) leave the default handler's scope, which is global too: the removal goes on, and
    /// a device still there shows at the next enumeration.
    fn remove(&self, device: &SP_DEVINFO_DATA) -> Result<()> {
        let params = SP_REMOVEDEVICE_PARAMS {
            ClassInstallHeader: SP_CLASSINSTALL_HEADER {
                cbSize: size_of::<SP_CLASSINSTALL_HEADER>() as u32,
                InstallFunction: DIF_REMOVE,
            },
            Scope: DI_REMOVEDEVICE_GLOBAL,
            HwProfile: 0,
        };
        // SAFETY: a live set and one of its devices; the header starts the parameters, whose
        // whole size is passed.
        unsafe {
            if SetupDiSetClassInstallParamsW(
                self.0,
                device,
                &params.ClassInstallHeader,
                size_of::<SP_REMOVEDEVICE_PARAMS>() as u32,
            ) == 0
            {
                let e = io::Error::last_os_error();
                tracing::warn!(error = %e, "SetupDiSetClassInstallParamsW(DIF_REMOVE), removing with the default scope");
            }
            if SetupDiCallClassInstaller(DIF_REMOVE, self.0, device) == 0 {
                return Err(io::Error::last_os_error())
                    .context("SetupDiCallClassInstaller(DIF_REMOVE)");
            }
        }
        Ok(())
    }
}

impl Drop for DeviceSet {
    fn drop(&mut self) {
        // SAFETY: the set is ours and used no more.
        unsafe { SetupDiDestroyDeviceInfoList(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
        SetupDiCreateDevRegKeyW, SetupDiCreateDeviceInfoList, SetupDiCreateDeviceInfoW,
        SetupDiRegisterDeviceInfo, DICD_GENERATE_ID,
    };

    use crate::winutil::wide;

    /// Not [`ADAPTER_GUID`]: the test must not take a live Underpass adapter with it.
    const TEST_GUID: u128 = 0x5d3b_0a7f_c1f2_4e9a_8d0b_a4e5_3f2e_9c81;

    /// Registers a Net-class device with `guid` as its `NetCfgInstanceId` and no driver: what
    /// a crashed helper's adapter looks like once it is gone (a phantom).
    fn register_phantom_adapter(guid: u128) {
        // SAFETY: a fresh set of our own; every pointer is to a live local or a static.
        unsafe {
            let set = SetupDiCreateDeviceInfoList(&GUID_DEVCLASS_NET, std::ptr::null_mut());
            assert_ne!(
                set, INVALID_HANDLE_VALUE as HDEVINFO,
                "SetupDiCreateDeviceInfoList"
            );
            let set = DeviceSet(set);
            let mut device = SP_DEVINFO_DATA {
                cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
                ..Default::default()
            };
            let name = wide("UnderpassOrphanTest");
            let ok = SetupDiCreateDeviceInfoW(
                set.0,
                name.as_ptr(),
                &GUID_DEVCLASS_NET,
                std::ptr::null(),
                std::ptr::null_mut(),
                DICD_GENERATE_ID,
                &mut device,
            );
            assert_ne!(
                ok,
                0,
                "SetupDiCreateDeviceInfoW: {}",
                io::Error::last_os_error()
            );
            let ok = SetupDiRegisterDeviceInfo(
                set.0,
                &mut device,
                0,
                None,
                std::ptr::null(),
                std::ptr::null_mut(),
            );
            assert_ne!(
                ok,
                0,
                "SetupDiRegisterDeviceInfo: {}",
                io::Error::last_os_error()
            );
            let key = SetupDiCreateDevRegKeyW(
                set.0,
                &device,
                DICS_FLAG_GLOBAL,
                0,
                DIREG_DRV,
                std::ptr::null(),
                std::ptr::null(),
            );
            assert_ne!(key, INVALID_HANDLE_VALUE, "SetupDiCreateDevRegKeyW");
            RegKey::predef(key)
                .set_value("NetCfgInstanceId", &guid_string(guid))
                .expect("writing NetCfgInstanceId");
        }
    }

    /// Runs under Wine in `npm test` (scripts/wine-test.sh), whose SetupAPI keeps devices in
    /// its registry; on Windows it needs an administrator.
    #[test]
    fn an_orphaned_adapter_with_the_guid_is_found_and_removed() {
        assert_eq!(
            remove_adapters(TEST_GUID).unwrap(),
            0,
            "a device left by an earlier run"
        );
        register_phantom_adapter(TEST_GUID);
        register_phantom_adapter(TEST_GUID ^ 1);
        assert_eq!(
            remove_adapters(TEST_GUID).unwrap(),
            1,
            "the orphan was not removed"
        );
        assert_eq!(
            remove_adapters(TEST_GUID).unwrap(),
            0,
            "the orphan is still there"
        );
        // Another GUID's device was left alone.
        assert_eq!(remove_adapters(TEST_GUID ^ 1).unwrap(), 1);
    }

    /// scripts/wine-test.sh's two halves of the service's own check, under Wine only (each
    /// refuses to run elsewhere: the first leaves a device with the real GUID): an orphan left
    /// before the MSI installs the service, and none left once the service runs.
    fn wine_only() {
        assert!(
            crate::winutil::under_wine() && std::env::var_os("UNDERPASS_WINE_TEST").is_some(),
            "only scripts/wine-test.sh runs this, under Wine"
        );
    }

    #[test]
    #[ignore = "scripts/wine-test.sh, before the MSI"]
    fn wine_leave_an_orphaned_adapter() {
        wine_only();
        register_phantom_adapter(ADAPTER_GUID);
        let found = DeviceSet::net_class()
            .unwrap()
            .with_guid(ADAPTER_GUID)
            .unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    #[ignore = "scripts/wine-test.sh, once the service runs"]
    fn wine_no_adapter_is_left() {
        wine_only();
        let found = DeviceSet::net_class()
            .unwrap()
            .with_guid(ADAPTER_GUID)
            .unwrap();
        assert!(
            found.is_empty(),
            "{} adapters with the GUID are left",
            found.len()
        );
    }
}
