//! The Windows client end of the named pipe: opened with only the rights it needs, and
//! trusted only when LocalSystem owns it.

use std::io;
use std::os::windows::io::{AsRawHandle, RawHandle};
use std::path::Path;
use std::time::Duration;

use tokio::net::windows::named_pipe::NamedPipeClient;
use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, GetSecurityInfo, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    IsWellKnownSid, WinLocalSystemSid, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_WRITE_ATTRIBUTES,
    FILE_WRITE_DATA, OPEN_EXISTING, READ_CONTROL, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
    SYNCHRONIZE,
};

use crate::client::ClientError;

/// Read and write data, not `FILE_CREATE_PIPE_INSTANCE` (which `GENERIC_WRITE` would ask for and
/// the helper's DACL does not grant), plus `READ_CONTROL` to read the owner.
const ACCESS: u32 = FILE_READ_DATA
    | FILE_WRITE_DATA
    | FILE_READ_ATTRIBUTES
    | FILE_WRITE_ATTRIBUTES
    | READ_CONTROL
    | SYNCHRONIZE;

/// Opens the pipe, waiting briefly while all its instances are busy.
pub async fn open(path: &Path) -> Result<NamedPipeClient, ClientError> {
    let name: Vec<u16> = path
        .as_os_str()
        .to_string_lossy()
        .encode_utf16()
        .chain(Some(0))
        .collect();
    for _ in 0..50 {
        // SAFETY: a NUL-terminated name; the server cannot impersonate us beyond identifying
        // us (SECURITY_IDENTIFICATION).
        let handle = unsafe {
            CreateFileW(
                name.as_ptr(),
                ACCESS,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if handle != INVALID_HANDLE_VALUE {
            // SAFETY: a fresh, owned, overlapped pipe handle.
            return unsafe { NamedPipeClient::from_raw_handle(handle as RawHandle) }
                .map_err(ClientError::Io);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_PIPE_BUSY) => tokio::time::sleep(Duration::from_millis(20)).await,
            Some(ERROR_FILE_NOT_FOUND) => {
                return Err(ClientError::NotRunning { path: path.into() })
            }
            _ if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ClientError::PermissionDenied {
                    path: path.into(),
                    reason: None,
                })
            }
            _ => return Err(ClientError::Io(e)),
        }
    }
    Err(ClientError::Timeout(Duration::from_secs(1)))
}

/// Refuses a pipe whose owner is not LocalSystem.
pub fn check_owner_is_system(pipe: &NamedPipeClient, path: &Path) -> Result<(), ClientError> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: an open handle with READ_CONTROL; `owner` points into `sd`, freed below.
    let rc = unsafe {
        GetSecurityInfo(
            pipe.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != 0 {
        return Err(ClientError::Io(io::Error::from_raw_os_error(rc as i32)));
    }
    // SAFETY: `owner` is a valid SID inside `sd`.
    let is_system = unsafe { IsWellKnownSid(owner, WinLocalSystemSid) } != 0;
    let owner_text = if is_system {
        String::new()
    } else {
        sid_string(owner)
    };
    // SAFETY: allocated by GetSecurityInfo.
    unsafe { LocalFree(sd) };
    if is_system {
        Ok(())
    } else {
        Err(ClientError::NotSystemOwned {
            path: path.into(),
            owner: owner_text,
        })
    }
}

fn sid_string(sid: PSID) -> String {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: a valid SID; the string is allocated by Windows and freed here.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return "an unknown account".into();
        }
        let len = (0..).take_while(|i| *text.add(*i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        s
    }
}

#[cfg(test)]
mod tests {
    //! These run under Wine in `npm test` (scripts/wine-test.sh). Wine does not enforce security
    //! descriptors, but it stores and reports their owner, which is what the client checks.
    use std::path::PathBuf;

    use futures::{SinkExt, StreamExt};
    use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
    use tokio_util::codec::Framed;
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;

    use crate::client::{Client, ClientError};
    use crate::codec::JsonFrames;
    use crate::{ClientMessage, ServerMessage, PROTOCOL_VERSION};

    fn pipe_name(test: &str) -> PathBuf {
        format!(r"\\.\pipe\underpass-test-{test}-{}", std::process::id()).into()
    }

    fn server(path: &PathBuf, sddl: Option<&str>) -> NamedPipeServer {
        let mut options = ServerOptions::new();
        options.first_pipe_instance(true);
        let Some(sddl) = sddl else {
            return options.create(path).unwrap();
        };
        let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut sd = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string; the descriptor is leaked (test only).
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "SDDL {sddl}");
        let mut sa = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: sd,
            bInheritHandle: 0,
        };
        // SAFETY: `sa` is valid for the call.
        unsafe {
            options
                .create_with_security_attributes_raw(
                    path,
                    (&mut sa as *mut SECURITY_ATTRIBUTES).cast(),
                )
                .unwrap()
        }
    }

    /// Answers one client's hello, as the helper would.
    async fn answer_hello(server: NamedPipeServer) {
        server.connect().await.unwrap();
        let mut conn = Framed::new(
            server,
            JsonFrames::<ClientMessage, ServerMessage>::default(),
        );
        if let Some(Ok(ClientMessage::Hello { .. })) = conn.next().await {
            let _ = conn
                .send(ServerMessage::Hello {
                    protocol: PROTOCOL_VERSION,
                    helper_version: "test".into(),
                })
                .await;
        }
    }

    #[tokio::test]
    async fn a_pipe_owned_by_local_system_is_accepted() {
        let path = pipe_name("system");
        let s = server(&path, Some("O:SYG:SYD:P(A;;GA;;;SY)(A;;GA;;;WD)"));
        let helper = tokio::spawn(answer_hello(s));
        let client = Client::connect(&path, "test").await.unwrap();
        assert_eq!(client.helper_version(), "test");
        helper.await.unwrap();
    }

    #[tokio::test]
    async fn a_pipe_owned_by_anyone_else_is_refused_before_a_word_is_sent() {
        let path = pipe_name("squatter");
        // Created with the default descriptor: owned by this (non-SYSTEM) account.
        let s = server(&path, None);
        let squatter = tokio::spawn(async move {
            s.connect().await.unwrap();
            let mut conn = Framed::new(s, JsonFrames::<ClientMessage, ServerMessage>::default());
            // The client must not send its hello to a squatter.
            !matches!(conn.next().await, Some(Ok(_)))
        });
        match Client::connect(&path, "test").await {
            Err(ClientError::NotSystemOwned { owner, .. }) => {
                assert!(!owner.is_empty())
            }
            Err(e) => panic!("expected a refusal for the owner, got {e}"),
            Ok(_) => panic!("a pipe not owned by SYSTEM was trusted"),
        }
        assert!(squatter.await.unwrap(), "the client spoke to the squatter");
    }

    #[tokio::test]
    async fn no_pipe_means_the_helper_is_not_running() {
        let path = pipe_name("absent");
        assert!(matches!(
            Client::connect(&path, "test").await,
            Err(ClientError::NotRunning { .. })
        ));
    }
}
