//! The kill switch on Windows: the Windows Filtering Platform carries out a [`WfpPlan`].
//!
//! Underpass has its own provider and sublayer (fixed GUIDs). Two engine handles: a dynamic
//! session for the tunnel's filters, which vanish with the helper, and a plain one for the
//! persistent and boot-time base set, which outlives it on purpose. Every `apply` replaces, in
//! one transaction per handle, the session filters it installed last time and every persistent
//! or boot-time filter of our provider, so a new helper's first apply also takes out what the
//! last one left (a restart adds no second base set, and a LAN permit turned off since does
//! not survive). `remove` enumerates and
//! deletes every filter of our provider on our layers, also ones an earlier helper left, and
//! then the sublayer and provider; the uninstaller runs it too (`underpassd --uninstall-cleanup`).
//!
//! Never run: WFP is missing under Wine, and no Windows machine was at hand. It type-checks.

use std::ptr;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use windows_sys::core::GUID;
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::NetworkManagement::IpHelper::ConvertInterfaceAliasToLuid;
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::*;
use windows_sys::Win32::System::Rpc::RPC_C_AUTHN_DEFAULT;

use crate::winutil::{check, wide};

use super::wfp::{Action, Condition, Filter, Layer, Lifetime, WfpPlan};
use super::{Firewall, FirewallPolicy};

/// Underpass's WFP provider.
pub const PROVIDER: GUID = GUID::from_u128(0x5b1e_7c3a_94d2_4f0e_8a61_3d2c_9e47_b801);
/// Underpass's sublayer, at the top weight so nobody else's permits outrank our blocks.
pub const SUBLAYER: GUID = GUID::from_u128(0x5b1e_7c3a_94d2_4f0e_8a61_3d2c_9e47_b802);

const FWP_E_ALREADY_EXISTS: u32 = 0x8032_0009;
const FWP_E_NOT_FOUND: u32 = 0x8032_0008;
const FWP_E_PROVIDER_NOT_FOUND: u32 = 0x8032_0005;
const FWP_E_SUBLAYER_NOT_FOUND: u32 = 0x8032_0007;

pub struct Wfp {
    /// Both handles are opened on first use, so the helper starts (and answers its clients)
    /// even where the Base Filtering Engine is unreachable; the first apply then fails loudly.
    dynamic: Option<Engine>,
    stored: Option<Engine>,
    session_ids: Vec<u64>,
}

struct Engine(HANDLE);

impl Engine {
    fn open(dynamic: bool) -> Result<Engine> {
        let mut name = wide("Underpass");
        let session = FWPM_SESSION0 {
            displayData: FWPM_DISPLAY_DATA0 {
                name: name.as_mut_ptr(),
                description: ptr::null_mut(),
            },
            flags: if dynamic {
                FWPM_SESSION_FLAG_DYNAMIC
            } else {
                0
            },
            ..Default::default()
        };
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: all pointers are valid for the call; `handle` receives the engine.
        let rc = unsafe {
            FwpmEngineOpen0(
                ptr::null(),
                RPC_C_AUTHN_DEFAULT as u32,
                ptr::null(),
                &session,
                &mut handle,
            )
        };
        check(
            rc,
            "opening the Windows Filtering Platform engine (FwpmEngineOpen0)",
        )?;
        Ok(Engine(handle))
    }

    /// Runs `f` inside one transaction: all of it takes effect, or none.
    fn transaction(&self, f: impl FnOnce(&Engine) -> Result<()>) -> Result<()> {
        // SAFETY: a valid engine handle.
        check(
            unsafe { FwpmTransactionBegin0(self.0, 0) },
            "FwpmTransactionBegin0",
        )?;
        match f(self) {
            // SAFETY: a transaction is open on this handle.
            Ok(()) => check(
                unsafe { FwpmTransactionCommit0(self.0) },
                "FwpmTransactionCommit0",
            ),
            Err(e) => {
                // SAFETY: as above.
                unsafe { FwpmTransactionAbort0(self.0) };
                Err(e)
            }
        }
    }

