//! The `/dev/ktap` interface between the agent and the kernel module.
//!
//! The C side mirrors this file in `ktap-module/kmod/ktap_uapi.h`; a test checks the two agree.
//! Command numbers are plain constants rather than `_IOW()` encodings because the direction and size
//! bits of `_IOC` differ between ARM/x86 and MIPS/PowerPC, and the agent is one source for all arches.
//! Every argument struct has fixed-width fields, 8-byte aligned, so its layout is the same on every arch.
//!
//! Protocol:
//! - `open` is exclusive (a second opener gets `EBUSY`) and root-only (mode 0600).
//! - [`IOC_LOAD`] takes a [`LoadArgs`]: the kernel parses, verifies and attaches (disarmed). On refusal
//!   the ioctl returns `-EINVAL` (or the errno) and fills `code`/`offset`/`detail` (see `wire::codes`).
//! - [`IOC_START`] arms the probes and runs `trace_begin`; [`IOC_STOP`] disarms, runs `trace_end`, and
//!   marks the ring as ending: `read` then drains what is left and returns 0 once it is empty.
//! - `read` returns whole records (see `record`), blocking unless `O_NONBLOCK`; `poll` reports `POLLIN`.
//! - [`IOC_STATS`] fills a [`KStats`]. [`IOC_UNLOAD`] detaches and frees the program.
//! - `close` (including the agent being killed) stops and unloads whatever is loaded.

/// Load an image: argument is a pointer to [`LoadArgs`].
pub const IOC_LOAD: u32 = 0x6b01;
/// Arm the loaded program (argument unused).
pub const IOC_START: u32 = 0x6b02;
/// Disarm, run `trace_end`, end the record stream (argument unused).
pub const IOC_STOP: u32 = 0x6b03;
/// Read counters: argument is a pointer to [`KStats`].
pub const IOC_STATS: u32 = 0x6b04;
/// Detach and free the program (argument unused).
pub const IOC_UNLOAD: u32 = 0x6b05;

/// Argument of [`IOC_LOAD`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadArgs {
    /// User address of the image.
    pub image: u64,
    /// Image length in bytes.
    pub len: u32,
    /// Reserved, must be 0.
    pub flags: u32,
    /// Out: refusal reason code (`wire::codes`, `ImageError::code`, verifier codes), 0 on success.
    pub code: u32,
    /// Out: byte offset in the image (or probe index) the reason refers to.
    pub offset: u32,
    /// Out: errno or extra detail.
    pub detail: i32,
    /// Out: number of probes attached.
    pub nprobes: u32,
}

/// Argument of [`IOC_STATS`]: the kernel's counters for the loaded program.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KStats {
    /// Probe hits that ran the program.
    pub hits: u64,
    /// Hits skipped by the per-CPU recursion guard.
    pub recursion_skipped: u64,
    /// Hits aborted for lack of instruction budget.
    pub budget_exhausted: u64,
    /// Hits aborted by another runtime error.
    pub runtime_errors: u64,
    /// Table inserts refused because a table was full.
    pub table_full: u64,
    /// Records dropped because the ring buffer was full.
    pub ring_dropped: u64,
    /// Sum of the kprobes' and kretprobes' `nmissed`.
    pub kernel_missed: u64,
    /// Kernel or user memory reads of the program that faulted (they read 0 or "").
    pub mem_faults: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_arch_independent() {
        assert_eq!(core::mem::size_of::<LoadArgs>(), 32);
        assert_eq!(core::mem::size_of::<KStats>(), 64);
    }
}
