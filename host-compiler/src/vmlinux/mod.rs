//! The board's `vmlinux` on the host: GNU build-id, machine, symbols, and the types, function
//! parameters and tracepoint arguments of its DWARF.
//!
//! The device has no debuginfo, so every kernel address, argument location and struct offset a
//! script needs is resolved here, from the unstripped vmlinux of the exact kernel the board runs (the
//! build-id check in [`crate::session`] proves it is that kernel). The file is memory-mapped; opening
//! reads only the ELF header, program and section headers, notes and the symbol table (a few MB of
//! Debian's 244 MB armmp `-dbg` vmlinux). Type and parameter queries index only the DWARF units
//! they need ([`dwarf::index`]); the whole index is built (or read from the [`cache`]) only for a
//! question that needs every name.
//!
//! Modules: [`elf`] (build-id, section facts), [`abi`] (calling conventions), [`dwarf`] (types,
//! parameters, layouts), [`cache`], [`query`] (the DWARF-backed queries and the compiler's
//! [`crate::lang::Resolver`]), [`symtab`] (address to symbol, symbols by name), [`symmap`]
//! (`System.map` and `/proc/kallsyms` text), [`names`] (suggestions).
//!
//! Addresses: ARM Thumb functions have bit 0 set in `st_value`; it is cleared. Under KASLR the run-time
//! address is `addr - base + runtime base` ([`Vmlinux::rebase`]), where the base is the symbol the
//! agent found in `/proc/kallsyms`: `_text`, or `_stext` where kallsyms omits `_text` (ARM32, arm64).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use goblin::elf::section_header::SHT_SYMTAB;
use goblin::elf::sym::{STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT};
use memmap2::Mmap;

use crate::board::Arch;

pub mod abi;
pub mod cache;
pub(crate) mod dwarf;
pub mod elf;
mod error;
pub(crate) mod names;
pub mod query;
mod rawsym;
mod rodata;
pub mod symmap;
pub mod symtab;
pub mod syscalls;

pub use dwarf::layout::{Layout, LayoutMember};
pub use error::VmlinuxError;
pub use query::FuncInfo;

use elf::{find_build_id, machine_name};
use names::{closest, did_you_mean};

/// ELF `e_machine` of 32-bit ARM.
const EM_ARM: u16 = 40;
/// ELF `e_machine` of 64-bit PowerPC.
const EM_PPC64: u16 = 21;

/// ELFv2: bytes from a function's global entry to its local entry, from bits 5-7 of `st_other`
/// (0 and 1 mean none; n means 2^n / 4 instructions: 4, 8, 16, ... bytes).
fn ppc64_local_entry(st_other: u8) -> u8 {
    match st_other >> 5 {
        0 | 1 => 0,
        n => 1u8 << n >> 2 << 2,
    }
}

/// One function symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FuncSym {
    /// Link-time address, Thumb bit cleared.
    addr: u64,
    /// Global or weak binding (as opposed to a static function).
    global: bool,
    /// Bytes from `addr` to where a kprobe must go: the ELFv2 local entry point on 64-bit PowerPC
    /// (calls within the kernel enter there, past the TOC setup, so a probe at the global entry
    /// would miss them); 0 elsewhere.
    kprobe_offset: u8,
}

/// All function and tracepoint names, for suggestions.
#[derive(Debug, Default)]
struct SymSets {
    funcs: HashMap<Box<str>, Vec<FuncSym>>,
    tracepoints: BTreeSet<Box<str>>,
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
    /// The symbol table and its strings in the file: lookups scan them in place
    /// ([`rawsym`]), so opening allocates nothing per symbol.
    symtab: rawsym::SymTable,
    /// Every function and tracepoint name, made only for suggestions and counts.
    sets: OnceLock<SymSets>,
    /// `TRACE_SYSTEM` names (`str__<sys>__trace_system_name`), made on the first tracepoint check.
    trace_systems: OnceLock<BTreeSet<Box<str>>>,
    /// Where the `.debug_*` sections are.
    sections: dwarf::Sections,
    /// The whole DWARF name index once made: loaded from the cache, or built when a query needs
    /// every name (and then cached).
    full: OnceLock<Result<dwarf::index::Index, String>>,
    /// Set once the cache has been looked at (a miss leaves `full` empty).
    cache_looked: OnceLock<()>,
    /// The index made on demand while there is no whole one.
    lazy: std::sync::Mutex<dwarf::index::Lazy>,
    /// Root of the index cache ([`cache::cache_root`] unless set).
    cache_dir: Option<PathBuf>,
    /// gimli's sections and the parsed units: borrows `map`, so it must be declared (and dropped)
    /// before it.
    shared: OnceLock<Result<dwarf::Shared, String>>,
    map: Mmap,
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
        let lean = elf::Lean::parse(&map).map_err(|e| bad(e.to_string()))?;
        let elf = &lean.elf;
        if !elf.section_headers.iter().any(|s| s.sh_type == SHT_SYMTAB) || elf.syms.is_empty() {
            return Err(VmlinuxError::NoSymbols { path: path.to_owned() });
        }
        let machine = elf.header.e_machine;
        let build_id = find_build_id(elf, &map, elf.little_endian)
            .ok_or_else(|| VmlinuxError::NoBuildId { path: path.to_owned() })?;

