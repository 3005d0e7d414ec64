//! The vmlinux's DWARF (versions 4 and 5) through gimli, over the memory map.
//!
//! A [`Debug`] is made per query from the mapped file and the [`index::Index`] (names to DIE
//! offsets, built once per kernel and cached by build-id), so answering a query parses only the few
//! units it touches. Types are named by their global `.debug_info` offset ([`TypeRef`]); `void` is
//! [`VOID`].

// gimli's DWARF constants (`DW_TAG_member`) are matched in patterns under their standard names.
#![allow(non_upper_case_globals)]

pub(crate) mod compressed;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod params;
pub(crate) mod types;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{
    AttributeValue, DebugInfoOffset, DebuggingInformationEntry, EndianSlice, RunTimeEndian, Unit, UnitHeader,
};

use super::abi::Abi;
use crate::ktypes::TypeRef;
use index::Names;

/// The reader every DWARF structure here is parsed with: a slice of the map.
pub(crate) type R<'a> = EndianSlice<'a, RunTimeEndian>;
/// A DIE.
pub(crate) type Die<'a> = DebuggingInformationEntry<R<'a>>;

/// The type of an absent `DW_AT_type`: `void`.
pub const VOID: TypeRef = TypeRef(u64::MAX);

/// Where one `.debug_*` section's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum SectionData {
    /// Stored plainly: this byte range of the file.
    Plain(Range<usize>),
    /// Compressed (`SHF_COMPRESSED` or a `.zdebug_*` section): inflated on first use.
    Compressed(compressed::Packed),
}

/// The `.debug_*` sections of the file, by their standard (`.debug_*`) names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sections {
    pub map: HashMap<String, SectionData>,
    /// A compressed section whose header cannot be read: every DWARF query reports it.
    pub bad: Option<String>,
}

impl Sections {
    /// Find the DWARF sections of `elf` (mapped as `data`): plain, `SHF_COMPRESSED`, or `.zdebug_*`.
    pub fn find(elf: &goblin::elf::Elf<'_>, data: &[u8]) -> Sections {
        use goblin::elf::section_header::{SHF_COMPRESSED, SHT_NOBITS};
        let mut sections = Sections::default();
        for sh in &elf.section_headers {
            let Some(name) = elf.shdr_strtab.get_at(sh.sh_name) else { continue };
            let (Ok(start), Ok(len)) = (usize::try_from(sh.sh_offset), usize::try_from(sh.sh_size)) else {
                continue;
            };
            let Some(range) = start.checked_add(len).filter(|&end| end <= data.len()).map(|end| start..end)
            else {
                continue;
            };
            if sh.sh_type == SHT_NOBITS {
                continue;
            }
            let found = if let Some(rest) = name.strip_prefix(".zdebug_") {
                Some((
                    format!(".debug_{rest}"),
                    compressed::gnu_zdebug(data, range).map(SectionData::Compressed),
                ))
            } else if name.starts_with(".debug_") {
                let packed = if sh.sh_flags & u64::from(SHF_COMPRESSED) != 0 {
                    compressed::elf_compressed(data, range, elf.is_64, elf.little_endian)
                        .map(SectionData::Compressed)
                } else {
                    Ok(SectionData::Plain(range))
                };
                Some((name.to_owned(), packed))
            } else {
                None
            };
            match found {
                Some((name, Ok(d))) => {
                    sections.map.insert(name, d);
                }
                Some((name, Err(e))) => {
                    sections.bad.get_or_insert(format!("section {name}: {e}"));
                }
                None => {}
            }
        }
        sections
    }

    /// Does the file carry type information at all?
    pub fn has_info(&self) -> bool {
        self.len(".debug_info") > 0
    }

    /// Stored size of a section (0 when absent): part of the cache key.
    pub fn len(&self, name: &str) -> u64 {
        match self.map.get(name) {
            Some(SectionData::Plain(r)) => r.len() as u64,
            Some(SectionData::Compressed(p)) => p.stored.len() as u64,
            None => 0,
        }
    }
}

/// The DWARF of one vmlinux as every query shares it: gimli's sections and the units parsed so
/// far, so a compile's many type questions parse each unit once.
///
/// The sections borrow the file's memory map (and the inflated copies of compressed sections,
/// owned here) for `'static`: the owner ([`crate::vmlinux::Vmlinux`]) declares this before the map,
/// so it is dropped first, and the map's bytes never move. Nothing here hands out a `'static`
/// borrow: [`Shared::dwarf`] and [`Shared::unit`] shorten it to the borrow of `self`.
pub(crate) struct Shared {
    dwarf: gimli::Dwarf<R<'static>>,
    /// Units met so far, start -> end (exclusive): walking all 3 000 unit headers of a big kernel
    /// touches pages all over `.debug_info`, so a lazy query learns only the units it reads.
    known: Mutex<BTreeMap<u64, u64>>,
    /// Set once every unit header has been walked into `known`.
    all_known: OnceLock<()>,
    /// Parsed units by start.
    units: Mutex<HashMap<u64, Arc<Unit<R<'static>>>>>,
    /// Inflated compressed sections; the last field, so dropped after everything borrowing it.
    _inflated: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("known", &self.known).finish_non_exhaustive()
    }
}

