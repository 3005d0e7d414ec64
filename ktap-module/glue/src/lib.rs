//! `ktap-kmod`: the Rust half of the ktap kernel module.
//!
//! It wraps [`ktap_vm`] in the small C ABI declared in `ktap-module/kmod/ktap_vm.h` and provides the
//! two things a `no_std` staticlib needs from its host: a global allocator (the C shim's
//! `ktap_kalloc`/`ktap_kfree`, i.e. `kvmalloc`/`kvfree`, refusing in atomic context) and a panic
//! handler (`ktap_rust_panic`, which `BUG()`s).
//!
//! Architecture invariant: the panic handler is never reachable. The VM is panic-free, so after
//! `ld -r --gc-sections` the object neither defines `rust_begin_unwind` nor references
//! `ktap_rust_panic`; `cargo xtask build-module` fails the build otherwise.
#![no_std]

extern crate alloc;

mod ffi;
mod kalloc;
mod vm;

pub use vm::{
    ktap_vm_counters, ktap_vm_free, ktap_vm_load, ktap_vm_probe_count, ktap_vm_probe_get, ktap_vm_run,
};

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: a C function taking no arguments that never returns.
    unsafe { ffi::ktap_rust_panic() }
}
