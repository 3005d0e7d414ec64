//! The whole symbol table, for `ktap-host symbols sym`: symbols by name and by address. Read on
//! demand (opening a vmlinux keeps only functions and tracepoints).

use goblin::elf::sym::{STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT};
use serde::Serialize;

use super::elf::Lean;
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
        let lean = Lean::parse(&self.map)
            .map_err(|e| VmlinuxError::Elf { path: self.path.clone(), message: e.to_string() })?;
        let elf = &lean.elf;
        let mut out = Vec::new();
        for s in elf.syms.iter() {
            let Some(name) = lean.name(s.st_name).filter(|n| !n.is_empty()) else { continue };
            if s.st_value == 0 || name.starts_with("$") {
                continue; // ARM mapping symbols ($a, $d, $t) mark code/data, they name nothing
            }
            let kind = match s.st_type() {
                STT_FUNC => "func",
                STT_OBJECT => "object",
                _ => "other",
            };
            let addr = if self.machine == EM_ARM && kind == "func" { s.st_value & !1 } else { s.st_value };
            out.push(SymInfo {
                name: name.to_owned(),
                addr,
                size: s.st_size,
                kind,
                global: matches!(s.st_bind(), STB_GLOBAL | STB_WEAK),
            });
        }
        Ok(out)
    }

    /// Symbols called `name`.
    pub fn symbols_named(&self, name: &str) -> Result<Vec<SymInfo>, VmlinuxError> {
        Ok(self.all_symbols()?.into_iter().filter(|s| s.name == name).collect())
    }

    /// The symbol containing link-time address `addr`, and the offset into it: the closest symbol at
    /// or below it that is sized to cover it (or unsized); functions and objects before others.
    pub fn symbol_at(&self, addr: u64) -> Result<Option<(SymInfo, u64)>, VmlinuxError> {
        let best = self
            .all_symbols()?
            .into_iter()
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