        let range = |off: u64, size: u64| {
            let start = usize::try_from(off).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            (end <= map.len()).then_some(start..end)
        };
        let symtab_sh = elf.section_headers.iter().find(|s| s.sh_type == SHT_SYMTAB);
        let symtab = rawsym::SymTable {
            records: symtab_sh.and_then(|sh| range(sh.sh_offset, sh.sh_size)).unwrap_or(0..0),
            strtab: symtab_sh
                .and_then(|sh| elf.section_headers.get(sh.sh_link as usize))
                .and_then(|s| range(s.sh_offset, s.sh_size))
                .unwrap_or(0..0),
            is_64: elf.is_64,
            little_endian: elf.little_endian,
        };
        let (mut text, mut stext) = (None, None);
        for sym in symtab.iter(&map) {
            if sym.is_named(b"_text") {
                text = Some(sym.value());
            } else if sym.is_named(b"_stext") {
                stext = Some(sym.value());
            }
        }
        let text = text.ok_or_else(|| VmlinuxError::NoText { path: path.to_owned() })?;
        let sections = dwarf::Sections::find(elf, &map);
        Ok(Vmlinux {
            path: path.to_owned(),
            machine,
            is_64: elf.is_64,
            little_endian: elf.little_endian,
            build_id,
            text,
            stext,
            slide: 0,
            symtab,
            sets: OnceLock::new(),
            trace_systems: OnceLock::new(),
            sections,
            full: OnceLock::new(),
            cache_looked: OnceLock::new(),
            lazy: Default::default(),
            cache_dir: cache::cache_root(),
            shared: OnceLock::new(),
            map,
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
        self.sets().funcs.len()
    }

    /// Every symbol, in file order.
    fn symbols(&self) -> impl Iterator<Item = rawsym::RawSym<'_>> {
        self.symtab.iter(&self.map)
    }

    /// A function symbol's address as used everywhere here (ARM's Thumb bit cleared).
    fn func_sym(&self, sym: &rawsym::RawSym<'_>) -> FuncSym {
        let addr = if self.machine == EM_ARM { sym.value() & !1 } else { sym.value() };
        let kprobe_offset = if self.machine == EM_PPC64 { ppc64_local_entry(sym.other()) } else { 0 };
        FuncSym { addr, global: matches!(sym.bind(), STB_GLOBAL | STB_WEAK), kprobe_offset }
    }

    /// Functions called `name` (one scan of the symbol table, or the sets once made).
    fn funcs_named(&self, name: &str) -> Vec<FuncSym> {
        if let Some(sets) = self.sets.get() {
            return sets.funcs.get(name).cloned().unwrap_or_default();
        }
        let mut out: Vec<FuncSym> = Vec::new();
        for sym in self.symbols() {
            if sym.typ() == STT_FUNC && sym.value() != 0 && sym.is_named(name.as_bytes()) {
                let f = self.func_sym(&sym);
                if !out.iter().any(|o| o.addr == f.addr) {
                    out.push(f);
                }
            }
        }
        out
    }

    fn sets(&self) -> &SymSets {
        self.sets.get_or_init(|| {
            let mut sets = SymSets::default();
            for sym in self.symbols() {
                let Ok(name) = std::str::from_utf8(sym.name()) else { continue };
                let typ = sym.typ();
                if typ == STT_FUNC && sym.value() != 0 && !name.is_empty() {
                    let f = self.func_sym(&sym);
                    let entry = sets.funcs.entry(name.into()).or_default();
                    if !entry.iter().any(|o| o.addr == f.addr) {
                        entry.push(f);
                    }
                } else if let Some(event) = name.strip_prefix("__tracepoint_")
                    && (typ == STT_OBJECT || typ == 0)
                {
                    sets.tracepoints.insert(event.into());
                }
            }
            sets
        })
    }

