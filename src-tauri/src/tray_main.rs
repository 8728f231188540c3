//! `underpass-tray`: the app's tray on Linux, a process of its own (`underpass_gui::tray`).
//! It takes the app's options (`--socket`, `--config-dir`, …) and starts the window with them.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    match underpass_gui::options::Options::from_env_and_args(std::env::args_os()) {
        Ok(options) => underpass_gui::tray::process::run(options),
        Err(e) => {
            eprintln!("underpass-tray: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// On Windows and macOS the tray lives in `underpass-gui` itself.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("underpass-tray: on this OS the tray is part of underpass-gui");
    std::process::ExitCode::from(2)
}
