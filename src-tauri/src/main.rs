// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    underpass_gui::window::prepare();
    let options = match underpass_gui::options::Options::from_env_and_args(std::env::args_os()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("underpass-gui: {e}");
            std::process::exit(2);
        }
    };
    underpass_gui::run(options);
}
