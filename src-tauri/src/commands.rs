//! The Tauri commands: thin wrappers over [`crate::helper`], [`crate::profiles`] and
//! [`crate::settings`]. Errors reach the UI as plain sentences.

use std::path::PathBuf;

use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt as _;
use underpass_profile::{Catalog, ProfileSummary};
use underpass_proto::{KillSwitchMode, Request, Response, SelfTestKind, SelfTestReport};

use crate::connect::{Connecting, Target};
use crate::doctor::DoctorRun;
use crate::helper::{self, HelperView, DOCTOR_TIMEOUT, REQUEST_TIMEOUT, SELF_TEST_TIMEOUT};
use crate::links::OpenRequest;
use crate::profiles::ImportOutcome;
use crate::settings::{Settings, SettingsForm};
use crate::{desktop, report, AppState};

type Answer<T> = Result<T, String>;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub(crate) async fn ask(state: &AppState, request: Request) -> Answer<Response> {
    let limit = match request {
        Request::SelfTest { .. } => SELF_TEST_TIMEOUT,
        Request::Doctor { .. } => DOCTOR_TIMEOUT,
        _ => REQUEST_TIMEOUT,
    };
    helper::request(&state.options.socket, request, limit)
        .await
        .map_err(text)
}

#[tauri::command]
pub fn helper_view(state: State<'_, AppState>) -> HelperView {
    state.view.lock().unwrap().clone()
}

/// Try to reach the helper now instead of at the next retry.
#[tauri::command]
pub fn retry_helper(state: State<'_, AppState>) {
    state.retry.notify_one();
}

#[tauri::command]
pub fn list_profiles(state: State<'_, AppState>) -> Answer<Vec<ProfileSummary>> {
    state.profiles.list().map_err(|e| format!("{e:#}"))
}

#[tauri::command]
pub fn server_catalog(state: State<'_, AppState>) -> Answer<Catalog> {
    state.profiles.catalog().map_err(|e| format!("{e:#}"))
}

#[tauri::command]
pub async fn import_paths(
    app: AppHandle,
    state: State<'_, AppState>,
    paths: Vec<String>,
    trust: bool,
) -> Answer<Vec<ImportOutcome>> {
    let out: Vec<ImportOutcome> = paths
        .iter()
        .map(|p| state.profiles.import(&PathBuf::from(p), trust))
        .collect();
    // A link's bundle has served once it is imported (an untrusted one waits for the prompt).
    if out.iter().all(|o| o.untrusted.is_none()) {
        if let Ok(dir) = state.config_dir() {
            crate::links::clear_inbox(&dir.join(crate::links::INBOX));
        }
    }
    crate::profiles_changed(&app);
    Ok(out)
}

/// Deletes a profile; Connect forgets it if it was the last one used. (Async: it rebuilds the
/// tray menu, which must not run on the main thread.)
#[tauri::command]
pub async fn delete_profile(
    app: AppHandle,
    state: State<'_, AppState>,
    name: String,
) -> Answer<()> {
    state.profiles.remove(&name).map_err(|e| format!("{e:#}"))?;
    if let Err(e) = state.change_settings(|settings| Ok(settings.forget_profile(&name))) {
        tracing::warn!("could not forget the deleted profile as the last server: {e}");
    }
    crate::profiles_changed(&app);
    Ok(())
}

#[tauri::command]
pub fn public_key(state: State<'_, AppState>, name: String) -> Answer<String> {
    state
        .profiles
        .public_key(&name)
        .map_err(|e| format!("{e:#}"))
}

/// Writes the profile's public key to `path` (chosen in a save dialog), one line.
#[tauri::command]
pub fn save_public_key(state: State<'_, AppState>, name: String, path: String) -> Answer<()> {
    let key = state
        .profiles
        .public_key(&name)
        .map_err(|e| format!("{e:#}"))?;
    underpass_profile::store::write_file_atomic(
        &PathBuf::from(&path),
        format!("{key}\n").as_bytes(),
    )
    .map_err(|e| format!("{path}: {e}"))
}

#[tauri::command]
pub async fn connect(state: State<'_, AppState>, target: Target) -> Answer<Connecting> {
    crate::connect::connect(&state, &target).await
}

#[tauri::command]
pub async fn disconnect(state: State<'_, AppState>) -> Answer<()> {
    ask(&state, Request::Disconnect).await.map(|_| ())
}

#[tauri::command]
pub async fn set_kill_switch(state: State<'_, AppState>, mode: KillSwitchMode) -> Answer<()> {
    let current = state.view.lock().unwrap().status.clone();
    if let Some(profile) = current.and_then(|s| s.profile) {
        let min = state
            .profiles
            .min_kill_switch(&profile)
            .map_err(|e| format!("{e:#}"))?;
        if mode < min {
            return Err(format!(
                "the policy of profile \"{profile}\" requires the kill switch to be at least \"{min}\""
            ));
        }
    }
    ask(&state, Request::SetKillSwitch { mode })
        .await
        .map(|_| ())
}

#[tauri::command]
pub async fn set_lan_access(state: State<'_, AppState>, allow: bool) -> Answer<()> {
    ask(&state, Request::SetLanAccess { allow })
        .await
        .map(|_| ())
}