    fn trace_systems(&self) -> &BTreeSet<Box<str>> {
        self.trace_systems.get_or_init(|| {
            let mut systems = BTreeSet::new();
            for sym in self.symbols().filter(|s| s.starts_with(b"str__")) {
                let sys =
                    sym.name().strip_prefix(b"str__").and_then(|s| s.strip_suffix(b"__trace_system_name"));
                if let Some(sys) = sys.and_then(|s| std::str::from_utf8(s).ok()) {
                    systems.insert(sys.into());
                }
            }
            systems
        })
    }

    /// Is there a `__tracepoint_<event>` object?
    fn has_tracepoint(&self, event: &str) -> bool {
        if let Some(sets) = self.sets.get() {
            return sets.tracepoints.contains(event);
        }
        let want = format!("__tracepoint_{event}");
        self.symbols().any(|s| matches!(s.typ(), STT_OBJECT | 0) && s.is_named(want.as_bytes()))
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
        self.function_sym(name).map(|f| f.addr)
    }

    /// The one symbol [`Vmlinux::function`] resolves `name` to.
    fn function_sym(&self, name: &str) -> Result<FuncSym, VmlinuxError> {
        let syms = self.funcs_named(name);
        if syms.is_empty() {
            return Err(VmlinuxError::NoFunction {
                path: self.path.clone(),
                name: name.to_owned(),
                suggest: did_you_mean(self.function_suggestions(name)),
            });
        }
        if let [one] = syms.as_slice() {
            return Ok(*one);
        }
        let globals: Vec<_> = syms.iter().filter(|f| f.global).collect();
        if let [one] = globals.as_slice() {
            return Ok(**one);
        }
        let addrs = syms.iter().map(|f| format!("{:#x}", f.addr)).collect::<Vec<_>>().join(", ");
        Err(VmlinuxError::Ambiguous {
            path: self.path.clone(),
            name: name.to_owned(),
            count: syms.len(),
            addrs,
        })
    }

    /// Run-time address for a kprobe on `name`: its link-time address (on 64-bit PowerPC, its ELFv2
    /// local entry) moved by the KASLR offset.
    pub fn kprobe_address(&self, name: &str) -> Result<u64, VmlinuxError> {
        let f = self.function_sym(name)?;
        Ok(f.addr.wrapping_add(u64::from(f.kprobe_offset)).wrapping_add(self.slide))
    }

    /// Check that tracepoint `subsys:event` exists (`__tracepoint_<event>`; the subsystem is checked
    /// against the kernel's `TRACE_SYSTEM` names when the symbol table carries them).
    pub fn check_tracepoint(&self, subsys: &str, event: &str) -> Result<(), VmlinuxError> {
        if !self.has_tracepoint(event) {
            return Err(VmlinuxError::NoTracepoint {
                path: self.path.clone(),
                subsys: subsys.to_owned(),
                event: event.to_owned(),
                suggest: did_you_mean(closest(event, self.sets().tracepoints.iter().map(|s| &**s))),
            });
        }
        // `TRACE_SYSTEM_VAR` may differ from the system's name (e.g. a leading `_` for names that are
        // not C identifiers), so accept the obvious spellings.
        let systems = self.trace_systems();
        let known = |s: &str| systems.contains(s);
        let var = subsys.replace(['-', '.'], "_");
        if !systems.is_empty() && !known(subsys) && !known(&var) && !known(&format!("_{var}")) {
            return Err(VmlinuxError::NoTraceSystem {
                path: self.path.clone(),
                subsys: subsys.to_owned(),
                event: event.to_owned(),
                suggest: did_you_mean(closest(subsys, systems.iter().map(|s| &**s))),
            });
        }
        Ok(())
    }

    pub(crate) fn function_suggestions(&self, name: &str) -> Vec<String> {
        // gcc clones first (`foo.isra.0`, `foo.constprop.0`, `foo.part.0`): kprobe those instead.
        let prefix = format!("{name}.");
        let funcs = &self.sets().funcs;
        let mut clones: Vec<String> =
            funcs.keys().filter(|k| k.starts_with(&prefix)).map(|k| k.to_string()).collect();
        if !clones.is_empty() {
            clones.sort();
            clones.truncate(3);
            return clones;
        }
        closest(name, funcs.keys().map(|s| &**s))
    }
}

/// Lower-case hex of a build-id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
