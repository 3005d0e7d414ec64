//! System calls by number, read from the board's vmlinux, for `trace syscalls:sys_enter_NAME`.
//!
//! Debian kernels have the `syscalls:*` events only as ftrace events, with no tracepoint a module
//! could attach to; the compiler builds them on `raw_syscalls:sys_enter`/`sys_exit`, whose `id`
//! argument is the number. The number <-> name table is the kernel's own `sys_call_table`: entry N
//! points to the handler of syscall N (`sys_openat`, `__arm64_sys_openat`, `__x64_sys_openat`, ...),
//! offset by the ABI's first number (4000 for MIPS o32). The arguments of the call are the user
//! registers saved in `struct pt_regs` (the raw tracepoints' first argument); where each lives is
//! read from the vmlinux's DWARF.

use std::collections::HashMap;

use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_ARM, EM_MIPS, EM_PPC, EM_PPC64, EM_X86_64};
use goblin::elf::section_header::SHT_NOBITS;

use super::Vmlinux;
use crate::lang::Syscalls;

/// Prefixes of syscall handler symbols, most specific first.
const PREFIXES: &[&str] = &["__arm64_sys_", "__x64_sys_", "__se_sys_", "__sys_", "sys_", "ppc_"];

/// The name a handler symbol gives its syscall (`__arm64_sys_openat` -> `openat`); `None` for
/// symbols that are not syscall handlers and for `sys_ni_syscall` (a free slot).
fn syscall_name(sym: &str) -> Option<&str> {
    if sym.ends_with("ni_syscall") {
        return None;
    }
    let rest = PREFIXES.iter().find_map(|p| sym.strip_prefix(p))?;
    // ARM's assembly wrappers (`sys_statfs64_wrapper`) stand for the syscall of the same name
    Some(rest.strip_suffix("_wrapper").unwrap_or(rest))
}

impl Vmlinux {
    /// The syscall table and argument locations of this kernel.
    pub fn syscalls(&self) -> Result<Syscalls, String> {
        let elf = Elf::parse(&self.map).map_err(|e| e.to_string())?;
        let name = |s: &goblin::elf::Sym| elf.strtab.get_at(s.st_name).unwrap_or("");
        let table = elf.syms.iter().find(|s| name(s) == "sys_call_table").ok_or_else(|| {
            format!("{} has no `sys_call_table` symbol to number the system calls", self.path.display())
        })?;
        let mut at: HashMap<u64, Vec<&str>> = HashMap::new();
        for s in elf.syms.iter().filter(|s| s.is_function() && s.st_value != 0) {
            at.entry(s.st_value).or_default().push(name(&s));
        }
        let ptr = if elf.is_64 { 8 } else { 4 };
        let base = if elf.header.e_machine == EM_MIPS && !elf.is_64 { 4000 } else { 0 };
        let n = table.st_size / ptr;
        let mut out = Vec::new();
        for i in 0..n {
            let Some(target) = word(&elf, &self.map, table.st_value + i * ptr) else { continue };
            // ARM32 Thumb-2 kernels set bit 0 of code pointers
            let names = at.get(&target).or_else(|| at.get(&(target & !1)));
            let best = names.and_then(|ns| {
                PREFIXES
                    .iter()
                    .find_map(|p| ns.iter().find(|n| n.starts_with(p)).and_then(|n| syscall_name(n)))
            });
            if let Some(sc) = best {
                out.push((base + i as u32, sc.to_owned()));
            }
        }
        if out.is_empty() {
            return Err(format!("`sys_call_table` of {} names no system call", self.path.display()));
        }
        let (args, exit_nr) = self.syscall_regs(elf.header.e_machine, ptr as u8)?;
        Ok(Syscalls { table: out, args, exit_nr })
    }

    /// Where the user registers holding syscall arguments 0.. are saved in `struct pt_regs`, and
    /// where the syscall number still is when the call returns (`None`: nowhere in `pt_regs`).
    #[allow(clippy::type_complexity)]
    fn syscall_regs(&self, machine: u16, word: u8) -> Result<(Vec<(u32, u8)>, Option<(u32, u8)>), String> {
        let regs = self.type_named("struct pt_regs")?;
        let member = |m: &str| {
            crate::lang::Resolver::member(self, &regs, m)
                .map(|m| m.offset as u32)
                .map_err(|e| format!("pt_regs: {e}"))
        };
        let w = u32::from(word);
        let array = |m: &str, first: u32, count: u32| -> Result<Vec<(u32, u8)>, String> {
            let base = member(m)?;
            Ok((first..first + count).map(|r| (base + r * w, word)).collect())
        };
        let one =
            |m: &str, r: u32| -> Result<Option<(u32, u8)>, String> { Ok(Some((member(m)? + r * w, word))) };
        match machine {
            // r0-r5 (r0 still holds argument 0 at entry); the EABI number is in r7
            EM_ARM => Ok((array("uregs", 0, 6)?, one("uregs", 7)?)),
            EM_AARCH64 => Ok((array("regs", 0, 6)?, Some((member("syscallno")?, 4)))),
            // r3-r8; the number is in r0
            EM_PPC | EM_PPC64 => Ok((array("gpr", 3, 6)?, one("gpr", 0)?)),
            // $a0-$a3 (o32 passes arguments 4 and 5 on the user stack); $v0, the number, is
            // overwritten by the result
            EM_MIPS => Ok((array("regs", 4, 4)?, None)),
            EM_X86_64 => {
                let args = ["di", "si", "dx", "r10", "r8", "r9"]
                    .iter()
                    .map(|m| member(m).map(|o| (o, word)))
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((args, one("orig_ax", 0)?))
            }
            m => Err(format!("no syscall argument registers known for ELF machine {m}")),
        }
    }
}

/// The pointer-sized word at link-time address `addr` in the file.
fn word(elf: &Elf<'_>, data: &[u8], addr: u64) -> Option<u64> {
    let w = if elf.is_64 { 8 } else { 4 };
    let sh = elf.section_headers.iter().find(|s| {
        s.sh_type != SHT_NOBITS && s.sh_addr != 0 && addr >= s.sh_addr && addr + w <= s.sh_addr + s.sh_size
    })?;
    let start = usize::try_from(sh.sh_offset + (addr - sh.sh_addr)).ok()?;
    let b = data.get(start..start + w as usize)?;
    Some(match (elf.is_64, elf.little_endian) {
        (true, true) => u64::from_le_bytes(b.try_into().ok()?),
        (true, false) => u64::from_be_bytes(b.try_into().ok()?),
        (false, true) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
        (false, false) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names() {
        assert_eq!(syscall_name("__arm64_sys_openat"), Some("openat"));
        assert_eq!(syscall_name("__x64_sys_read"), Some("read"));
        assert_eq!(syscall_name("sys_statfs64_wrapper"), Some("statfs64"));
        assert_eq!(syscall_name("sys_ni_syscall"), None);
        assert_eq!(syscall_name("__arm64_sys_ni_syscall"), None);
        assert_eq!(syscall_name("vfs_read"), None);
    }
}
