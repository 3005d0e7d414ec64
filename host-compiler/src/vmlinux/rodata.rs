//! Facts read from the kernel's own data: its release string (`linux_banner`, for `kernel_v`) and
//! its trace events with their systems (the `_ftrace_events` table: what `trace sched:*` expands to).
//!
//! The symbol table names every tracepoint (`__tracepoint_<event>`) but
//! not its system; each `struct trace_event_call` in the table points to its class, whose first
//! field is the system's name, and (for events backed by a tracepoint) to the `struct tracepoint`.
//!
//! Layout used (stable since Linux 3.x, every arch): `struct trace_event_call { struct list_head
//! list; struct trace_event_class *class; union { char *name; struct tracepoint *tp; }; ... }` and
//! `struct trace_event_class { const char *system; ... }`.

use std::collections::HashMap;

use goblin::elf::Elf;
use goblin::elf::section_header::SHT_NOBITS;

/// Bytes of kernel data at a link-time address, through the section headers.
struct Mem<'a> {
    elf: &'a Elf<'a>,
    data: &'a [u8],
    ptr: usize,
    le: bool,
}

impl Mem<'_> {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let sh = self.elf.section_headers.iter().find(|s| {
            s.sh_type != SHT_NOBITS && s.sh_addr != 0 && addr >= s.sh_addr && addr < s.sh_addr + s.sh_size
        })?;
        let start = usize::try_from(sh.sh_offset + (addr - sh.sh_addr)).ok()?;
        let end = start.checked_add(len)?;
        let sec_end = usize::try_from(sh.sh_offset + sh.sh_size).ok()?;
        self.data.get(start..end.min(sec_end))
    }

    fn pointer(&self, addr: u64) -> Option<u64> {
        let b = self.bytes(addr, self.ptr)?;
        Some(match (self.ptr, self.le) {
            (4, true) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
            (4, false) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
            (_, true) => u64::from_le_bytes(b.try_into().ok()?),
            (_, false) => u64::from_be_bytes(b.try_into().ok()?),
        })
    }

    fn c_string(&self, addr: u64, max: usize) -> Option<String> {
        let b = self.bytes(addr, max)?;
        let end = b.iter().position(|c| *c == 0)?;
        std::str::from_utf8(&b[..end]).ok().map(str::to_owned)
    }
}

/// The release (`6.1.0-50-armmp`): the third word of `linux_banner` ("Linux version 6.1.0-50-armmp ...").
pub(crate) fn kernel_release(elf: &Elf<'_>, data: &[u8]) -> Option<String> {
    let sym = elf.syms.iter().find(|s| elf.strtab.get_at(s.st_name) == Some("linux_banner"))?;
    let mem = Mem { elf, data, ptr: if elf.is_64 { 8 } else { 4 }, le: elf.little_endian };
    let banner = mem.c_string(sym.st_value, 512)?;
    banner.strip_prefix("Linux version ")?.split_whitespace().next().map(str::to_owned)
}

/// (system, event) of every event backed by a tracepoint (ftrace-only events such as
/// `syscalls:sys_enter_*` have no tracepoint a probe can attach to, so they are left out), sorted.
pub(crate) fn tracepoint_events(elf: &Elf<'_>, data: &[u8]) -> Vec<(String, String)> {
    let mut start = None;
    let mut stop = None;
    let mut tracepoints: HashMap<u64, &str> = HashMap::new();
    for sym in elf.syms.iter() {
        let Some(name) = elf.strtab.get_at(sym.st_name) else { continue };
        match name {
            "__start_ftrace_events" => start = Some(sym.st_value),
            "__stop_ftrace_events" => stop = Some(sym.st_value),
            _ => {
                if let Some(event) = name.strip_prefix("__tracepoint_") {
                    tracepoints.insert(sym.st_value, event);
                }
            }
        }
    }
    let (Some(start), Some(stop)) = (start, stop) else { return Vec::new() };
    let ptr = if elf.is_64 { 8 } else { 4 };
    let mem = Mem { elf, data, ptr, le: elf.little_endian };
    let mut out = Vec::new();
    let mut at = start;
    while at < stop {
        let event = (|| {
            let call = mem.pointer(at)?;
            let class = mem.pointer(call + 2 * ptr as u64)?;
            let tp = mem.pointer(call + 3 * ptr as u64)?;
            let event = tracepoints.get(&tp)?;
            let system = mem.c_string(mem.pointer(class)?, 64)?;
            Some((system, (*event).to_owned()))
        })();
        out.extend(event);
        at += ptr as u64;
    }
    out.sort();
    out.dedup();
    out
}
