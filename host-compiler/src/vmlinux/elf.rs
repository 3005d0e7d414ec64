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
