//! The agent's heap: one fixed arena in `.bss` (no file size), for the record stream's compressor
//! (`protocol::pack::StreamPacker`, about 330 KiB), which the session allocates once at start-up and
//! keeps for the agent's life. A bump allocator is enough for that: nothing is freed, and an
//! allocation that does not fit fails (the allocation-error path, a panic, which restores the tty).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Arena size: the compressor with room to spare.
const ARENA: usize = 512 * 1024;

#[repr(C, align(64))]
struct Arena(UnsafeCell<[u8; ARENA]>);
// SAFETY: the agent is single-threaded; `Bump` hands out disjoint ranges.
unsafe impl Sync for Arena {}

static HEAP: Arena = Arena(UnsafeCell::new([0; ARENA]));
/// Bytes of the arena handed out.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Bump allocation over [`HEAP`]; `dealloc` keeps the memory (see the module docs).
struct Bump;

// SAFETY: `alloc` returns aligned, disjoint ranges inside HEAP (or null); nothing is reused.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = HEAP.0.get().cast::<u8>();
        let used = USED.load(Ordering::Relaxed);
        let addr = base as usize + used;
        let start = match addr.checked_next_multiple_of(layout.align()) {
            Some(a) => a - base as usize,
            None => return core::ptr::null_mut(),
        };
        match start.checked_add(layout.size()) {
            Some(end) if end <= ARENA => {
                USED.store(end, Ordering::Relaxed);
                // SAFETY: `start + size <= ARENA`, so the range is inside HEAP.
                unsafe { base.add(start) }
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static GLOBAL: Bump = Bump;
