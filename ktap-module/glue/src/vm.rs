//! The exported C functions (see `kmod/ktap_vm.h` for the contract the C side keeps).
//!
//! Every pointer is checked for NULL; `ktap_vm_run` is the only function the probe path calls and it
//! neither allocates nor blocks. The C side serialises all calls on one program with its lock.

use core::alloc::Layout;
use core::ffi::c_void;

use ktap_protocol::image::Image;
use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::{MAX_PROBE_NAME, MAX_STR};
use ktap_protocol::wire::codes;
use ktap_vm::{Env, Program, RunError, VerifyError, verify};

use crate::ffi::{self, Counters, Probe, Status};

/// `ktap_vm_run` results.
const RUN_OK: i32 = 0;
const RUN_BUDGET: i32 = 1;
const RUN_ERROR: i32 = 2;
const RUN_BAD_HANDLE: i32 = -1;

/// Parse, verify and allocate; the program lives in one `ktap_kalloc` block.
fn load(bytes: &[u8]) -> Result<*mut Program, Status> {
    let img = Image::parse(bytes).map_err(|e| Status {
        code: e.code().into(),
        offset: u32::try_from(e.offset()).unwrap_or(u32::MAX),
    })?;
    let no_memory = Status { code: codes::NO_MEMORY.into(), offset: 0 };
    let v = verify(&img).map_err(|e| match e {
        VerifyError::OutOfMemory => no_memory,
        e => Status { code: e.code().into(), offset: e.offset() },
    })?;
    let program = Program::new(v).map_err(|_| no_memory)?;
    let layout = Layout::new::<Program>();
    // SAFETY: Program is not zero-sized.
    let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<Program>();
    if raw.is_null() {
        return Err(no_memory);
    }
    // SAFETY: `raw` is a fresh, suitably aligned block for one Program.
    unsafe { raw.write(program) };
    Ok(raw)
}

/// Parse, verify and preallocate an image. Process context only (allocates with GFP_KERNEL).
/// Returns the program, or NULL with `*status` saying why.
///
/// # Safety
/// `image` must point to `len` readable bytes (or be NULL); `status` must be writable (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_load(image: *const u8, len: usize, status: *mut Status) -> *mut Program {
    let bytes: &[u8] = if image.is_null() {
        &[]
    } else {
        // SAFETY: caller contract.
        unsafe { core::slice::from_raw_parts(image, len) }
    };
    let (ptr, st) = match load(bytes) {
        Ok(p) => (p, Status::default()),
        Err(st) => (core::ptr::null_mut(), st),
    };
    if !status.is_null() {
        // SAFETY: caller contract.
        unsafe { status.write(st) };
    }
    ptr
}

/// Number of probes of a loaded program.
///
/// # Safety
/// `vm` is NULL or a live program from `ktap_vm_load`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_probe_count(vm: *const Program) -> u32 {
    // SAFETY: caller contract.
    match unsafe { vm.as_ref() } {
        Some(p) => u32::try_from(p.probes().len()).unwrap_or(0),
        None => 0,
    }
}

/// Copy probe `index` into `*out`. Returns 0, or -1 if there is no such probe.
///
/// # Safety
/// `vm` is NULL or a live program; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_probe_get(vm: *const Program, index: u32, out: *mut Probe) -> i32 {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { vm.as_ref() }) else { return -1 };
    let Some(info) = p.probes().get(index as usize) else { return -1 };
    if out.is_null() {
        return -1;
    }
    let mut probe = Probe {
        addr: info.addr,
        func: info.func,
        kind: info.kind as u8,
        flags: info.flags,
        name_len: 0,
        name: [0; MAX_PROBE_NAME + 1],
    };
    for (d, s) in probe.name.iter_mut().zip(info.name()) {
        *d = *s;
        probe.name_len = probe.name_len.wrapping_add(1);
    }
    // SAFETY: checked non-NULL; caller contract.
    unsafe { out.write(probe) };
    0
}

