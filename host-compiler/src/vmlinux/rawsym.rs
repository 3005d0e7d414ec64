//! The symbol table read in place: fixed-size `Elf32_Sym`/`Elf64_Sym` records decoded field by
//! field, names compared against the string table without splitting it.
//!
//! A 6.1 kernel has some 150 000 symbols; looking one up by name is a linear pass that touches
//! only the record and the first bytes of its name (well under a millisecond), which is cheaper
//! than building any map of them for the handful of lookups one compile makes.

/// One symbol record; fields are decoded when asked for, so a scan for a name reads only
/// `st_name` of the records it passes over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawSym<'a> {
    strtab: &'a [u8],
    rec: &'a [u8],
    is_64: bool,
    le: bool,
}

impl<'a> RawSym<'a> {
    fn u32_at(&self, o: usize) -> u32 {
        let a = [self.rec[o], self.rec[o + 1], self.rec[o + 2], self.rec[o + 3]];
        if self.le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
    }

    fn u64_at(&self, o: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.rec[o..o + 8]);
        if self.le { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) }
    }

    // Elf32_Sym: st_name, st_value, st_size, st_info, st_other, st_shndx;
    // Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size.

    fn name_off(&self) -> usize {
        self.u32_at(0) as usize
    }

    /// `st_value`.
    pub fn value(&self) -> u64 {
        if self.is_64 { self.u64_at(8) } else { u64::from(self.u32_at(4)) }
    }

    /// `st_size`.
    pub fn size(&self) -> u64 {
        if self.is_64 { self.u64_at(16) } else { u64::from(self.u32_at(8)) }
    }

    fn info(&self) -> u8 {
        self.rec[if self.is_64 { 4 } else { 12 }]
    }

    /// `st_other`.
    pub fn other(&self) -> u8 {
        self.rec[if self.is_64 { 5 } else { 13 }]
    }

    /// The name's bytes (up to its NUL).
    pub fn name(&self) -> &'a [u8] {
        let rest = self.strtab.get(self.name_off()..).unwrap_or(&[]);
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// Is the name exactly `want`? (Compares only as many bytes as `want` has, plus its NUL.)
    pub fn is_named(&self, want: &[u8]) -> bool {
        let off = self.name_off();
        // most names differ in the first byte: skip the slice compare for them
        if self.strtab.get(off) != want.first() {
            return false;
        }
        let end = off.saturating_add(want.len());
        self.strtab.get(off..end) == Some(want) && self.strtab.get(end) == Some(&0)
    }

    /// Does the name start with `prefix`?
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        let off = self.name_off();
        self.strtab.get(off..off.saturating_add(prefix.len())) == Some(prefix)
    }

    /// `STT_*`.
    pub fn typ(&self) -> u8 {
        self.info() & 0xf
    }

    /// `STB_*`.
    pub fn bind(&self) -> u8 {
        self.info() >> 4
    }
}

/// Where the symbol table is and how to read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SymTable {
    /// File range of the `.symtab` records.
    pub records: std::ops::Range<usize>,
    /// File range of its string table.
    pub strtab: std::ops::Range<usize>,
    pub is_64: bool,
    pub little_endian: bool,
}

impl SymTable {
    /// Every record of the table in `data`, in file order.
    pub fn iter<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = RawSym<'a>> + 'a {
        let records = data.get(self.records.clone()).unwrap_or(&[]);
        let strtab = data.get(self.strtab.clone()).unwrap_or(&[]);
        let (is_64, le) = (self.is_64, self.little_endian);
        records.chunks_exact(if is_64 { 24 } else { 16 }).map(move |rec| RawSym { strtab, rec, is_64, le })
    }
}
