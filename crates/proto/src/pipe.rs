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
                return Err(ClientError::PermissionDenied { path: path.into() })
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