    /// Adds our provider and sublayer (persistent, so persistent filters can live in them).
    fn ensure_provider(&self) -> Result<()> {
        let mut name = wide("Underpass");
        let mut provider_key = PROVIDER;
        let provider = FWPM_PROVIDER0 {
            providerKey: PROVIDER,
            displayData: FWPM_DISPLAY_DATA0 {
                name: name.as_mut_ptr(),
                description: ptr::null_mut(),
            },
            flags: FWPM_PROVIDER_FLAG_PERSISTENT,
            ..Default::default()
        };
        // SAFETY: `provider` and the strings it points to outlive the call.
        let rc = unsafe { FwpmProviderAdd0(self.0, &provider, ptr::null_mut()) };
        if rc != FWP_E_ALREADY_EXISTS {
            check(rc, "adding the Underpass WFP provider (FwpmProviderAdd0)")?;
        }
        let sublayer = FWPM_SUBLAYER0 {
            subLayerKey: SUBLAYER,
            displayData: FWPM_DISPLAY_DATA0 {
                name: name.as_mut_ptr(),
                description: ptr::null_mut(),
            },
            flags: FWPM_SUBLAYER_FLAG_PERSISTENT,
            providerKey: &mut provider_key,
            weight: u16::MAX,
            ..Default::default()
        };
        // SAFETY: as above.
        let rc = unsafe { FwpmSubLayerAdd0(self.0, &sublayer, ptr::null_mut()) };
        if rc != FWP_E_ALREADY_EXISTS {
            check(rc, "adding the Underpass WFP sublayer (FwpmSubLayerAdd0)")?;
        }
        Ok(())
    }

    fn delete(&self, ids: &[u64]) -> Result<()> {
        for id in ids {
            // SAFETY: a valid engine handle; an id that is gone already is fine.
            let rc = unsafe { FwpmFilterDeleteById0(self.0, *id) };
            if rc != FWP_E_NOT_FOUND {
                check(rc, "deleting a WFP filter (FwpmFilterDeleteById0)")?;
            }
        }
        Ok(())
    }

    /// The ids of every filter our provider has on `layer`.
    fn our_filters(&self, layer: Layer) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        self.each_filter(layer, |f| ids.push(f.filterId))?;
        Ok(ids)
    }

    /// The ids of our provider's persistent and boot-time filters on `layer`, whichever helper
    /// added them (the dynamic sessions' filters are left to their sessions).
    fn stored_filters(&self, layer: Layer) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        self.each_filter(layer, |f| {
            if f.flags & (FWPM_FILTER_FLAG_PERSISTENT | FWPM_FILTER_FLAG_BOOTTIME) != 0 {
                ids.push(f.filterId);
            }
        })?;
        Ok(ids)
    }

    /// Calls `f` with every filter of our provider in `layer`.
    fn each_filter(&self, layer: Layer, mut f: impl FnMut(&FWPM_FILTER0)) -> Result<()> {
        let mut provider = PROVIDER;
        let template = FWPM_FILTER_ENUM_TEMPLATE0 {
            providerKey: &mut provider,
            layerKey: layer_key(layer),
            enumType: FWP_FILTER_ENUM_OVERLAPPING,
            actionMask: 0xFFFF_FFFF,
            ..Default::default()
        };
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: valid engine handle and template; the enum handle is destroyed below.
        check(
            unsafe { FwpmFilterCreateEnumHandle0(self.0, &template, &mut handle) },
            "enumerating WFP filters (FwpmFilterCreateEnumHandle0)",
        )?;
        loop {
            let mut entries: *mut *mut FWPM_FILTER0 = ptr::null_mut();
            let mut n = 0u32;
            // SAFETY: valid handles; WFP allocates `entries`, freed below.
            let rc = unsafe { FwpmFilterEnum0(self.0, handle, 64, &mut entries, &mut n) };
            if rc != ERROR_SUCCESS {
                // SAFETY: the enum handle from above.
                unsafe { FwpmFilterDestroyEnumHandle0(self.0, handle) };
                check(rc, "FwpmFilterEnum0")?;
            }
            for i in 0..n as usize {
                // SAFETY: `n` valid filter pointers.
                f(unsafe { &**entries.add(i) });
            }
            if !entries.is_null() {
                // SAFETY: allocated by WFP.
                unsafe { FwpmFreeMemory0(&mut entries as *mut _ as *mut *mut core::ffi::c_void) };
            }
            if n < 64 {
                break;
            }
        }
        // SAFETY: the enum handle from above.
        unsafe { FwpmFilterDestroyEnumHandle0(self.0, handle) };
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle came from FwpmEngineOpen0; closing a dynamic session deletes its
        // filters, which is the point.
        unsafe { FwpmEngineClose0(self.0) };
    }
}

// SAFETY: the engine handle is only used from the daemon task, one call at a time.
unsafe impl Send for Engine {}

impl Firewall for Wfp {
    async fn open() -> Result<Self> {
        Ok(Wfp {
            dynamic: None,
            stored: None,
            session_ids: Vec::new(),
        })
    }

