//! What the Hello reports: `uname`, the kernel's GNU build-id from `/sys/kernel/notes` and the run-time
//! base (`_text`, else `_stext`) from `/proc/kallsyms`. Read once at start-up; every failure degrades
//! to "unknown".

use ktap_agent::kinfo::{BaseScan, gnu_build_id};
use ktap_protocol::limits::MAX_BUILD_ID;

use crate::sys::{self, Names};

/// The kernel facts, owned.
pub struct Facts {
    /// `uname` fields.
    pub names: Names,
    build_id: [u8; MAX_BUILD_ID],
    build_id_len: usize,
    /// The base symbol and its run-time address; `("", 0)` if unknown (0 for non-root readers).
    pub base: (&'static str, u64),
}

impl Facts {
    /// Gather everything.
    pub fn gather() -> Facts {
        let mut f =
            Facts { names: Names::get(), build_id: [0; MAX_BUILD_ID], build_id_len: 0, base: ("", 0) };
        let mut notes = [0u8; 4096];
        if let Ok(n) = sys::read_file(c"/sys/kernel/notes", &mut notes) {
            let big = cfg!(target_endian = "big");
            if let Some(id) = notes.get(..n).and_then(|b| gnu_build_id(b, big)) {
                if let Some(dst) = f.build_id.get_mut(..id.len()) {
                    dst.copy_from_slice(id);
                    f.build_id_len = id.len();
                }
            }
        }
        f.base = base().unwrap_or(("", 0));
        f
    }

    /// The build-id (empty if unknown).
    pub fn build_id(&self) -> &[u8] {
        self.build_id.get(..self.build_id_len).unwrap_or(&[])
    }
}

/// Scan `/proc/kallsyms` for `_text` or `_stext`; stops reading as soon as the answer is settled.
fn base() -> Option<(&'static str, u64)> {
    let mut scan = BaseScan::new();
    // a read error part-way leaves what was found so far
    let _ = sys::read_chunks(c"/proc/kallsyms", &mut |chunk| scan.feed(chunk));
    scan.found()
}
