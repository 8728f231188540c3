fn main() {
    // Declaring the commands makes Tauri generate one permission per command, so the
    // capability in capabilities/main.json must name each one the webview may call.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "helper_view",
            "retry_helper",
            "list_profiles",
            "server_catalog",
            "import_paths",
            "delete_profile",
            "public_key",
            "save_public_key",
            "connect",
            "disconnect",
            "set_kill_switch",
            "set_lan_access",
            "get_settings",
            "save_settings",
            "self_test",
            "take_open_requests",
            "export_report",
            "run_doctor",
            "apply_mtu",
            "window_ready",
        ]),
    ))
    .expect("tauri build script");
}