/// The saved settings, with "launch at login" as the OS's autostart entry says.
#[tauri::command]
pub fn get_settings(app: AppHandle, state: State<'_, AppState>) -> Settings {
    let mut settings = state.settings();
    if let Ok(on) = app.autolaunch().is_enabled() {
        settings.launch_at_login = on;
    }
    settings
}

/// Saves the Settings screen's form (lists as typed, validated here) and applies "launch at
/// login" to the OS's autostart entry.
#[tauri::command]
pub fn save_settings(
    app: AppHandle,
    state: State<'_, AppState>,
    form: SettingsForm,
) -> Answer<Settings> {
    // Read, change and save under one lock, so a connect remembering its server meanwhile
    // is not overwritten.
    let settings = state.change_settings(|current| {
        *current = form.apply(current)?;
        Ok(true)
    })?;
    let autostart = app.autolaunch();
    if settings.launch_at_login != autostart.is_enabled().unwrap_or(false) {
        let done = if settings.launch_at_login {
            autostart.enable()
        } else {
            autostart.disable()
        };
        done.map_err(|e| format!("the rest is saved, but launch at login: {e}"))?;
    }
    Ok(settings)
}

/// The front end has rendered the helper's state in a newly built window; `shown` is its
/// state line.
#[tauri::command]
pub fn window_ready(app: AppHandle, shown: String) {
    crate::window::ready(&app, &shown);
}

/// The links and files the app was asked to open and the webview has not handled yet.
#[tauri::command]
pub fn take_open_requests(state: State<'_, AppState>) -> Vec<OpenRequest> {
    std::mem::take(&mut *state.pending_open.lock().unwrap())
}

#[tauri::command]
pub async fn self_test(state: State<'_, AppState>, test: SelfTestKind) -> Answer<SelfTestReport> {
    let request = Request::SelfTest {
        test,
        options: state.options.self_test.clone(),
    };
    match ask(&state, request).await? {
        Response::SelfTest { report } => {
            {
                let mut kept = state.self_tests.lock().unwrap();
                kept.retain(|r| r.test != report.test);
                kept.push((*report).clone());
            }
            if state.settings().notifications {
                if let Some(n) = desktop::self_test_note(&report) {
                    desktop::notify(&n.title, &n.body);
                }
            }
            Ok(*report)
        }
        other => Err(format!(
            "the helper answered {other:?} to a self-test request"
        )),
    }
}

/// Runs the troubleshooter in the helper (Diagnostics → Troubleshoot).
#[tauri::command]
pub async fn run_doctor(state: State<'_, AppState>) -> Answer<DoctorRun> {
    crate::doctor::run(&state).await
}

/// Applies the MTU the troubleshooter measured, and runs it again.
#[tauri::command]
pub async fn apply_mtu(state: State<'_, AppState>, mtu: u16) -> Answer<DoctorRun> {
    crate::doctor::apply_mtu(&state, mtu).await
}

/// Writes a diagnostics report (the helper's status, the last self-tests and troubleshooter
/// run, the app's and the helper's logs) to the Downloads folder, or the home folder, and returns its path.
#[tauri::command]
pub async fn export_report(app: AppHandle, state: State<'_, AppState>) -> Answer<String> {
    use tauri::Manager as _;
    let helper_log = match ask(&state, Request::RecentLogs).await {
        Ok(Response::Logs { lines }) => Ok(lines),
        Ok(other) => Err(format!("the helper answered {other:?}")),
        Err(e) => Err(e),
    };
    let view = state.view.lock().unwrap().clone();
    let now = time::OffsetDateTime::now_utc();
    let stamp = |f: &str| {
        time::format_description::parse_borrowed::<2>(f)
            .ok()
            .and_then(|d| now.format(&d).ok())
            .unwrap_or_default()
    };
    let self_tests = state.self_tests.lock().unwrap().clone();
    let doctor = state.doctor.lock().unwrap().clone();
    let unreachable = view
        .message
        .clone()
        .unwrap_or_else(|| "the helper is not reachable".into());
    let text = report::render(&report::Parts {
        generated_at: &stamp("[year]-[month]-[day] [hour]:[minute]:[second] UTC"),
        app_version: env!("CARGO_PKG_VERSION"),
        os: report::os_line(),
        helper_version: view.helper_version.as_deref(),
        status: view.status.as_ref().ok_or(unreachable.as_str()),
        self_tests: &self_tests,
        doctor: doctor.as_ref(),
        app_log: state
            .options
            .log_dir
            .as_deref()
            .map(|d| report::app_log_tail(d, report::APP_LOG_LINES))
            .unwrap_or_default(),
        helper_log,
    });
    let dir = app
        .path()
        .download_dir()
        .ok()
        .filter(|d| d.is_dir())
        .or_else(|| app.path().home_dir().ok())
        .ok_or("there is no Downloads or home folder to save the report in")?;
    let path = dir.join(format!(
        "underpass-report-{}.txt",
        stamp("[year][month][day]-[hour][minute][second]")
    ));
    underpass_profile::store::write_file_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!("diagnostics report written to {}", path.display());
    Ok(path.display().to_string())
}
