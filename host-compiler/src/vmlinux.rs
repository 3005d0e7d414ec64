//! The board's `vmlinux` on the host: GNU build-id, machine, `_text` and function / tracepoint symbols.
//!
//! The device has no debuginfo, so every kernel address a script needs is resolved here, from the
//! unstripped vmlinux of the exact kernel the board runs (the build-id check in [`crate::session`]
//! proves it is that kernel). The file is memory-mapped and only the ELF header, program and section
//! headers, notes and the symbol table are read: opening Debian's 244 MB armmp `-dbg` vmlinux touches
//! a few MB. DWARF (types, struct offsets) is a later addition.
//!
//! Addresses: ARM Thumb functions have bit 0 set in `st_value`; it is cleared. Under KASLR the run-time
//! address is `addr - base + runtime base` ([`Vmlinux::rebase`]), where the base is the symbol the
//! agent found in `/proc/kallsyms`: `_text`, or `_stext` where kallsyms omits `_text` (ARM32, arm64).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::{SHT_NOTE, SHT_SYMTAB};
use goblin::elf::sym::{STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT};
use memmap2::Mmap;

use crate::board::Arch;

/// ELF `e_machine` of 32-bit ARM.
const EM_ARM: u16 = 40;
/// ELF note type of a GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

/// Errors opening a vmlinux or resolving a symbol in it. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    /// The file could not be opened or mapped.
    #[error("cannot read vmlinux {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed ELF file.
    #[error("vmlinux {path} is not a valid ELF file: {message}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What the ELF parser said.
        message: String,
    },
    /// The file has no symbol table (a stripped or compressed kernel image).
    #[error(
        "vmlinux {path} has no symbol table: pass the unstripped vmlinux (e.g. from Debian's linux-image-*-dbg), not vmlinuz or a stripped image"
    )]
    NoSymbols {
        /// The file.
        path: PathBuf,
    },
    /// The file has no GNU build-id note, so it cannot be matched against the running kernel.
    #[error("vmlinux {path} has no GNU build-id note (was the kernel linked without --build-id?)")]
    NoBuildId {
        /// The file.
        path: PathBuf,
    },
    /// The file has no `_text` symbol.
    #[error("vmlinux {path} has no `_text` symbol: is this a Linux kernel?")]
    NoText {
        /// The file.
        path: PathBuf,
    },
    /// The agent reported the kernel's run-time base as a symbol this vmlinux does not have.
    #[error(
        "vmlinux {path} has no `{name}` symbol, but the board reports its kernel's base as `{name}` at {addr:#x}: cannot rebase kprobe addresses (is this the board's vmlinux?)"
    )]
    NoBaseSymbol {
        /// The file.
        path: PathBuf,
        /// The symbol the agent named.
        name: String,
        /// Its run-time address on the board.
        addr: u64,
    },
    /// The vmlinux is built for another architecture than the board.
    #[error(
        "vmlinux {path} is for ELF machine {found} ({found_name}), but the board is {arch:?} (machine {expected})"
    )]
    WrongArch {
        /// The file.
        path: PathBuf,
        /// `e_machine` of the file.
        found: u16,
        /// A name for `found`.
        found_name: &'static str,
        /// `e_machine` the board's arch needs.
        expected: u16,
        /// The board's arch.
        arch: Arch,
    },
    /// No function of that name.
    #[error("no kernel function `{name}` in vmlinux {path}{suggest}")]
    NoFunction {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
    /// Several local functions share the name and none is global.
    #[error(
        "kernel function `{name}` is ambiguous in vmlinux {path}: {count} static functions of that name at {addrs}"
    )]
    Ambiguous {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// How many functions have it.
        count: usize,
        /// Their addresses, in hex.
        addrs: String,
    },
    /// No tracepoint of that name.
    #[error("no tracepoint `{subsys}:{event}` in vmlinux {path} (no symbol `__tracepoint_{event}`){suggest}")]
    NoTracepoint {
        /// The file.
        path: PathBuf,
        /// The subsystem asked for.
        subsys: String,
        /// The event asked for.
        event: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
    /// The event exists but the subsystem does not.
    #[error("no tracepoint subsystem `{subsys}` in vmlinux {path} (event `{event}` exists){suggest}")]
    NoTraceSystem {
        /// The file.
        path: PathBuf,
        /// The subsystem asked for.
        subsys: String,
        /// The event asked for.
        event: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
}

/// One function symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FuncSym {
    /// Link-time address, Thumb bit cleared.
    addr: u64,
    /// Global or weak binding (as opposed to a static function).
    global: bool,
}