/// The environment of one hit: context, comm and record output through the C shim.
struct Hit(*mut c_void);

impl Env for Hit {
    fn ctx(&mut self, field: CtxField) -> i64 {
        // SAFETY: `hit` is the opaque pointer the C side passed to ktap_vm_run.
        unsafe { ffi::ktap_hit_ctx(self.0, field as u32) }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        // SAFETY: `out` is MAX_STR writable bytes.
        let n = unsafe { ffi::ktap_hit_comm(self.0, out.as_mut_ptr(), MAX_STR as u32) };
        (n as usize).min(MAX_STR)
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        // SAFETY: `record` is `len` readable bytes.
        unsafe { ffi::ktap_emit(self.0, record.as_ptr(), len) != 0 }
    }

    fn read_kernel(&mut self, addr: u64, out: &mut [u8]) -> bool {
        let len = u32::try_from(out.len()).unwrap_or(0);
        // SAFETY: `out` is `len` writable bytes; the C side never writes more.
        unsafe { ffi::ktap_read_kernel(addr, out.as_mut_ptr(), len) == 0 }
    }

    fn read_str(&mut self, user: bool, addr: u64, out: &mut [u8]) -> Option<usize> {
        let max = u32::try_from(out.len()).unwrap_or(0);
        // SAFETY: `out` is `max` writable bytes; the C side never writes more.
        let n = unsafe { ffi::ktap_read_str(i32::from(user), addr, out.as_mut_ptr(), max) };
        usize::try_from(n).ok().map(|n| n.min(out.len()))
    }

    fn kstack(&mut self, out: &mut [u64]) -> usize {
        let max = u32::try_from(out.len()).unwrap_or(0);
        // SAFETY: `out` is `max` writable u64s; `hit` is the pointer the C side passed.
        let n = unsafe { ffi::ktap_hit_stack(self.0, out.as_mut_ptr(), max) };
        (n as usize).min(out.len())
    }
}

/// Run function `func` for one hit. Never allocates or sleeps. The caller holds the program's lock.
/// Returns 0, 1 (budget exhausted), 2 (other runtime error) or -1 (NULL program).
///
/// # Safety
/// `vm` is NULL or a live program not used concurrently; `hit` is passed back to the callbacks.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_run(vm: *mut Program, func: u16, hit: *mut c_void) -> i32 {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { vm.as_mut() }) else { return RUN_BAD_HANDLE };
    match p.run(func, &mut Hit(hit)) {
        Ok(()) => RUN_OK,
        Err(RunError::BudgetExhausted) => RUN_BUDGET,
        Err(_) => RUN_ERROR,
    }
}

/// Copy the program's counters into `*out` (zeros for a NULL program).
///
/// # Safety
/// `vm` is NULL or a live program; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_counters(vm: *const Program, out: *mut Counters) {
    // SAFETY: caller contract.
    let c = unsafe { vm.as_ref() }.map(Program::counters).unwrap_or_default();
    if !out.is_null() {
        let c = Counters {
            hits: c.hits,
            budget_exhausted: c.budget_exhausted,
            runtime_errors: c.runtime_errors,
            table_full: c.table_full,
            ring_dropped: c.ring_dropped,
            mem_faults: c.mem_faults,
        };
        // SAFETY: checked non-NULL; caller contract.
        unsafe { out.write(c) };
    }
}

/// Free a program (process context). NULL is ignored.
///
/// # Safety
/// `vm` is NULL or a live program from `ktap_vm_load`, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktap_vm_free(vm: *mut Program) {
    if vm.is_null() {
        return;
    }
    // SAFETY: `vm` holds an initialised Program in a block allocated with this layout (see `load`).
    unsafe {
        core::ptr::drop_in_place(vm);
        alloc::alloc::dealloc(vm.cast(), Layout::new::<Program>());
    }
}
