//! The Tauri commands: thin wrappers over [`crate::helper`], [`crate::profiles`] and
//! [`crate::settings`]. Errors reach the UI as plain sentences.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use tauri::State;
use underpass_profile::{Catalog, ProfileSummary};
use underpass_proto::{KillSwitchMode, Request, Response, SelfTestKind, SelfTestReport};

use crate::helper::{self, HelperView, REQUEST_TIMEOUT, SELF_TEST_TIMEOUT};
use crate::profiles::ImportOutcome;
use crate::settings::{parse_prefixes, Settings};
use crate::AppState;

type Answer<T> = Result<T, String>;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn ask(state: &AppState, request: Request) -> Answer<Response> {
    let limit = if matches!(request, Request::SelfTest { .. }) {
        SELF_TEST_TIMEOUT
    } else {
        REQUEST_TIMEOUT
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
    state: State<'_, AppState>,
    paths: Vec<String>,
    trust: bool,
) -> Answer<Vec<ImportOutcome>> {
    Ok(paths
        .iter()
        .map(|p| state.profiles.import(&PathBuf::from(p), trust))
        .collect())
}

#[tauri::command]
pub fn delete_profile(state: State<'_, AppState>, name: String) -> Answer<()> {
    state.profiles.remove(&name).map_err(|e| format!("{e:#}"))
}

#[tauri::command]
pub async fn connect(
    state: State<'_, AppState>,
    profile: String,
    server: Option<String>,
) -> Answer<()> {
    crate::connect_to(&state, &profile, server.as_deref()).await
}

#[tauri::command]
pub async fn disconnect(state: State<'_, AppState>) -> Answer<()> {
    state.user_disconnect.store(true, Ordering::SeqCst);
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

#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> Settings {
    state.settings.lock().unwrap().clone()
}

/// Saves the split-tunnel lists (as typed) and the notification switch.
#[tauri::command]
pub fn save_settings(
    state: State<'_, AppState>,
    include: String,
    exclude: String,
    notifications: bool,
) -> Answer<Settings> {
    let include = parse_prefixes(&include).map_err(|e| format!("Include: {e}"))?;
    let exclude = parse_prefixes(&exclude).map_err(|e| format!("Exclude: {e}"))?;
    let settings = Settings {
        split_include: include,
        split_exclude: exclude,
        notifications,
    };
    settings.save(&state.config_dir()?)?;
    *state.settings.lock().unwrap() = settings.clone();
    Ok(settings)
}

#[tauri::command]
pub async fn self_test(state: State<'_, AppState>, test: SelfTestKind) -> Answer<SelfTestReport> {
    let request = Request::SelfTest {
        test,
        options: state.options.self_test.clone(),
    };
    match ask(&state, request).await? {
        Response::SelfTest { report } => Ok(*report),
        other => Err(format!(
            "the helper answered {other:?} to a self-test request"
        )),
    }
}
