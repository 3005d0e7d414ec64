//! The name index: which DIE defines each type and function. Built by one pass over every unit
//! (split over the CPUs), then cached by build-id ([`crate::vmlinux::cache`]).
//!
//! Only top-level DIEs (children of a unit) are indexed: that is where C puts named types and
//! functions. A type defined in many units (every unit including its header) is indexed once, at
//! its lowest offset with a full definition, as `pahole -C` picks the first one it meets.

use std::collections::HashMap;

use gimli::{AttributeValue, UnitHeader};
use serde::{Deserialize, Serialize};

use super::{R, bad};

/// Names to DIE offsets (global `.debug_info` offsets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Index {
    /// Start offsets of every unit, ascending.
    pub units: Vec<u64>,
    /// `struct NAME`, `union NAME`, `enum NAME`, typedef and base type names -> the defining DIE.
    pub types: NameMap,
    /// Entry address of every out-of-line function body (clones included) -> its subprogram DIE.
    pub funcs_at: AddrMap,
    /// Functions that exist only inlined (an abstract instance with no body of its own under that
    /// name) or only declared: name -> DIE, to explain why they cannot be probed.
    pub abstract_funcs: NameMap,
}

/// Names to offsets, laid out to load fast from the cache: one string blob and a table sorted by
/// name (no allocation per name when decoding 100 000 of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NameMap {
    blob: String,
    /// (start in blob, length, value), sorted by the name.
    entries: Vec<(u32, u32, u64)>,
}

impl NameMap {
    fn from_map(map: HashMap<String, u64>) -> NameMap {
        let mut names: Vec<(String, u64)> = map.into_iter().collect();
        names.sort_unstable();
        let mut m = NameMap::default();
        for (name, v) in names {
            m.entries.push((m.blob.len() as u32, name.len() as u32, v));
            m.blob.push_str(&name);
        }
        m
    }

    fn name(&self, e: &(u32, u32, u64)) -> &str {
        self.blob.get(e.0 as usize..e.0 as usize + e.1 as usize).unwrap_or("")
    }

    /// The value for `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = self.entries.binary_search_by(|e| self.name(e).cmp(name)).ok()?;
        self.entries.get(i).map(|e| e.2)
    }

    /// Is `name` there?
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every name.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| self.name(e))
    }
}

/// Addresses to offsets, sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AddrMap(Vec<(u64, u64)>);

impl AddrMap {
    /// The value at `addr`.
    pub fn get(&self, addr: u64) -> Option<u64> {
        let i = self.0.binary_search_by_key(&addr, |e| e.0).ok()?;
        self.0.get(i).map(|e| e.1)
    }

    /// The function whose code the symbol at `addr` starts: its DWARF entry and the address its
    /// argument locations are read at (`addr`, or the `low_pc` past patchable NOPs). The Thumb bit may be set on ARM; and where the kernel reserves patchable NOPs at
    /// a function's start (arm64's ftrace: two, before the body), DWARF's `low_pc` lies a few
    /// bytes past the symbol, so the first entry within [`PATCH_PAD`] bytes after it counts.
    pub fn function_at(&self, addr: u64) -> Option<(u64, u64)> {
        if let Some(die) = self.get(addr) {
            return Some((die, addr));
        }
        if let Some(die) = self.get(addr | 1) {
            return Some((die, addr));
        }
        let i = self.0.partition_point(|e| e.0 <= addr);
        self.0.get(i).filter(|e| e.0 - addr <= PATCH_PAD).map(|e| (e.1, e.0))
    }
}

/// Most bytes of NOPs a kernel puts between a function's symbol and its DWARF `low_pc`.
pub const PATCH_PAD: u64 = 16;

/// What one unit contributes.
#[derive(Default)]
struct Part {
    types: Vec<(String, u64)>,
    funcs_at: Vec<(u64, u64)>,
    abstract_funcs: Vec<(String, u64)>,
}

/// Index every unit. `progress` gets the bytes of `.debug_info` done so far (called from the
/// calling thread only).
pub(crate) fn build(dwarf: &gimli::Dwarf<R<'_>>, progress: &dyn Fn(u64)) -> Result<Index, String> {
    let mut headers = Vec::new();
    let mut iter = dwarf.units();
    while let Some(h) = iter.next().map_err(bad)? {
        headers.push(h);
    }
    let units: Vec<u64> = headers.iter().map(|h| start_of(h)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    // Interleave units over the threads: their sizes vary too much for contiguous halves.
    let parts: Vec<Result<Vec<Part>, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads)
            .map(|t| {
                let headers = &headers;
                s.spawn(move || index_units(dwarf, headers.iter().skip(t).step_by(threads), &|_| {}))
            })
            .collect();
        let mine = index_units(dwarf, headers.iter().step_by(threads), progress);
        let mut all = vec![mine];
        all.extend(
            workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("index thread panicked".into()))),
        );
        all
    });
    let (mut types, mut funcs_at, mut abstract_funcs) = (HashMap::new(), HashMap::new(), HashMap::new());
    // lowest offset wins, whatever order the threads finished in
    let keep_min = |o: &mut u64, off: u64| *o = (*o).min(off);
    for part in parts {
        for p in part? {
            for (name, off) in p.types {
                types.entry(name).and_modify(|o| keep_min(o, off)).or_insert(off);
            }
            for (addr, off) in p.funcs_at {
                funcs_at.entry(addr).and_modify(|o| keep_min(o, off)).or_insert(off);
            }
            for (name, off) in p.abstract_funcs {
                abstract_funcs.entry(name).and_modify(|o| keep_min(o, off)).or_insert(off);
            }
        }
    }
    let mut funcs_at: Vec<(u64, u64)> = funcs_at.into_iter().collect();
    funcs_at.sort_unstable();
    Ok(Index {
        units,
        types: NameMap::from_map(types),
        funcs_at: AddrMap(funcs_at),
        abstract_funcs: NameMap::from_map(abstract_funcs),
    })
}

