//! nftables in-process: libnftables, the library inside `nft`, loaded at run time and handed
//! the same JSON that `nft -j -f -` reads. Spawning `nft` costs a fork, an exec and the
//! library's start-up on every change (over 10 ms on a busy machine, twice per connect); a
//! transaction through the library is one parse and one netlink batch, about a millisecond.
//!
//! It is loaded with `dlopen` rather than linked, so building the helper needs no
//! `libnftables-dev`; the `nftables` package that a kill switch needs anyway provides it.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::ptr::NonNull;

use anyhow::{anyhow, bail, Context, Result};
use libloading::Library;

const LIBRARY: &str = "libnftables.so.1";
/// `NFT_CTX_OUTPUT_JSON` from `<nftables/libnftables.h>`: JSON in (and out), as `nft -j`.
const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(flags: u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(ctx: *mut c_void);
type CtxSetFlags = unsafe extern "C" fn(ctx: *mut c_void, flags: c_uint);
type CtxBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(ctx: *mut c_void, buf: *const c_char) -> c_int;

/// One libnftables context. Not shared: each call takes `&mut self`.
pub struct Libnftables {
    ctx: NonNull<c_void>,
    free: CtxFree,
    run_cmd: RunCmd,
    error_buffer: CtxGetBuffer,
    output_buffer: CtxGetBuffer,
    // Last, so the functions above stay mapped until the context is freed in `drop`.
    _library: Library,
}

// SAFETY: a libnftables context has no thread affinity; `&mut self` on every use means it is
// never used from two threads at once.
unsafe impl Send for Libnftables {}

impl Libnftables {
    pub fn open() -> Result<Libnftables> {
        // SAFETY: loading libnftables runs only its ELF constructors, which have no
        // preconditions.
        let library = unsafe { Library::new(LIBRARY) }
            .with_context(|| format!("loading {LIBRARY} (install the nftables package)"))?;
        // SAFETY: each symbol is declared with its C prototype from libnftables.h (stable
        // since nftables 0.9); the function pointers are used only while `library` lives.
        unsafe {
            let symbol = |name: &str| anyhow!("{LIBRARY} has no {name}");
            let ctx_new: CtxNew = *library
                .get(b"nft_ctx_new\0")
                .map_err(|_| symbol("nft_ctx_new"))?;
            let free: CtxFree = *library
                .get(b"nft_ctx_free\0")
                .map_err(|_| symbol("nft_ctx_free"))?;
            let set_flags: CtxSetFlags = *library
                .get(b"nft_ctx_output_set_flags\0")
                .map_err(|_| symbol("nft_ctx_output_set_flags"))?;
            let buffer_output: CtxBuffer = *library
                .get(b"nft_ctx_buffer_output\0")
                .map_err(|_| symbol("nft_ctx_buffer_output"))?;
            let buffer_error: CtxBuffer = *library
                .get(b"nft_ctx_buffer_error\0")
                .map_err(|_| symbol("nft_ctx_buffer_error"))?;
            let output_buffer: CtxGetBuffer = *library
                .get(b"nft_ctx_get_output_buffer\0")
                .map_err(|_| symbol("nft_ctx_get_output_buffer"))?;
            let error_buffer: CtxGetBuffer = *library
                .get(b"nft_ctx_get_error_buffer\0")
                .map_err(|_| symbol("nft_ctx_get_error_buffer"))?;
            let run_cmd: RunCmd = *library
                .get(b"nft_run_cmd_from_buffer\0")
                .map_err(|_| symbol("nft_run_cmd_from_buffer"))?;
            let ctx =
                NonNull::new(ctx_new(0)).ok_or_else(|| anyhow!("{LIBRARY}: nft_ctx_new failed"))?;
            set_flags(ctx.as_ptr(), OUTPUT_JSON);
            // Messages go to buffers that we read, never to the helper's stdout and stderr.
            if buffer_output(ctx.as_ptr()) != 0 || buffer_error(ctx.as_ptr()) != 0 {
                free(ctx.as_ptr());
                bail!("{LIBRARY}: cannot buffer its output");
            }
            Ok(Libnftables {
                ctx,
                free,
                run_cmd,
                error_buffer,
                output_buffer,
                _library: library,
            })
        }
    }

    /// Runs one JSON document (`{"nftables": [...]}`) as one transaction: all of it, or, on
    /// error, none of it, with nft's own message.
    pub fn run(&mut self, json: &str) -> Result<()> {
        let command = CString::new(json).context("nftables JSON with a NUL byte")?;
        // SAFETY: a live context and a NUL-terminated buffer that outlives the call.
        let rc = unsafe { (self.run_cmd)(self.ctx.as_ptr(), command.as_ptr()) };
        // Read both buffers every time, so neither grows across calls.
        let errors = self.take(self.error_buffer);
        let _ = self.take(self.output_buffer);
        if rc == 0 {
            Ok(())
        } else {
            let errors = errors.trim();
            bail!(
                "nftables refused the change: {}",
                if errors.is_empty() {
                    "no reason given"
                } else {
                    errors
                }
            )
        }
    }

    fn take(&self, get: CtxGetBuffer) -> String {
        // SAFETY: a live context; the returned string stays valid until the next call on it,
        // and it is copied out at once.
        unsafe {
            let p = get(self.ctx.as_ptr());
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }
}

impl Drop for Libnftables {
    fn drop(&mut self) {
        // SAFETY: the context was made by nft_ctx_new and is freed once.
        unsafe { (self.free)(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_change_carries_nfts_own_reason() {
        let mut nft = Libnftables::open().expect("libnftables (package nftables) is installed");
        let err = nft
            .run(r#"{"nftables": [{"add": {"chain": {"family": "inet", "table": "underpass-test-no-such-table", "name": "c"}}}]}"#)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("nftables refused the change"), "{text}");
        assert!(!text.contains("no reason given"), "{text}");
    }

    #[test]
    fn text_that_is_not_json_is_refused() {
        let mut nft = Libnftables::open().unwrap();
        assert!(nft.run("{ this is not json").is_err());
    }
}
