//! Sleep and resume on Linux: logind's `org.freedesktop.login1.Manager.PrepareForSleep` signal
//! on the system bus.
//!
//! While awake the helper holds a delay inhibitor (`Inhibit("sleep", "Underpass", …, "delay")`,
//! a file descriptor: closing it releases the lock), so logind waits for the helper before the
//! machine sleeps. On `PrepareForSleep(true)` the daemon is told and answers once it is between
//! two system changes; the lock is released then (or after [`READY_WAIT`] whatever happens).
//! On `PrepareForSleep(false)` the daemon is told of the resume, and a new lock is taken.
//!
//! Only signals from the bus name's current owner count: on the system bus anyone may emit a
//! signal with logind's path and interface.
//!
//! The bus is the system bus (`DBUS_SYSTEM_BUS_ADDRESS` honoured), or `--logind-bus ADDRESS`
//! (tests point it at a private bus with a stand-in). Without logind (containers, no system
//! bus) the watcher logs once and ends; the daemon's clock gap still notices resumes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use zbus::zvariant::OwnedFd;

use super::{PowerEvent, PowerEvents};
use crate::daemon::Settings;

const DESTINATION: &str = "org.freedesktop.login1";
const PATH: &str = "/org/freedesktop/login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
/// A logind that does not answer must not keep the watcher from the next signal for long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the watcher waits for the daemon's acknowledgement of a coming sleep before it lets
/// go of its delay lock anyway (logind itself waits at most InhibitDelayMaxSec, 5 s by default).
const READY_WAIT: Duration = Duration::from_secs(2);
const WHY: &str = "Hold the tunnel's state steady, and heal it at once after the resume";

/// Starts following logind in a task of its own; its events arrive on the returned channel.
pub fn watch(settings: &Settings) -> Option<PowerEvents> {
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = settings.logind_bus.clone();
    tokio::spawn(async move {
        if let Err(e) = follow(bus.as_deref(), &tx).await {
            tracing::info!(
                bus = bus.as_deref().unwrap_or("the system bus"),
                error = %format!("{e:#}"),
                "not following logind's sleep signals; a resume is still noticed by the clock gap"
            );
        }
    });
    Some(rx)
}

async fn follow(bus: Option<&str>, tx: &mpsc::UnboundedSender<PowerEvent>) -> Result<()> {
    let builder = match bus {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    };
    let conn = timeout(CALL_TIMEOUT, builder?.method_timeout(CALL_TIMEOUT).build())
        .await
        .context("connecting to the bus timed out")?
        .context("connecting to the bus")?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(PATH)?
        .interface(MANAGER)?
        .member("PrepareForSleep")?
        .build();
    let mut signals = timeout(
        CALL_TIMEOUT,
        zbus::MessageStream::for_match_rule(rule, &conn, Some(8)),
    )
    .await
    .context("subscribing to PrepareForSleep timed out")?
    .context("subscribing to PrepareForSleep")?;
    let mut owner = logind_owner(&conn).await?;
    let mut lock = take_lock(&conn).await;
    tracing::info!(
        delay_lock = lock.is_some(),
        "following logind's sleep signals"
    );
    while let Some(message) = signals.next().await {
        let message = message.context("reading logind's signals")?;
        let sender = message.header().sender().map(|s| s.to_string());
        if sender != owner {
            // logind may have restarted since; ask once who owns its name now.
            owner = logind_owner(&conn).await?;
            if sender != owner {
                tracing::warn!(?sender, "ignoring a PrepareForSleep not sent by logind");
                continue;
            }
        }
        let sleeping: bool = match message.body().deserialize() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed PrepareForSleep");
                continue;
            }
        };
        if sleeping {
            let (ready, acked) = oneshot::channel();
            if tx.send(PowerEvent::Suspending { ready }).is_err() {
                return Ok(());
            }
            let acked = matches!(timeout(READY_WAIT, acked).await, Ok(Ok(())));
            let released = lock.take().is_some();
            tracing::info!(acked, released, "ready for sleep: delay lock released");
        } else {
            if tx.send(PowerEvent::Resumed).is_err() {
                return Ok(());
            }
            if lock.is_none() {
                lock = take_lock(&conn).await;
            }
            tracing::info!(
                delay_lock = lock.is_some(),
                "logind says the machine woke up"
            );
        }
    }
    bail!("logind's signal stream ended")
}

/// The unique name now owning logind's name (None while nobody does).
async fn logind_owner(conn: &zbus::Connection) -> Result<Option<String>> {
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .context("the bus's own interface")?;
    let name = zbus::names::BusName::try_from(DESTINATION)?;
    match timeout(CALL_TIMEOUT, dbus.get_name_owner(name)).await {
        Ok(Ok(owner)) => Ok(Some(owner.to_string())),
        Ok(Err(zbus::fdo::Error::NameHasNoOwner(_))) => bail!("logind is not on the bus"),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("asking who owns logind's name")),
        Err(_) => bail!("asking who owns logind's name timed out"),
    }
}

/// A delay inhibitor, held as long as the descriptor lives; None (after saying why) if logind
/// refuses or does not answer: sleep then simply does not wait for the helper.
async fn take_lock(conn: &zbus::Connection) -> Option<OwnedFd> {
    let call = conn.call_method(
        Some(DESTINATION),
        PATH,
        Some(MANAGER),
        "Inhibit",
        &("sleep", "Underpass", WHY, "delay"),
    );
    let reply = match timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "logind refused a delay inhibitor");
            return None;
        }
        Err(_) => {
            tracing::warn!("logind did not answer Inhibit in time");
            return None;
        }
    };
    match reply.body().deserialize::<OwnedFd>() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(error = %e, "logind's Inhibit answer carried no descriptor");
            None
        }
    }
}
