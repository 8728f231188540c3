//! Routing on Windows: IP Helper carries out the plan of [`super::ipplan`].
//!
//! The tunnel adapter gets a low interface metric, the tunnel's prefixes (`/0` as two `/1`s)
//! point at it, and each endpoint and excluded prefix gets a route through the physical default
//! gateway. `NotifyRouteChange2` reports default-route changes; the bypass routes then follow
//! the new gateway. Bypass routes carry a marker metric, so routes left by a crashed helper are
//! found and deleted at the next start (the tunnel's own routes vanish with its adapter).
//!
//! Never run: Wine lacks the IP Helper write calls (`CreateIpForwardEntry2` aborts there), and
//! no Windows machine was at hand. It type-checks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::NetworkManagement::IpHelper::*;
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::Networking::WinSock::{RouteProtocolNetMgmt, AF_INET, AF_INET6, AF_UNSPEC};

use super::ipplan::{
    physical_gateway, windows_routes, ForwardRow, Gateway, NextHop, Route, TUNNEL_INTERFACE_METRIC,
};
use super::{RouteLookup, RouteManager, RoutePlan};
use crate::winutil::{check, ip_of, sockaddr};

/// The route metric of bypass routes: longest-prefix match picks them anyway, and the odd
/// value marks them as Underpass's.
const BYPASS_METRIC: u32 = 7570;
const ERROR_NOT_FOUND: u32 = 1168;
const ERROR_OBJECT_ALREADY_EXISTS: u32 = 5010;

pub struct IpHelperRoutes {
    installed: Arc<Mutex<Installed>>,
    watcher: Option<Watcher>,
}

#[derive(Default)]
struct Installed {
    plan: Option<RoutePlan>,
    tunnel_luid: u64,
    routes: Vec<MIB_IPFORWARD_ROW2>,
}

struct Watcher {
    handles: [HANDLE; 2],
    wake: *const Notify,
    task: JoinHandle<()>,
}

// SAFETY: the notification handles and the context pointer are only touched in `restore`,
// through `&mut self`; shared references never read them.
unsafe impl Send for Watcher {}
unsafe impl Sync for Watcher {}
// SAFETY: the rows are plain data (no pointers).
unsafe impl Send for Installed {}

impl RouteManager for IpHelperRoutes {
    async fn open() -> Result<Self> {
        Ok(IpHelperRoutes {
            installed: Arc::default(),
            watcher: None,
        })
    }

    async fn remove_stale(&mut self) -> Result<()> {
        for row in forward_table()? {
            if row.Metric == BYPASS_METRIC && row.Protocol == RouteProtocolNetMgmt {
                delete_row(&row)?;
            }
        }
        Ok(())
    }

    async fn free_table_and_mark(&self) -> Result<(u32, u32)> {
        // Windows has neither policy-routing tables nor firewall marks: host routes instead.
        Ok((0, 0))
    }

    async fn apply(&mut self, plan: &RoutePlan) -> Result<()> {
        let luid = crate::firewall::interface_luid(&plan.interface)?;
        for family in [AF_INET, AF_INET6] {
            set_interface_metric(luid, family)?;
        }
        {
            let mut installed = self.installed.lock();
            installed.plan = Some(plan.clone());
            installed.tunnel_luid = luid;
        }
        if let Err(e) = reinstall(&self.installed) {
            let _ = self.restore().await;
            return Err(e);
        }
        self.watcher = Some(watch(self.installed.clone())?);
        Ok(())
    }

    async fn restore(&mut self) -> Result<()> {
        if let Some(w) = self.watcher.take() {
            for h in w.handles {
                // SAFETY: handles from NotifyRouteChange2; after this no callback runs.
                unsafe { CancelMibChangeNotify2(h) };
            }
            w.task.abort();
            // SAFETY: the pointer came from Arc::into_raw in `watch`, and no callback holds it.
            unsafe { drop(Arc::from_raw(w.wake)) };
        }
        let mut installed = self.installed.lock();
        for row in installed.routes.drain(..) {
            delete_row(&row)?;
        }
        installed.plan = None;
        Ok(())
    }

