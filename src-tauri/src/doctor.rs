//! The troubleshooter (Diagnostics → Troubleshoot). The helper walks the seven layers when
//! asked (`Request::Doctor`, the same request `underpass doctor` sends): the app runs nothing
//! itself and needs no rights. It keeps the last report for the diagnostics report, and hands
//! the webview the report with its text from the one renderer the CLI prints too
//! ([`DoctorReport::to_text`]), so "Copy for support" copies exactly what `underpass doctor`
//! would have printed.

use serde::Serialize;
use underpass_proto::{DoctorOptions, DoctorReport, Request, Response};

use crate::AppState;

/// One troubleshooter run as the webview gets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DoctorRun {
    pub report: DoctorReport,
    /// The plain-text form, for "Copy for support".
    pub text: String,
}

impl DoctorRun {
    pub fn new(report: DoctorReport) -> DoctorRun {
        DoctorRun {
            text: report.to_text(),
            report,
        }
    }
}

/// Asks the helper for the report and remembers it for the diagnostics report.
pub async fn run(state: &AppState) -> Result<DoctorRun, String> {
    let request = Request::Doctor {
        options: DoctorOptions::default(),
    };
    match crate::commands::ask(state, request).await? {
        Response::Doctor { report } => {
            *state.doctor.lock().unwrap() = Some((*report).clone());
            Ok(DoctorRun::new(*report))
        }
        other => Err(format!(
            "the helper answered {other:?} to the troubleshooter"
        )),
    }
}

/// Applies the MTU the path-MTU probe measured (as `underpass doctor --apply-mtu`), then
/// checks again. The helper refuses it when the profile sets `MTU =` itself.
pub async fn apply_mtu(state: &AppState, mtu: u16) -> Result<DoctorRun, String> {
    match crate::commands::ask(state, Request::SetMtu { mtu }).await? {
        Response::Accepted => {}
        other => return Err(format!("the helper answered {other:?} to setting the MTU")),
    }
    tracing::info!("tunnel MTU set to {mtu} from the troubleshooter");
    run(state).await
}
