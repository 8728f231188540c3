//! underpassd as a Windows service (`underpassd --service`, as the MSI installs it).
//!
//! The service control manager starts the process; the `windows-service` crate connects it to
//! the SCM and reports StartPending, Running once the helper is ready (as systemd's READY=1),
//! and Stopped. Failure actions (restart after 1 s, 5 s, 30 s) are
//! set here in code, because wixl cannot express `util:ServiceConfig`. The dependencies on BFE
//! (the Base Filtering Engine, which the kill switch needs) and NSI are in the MSI's
//! `ServiceInstall`. Stop and shutdown end the helper as SIGTERM does on Unix; power events
//! (suspend, resume) are logged and handed to the daemon's resume handling by `on_power`.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use windows_service::service::{
    PowerEventParam, ServiceAccess, ServiceAction, ServiceActionType, ServiceControl,
    ServiceControlAccept, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::logring::LogRing;
use crate::Args;

pub const SERVICE_NAME: &str = "underpassd";

static START: OnceLock<(Args, LogRing)> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the service control manager; returns when the service has stopped.
pub fn run(args: Args, log: LogRing) -> Result<()> {
    let _ = START.set((args, log));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .context("connecting to the service control manager (run underpassd without --service outside the SCM)")
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = run_service() {
        tracing::error!(error = %format!("{e:#}"), "the service failed");
    }
}

fn run_service() -> Result<()> {
    let (args, log) = START
        .get()
        .cloned()
        .context("service started without arguments")?;
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel::<()>();
    let status = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = stop_tx.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::PowerEvent(event) => {
            on_power(event);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .context("registering the service control handler")?;
    let report = |state, accept| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: ServiceExitCode::Win32(0),
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        })
    };
    if let Err(e) = set_failure_actions() {
        // Wine's SCM, for one, does not store them; the service runs regardless.
        tracing::warn!(error = %format!("{e:#}"), "setting the service's failure actions");
    }
    // Start pending until the kill switch of a lockdown or a wanted tunnel is in force and the
    // pipe listens (as systemd's READY=1 on Linux): a service that depends on us, or an
    // installer waiting for Running, then finds the helper answering.
    report(ServiceState::StartPending, ServiceControlAccept::empty())
        .context("reporting StartPending")?;
    let ready = || {
        let accept = ServiceControlAccept::STOP
            | ServiceControlAccept::SHUTDOWN
            | ServiceControlAccept::POWER_EVENT;
        if let Err(e) = report(ServiceState::Running, accept) {
            tracing::error!(error = %e, "reporting Running to the service control manager");
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(crate::run(args, log, ready, async move {
            stop_rx.recv().await;
            Ok(())
        }));
    report(ServiceState::Stopped, ServiceControlAccept::empty()).context("reporting Stopped")?;
    result
}

/// Restart after a crash: 1 s, then 5 s, then every 30 s; the count resets after a day.
fn set_failure_actions() -> Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("opening the service manager")?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
        .context("opening the underpassd service")?;
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(1), restart(5), restart(30)]),
        })
        .context("ChangeServiceConfig2W(SERVICE_CONFIG_FAILURE_ACTIONS)")?;
    service
        .set_failure_actions_on_non_crash_failures(true)
        .context("ChangeServiceConfig2W(SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)")
}

/// What the MSI's uninstall runs after stopping the service. Every part is tried; the first
/// failure is reported at the end.
pub fn uninstall_cleanup(state_dir: &std::path::Path) -> Result<()> {
    let mut result = crate::firewall::purge_all().context("removing the WFP objects");
    if let Err(e) = crate::dns::remove_leftovers() {
        result = result.and(Err(e));
    }
    if state_dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(state_dir) {
            result =
                result.and(Err(e).with_context(|| format!("removing {}", state_dir.display())));
        }
    }
    // The Underpass directory under ProgramData, once empty.
    if let Some(parent) = state_dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "uninstall cleanup");
    }
    result
}

/// Hands suspend and resume to the daemon (`power::windows`), which heals the tunnel on resume
/// as on Linux. Windows has no delay lock to release: nobody waits for the acknowledgement.
fn on_power(event: PowerEventParam) {
    match event {
        PowerEventParam::Suspend => {
            tracing::info!("the system is going to sleep");
            let (ready, _) = tokio::sync::oneshot::channel();
            crate::power::notify(crate::power::PowerEvent::Suspending { ready });
        }
        PowerEventParam::ResumeAutomatic | PowerEventParam::ResumeSuspend => {
            tracing::info!("the system woke up");
            crate::power::notify(crate::power::PowerEvent::Resumed);
        }
        _ => {}
    }
}
