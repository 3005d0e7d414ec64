//! The whole symbol table, for `ktap-host symbols sym`: symbols by name and by address. Read on
//! demand (opening a vmlinux keeps only functions and tracepoints).

use goblin::elf::sym::{STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT};
use serde::Serialize;

use super::elf::Lean;
use super::rawsym::RawSym;
use super::{EM_ARM, Vmlinux, VmlinuxError};

/// One ELF symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymInfo {
    /// Its name.
    pub name: String,
    /// Link-time address (Thumb bit cleared).
    pub addr: u64,
    /// Size in bytes (0 if the symbol has none).
    pub size: u64,
    /// `func`, `object` or `other`.
    pub kind: &'static str,
    /// Global or weak (as opposed to static).
    pub global: bool,
}

impl Vmlinux {
    /// Every named symbol with a nonzero address.
    pub fn all_symbols(&self) -> Result<Vec<SymInfo>, VmlinuxError> {
        Ok(self.symbols().filter_map(|s| self.sym_info(&s)).collect())
    }

    /// A symbol as listed, or `None` for unnamed ones, address 0 and ARM mapping symbols.
    fn sym_info(&self, s: &RawSym<'_>) -> Option<SymInfo> {
        let name = std::str::from_utf8(s.name()).ok().filter(|n| !n.is_empty())?;
        if s.value() == 0 || name.starts_with('$') {
            return None; // ARM mapping symbols ($a, $d, $t) mark code/data, they name nothing
        }
        let kind = match s.typ() {
            STT_FUNC => "func",
            STT_OBJECT => "object",
            _ => "other",
        };
        let addr = if self.machine == EM_ARM && kind == "func" { s.value() & !1 } else { s.value() };
        Some(SymInfo {
            name: name.to_owned(),
            addr,
            size: s.size(),
            kind,
            global: matches!(s.bind(), STB_GLOBAL | STB_WEAK),
        })
    }

    /// Symbols called `name`.
    pub fn symbols_named(&self, name: &str) -> Result<Vec<SymInfo>, VmlinuxError> {
        Ok(self.symbols().filter(|s| s.is_named(name.as_bytes())).filter_map(|s| self.sym_info(&s)).collect())
    }

    /// The symbol containing link-time address `addr`, and the offset into it: the closest symbol at
    /// or below it that is sized to cover it (or unsized); functions and objects before others.
    pub fn symbol_at(&self, addr: u64) -> Result<Option<(SymInfo, u64)>, VmlinuxError> {
        let best = self
            .symbols()
            .filter(|s| (s.value() & !1) <= addr)
            .filter_map(|s| self.sym_info(&s))
            .filter(|s| s.addr <= addr && (s.size == 0 || addr - s.addr < s.size))
            .max_by_key(|s| (s.addr, s.kind != "other", s.size != 0, s.global));
        Ok(best.map(|s| {
            let off = addr - s.addr;
            (s, off)
        }))
    }

    /// The pointer-sized word the file holds at link-time address `addr` (initialised data, before
    /// any relocation at boot: what static initialisers such as `event_<name>.class` point to).
    pub fn word_at(&self, addr: u64) -> Option<u64> {
        let lean = Lean::parse(&self.map).ok()?;
        let elf = &lean.elf;
        let width = if self.is_64 { 8 } else { 4 };
        let sh = elf.section_headers.iter().find(|sh| {
            sh.sh_type == goblin::elf::section_header::SHT_PROGBITS
                && sh.sh_addr <= addr
                && addr.checked_add(width).is_some_and(|end| end <= sh.sh_addr + sh.sh_size)
        })?;
        let off = usize::try_from(sh.sh_offset + (addr - sh.sh_addr)).ok()?;
        let bytes = self.map.get(off..off + width as usize)?;
        Some(match (self.is_64, self.little_endian) {
            (true, true) => u64::from_le_bytes(bytes.try_into().ok()?),
            (true, false) => u64::from_be_bytes(bytes.try_into().ok()?),
            (false, true) => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
            (false, false) => u64::from(u32::from_be_bytes(bytes.try_into().ok()?)),
        })
    }
}
