//! The named-pipe transport on Windows.
//!
//! - The helper creates the pipe as its *first instance* (`FILE_FLAG_FIRST_PIPE_INSTANCE`): if
//!   someone else created it first, the helper refuses to start instead of sharing a name with a
//!   squatter.
//! - Its security descriptor ([`PIPE_SDDL`]) makes SYSTEM the owner (clients check that) and
//!   admits SYSTEM fully, and Administrators and interactive users to read and write data, but
//!   not to create pipe instances of their own (`GENERIC_WRITE` would include that right).
//!   Remote clients are rejected.
//! - The DACL is the admission check, so no connection from anyone else ever exists; the
//!   client's process id is logged. Then the same contract and frame caps as on Unix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use underpass_proto::codec::JsonFrames;
use windows_sys::Win32::Foundation::{LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;

use super::{handle, Shared, Who, MAX_CONNECTIONS};
use crate::winutil::wide;

/// Owner and group SYSTEM; DACL (protected): SYSTEM all access; Administrators (BA) and
/// interactive users (IU) 0x12019B = read/write data, read/write attributes, read control,
/// synchronize, without FILE_CREATE_PIPE_INSTANCE.
pub const PIPE_SDDL: &str = "O:SYG:SYD:P(A;;GA;;;SY)(A;;0x12019B;;;BA)(A;;0x12019B;;;IU)";

/// A security descriptor built from SDDL, freed on drop.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn from_sddl(sddl: &str) -> Result<Descriptor> {
        let text = wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out pointer.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            bail!(
                "building the pipe's security descriptor from {sddl}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Descriptor(sd))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

fn create(path: &Path, first: bool) -> std::io::Result<NamedPipeServer> {
    let sd = Descriptor::from_sddl(PIPE_SDDL).map_err(std::io::Error::other)?;
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    // SAFETY: `attributes` and the descriptor it points to outlive the call.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .max_instances(MAX_CONNECTIONS + 1)
            .create_with_security_attributes_raw(
                path,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
            )
    }
}

/// Creates the pipe's first instance; fails if the name is taken (another helper, or a squatter).
pub fn bind(path: &Path) -> Result<NamedPipeServer> {
    create(path, true).with_context(|| {
        format!(
            "creating named pipe {} (is another underpassd, or something else, already using it?)",
            path.display()
        )
    })
}

pub async fn serve(mut server: NamedPipeServer, shared: Arc<Shared>, path: PathBuf) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if let Err(e) = server.connect().await {
            tracing::warn!(error = %e, pipe = %path.display(), "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // The next client needs a fresh instance before this one is handed off.
        let connected = match create(&path, false) {
            Ok(next) => std::mem::replace(&mut server, next),
            Err(e) => {
                tracing::warn!(error = %e, pipe = %path.display(), "creating the next pipe instance");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: {MAX_CONNECTIONS} clients already connected");
            continue;
        };
        let who = Who {
            uid: None,
            pid: client_pid(&connected),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handle(Framed::new(connected, JsonFrames::default()), who, &shared).await;
            drop(permit);
        });
    }
}

fn client_pid(pipe: &NamedPipeServer) -> Option<u32> {
    use std::os::windows::io::AsRawHandle;
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle and a valid out pointer.
    let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) };
    (ok != 0).then_some(pid)
}