    async fn apply(&mut self, policy: &FirewallPolicy) -> Result<()> {
        let plan = WfpPlan::new(Some(policy));
        tracing::debug!(filters = %plan.render(), "WFP plan");
        let values = Values::for_policy(policy)?;
        engine(&mut self.stored, false)?.transaction(|e| {
            e.ensure_provider()?;
            for layer in Layer::ALL {
                e.delete(&e.stored_filters(layer)?)?;
            }
            for f in plan
                .with_lifetime(Lifetime::Persistent)
                .chain(plan.with_lifetime(Lifetime::BootTime))
            {
                add_filter(e, f, &values)?;
            }
            Ok(())
        })?;
        let mut new_session = Vec::new();
        engine(&mut self.dynamic, true)?.transaction(|e| {
            e.delete(&self.session_ids)?;
            for f in plan.with_lifetime(Lifetime::Session) {
                new_session.push(add_filter(e, f, &values)?);
            }
            Ok(())
        })?;
        self.session_ids = new_session;
        Ok(())
    }

    async fn remove(&mut self) -> Result<()> {
        if let Some(dynamic) = &self.dynamic {
            dynamic.transaction(|e| e.delete(&self.session_ids))?;
        }
        self.session_ids.clear();
        engine(&mut self.stored, false)?.transaction(purge)
    }

    async fn clamp_mss(&mut self, _interface: Option<&str>) -> Result<()> {
        // Wintun reports its MTU to the stack, which clamps the MSS of the host's own TCP;
        // Underpass does not route forwarded traffic on Windows.
        Ok(())
    }

    async fn admit_probes(
        &mut self,
        targets: &[std::net::SocketAddr],
        ttl: std::time::Duration,
    ) -> Result<()> {
        let plan = WfpPlan::probes(targets);
        let values = Values {
            tunnel_luid: 0,
            app_id: helper_app_id()?,
        };
        // A dynamic session of the measurement's own: closing it deletes its filters, so the
        // holes close when it is due, or with the helper.
        let session = Engine::open(true)?;
        session.transaction(|e| {
            for f in plan.with_lifetime(Lifetime::Session) {
                add_filter(e, f, &values)?;
            }
            Ok(())
        })?;
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            drop(session);
        });
        Ok(())
    }
}

/// The engine in `slot`, opened now if it is not yet.
fn engine(slot: &mut Option<Engine>, dynamic: bool) -> Result<&Engine> {
    if slot.is_none() {
        *slot = Some(Engine::open(dynamic)?);
    }
    Ok(slot.as_ref().expect("opened above"))
}

/// Deletes every filter of our provider, then the sublayer and the provider (also what an
/// earlier helper left). The uninstaller calls this through `underpassd --uninstall-cleanup`.
fn purge(e: &Engine) -> Result<()> {
    for layer in Layer::ALL {
        let ids = e.our_filters(layer)?;
        e.delete(&ids)?;
    }
    // SAFETY: valid engine handle and GUID pointers.
    let rc = unsafe { FwpmSubLayerDeleteByKey0(e.0, &SUBLAYER) };
    if rc != FWP_E_SUBLAYER_NOT_FOUND {
        check(rc, "deleting the Underpass WFP sublayer")?;
    }
    // SAFETY: as above.
    let rc = unsafe { FwpmProviderDeleteByKey0(e.0, &PROVIDER) };
    if rc != FWP_E_PROVIDER_NOT_FOUND {
        check(rc, "deleting the Underpass WFP provider")?;
    }
    Ok(())
}

/// Every filter of Underpass's provider, one line each (`layer: name, weight N`), for the
/// doctor's firewall layer.
pub fn listing() -> Result<Vec<String>> {
    let e = Engine::open(false)?;
    let mut lines = Vec::new();
    for layer in Layer::ALL {
        e.each_filter(layer, |f| {
            // SAFETY: WFP's display name is a NUL-terminated UTF-16 string (or null).
            let name = unsafe { wide_to_string(f.displayData.name) };
            // SAFETY: our filters all carry an FWP_UINT8 weight (see `add_filter`).
            let weight = unsafe { f.weight.Anonymous.uint8 };
            lines.push(format!("{layer:?}: {name}, weight {weight}"));
        })?;
    }
    Ok(lines)
}

