//! The Rust side of `csrc/c10d_shim.cpp`: libtorch's TCPStore and process groups (Gloo on the
//! CPU, NCCL on GPUs) as safe types. Every call that can fail returns the C++ message as an
//! error; nothing here panics.

use anyhow::{anyhow, Result};
use std::ffi::{c_char, CStr, CString};
use std::ptr::null_mut;
use std::time::Duration;
use tch::Tensor;

#[repr(C)]
struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
struct RawPg {
    _private: [u8; 0],
}
#[repr(C)]
struct RawWork {
    _private: [u8; 0],
}

extern "C" {
    fn loam_c10d_free_string(s: *mut c_char);
    fn loam_c10d_has_gloo() -> bool;
    fn loam_c10d_has_nccl() -> bool;
    fn loam_store_connect(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world: i64,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    fn loam_store_clone(s: *mut RawStore, out: *mut *mut RawStore) -> *mut c_char;
    fn loam_store_free(s: *mut RawStore);
    fn loam_store_set(
        s: *mut RawStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    fn loam_store_get(
        s: *mut RawStore,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> *mut c_char;
    fn loam_store_add(
        s: *mut RawStore,
        key: *const c_char,
        delta: i64,
        out: *mut i64,
    ) -> *mut c_char;
    fn loam_store_check(s: *mut RawStore, key: *const c_char, exists: *mut bool) -> *mut c_char;
    fn loam_pg_gloo(
        s: *mut RawStore,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        hostname: *const c_char,
        out: *mut *mut RawPg,
    ) -> *mut c_char;
    fn loam_pg_nccl(
        s: *mut RawStore,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        device: i32,
        out: *mut *mut RawPg,
    ) -> *mut c_char;
    fn loam_pg_free(pg: *mut RawPg);
    fn loam_pg_allreduce_sum(
        pg: *mut RawPg,
        t: *mut torch_sys::C_tensor,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn loam_pg_broadcast(
        pg: *mut RawPg,
        t: *mut torch_sys::C_tensor,
        root: i32,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn loam_pg_scatter(
        pg: *mut RawPg,
        output: *mut torch_sys::C_tensor,
        inputs: *const *mut torch_sys::C_tensor,
        n: usize,
        root: i32,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    fn loam_work_wait(w: *mut RawWork) -> *mut c_char;
    fn loam_work_free(w: *mut RawWork);
}

/// Which collective backends this binary was built with, for `loam --version`.
pub const BACKENDS: &str = env!("LOAM_C10D_BACKENDS");

/// Whether ProcessGroupGloo was compiled in (CPU tensors).
pub fn has_gloo() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { loam_c10d_has_gloo() }
}

/// Whether ProcessGroupNCCL was compiled in (CUDA tensors).
pub fn has_nccl() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { loam_c10d_has_nccl() }
}

/// Turns the shim's error string (or null) into a Result, freeing the string.
fn check(err: *mut c_char) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd string, freed exactly once here.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { loam_c10d_free_string(err) };
    Err(anyhow!(
        "{}",
        msg.lines().next().unwrap_or("c10d failed").trim()
    ))
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("`{s}` contains a NUL byte"))
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// A client of (or, on the rank that hosts it, the server of) a c10d TCPStore.
pub struct Store {
    raw: *mut RawStore,
}

// SAFETY: c10d::TCPStore serializes its operations with a mutex; the handle is only freed in
// Drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Connects to `host:port` (hosting it when `is_server`); a server with `world > 0`
    /// waits until that many ranks joined. Operations wait at most `timeout`.
    pub fn connect(
        host: &str,
        port: u16,
        is_server: bool,
        world: usize,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Store> {
        let (host, prefix) = (c_string(host)?, c_string(prefix)?);
        {
            let mut raw = null_mut();
            // SAFETY: valid C strings for the call's duration; `raw` receives a new handle.
            check(unsafe {
                loam_store_connect(
                    host.as_ptr(),
                    port,
                    is_server,
                    world as i64,
                    millis(timeout),
                    prefix.as_ptr(),
                    &mut raw,
                )
            })?;
            Ok(Store { raw })
        }
    }

    /// Another connection to the same store, for another thread.
    pub fn clone_connection(&self) -> Result<Store> {
        {
            let mut raw = null_mut();
            // SAFETY: self.raw is a live handle.
            check(unsafe { loam_store_clone(self.raw, &mut raw) })?;
            Ok(Store { raw })
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c_string(key)?;
        // SAFETY: live handle, valid key and byte slice for the call's duration.
        check(unsafe { loam_store_set(self.raw, key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value of `key`, waiting for it up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let key = c_string(key)?;
        {
            let (mut data, mut len) = (null_mut(), 0usize);
            // SAFETY: live handle; on success `data` is a malloc'd buffer of `len` bytes.
            check(unsafe { loam_store_get(self.raw, key.as_ptr(), &mut data, &mut len) })?;
            let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
            unsafe { loam_c10d_free_string(data.cast()) };
            Ok(value)
        }
    }

    /// Adds `delta` to the counter `key` (created at 0) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let key = c_string(key)?;
        {
            let mut value = 0;
            // SAFETY: live handle, valid key.
            check(unsafe { loam_store_add(self.raw, key.as_ptr(), delta, &mut value) })?;
            Ok(value)
        }
    }

    /// Whether `key` exists, without waiting.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let key = c_string(key)?;
        {
            let mut exists = false;
            // SAFETY: live handle, valid key.
            check(unsafe { loam_store_check(self.raw, key.as_ptr(), &mut exists) })?;
            Ok(exists)
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is freed once.
        unsafe { loam_store_free(self.raw) }
    }
}

/// A c10d process group: every rank of the run, one backend.
pub struct ProcessGroup {
    raw: *mut RawPg,
}

// SAFETY: the process group is used from one thread at a time (the training loop).
unsafe impl Send for ProcessGroup {}

/// A collective in flight.
pub struct Work {
    raw: *mut RawWork,
}

impl ProcessGroup {
    /// ProcessGroupGloo over TCP, bound to the address `hostname` resolves to.
    pub fn gloo(
        store: &Store,
        rank: usize,
        world: usize,
        timeout: Duration,
        hostname: &str,
    ) -> Result<ProcessGroup> {
        let hostname = c_string(hostname)?;
        {
            let mut raw = null_mut();
            // SAFETY: live store handle, valid C string; `raw` receives a new handle.
            check(unsafe {
                loam_pg_gloo(
                    store.raw,
                    rank as i32,
                    world as i32,
                    millis(timeout),
                    hostname.as_ptr(),
                    &mut raw,
                )
            })?;
            Ok(ProcessGroup { raw })
        }
    }

    /// ProcessGroupNCCL on CUDA device `device`.
    pub fn nccl(
        store: &Store,
        rank: usize,
        world: usize,
        timeout: Duration,
        device: usize,
    ) -> Result<ProcessGroup> {
        {
            let mut raw = null_mut();
            // SAFETY: live store handle; `raw` receives a new handle.
            check(unsafe {
                loam_pg_nccl(
                    store.raw,
                    rank as i32,
                    world as i32,
                    millis(timeout),
                    device as i32,
                    &mut raw,
                )
            })?;
            Ok(ProcessGroup { raw })
        }
    }

    /// Starts the sum of `t` over all ranks, in place.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<Work> {
        {
            let mut raw = null_mut();
            // SAFETY: live handles; the shim copies the at::Tensor handle (sharing storage),
            // so `t` may be dropped before the work completes.
            check(unsafe { loam_pg_allreduce_sum(self.raw, t.as_ptr() as *mut _, &mut raw) })?;
            Ok(Work { raw })
        }
    }

    /// Starts copying rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<Work> {
        {
            let mut raw = null_mut();
            // SAFETY: as in all_reduce_sum.
            check(unsafe {
                loam_pg_broadcast(self.raw, t.as_ptr() as *mut _, root as i32, &mut raw)
            })?;
            Ok(Work { raw })
        }
    }

    /// Starts sending root's `inputs[r]` to rank r's `output` (same shapes). Only the root
    /// passes inputs, one per rank.
    pub fn scatter(&self, output: &Tensor, inputs: &[Tensor], root: usize) -> Result<Work> {
        {
            let ptrs: Vec<*mut torch_sys::C_tensor> =
                inputs.iter().map(|t| t.as_ptr() as *mut _).collect();
            let mut raw = null_mut();
            // SAFETY: as in all_reduce_sum; `ptrs` outlives the call.
            check(unsafe {
                loam_pg_scatter(
                    self.raw,
                    output.as_ptr() as *mut _,
                    ptrs.as_ptr(),
                    ptrs.len(),
                    root as i32,
                    &mut raw,
                )
            })?;
            Ok(Work { raw })
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is freed once.
        unsafe { loam_pg_free(self.raw) }
    }
}

impl Work {
    /// Waits for the collective; a failed or timed-out one is an error.
    pub fn wait(self) -> Result<()> {
        // SAFETY: live handle; Drop frees it.
        check(unsafe { loam_work_wait(self.raw) })
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is freed once.
        unsafe { loam_work_free(self.raw) }
    }
}