/// Parsed units kept at once (a compile touches a few dozen).
const UNIT_CACHE: usize = 256;

impl Shared {
    /// gimli's view of `sections` of `data`, inflating compressed ones.
    ///
    /// # Safety
    /// `data` must stay valid and unchanged for as long as the returned value lives.
    pub unsafe fn new(data: &[u8], sections: &Sections, little_endian: bool) -> Result<Shared, String> {
        // SAFETY: the caller keeps `data` alive and in place for the life of the result.
        let data: &'static [u8] = unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) };
        let endian = if little_endian { RunTimeEndian::Little } else { RunTimeEndian::Big };
        let mut inflated: Vec<Box<[u8]>> = Vec::new();
        let mut bytes: HashMap<&str, &'static [u8]> = HashMap::new();
        for (name, sd) in &sections.map {
            let b: &'static [u8] = match sd {
                SectionData::Plain(r) => data.get(r.clone()).unwrap_or(&[]),
                SectionData::Compressed(p) => {
                    let owned = compressed::inflate(name, p, data)?;
                    // SAFETY: the boxed bytes never move and live in `_inflated` as long as `Shared`.
                    let s: &'static [u8] = unsafe { std::slice::from_raw_parts(owned.as_ptr(), owned.len()) };
                    inflated.push(owned);
                    s
                }
            };
            bytes.insert(name.as_str(), b);
        }
        let load = |id: gimli::SectionId| -> Result<R<'static>, gimli::Error> {
            Ok(EndianSlice::new(bytes.get(id.name()).copied().unwrap_or(&[]), endian))
        };
        // the closure never fails
        let dwarf = gimli::Dwarf::load(load).unwrap_or_default();
        Ok(Shared {
            dwarf,
            known: Mutex::default(),
            all_known: OnceLock::new(),
            units: Mutex::default(),
            _inflated: inflated,
        })
    }

    /// Bytes of `.debug_info`.
    pub fn info_len(&self) -> u64 {
        gimli::Section::reader(&self.dwarf.debug_info).len() as u64
    }

    /// The header of the unit starting at `start`, remembered as a known unit.
    pub fn header_at(&self, start: u64) -> Result<UnitHeader<R<'_>>, String> {
        self.header_static(start)
    }

    fn header_static(&self, start: u64) -> Result<UnitHeader<R<'static>>, String> {
        let h = self.dwarf.debug_info.header_from_offset(DebugInfoOffset(start as usize)).map_err(bad)?;
        let end = start + h.length_including_self() as u64;
        if let Ok(mut k) = self.known.lock() {
            k.insert(start, end);
        }
        Ok(h)
    }

    /// Take every unit's start from an index (ends: the next start, or the end of `.debug_info`),
    /// so finding a DIE's unit never walks the headers.
    pub fn learn_units(&self, starts: &[u64]) {
        if self.all_known.get().is_some() {
            return;
        }
        let ends = starts.iter().skip(1).copied().chain([self.info_len()]);
        if let Ok(mut k) = self.known.lock() {
            k.extend(starts.iter().copied().zip(ends));
        }
        let _ = self.all_known.set(());
    }

    fn known_unit_of(&self, off: u64) -> Option<u64> {
        let k = self.known.lock().ok()?;
        let (&start, &end) = k.range(..=off).next_back()?;
        (off < end).then_some(start)
    }

    /// gimli's sections.
    pub fn dwarf(&self) -> &gimli::Dwarf<R<'_>> {
        &self.dwarf
    }

    /// The unit starting at `start`, parsed once.
    fn unit(&self, start: u64) -> Result<Arc<Unit<R<'_>>>, String> {
        if let Some(u) = self.units.lock().ok().and_then(|m| m.get(&start).cloned()) {
            return Ok(u);
        }
        let header = self.header_static(start)?;
        let unit = Arc::new(self.dwarf.unit(header).map_err(bad)?);
        if let Ok(mut m) = self.units.lock() {
            if m.len() >= UNIT_CACHE {
                m.clear();
            }
            m.insert(start, unit.clone());
        }
        Ok(unit)
    }

    /// The start of the unit holding global offset `off` (walking every unit header the first
    /// time an offset lies in a unit not met yet).
    pub fn unit_start_of(&self, off: u64) -> Result<Option<u64>, String> {
        if let Some(s) = self.known_unit_of(off) {
            return Ok(Some(s));
        }
        if self.all_known.get().is_none() {
            let mut iter = self.dwarf.units();
            let mut all = Vec::new();
            while let Some(h) = iter.next().map_err(bad)? {
                let start = h.offset().0 as u64;
                all.push((start, start + h.length_including_self() as u64));
            }
            if let Ok(mut k) = self.known.lock() {
                k.extend(all);
            }
            let _ = self.all_known.set(());
        }
        Ok(self.known_unit_of(off))
    }
}

