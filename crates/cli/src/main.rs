//! `underpass`: the command-line front end of Underpass.
//!
//! It is unprivileged on purpose. It owns the user's profiles (through `underpass_profile`)
//! and asks the helper, `underpassd`, to do everything that needs root, over the IPC
//! contract in `underpass_proto`. It never runs a command from a profile.
//!
//! Layout: [`cli`] is the argument grammar (its names are a contract for scripts),
//! [`commands`] does the work, [`session`] holds the request/wait logic against the helper
//! (generic over the transport, so it is tested against a fake helper), and [`output`]
//! turns results into text. Errors go to stderr as `underpass: …`, with a non-zero exit.

mod cli;
mod commands;
mod diagnostics;
mod doctor;
mod output;
mod profile_cmds;
mod session;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("underpass: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our stdout went away (`| head`): nothing left to tell anyone.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("underpass: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when our stdout's reader went away; an IPC error that happens to be EPIPE is not that.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let from_ipc = e
        .chain()
        .any(|cause| cause.is::<underpass_proto::client::ClientError>());
    !from_ipc
        && e.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use underpass_proto::client::ClientError;

    #[test]
    fn a_closed_stdout_is_not_an_error() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("printing");
        assert!(is_broken_pipe(&e));
    }

    #[test]
    fn a_helper_that_hangs_up_is_an_error_not_a_closed_stdout() {
        let e = anyhow::Error::new(ClientError::Io(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!is_broken_pipe(&e));
    }
}