/// An opened vmlinux: identity and symbols. Cheap to query; opening reads only headers and the symtab.
#[derive(Debug)]
pub struct Vmlinux {
    path: PathBuf,
    machine: u16,
    is_64: bool,
    little_endian: bool,
    build_id: Vec<u8>,
    text: u64,
    stext: Option<u64>,
    /// Run-time minus link-time address (wrapping): the KASLR offset, 0 until [`Vmlinux::rebase`].
    slide: u64,
    funcs: HashMap<Box<str>, Vec<FuncSym>>,
    tracepoints: BTreeSet<Box<str>>,
    trace_systems: BTreeSet<Box<str>>,
    _map: Mmap,
}

impl Vmlinux {
    /// Open a vmlinux that must be built for `arch` (the board's): [`Vmlinux::open`] + [`Vmlinux::check_arch`].
    pub fn open_for(path: &Path, arch: Arch) -> Result<Vmlinux, VmlinuxError> {
        let v = Vmlinux::open(path)?;
        v.check_arch(arch)?;
        Ok(v)
    }

    /// Open and index a vmlinux: build-id, machine, `_text`, functions and tracepoints.
    pub fn open(path: &Path) -> Result<Vmlinux, VmlinuxError> {
        let io = |source| VmlinuxError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a vmlinux being rewritten while ktap-host runs is not supported
        // (the same holds for every debugger and symbolizer that maps its input).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let bad = |message: String| VmlinuxError::Elf { path: path.to_owned(), message };
        let elf = Elf::parse(&map).map_err(|e| bad(e.to_string()))?;
        if !elf.section_headers.iter().any(|s| s.sh_type == SHT_SYMTAB) || elf.syms.is_empty() {
            return Err(VmlinuxError::NoSymbols { path: path.to_owned() });
        }
        let machine = elf.header.e_machine;
        let build_id = find_build_id(&elf, &map, elf.little_endian)
            .ok_or_else(|| VmlinuxError::NoBuildId { path: path.to_owned() })?;

        let mut funcs: HashMap<Box<str>, Vec<FuncSym>> = HashMap::new();
        let mut tracepoints = BTreeSet::new();
        let mut trace_systems = BTreeSet::new();
        let mut text = None;
        let mut stext = None;
        for sym in elf.syms.iter() {
            let Some(name) = elf.strtab.get_at(sym.st_name) else { continue };
            if name.is_empty() {
                continue;
            }
            let typ = sym.st_type();
            if name == "_stext" {
                stext = Some(sym.st_value);
            }
            if name == "_text" {
                text = Some(sym.st_value);
            } else if typ == STT_FUNC && sym.st_value != 0 {
                let mut addr = sym.st_value;
                if machine == EM_ARM {
                    addr &= !1;
                }
                let global = matches!(sym.st_bind(), STB_GLOBAL | STB_WEAK);
                let entry = funcs.entry(name.into()).or_default();
                if !entry.iter().any(|f| f.addr == addr) {
                    entry.push(FuncSym { addr, global });
                }
            } else if let Some(event) = name.strip_prefix("__tracepoint_") {
                if typ == STT_OBJECT || typ == 0 {
                    tracepoints.insert(event.into());
                }
            } else if let Some(sys) =
                name.strip_prefix("str__").and_then(|s| s.strip_suffix("__trace_system_name"))
            {
                trace_systems.insert(sys.into());
            }
        }
        let text = text.ok_or_else(|| VmlinuxError::NoText { path: path.to_owned() })?;
        Ok(Vmlinux {
            path: path.to_owned(),
            machine,
            is_64: elf.is_64,
            little_endian: elf.little_endian,
            build_id,
            text,
            stext,
            slide: 0,
            funcs,
            tracepoints,
            trace_systems,
            _map: map,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GNU build-id bytes.
    pub fn build_id(&self) -> &[u8] {
        &self.build_id
    }

    /// ELF `e_machine`.
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// ELFCLASS64?
    pub fn is_64(&self) -> bool {
        self.is_64
    }

    /// Little-endian ELF?
    pub fn is_little_endian(&self) -> bool {
        self.little_endian
    }

    /// Link-time address of `_text`.
    pub fn text(&self) -> u64 {
        self.text
    }

    /// Number of distinct function names indexed.
    pub fn function_count(&self) -> usize {
        self.funcs.len()
    }

    /// Check that the vmlinux is built for the board's architecture.
    pub fn check_arch(&self, arch: Arch) -> Result<(), VmlinuxError> {
        if self.machine == arch.elf_machine() {
            return Ok(());
        }
        Err(VmlinuxError::WrongArch {
            path: self.path.clone(),
            found: self.machine,
            found_name: machine_name(self.machine),
            expected: arch.elf_machine(),
            arch,
        })
    }

    /// Link-time address of a base symbol the agent may report (`_text` or `_stext`).
    pub fn base_symbol(&self, name: &str) -> Option<u64> {
        match name {
            "_text" => Some(self.text),
            "_stext" => self.stext,
            _ => None,
        }
    }

    /// Use the running kernel's address of `symbol` (as the agent reports it, `_text` or `_stext`) for
    /// [`Vmlinux::kprobe_address`]. Address 0 means unknown and keeps the link-time addresses (correct
    /// without KASLR). A symbol the vmlinux lacks is an error, never a silent guess.
    pub fn rebase(&mut self, symbol: &str, runtime: u64) -> Result<(), VmlinuxError> {
        if runtime == 0 {
            self.slide = 0;
            return Ok(());
        }
        let link = self.base_symbol(symbol).ok_or_else(|| VmlinuxError::NoBaseSymbol {
            path: self.path.clone(),
            name: symbol.to_owned(),
            addr: runtime,
        })?;
        self.slide = runtime.wrapping_sub(link);
        Ok(())
    }

    /// The KASLR offset applied to kprobe addresses (run-time minus link-time, wrapping); 0 if none.
    pub fn slide(&self) -> u64 {
        self.slide
    }

    /// Link-time address of function `name` (Thumb bit cleared). A name shared by several static
    /// functions resolves to the single global one, if any; otherwise it is an error listing them.
    pub fn function(&self, name: &str) -> Result<u64, VmlinuxError> {
        let Some(syms) = self.funcs.get(name) else {
            return Err(VmlinuxError::NoFunction {
                path: self.path.clone(),
                name: name.to_owned(),
                suggest: did_you_mean(self.function_suggestions(name)),
            });
        };
        if let [one] = syms.as_slice() {
            return Ok(one.addr);
        }
        let globals: Vec<_> = syms.iter().filter(|f| f.global).collect();
        if let [one] = globals.as_slice() {
            return Ok(one.addr);
        }
        let addrs = syms.iter().map(|f| format!("{:#x}", f.addr)).collect::<Vec<_>>().join(", ");
        Err(VmlinuxError::Ambiguous {
            path: self.path.clone(),
            name: name.to_owned(),
            count: syms.len(),
            addrs,
        })
    }

    /// Run-time address for a kprobe on `name`: its link-time address moved by the KASLR offset.
    pub fn kprobe_address(&self, name: &str) -> Result<u64, VmlinuxError> {
        let addr = self.function(name)?;
        Ok(addr.wrapping_add(self.slide))
    }

    /// Check that tracepoint `subsys:event` exists (`__tracepoint_<event>`; the subsystem is checked
    /// against the kernel's `TRACE_SYSTEM` names when the symbol table carries them).
    pub fn check_tracepoint(&self, subsys: &str, event: &str) -> Result<(), VmlinuxError> {
        if !self.tracepoints.contains(event) {
            return Err(VmlinuxError::NoTracepoint {
                path: self.path.clone(),
                subsys: subsys.to_owned(),
                event: event.to_owned(),
                suggest: did_you_mean(closest(event, self.tracepoints.iter().map(|s| &**s))),
            });
        }
        // `TRACE_SYSTEM_VAR` may differ from the system's name (e.g. a leading `_` for names that are
        // not C identifiers), so accept the obvious spellings.
        let known = |s: &str| self.trace_systems.contains(s);
        let var = subsys.replace(['-', '.'], "_");
        if !self.trace_systems.is_empty() && !known(subsys) && !known(&var) && !known(&format!("_{var}")) {
            return Err(VmlinuxError::NoTraceSystem {
                path: self.path.clone(),
                subsys: subsys.to_owned(),
                event: event.to_owned(),
                suggest: did_you_mean(closest(subsys, self.trace_systems.iter().map(|s| &**s))),
            });
        }
        Ok(())
    }

    fn function_suggestions(&self, name: &str) -> Vec<String> {
        // gcc clones first (`foo.isra.0`, `foo.constprop.0`, `foo.part.0`): kprobe those instead.
        let prefix = format!("{name}.");
        let mut clones: Vec<String> =
            self.funcs.keys().filter(|k| k.starts_with(&prefix)).map(|k| k.to_string()).collect();
        if !clones.is_empty() {
            clones.sort();
            clones.truncate(3);
            return clones;
        }
        closest(name, self.funcs.keys().map(|s| &**s))
    }
}

/// Kprobe addresses rebased to the running kernel; tracepoints checked against the symbol table.
impl crate::lang::Resolver for Vmlinux {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        self.kprobe_address(sym).map_err(|e| e.to_string())
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        self.check_tracepoint(subsys, event).map_err(|e| e.to_string())
    }
}

/// Up to three names closest to `name` (edit distance), best first.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let limit = (name.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .filter(|c| c.len().abs_diff(name.len()) <= limit)
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

fn did_you_mean(names: Vec<String>) -> String {
    match names.as_slice() {
        [] => String::new(),
        _ => format!(
            ": did you mean {}?",
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The GNU build-id from PT_NOTE segments, or else from SHT_NOTE sections.
fn find_build_id(elf: &Elf<'_>, data: &[u8], le: bool) -> Option<Vec<u8>> {
    let segments =
        elf.program_headers.iter().filter(|p| p.p_type == PT_NOTE).map(|p| (p.p_offset, p.p_filesz));
    let sections =
        elf.section_headers.iter().filter(|s| s.sh_type == SHT_NOTE).map(|s| (s.sh_offset, s.sh_size));
    segments.chain(sections).find_map(|(off, len)| {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        gnu_build_id(data.get(start..end)?, le)
    })
}

/// Walk a note area (4-byte aligned entries, as the kernel writes them on every arch).
fn gnu_build_id(mut notes: &[u8], le: bool) -> Option<Vec<u8>> {
    let word = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().ok()?;
        Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    };
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let namesz = word(notes.get(0..4)?)? as usize;
        let descsz = word(notes.get(4..8)?)? as usize;
        let typ = word(notes.get(8..12)?)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(pad(namesz)?)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if typ == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.to_vec());
        }
        notes = notes.get(desc_start.checked_add(pad(descsz)?)?..)?;
    }
    None
}

/// Lower-case hex of a build-id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "x86",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        40 => "ARM",
        62 => "x86_64",
        183 => "AArch64",
        243 => "RISC-V",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