/// # Safety
/// `p` is null or a NUL-terminated UTF-16 string.
unsafe fn wide_to_string(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: per the contract, the string ends with a NUL within its allocation.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units before the NUL.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Removes every WFP object Underpass ever installed (for the uninstaller).
pub fn purge_all() -> Result<()> {
    Engine::open(false)?.transaction(purge)
}

/// What the plan's symbolic conditions stand for on this machine.
struct Values {
    tunnel_luid: u64,
    app_id: Vec<u8>,
}

impl Values {
    fn for_policy(policy: &FirewallPolicy) -> Result<Values> {
        let tunnel_luid = match &policy.tunnel {
            Some(hole) => interface_luid(&hole.interface)?,
            None => 0,
        };
        Ok(Values {
            tunnel_luid,
            app_id: helper_app_id()?,
        })
    }
}

/// The helper's own executable as WFP names it in its app-id condition.
fn helper_app_id() -> Result<Vec<u8>> {
    let exe = std::env::current_exe().context("finding the helper's own executable")?;
    let mut path = wide(&exe.to_string_lossy());
    let mut blob: *mut FWP_BYTE_BLOB = ptr::null_mut();
    // SAFETY: a NUL-terminated path; WFP allocates `blob`, copied and freed here.
    check(
        unsafe { FwpmGetAppIdFromFileName0(path.as_mut_ptr(), &mut blob) },
        "finding the helper's app id (FwpmGetAppIdFromFileName0)",
    )?;
    // SAFETY: `blob` is valid until freed.
    let app_id =
        unsafe { std::slice::from_raw_parts((*blob).data, (*blob).size as usize) }.to_vec();
    // SAFETY: allocated by WFP.
    unsafe { FwpmFreeMemory0(&mut blob as *mut _ as *mut *mut core::ffi::c_void) };
    Ok(app_id)
}

pub fn interface_luid(alias: &str) -> Result<u64> {
    let name = wide(alias);
    let mut luid = NET_LUID_LH { Value: 0 };
    // SAFETY: a NUL-terminated alias and a valid out pointer.
    let rc = unsafe { ConvertInterfaceAliasToLuid(name.as_ptr(), &mut luid) };
    if rc != ERROR_SUCCESS {
        bail!("no interface named {alias} (ConvertInterfaceAliasToLuid: {rc})");
    }
    // SAFETY: the union's only member is the 64-bit value.
    Ok(unsafe { luid.Value })
}

/// Storage for one filter's condition values, which WFP reads through pointers. Boxed so the
/// pointers stay valid while the vectors grow.
#[derive(Default)]
#[allow(clippy::vec_box)]
struct Storage {
    v4: Vec<Box<FWP_V4_ADDR_AND_MASK>>,
    v6: Vec<Box<FWP_V6_ADDR_AND_MASK>>,
    u64s: Vec<Box<u64>>,
    blobs: Vec<Box<FWP_BYTE_BLOB>>,
}

fn add_filter(e: &Engine, f: &Filter, values: &Values) -> Result<u64> {
    let mut storage = Storage::default();
    let mut app_id = values.app_id.clone();
    let mut conditions: Vec<FWPM_FILTER_CONDITION0> = f
        .conditions
        .iter()
        .map(|c| condition(c, values, &mut app_id, &mut storage))
        .collect();
    let mut name = wide(&format!("Underpass: {}", f.name));
    let mut provider = PROVIDER;
    let filter = FWPM_FILTER0 {
        displayData: FWPM_DISPLAY_DATA0 {
            name: name.as_mut_ptr(),
            description: ptr::null_mut(),
        },
        flags: match f.lifetime {
            Lifetime::Session => 0,
            Lifetime::Persistent => FWPM_FILTER_FLAG_PERSISTENT,
            Lifetime::BootTime => FWPM_FILTER_FLAG_BOOTTIME,
        },
        providerKey: &mut provider,
        layerKey: layer_key(f.layer),
        subLayerKey: SUBLAYER,
        weight: FWP_VALUE0 {
            r#type: FWP_UINT8,
            Anonymous: FWP_VALUE0_0 { uint8: f.weight },
        },
        numFilterConditions: conditions.len() as u32,
        filterCondition: if conditions.is_empty() {
            ptr::null_mut()
        } else {
            conditions.as_mut_ptr()
        },
        action: FWPM_ACTION0 {
            r#type: match f.action {
                Action::Permit => FWP_ACTION_PERMIT,
                Action::Block => FWP_ACTION_BLOCK,
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let mut id = 0u64;
    // SAFETY: `filter` and everything it points to (`conditions`, `storage`, `name`,
    // `app_id`) live until the call returns.
    let rc = unsafe { FwpmFilterAdd0(e.0, &filter, ptr::null_mut(), &mut id) };
    check(
        rc,
        &format!("adding WFP filter \"{}\" (FwpmFilterAdd0)", f.name),
    )?;
    drop(storage);
    Ok(id)
}

fn condition(
    c: &Condition,
    values: &Values,
    app_id: &mut [u8],
    storage: &mut Storage,
) -> FWPM_FILTER_CONDITION0 {
    let make = |field: GUID, match_type, r#type, value| FWPM_FILTER_CONDITION0 {
        fieldKey: field,
        matchType: match_type,
        conditionValue: FWP_CONDITION_VALUE0 {
            r#type,
            Anonymous: value,
        },
    };
    match c {
        Condition::Loopback => make(
            FWPM_CONDITION_FLAGS,
            FWP_MATCH_FLAGS_ALL_SET,
            FWP_UINT32,
            FWP_CONDITION_VALUE0_0 {
                uint32: FWP_CONDITION_FLAG_IS_LOOPBACK,
            },
        ),
        Condition::HelperApp => {
            storage.blobs.push(Box::new(FWP_BYTE_BLOB {
                size: app_id.len() as u32,
                data: app_id.as_mut_ptr(),
            }));
            let blob = storage.blobs.last_mut().expect("pushed");
            make(
                FWPM_CONDITION_ALE_APP_ID,
                FWP_MATCH_EQUAL,
                FWP_BYTE_BLOB_TYPE,
                FWP_CONDITION_VALUE0_0 {
                    byteBlob: &mut **blob,
                },
            )
        }
        Condition::TunnelInterface | Condition::NotTunnelInterface => {
            storage.u64s.push(Box::new(values.tunnel_luid));
            let luid = storage.u64s.last_mut().expect("pushed");
            make(
                FWPM_CONDITION_IP_LOCAL_INTERFACE,
                if matches!(c, Condition::TunnelInterface) {
                    FWP_MATCH_EQUAL
                } else {
                    FWP_MATCH_NOT_EQUAL
                },
                FWP_UINT64,
                FWP_CONDITION_VALUE0_0 {
                    uint64: &mut **luid,
                },
            )
        }
        Condition::RemoteAddr(net) => address(FWPM_CONDITION_IP_REMOTE_ADDRESS, *net, storage),
        Condition::LocalAddr(net) => address(FWPM_CONDITION_IP_LOCAL_ADDRESS, *net, storage),
        Condition::RemotePort(p) => make(
            FWPM_CONDITION_IP_REMOTE_PORT,
            FWP_MATCH_EQUAL,
            FWP_UINT16,
            FWP_CONDITION_VALUE0_0 { uint16: *p },
        ),
        // WFP keeps the ICMP type in the local-port field.
        Condition::LocalPort(_) | Condition::IcmpType(_) => make(
            FWPM_CONDITION_IP_LOCAL_PORT,
            FWP_MATCH_EQUAL,
            FWP_UINT16,
            FWP_CONDITION_VALUE0_0 {
                uint16: match c {
                    Condition::LocalPort(p) => *p,
                    Condition::IcmpType(t) => u16::from(*t),
                    _ => unreachable!("matched above"),
                },
            },
        ),
        Condition::Protocol(p) => make(
            FWPM_CONDITION_IP_PROTOCOL,
            FWP_MATCH_EQUAL,
            FWP_UINT8,
            FWP_CONDITION_VALUE0_0 { uint8: p.number() },
        ),
    }
}

fn address(field: GUID, net: IpNet, storage: &mut Storage) -> FWPM_FILTER_CONDITION0 {
    let (r#type, value) = match net {
        IpNet::V4(n) => {
            storage.v4.push(Box::new(FWP_V4_ADDR_AND_MASK {
                addr: u32::from(n.network()),
                mask: u32::from(n.netmask()),
            }));
            let v = storage.v4.last_mut().expect("pushed");
            (
                FWP_V4_ADDR_MASK,
                FWP_CONDITION_VALUE0_0 {
                    v4AddrMask: &mut **v,
                },
            )
        }
        IpNet::V6(n) => {
            storage.v6.push(Box::new(FWP_V6_ADDR_AND_MASK {
                addr: n.network().octets(),
                prefixLength: n.prefix_len(),
            }));
            let v = storage.v6.last_mut().expect("pushed");
            (
                FWP_V6_ADDR_MASK,
                FWP_CONDITION_VALUE0_0 {
                    v6AddrMask: &mut **v,
                },
            )
        }
    };
    FWPM_FILTER_CONDITION0 {
        fieldKey: field,
        matchType: FWP_MATCH_EQUAL,
        conditionValue: FWP_CONDITION_VALUE0 {
            r#type,
            Anonymous: value,
        },
    }
}

fn layer_key(layer: Layer) -> GUID {
    match layer {
        Layer::ConnectV4 => FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        Layer::ConnectV6 => FWPM_LAYER_ALE_AUTH_CONNECT_V6,
        Layer::AcceptV4 => FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        Layer::AcceptV6 => FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
    }
}
