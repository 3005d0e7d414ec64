//! The vmlinux's DWARF (versions 4 and 5) through gimli, over the memory map.
//!
//! A [`Debug`] is made per query from the mapped file and the [`index::Index`] (names to DIE
//! offsets, built once per kernel and cached by build-id), so answering a query parses only the few
//! units it touches. Types are named by their global `.debug_info` offset ([`TypeRef`]); `void` is
//! [`VOID`].

// gimli's DWARF constants (`DW_TAG_member`) are matched in patterns under their standard names.
#![allow(non_upper_case_globals)]

pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod params;
pub(crate) mod types;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use gimli::{AttributeValue, DebugInfoOffset, DebuggingInformationEntry, EndianSlice, RunTimeEndian, Unit};

use super::abi::Abi;
use crate::ktypes::TypeRef;
use index::Index;

/// The reader every DWARF structure here is parsed with: a slice of the map.
pub(crate) type R<'a> = EndianSlice<'a, RunTimeEndian>;
/// A DIE.
pub(crate) type Die<'a> = DebuggingInformationEntry<R<'a>>;

/// The type of an absent `DW_AT_type`: `void`.
pub const VOID: TypeRef = TypeRef(u64::MAX);

/// Byte ranges of the `.debug_*` sections in the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sections {
    /// Name -> byte range in the file.
    pub ranges: HashMap<String, Range<usize>>,
    /// Some `.debug_*` section is compressed (`SHF_COMPRESSED`), which is not read here.
    pub compressed: bool,
}

impl Sections {
    /// Does the file carry type information at all?
    pub fn has_info(&self) -> bool {
        self.ranges.get(".debug_info").is_some_and(|r| !r.is_empty())
    }

    /// gimli's view of the sections of `data` (absent ones are empty).
    pub fn load<'a>(&self, data: &'a [u8], little_endian: bool) -> gimli::Dwarf<R<'a>> {
        let endian = if little_endian { RunTimeEndian::Little } else { RunTimeEndian::Big };
        let load = |id: gimli::SectionId| -> Result<R<'a>, gimli::Error> {
            let bytes = self.ranges.get(id.name()).and_then(|r| data.get(r.clone())).unwrap_or(&[]);
            Ok(EndianSlice::new(bytes, endian))
        };
        // the closure never fails
        gimli::Dwarf::load(load).unwrap_or_default()
    }
}

/// One query's view of the DWARF: sections, the name index and a few parsed units.
pub(crate) struct Debug<'a> {
    pub dwarf: gimli::Dwarf<R<'a>>,
    pub index: &'a Index,
    pub abi: Abi,
    /// Units parsed so far in this query (a chain of member lookups stays in a handful).
    units: RefCell<Vec<(u64, Rc<Unit<R<'a>>>)>>,
    /// C spellings made so far (a layout spells the same member types many times).
    pub(crate) names: RefCell<HashMap<u64, String>>,
}

/// A failed DWARF read, as text for the resolver's callers.
pub(crate) fn bad(e: gimli::Error) -> String {
    format!("malformed DWARF in the vmlinux: {e}")
}

impl<'a> Debug<'a> {
    pub fn new(dwarf: gimli::Dwarf<R<'a>>, index: &'a Index, abi: Abi) -> Debug<'a> {
        Debug { dwarf, index, abi, units: RefCell::new(Vec::new()), names: RefCell::default() }
    }

    /// The unit holding global offset `off`.
    pub fn unit_of(&self, off: u64) -> Result<Rc<Unit<R<'a>>>, String> {
        let i = self.index.units.partition_point(|&u| u <= off);
        let start = *self
            .index
            .units
            .get(i.wrapping_sub(1))
            .ok_or_else(|| format!("no DWARF unit holds offset {off:#x}"))?;
        if let Some((_, u)) = self.units.borrow().iter().find(|(s, _)| *s == start) {
            return Ok(u.clone());
        }
        let header =
            self.dwarf.debug_info.header_from_offset(DebugInfoOffset(start as usize)).map_err(bad)?;
        let unit = Rc::new(self.dwarf.unit(header).map_err(bad)?);
        let mut units = self.units.borrow_mut();
        if units.len() >= 8 {
            units.remove(0);
        }
        units.push((start, unit.clone()));
        Ok(unit)
    }

    /// The DIE at global offset `off`, with its unit.
    pub fn die(&self, off: u64) -> Result<(Rc<Unit<R<'a>>>, Die<'a>), String> {
        let unit = self.unit_of(off)?;
        let local = DebugInfoOffset(off as usize)
            .to_unit_offset(&unit.header)
            .ok_or_else(|| format!("offset {off:#x} is outside its DWARF unit"))?;
        let die = unit.entry(local).map_err(bad)?;
        Ok((unit, die))
    }

    /// The children of the DIE at `off` (one level), with their unit.
    pub fn children(&self, off: u64) -> Result<(Rc<Unit<R<'a>>>, Vec<Die<'a>>), String> {
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