    async fn default_gateways(&self) -> Vec<IpAddr> {
        let tunnel = self.installed.lock().tunnel_luid;
        let mut out: Vec<IpAddr> = forward_table()
            .unwrap_or_default()
            .iter()
            .filter_map(forward_row)
            .filter(|r| r.destination.prefix_len() == 0 && r.luid != tunnel)
            .map(|r| r.next_hop)
            .filter(|g| !g.is_unspecified())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    async fn lookup(&self, dst: IpAddr, _fwmark: Option<u32>) -> Option<RouteLookup> {
        // No marks on Windows: the helper's own traffic follows the host routes to endpoints.
        let route = best_route(dst)?;
        let mut row = MIB_IPINTERFACE_ROW {
            Family: family(dst),
            InterfaceLuid: route.InterfaceLuid,
            ..Default::default()
        };
        // SAFETY: a valid row with family and LUID set.
        let link_mtu =
            (unsafe { GetIpInterfaceEntry(&mut row) } == 0).then(|| row.NlMtu.min(65535) as u16);
        let mut alias = [0u16; 257];
        // SAFETY: a valid LUID and a buffer of the stated length.
        let rc = unsafe {
            ConvertInterfaceLuidToAlias(&route.InterfaceLuid, alias.as_mut_ptr(), alias.len())
        };
        let end = alias.iter().position(|c| *c == 0).unwrap_or(alias.len());
        Some(RouteLookup {
            destination: dst,
            interface: if rc == 0 {
                String::from_utf16_lossy(&alias[..end])
            } else {
                String::new()
            },
            gateway: None,
            source: None,
            route_mtu: None,
            link_mtu,
        })
    }

    fn watch_changes() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // The daemon watches for its whole life: the sender and the registrations are never
        // freed, so no callback can outlive its context.
        let context: *const tokio::sync::mpsc::UnboundedSender<()> = Box::into_raw(Box::new(tx));
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: `context` is leaked above and stays valid for the process; the callbacks
        // only read it. AF_UNSPEC covers IPv4 and IPv6.
        unsafe {
            check(
                NotifyRouteChange2(
                    AF_UNSPEC,
                    Some(changed_route),
                    context.cast(),
                    false,
                    &mut handle,
                ),
                "watching routes (NotifyRouteChange2)",
            )?;
            check(
                NotifyUnicastIpAddressChange(
                    AF_UNSPEC,
                    Some(changed_address),
                    context.cast(),
                    false,
                    &mut handle,
                ),
                "watching addresses (NotifyUnicastIpAddressChange)",
            )?;
            check(
                NotifyIpInterfaceChange(
                    AF_UNSPEC,
                    Some(changed_interface),
                    context.cast(),
                    false,
                    &mut handle,
                ),
                "watching interfaces (NotifyIpInterfaceChange)",
            )?;
        }
        Ok(rx)
    }
}

/// Tells the daemon's watch that something changed (it debounces and looks the routes up).
///
/// # Safety
/// `context` is the sender leaked by `watch_changes`.
unsafe fn tell(context: *const core::ffi::c_void) {
    // SAFETY: see above; a closed channel (the daemon gone) is fine to ignore.
    let _ = unsafe { &*context.cast::<tokio::sync::mpsc::UnboundedSender<()>>() }.send(());
}

unsafe extern "system" fn changed_route(
    context: *const core::ffi::c_void,
    _row: *const MIB_IPFORWARD_ROW2,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: Windows passes back the context `watch_changes` registered.
    unsafe { tell(context) }
}

unsafe extern "system" fn changed_address(
    context: *const core::ffi::c_void,
    _row: *const MIB_UNICASTIPADDRESS_ROW,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: as above.
    unsafe { tell(context) }
}

