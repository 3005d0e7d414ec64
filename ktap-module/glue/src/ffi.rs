//! What the C shim provides to Rust, and the structs both sides share. Mirrors `kmod/ktap_vm.h`.

use core::ffi::c_void;

use ktap_protocol::limits::MAX_PROBE_NAME;

/// Where a load refusal is reported (`struct ktap_vm_status`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    /// Reason code: `ImageError::code`, `VerifyError::code` or `wire::codes::NO_MEMORY`; 0 = loaded.
    pub code: u32,
    /// Byte offset in the image the reason refers to.
    pub offset: u32,
}

/// One probe to attach (`struct ktap_vm_probe`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Kernel address (kprobes, kretprobes), 0 otherwise.
    pub addr: u64,
    /// Handler function, the `func` argument of `ktap_vm_run`.
    pub func: u16,
    /// `ktap_protocol::image::ProbeKind` as a number.
    pub kind: u8,
    /// `ktap_protocol::image::PROBE_EVERY_CPU` for a timer on every CPU.
    pub flags: u8,
    /// Length of `name` without its NUL.
    pub name_len: u8,
    /// Symbol or tracepoint name, NUL-terminated.
    pub name: [u8; MAX_PROBE_NAME + 1],
}

/// Program counters (`struct ktap_vm_counters`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Runs started.
    pub hits: u64,
    /// Runs aborted for lack of budget.
    pub budget_exhausted: u64,
    /// Runs aborted by another error.
    pub runtime_errors: u64,
    /// Refused table inserts.
    pub table_full: u64,
    /// Records the ring had no room for.
    pub ring_dropped: u64,
    /// Kernel or user memory reads that faulted.
    pub mem_faults: u64,
}

unsafe extern "C" {
    /// `kvmalloc(size, GFP_KERNEL)` aligned to `align`; NULL on failure or in atomic context.
    pub fn ktap_kalloc(size: usize, align: usize) -> *mut c_void;
    /// `kvfree(ptr)`.
    pub fn ktap_kfree(ptr: *mut c_void);
    /// Context field `field` (`ktap_protocol::isa::CtxField`) of the hit.
    pub fn ktap_hit_ctx(hit: *mut c_void, field: u32) -> i64;
    /// Copy the current task's comm into `buf` (at most `len` bytes); returns the length.
    pub fn ktap_hit_comm(hit: *mut c_void, buf: *mut u8, len: u32) -> u32;
    /// Append one record to the ring; nonzero if it fit.
    pub fn ktap_emit(hit: *mut c_void, rec: *const u8, len: u32) -> i32;
    /// Up to `max` kernel return addresses of the hit into `out`; how many.
    pub fn ktap_hit_stack(hit: *mut c_void, out: *mut u64, max: u32) -> u32;
    /// `copy_from_kernel_nofault` of `len` bytes at `addr`: 0, or negative on a fault.
    pub fn ktap_read_kernel(addr: u64, dst: *mut u8, len: u32) -> i32;
    /// The NUL-terminated string at `addr` (user memory if `user` != 0), at most `max` bytes, without
    /// faulting: its length, or negative on a fault.
    pub fn ktap_read_str(user: i32, addr: u64, dst: *mut u8, max: u32) -> i32;
    /// Called only by the panic handler, which must not be linked: BUG().
    pub fn ktap_rust_panic() -> !;
}