/// One query's view of the DWARF: the shared sections and units, and the name index.
pub(crate) struct Debug<'a> {
    pub dwarf: &'a gimli::Dwarf<R<'a>>,
    shared: &'a Shared,
    pub index: Names<'a>,
    pub abi: Abi,
    /// C spellings made so far (a layout spells the same member types many times).
    pub(crate) names: RefCell<HashMap<u64, String>>,
}

/// A failed DWARF read, as text for the resolver's callers.
pub(crate) fn bad(e: gimli::Error) -> String {
    format!("malformed DWARF in the vmlinux: {e}")
}

impl<'a> Debug<'a> {
    pub fn new(shared: &'a Shared, index: Names<'a>, abi: Abi) -> Debug<'a> {
        Debug { dwarf: shared.dwarf(), shared, index, abi, names: RefCell::default() }
    }

    /// The unit holding global offset `off`.
    pub fn unit_of(&self, off: u64) -> Result<Arc<Unit<R<'a>>>, String> {
        let start =
            self.shared.unit_start_of(off)?.ok_or_else(|| format!("no DWARF unit holds offset {off:#x}"))?;
        self.shared.unit(start)
    }

    /// The global offset where the unit holding `off` starts.
    pub fn unit_start(&self, off: u64) -> Result<u64, String> {
        self.shared.unit_start_of(off)?.ok_or_else(|| format!("no DWARF unit holds offset {off:#x}"))
    }

    /// The DIE at global offset `off`, with its unit.
    pub fn die(&self, off: u64) -> Result<(Arc<Unit<R<'a>>>, Die<'a>), String> {
        let unit = self.unit_of(off)?;
        let local = DebugInfoOffset(off as usize)
            .to_unit_offset(&unit.header)
            .ok_or_else(|| format!("offset {off:#x} is outside its DWARF unit"))?;
        let die = unit.entry(local).map_err(bad)?;
        Ok((unit, die))
    }

    /// The children of the DIE at `off` (one level), with their unit.
    pub fn children(&self, off: u64) -> Result<(Arc<Unit<R<'a>>>, Vec<Die<'a>>), String> {
        let unit = self.unit_of(off)?;
        let local = DebugInfoOffset(off as usize)
            .to_unit_offset(&unit.header)
            .ok_or_else(|| format!("offset {off:#x} is outside its DWARF unit"))?;
        let mut tree = unit.entries_tree(Some(local)).map_err(bad)?;
        let root = tree.root().map_err(bad)?;
        let mut kids = root.children();
        let mut out = Vec::new();
        while let Some(node) = kids.next().map_err(bad)? {
            out.push(node.entry().clone());
        }
        drop(tree);
        Ok((unit, out))
    }

    /// The name of a DIE (`DW_AT_name`), if any.
    pub fn name(&self, unit: &Unit<R<'a>>, die: &Die<'a>) -> Option<String> {
        let v = die.attr_value(gimli::DW_AT_name)?;
        let s = self.dwarf.attr_string(unit, v).ok()?;
        Some(s.to_string_lossy().into_owned())
    }

    /// An attribute as an unsigned constant.
    pub fn udata(die: &Die<'a>, at: gimli::DwAt) -> Option<u64> {
        die.attr_value(at)?.udata_value()
    }

    /// The global offset a reference attribute points to.
    pub fn reference(unit: &Unit<R<'a>>, die: &Die<'a>, at: gimli::DwAt) -> Option<u64> {
        ref_value(unit, die.attr_value(at)?)
    }

    /// The type a DIE has (`DW_AT_type`), [`VOID`] when absent.
    pub fn type_of(unit: &Unit<R<'a>>, die: &Die<'a>) -> TypeRef {
        Self::reference(unit, die, gimli::DW_AT_type).map_or(VOID, TypeRef)
    }
}

/// A reference attribute value as a global `.debug_info` offset.
pub(crate) fn ref_value(unit: &Unit<R<'_>>, v: AttributeValue<R<'_>>) -> Option<u64> {
    match v {
        AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header).map(|o| o.0 as u64),
        AttributeValue::DebugInfoRef(o) => Some(o.0 as u64),
        _ => None,
    }
}
