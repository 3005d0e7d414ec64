//! ELF facts goblin does not give directly: the GNU build-id note, machine names, section ranges.

use goblin::elf::Elf;
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::SHT_NOTE;

/// ELF note type of a GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

/// The GNU build-id from PT_NOTE segments, or else from SHT_NOTE sections.
pub(crate) fn find_build_id(elf: &Elf<'_>, data: &[u8], le: bool) -> Option<Vec<u8>> {
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

pub(crate) fn machine_name(m: u16) -> &'static str {
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

/// A vmlinux parsed for our queries: goblin's headers and symbols, and the raw symbol string table.
pub struct Lean<'a> {
    /// Headers, section names and symbols (`strtab` is left empty: use [`Lean::name`]).
    pub elf: Elf<'a>,
    strtab: &'a [u8],
}

impl<'a> Lean<'a> {
    /// Parse only what a vmlinux query needs: headers, section names and the symbol table.
    /// `Elf::parse` also splits the whole 2.7 MB `.strtab` into 200 000 checked strings up front,
    /// which dominated opening; here a name is read when asked for.
    pub fn parse(bytes: &'a [u8]) -> goblin::error::Result<Lean<'a>> {
        use goblin::container::Ctx;
        use goblin::elf::program_header::ProgramHeader;
        use goblin::elf::section_header::{SHT_SYMTAB, SectionHeader};
        use goblin::elf::sym::Symtab;
        use goblin::strtab::Strtab;

        let header = Elf::parse_header(bytes)?;
        let ctx = Ctx::new(header.container()?, header.endianness()?);
        let mut elf = Elf::lazy_parse(header)?;
        elf.program_headers =
            ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)?;
        elf.section_headers =
            SectionHeader::parse(bytes, header.e_shoff as usize, header.e_shnum as usize, ctx)?;
        if let Some(sh) = elf.section_headers.get(header.e_shstrndx as usize) {
            elf.shdr_strtab = Strtab::parse(bytes, sh.sh_offset as usize, sh.sh_size as usize, 0)?;
        }
        let mut strtab: &[u8] = &[];
        let symtab = elf.section_headers.iter().find(|s| s.sh_type == SHT_SYMTAB).cloned();
        if let Some(sh) = symtab {
            let entsize = if elf.is_64 { 24 } else { 16 };
            elf.syms = Symtab::parse(bytes, sh.sh_offset as usize, sh.sh_size as usize / entsize, ctx)?;
            if let Some(str_sh) = elf.section_headers.get(sh.sh_link as usize) {
                let (off, len) = (str_sh.sh_offset as usize, str_sh.sh_size as usize);
                strtab = off.checked_add(len).and_then(|end| bytes.get(off..end)).ok_or_else(|| {
                    goblin::error::Error::Malformed(format!(
                        "string table at {off:#x}+{len:#x} is beyond the end of the file"
                    ))
                })?;
            }
        }
        Ok(Lean { elf, strtab })
    }

    /// A symbol's name (`st_name`); `None` if out of range, unterminated or not UTF-8.
    pub fn name(&self, st_name: usize) -> Option<&'a str> {
        let rest = self.strtab.get(st_name..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(rest.get(..end)?).ok()
    }
}