unsafe extern "system" fn changed_interface(
    context: *const core::ffi::c_void,
    _row: *const MIB_IPINTERFACE_ROW,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: as above.
    unsafe { tell(context) }
}

/// Removes what is installed and installs the plan again, with the current gateways.
fn reinstall(installed: &Mutex<Installed>) -> Result<()> {
    let mut installed = installed.lock();
    let Some(plan) = installed.plan.clone() else {
        return Ok(());
    };
    let rows: Vec<ForwardRow> = forward_table()?.iter().filter_map(forward_row).collect();
    let luid = installed.tunnel_luid;
    let v4 = physical_gateway(&rows, true, Some(luid));
    let v6 = physical_gateway(&rows, false, Some(luid));
    let wanted = windows_routes(&plan, v4, v6);
    for row in installed.routes.drain(..) {
        delete_row(&row)?;
    }
    for route in wanted {
        let row = route_row(&route, luid);
        // SAFETY: a fully initialized row.
        let rc = unsafe { CreateIpForwardEntry2(&row) };
        if rc != ERROR_OBJECT_ALREADY_EXISTS {
            check(
                rc,
                &format!(
                    "adding the route to {} (CreateIpForwardEntry2)",
                    route.destination
                ),
            )?;
        }
        installed.routes.push(row);
    }
    tracing::info!(
        routes = installed.routes.len(),
        ?v4,
        ?v6,
        "Windows routes installed"
    );
    Ok(())
}

/// Follows default-route changes: the bypass routes move to the new physical gateway.
fn watch(installed: Arc<Mutex<Installed>>) -> Result<Watcher> {
    let wake = Arc::new(Notify::new());
    let context = Arc::into_raw(wake.clone());
    let mut handles: [HANDLE; 2] = [std::ptr::null_mut(); 2];
    for (i, family) in [AF_INET, AF_INET6].into_iter().enumerate() {
        // SAFETY: `context` stays alive until `restore` cancels the notifications.
        let rc = unsafe {
            NotifyRouteChange2(
                family,
                Some(on_route_change),
                context.cast(),
                false,
                &mut handles[i],
            )
        };
        check(rc, "watching routes (NotifyRouteChange2)")?;
    }
    let task = tokio::spawn(async move {
        loop {
            wake.notified().await;
            // Several changes come at once when a network switches: settle first.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(e) = reinstall(&installed) {
                tracing::warn!(error = %format!("{e:#}"), "moving the bypass routes to the new gateway");
            }
        }
    });
    Ok(Watcher {
        handles,
        wake: context,
        task,
    })
}

unsafe extern "system" fn on_route_change(
    context: *const core::ffi::c_void,
    row: *const MIB_IPFORWARD_ROW2,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: Windows passes the row it reports (or null) and our context pointer.
    let is_default = row.is_null() || unsafe { (*row).DestinationPrefix.PrefixLength } == 0;
    if is_default {
        // SAFETY: `context` is the Notify that `watch` leaked; it outlives the notifications.
        unsafe { (*context.cast::<Notify>()).notify_one() };
    }
}

fn route_row(route: &Route, tunnel_luid: u64) -> MIB_IPFORWARD_ROW2 {
    let mut row = MIB_IPFORWARD_ROW2::default();
    // SAFETY: initializes the row's defaults.
    unsafe { InitializeIpForwardEntry(&mut row) };
    row.DestinationPrefix.Prefix = sockaddr(route.destination.network());
    row.DestinationPrefix.PrefixLength = route.destination.prefix_len();
    row.Protocol = RouteProtocolNetMgmt;
    match route.next_hop {
        NextHop::Tunnel => {
            row.InterfaceLuid = NET_LUID_LH { Value: tunnel_luid };
            let any: IpAddr = match route.destination {
                IpNet::V4(_) => IpAddr::from([0u8; 4]),
                IpNet::V6(_) => IpAddr::from([0u8; 16]),
            };
            row.NextHop = sockaddr(any);
            row.Metric = 0;
        }
        NextHop::Physical(Gateway { luid, next_hop }) => {
            row.InterfaceLuid = NET_LUID_LH { Value: luid };
            row.NextHop = sockaddr(next_hop);
            row.Metric = BYPASS_METRIC;
        }
    }
    row
}

