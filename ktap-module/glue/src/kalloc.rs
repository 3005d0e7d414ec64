//! The global allocator: the C shim's `kvmalloc`/`kvfree` wrappers.
//!
//! The C side refuses (WARN_ONCE + NULL) when called with interrupts off or in atomic context, so an
//! allocation on the probe path would fail loudly instead of sleeping; the VM never asks (it only
//! allocates in `Program::new`, which runs from the load ioctl).

use core::alloc::{GlobalAlloc, Layout};

use crate::ffi;

struct KernelAlloc;

// SAFETY: ktap_kalloc returns NULL or a block of at least `size` bytes aligned to `align` that stays
// valid until ktap_kfree; it never unwinds.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C call.
        unsafe { ffi::ktap_kalloc(layout.size(), layout.align()).cast() }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (GlobalAlloc contract).
        unsafe { ffi::ktap_kfree(ptr.cast()) }
    }
}

#[global_allocator]
static ALLOC: KernelAlloc = KernelAlloc;