fn start_of(h: &UnitHeader<R<'_>>) -> u64 {
    h.offset().0 as u64
}

fn index_units<'h, 'a: 'h>(
    dwarf: &gimli::Dwarf<R<'a>>,
    headers: impl Iterator<Item = &'h UnitHeader<R<'a>>>,
    progress: &dyn Fn(u64),
) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    for h in headers {
        progress(start_of(h));
        parts.push(index_unit(dwarf, *h)?);
    }
    Ok(parts)
}

fn index_unit(dwarf: &gimli::Dwarf<R<'_>>, header: UnitHeader<R<'_>>) -> Result<Part, String> {
    use gimli::constants::*;
    let unit = dwarf.unit(header).map_err(bad)?;
    let mut part = Part::default();
    // Out-of-line copies of inline functions and clones carry no name, only an abstract origin:
    // they are indexed by address, and the symbol table names the address.
    let mut raw = unit.entries_raw(None).map_err(bad)?;
    while !raw.is_empty() {
        let depth = raw.next_depth();
        let off = raw.next_offset();
        let Some(abbrev) = raw.read_abbreviation().map_err(bad)? else { continue };
        let tag = abbrev.tag();
        let wanted = depth == 1
            && matches!(
                tag,
                DW_TAG_structure_type
                    | DW_TAG_union_type
                    | DW_TAG_enumeration_type
                    | DW_TAG_typedef
                    | DW_TAG_base_type
                    | DW_TAG_subprogram
            );
        if !wanted {
            raw.skip_attributes(abbrev.attributes()).map_err(bad)?;
            continue;
        }
        let mut name = None;
        let mut decl = false;
        let mut low_pc = None;
        let mut ranges = None;
        let mut inline = false;
        for spec in abbrev.attributes() {
            let attr = raw.read_attribute(*spec).map_err(bad)?;
            match attr.name() {
                DW_AT_name => {
                    name =
                        dwarf.attr_string(&unit, attr.value()).ok().map(|s| s.to_string_lossy().into_owned())
                }
                DW_AT_declaration => decl = !matches!(attr.value(), AttributeValue::Flag(false)),
                DW_AT_low_pc => low_pc = dwarf.attr_address(&unit, attr.value()).ok().flatten(),
                DW_AT_ranges => ranges = dwarf.attr_ranges_offset(&unit, attr.value()).ok().flatten(),
                DW_AT_inline => inline = true,
                _ => {}
            }
        }
        let global = off.to_debug_info_offset(&unit.header).map_or(0, |o| o.0 as u64);
        if tag == DW_TAG_subprogram {
            let mut entries = Vec::new();
            if let Some(pc) = low_pc {
                entries.push(pc);
            } else if let Some(r) = ranges {
                let mut it = dwarf.ranges(&unit, r).map_err(bad)?;
                while let Some(r) = it.next().map_err(bad)? {
                    entries.push(r.begin);
                }
            }
            if let Some(n) = name.filter(|_| entries.is_empty() && (inline || decl)) {
                part.abstract_funcs.push((n, global));
            }
            part.funcs_at.extend(entries.into_iter().map(|pc| (pc, global)));
            continue;
        }
        let Some(name) = name else { continue };
        if decl {
            continue;
        }
        let key = match tag {
            DW_TAG_structure_type => format!("struct {name}"),
            DW_TAG_union_type => format!("union {name}"),
            DW_TAG_enumeration_type => format!("enum {name}"),
            _ => name,
        };
        part.types.push((key, global));
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::AddrMap;

    #[test]
    fn function_at_takes_the_exact_entry_the_thumb_bit_or_a_body_past_patch_nops() {
        let m = AddrMap(vec![(0x1000, 1), (0x2001, 2), (0x3008, 3), (0x4100, 4)]);
        assert_eq!(m.function_at(0x1000), Some((1, 0x1000)));
        assert_eq!(m.function_at(0x2000), Some((2, 0x2000)));
        // arm64: two NOPs between the symbol and DWARF's low_pc
        assert_eq!(m.function_at(0x3000), Some((3, 0x3008)));
        // too far past the symbol: another function, not this one's body
        assert_eq!(m.function_at(0x4000), None);
        assert_eq!(m.function_at(0x5000), None);
    }
}