fn delete_row(row: &MIB_IPFORWARD_ROW2) -> Result<()> {
    // SAFETY: a row as read from or written to the table.
    let rc = unsafe { DeleteIpForwardEntry2(row) };
    if rc == ERROR_NOT_FOUND {
        return Ok(());
    }
    check(rc, "deleting a route (DeleteIpForwardEntry2)")
}

fn forward_table() -> Result<Vec<MIB_IPFORWARD_ROW2>> {
    let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: IP Helper allocates the table, freed below.
    check(
        unsafe { GetIpForwardTable2(AF_UNSPEC, &mut table) },
        "reading the routing table (GetIpForwardTable2)",
    )?;
    // SAFETY: the table holds NumEntries rows.
    let rows = unsafe {
        std::slice::from_raw_parts((*table).Table.as_ptr(), (*table).NumEntries as usize)
    }
    .to_vec();
    // SAFETY: allocated by GetIpForwardTable2.
    unsafe { FreeMibTable(table.cast()) };
    Ok(rows)
}

fn forward_row(row: &MIB_IPFORWARD_ROW2) -> Option<ForwardRow> {
    let dst = ip_of(&row.DestinationPrefix.Prefix)?;
    let mut iface = MIB_IPINTERFACE_ROW {
        Family: if dst.is_ipv4() { AF_INET } else { AF_INET6 },
        InterfaceLuid: row.InterfaceLuid,
        ..Default::default()
    };
    // SAFETY: a valid row with family and LUID set.
    let iface_metric = if unsafe { GetIpInterfaceEntry(&mut iface) } == 0 {
        iface.Metric
    } else {
        0
    };
    Some(ForwardRow {
        destination: IpNet::new(dst, row.DestinationPrefix.PrefixLength).ok()?,
        // SAFETY: the union's only member is the 64-bit value.
        luid: unsafe { row.InterfaceLuid.Value },
        next_hop: ip_of(&row.NextHop)?,
        metric: row.Metric.saturating_add(iface_metric),
    })
}

fn set_interface_metric(luid: u64, family: u16) -> Result<()> {
    let mut row = MIB_IPINTERFACE_ROW::default();
    // SAFETY: initializes the row's defaults.
    unsafe { InitializeIpInterfaceEntry(&mut row) };
    row.Family = family;
    row.InterfaceLuid = NET_LUID_LH { Value: luid };
    // SAFETY: family and LUID set.
    if unsafe { GetIpInterfaceEntry(&mut row) } != 0 {
        // The family is not enabled on the adapter (no IPv6 address): nothing to set.
        return Ok(());
    }
    row.UseAutomaticMetric = false;
    row.Metric = TUNNEL_INTERFACE_METRIC;
    // IPv4 rows must not carry a site prefix length.
    row.SitePrefixLength = 0;
    // SAFETY: a row read back from GetIpInterfaceEntry.
    check(
        unsafe { SetIpInterfaceEntry(&mut row) },
        "setting the tunnel's interface metric (SetIpInterfaceEntry)",
    )
}

fn best_route(dst: IpAddr) -> Option<MIB_IPFORWARD_ROW2> {
    let mut route = MIB_IPFORWARD_ROW2::default();
    let mut source = Default::default();
    let dest = sockaddr(dst);
    // SAFETY: valid pointers; a zero LUID and index let Windows choose.
    let rc = unsafe {
        GetBestRoute2(
            std::ptr::null(),
            0,
            std::ptr::null(),
            &dest,
            0,
            &mut route,
            &mut source,
        )
    };
    (rc == 0).then_some(route)
}

fn family(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}
