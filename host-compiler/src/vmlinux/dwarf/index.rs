//! The name index: which DIE defines each type and function. Built by one pass over every unit
//! (split over the CPUs), then cached by build-id ([`crate::vmlinux::cache`]).
//!
//! Until a kernel has a cached index, queries are answered lazily ([`Lazy`]), the way `pahole -C`
//! does: a type name is looked up by indexing units in link order and stopping at the first unit
//! that defines it (common structs live in the first units: every file includes their headers); a
//! function by its address, through `.debug_aranges`, indexing only the unit holding its code. Only
//! a question that needs every name (a suggestion for a misspelt type, an inlined function, a type
//! not met in the first eighth of `.debug_info`) builds the whole index, which is then cached.
//!
//! Only top-level DIEs (children of a unit) are indexed: that is where C puts named types and
//! functions. A type defined in many units (every unit including its header) is indexed once, at
//! its lowest offset with a full definition, as `pahole -C` picks the first one it meets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use gimli::{AttributeValue, UnitHeader};
use serde::{Deserialize, Serialize};

use super::{R, Shared, bad};

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

/// [`AddrMap::function_at`] over a map still being filled.
fn function_in(map: &BTreeMap<u64, u64>, addr: u64) -> Option<(u64, u64)> {
    if let Some(&die) = map.get(&addr).or_else(|| map.get(&(addr | 1))) {
        return Some((die, addr));
    }
    let (&at, &die) = map.range(addr + 1..=addr.saturating_add(PATCH_PAD)).next()?;
    Some((die, at))
}

/// Where names are looked up for one query: the whole index, or the lazy one of a kernel not yet
/// indexed (with the way to build the whole one when a question needs it).
#[derive(Clone, Copy)]
pub(crate) enum Names<'a> {
    Full(&'a Index),
    Lazy { lazy: &'a Mutex<Lazy>, shared: &'a Shared, owner: &'a crate::vmlinux::Vmlinux },
}

impl<'a> Names<'a> {
    /// The DIE defining type `key` (`struct sk_buff`, `u32`): its first full definition.
    pub fn type_get(&self, key: &str) -> Result<Option<u64>, String> {
        self.lazy_or_full(|l, shared| l.type_get(shared, key), |i| i.types.get(key))
    }

    /// `lazy`'s answer when the lazy index can give one (`Some`), else `full`'s from the whole
    /// index, built after the lazy one's lock is released (building takes that lock's owner).
    fn lazy_or_full<T>(
        &self,
        lazy_q: impl FnOnce(&mut Lazy, &Shared) -> Result<Option<T>, String>,
        full_q: impl FnOnce(&Index) -> T,
    ) -> Result<T, String> {
        match *self {
            Names::Full(i) => Ok(full_q(i)),
            Names::Lazy { lazy, shared, owner } => {
                let answer = lazy_q(&mut *lazy.lock().map_err(|_| "DWARF index lock poisoned")?, shared)?;
                match answer {
                    Some(found) => Ok(found),
                    None => Ok(full_q(owner.full_index()?)),
                }
            }
        }
    }

    /// Type `key` as unit `unit` (a global offset of its first byte) defines it: for types only the
    /// unit of a known function defines, such as a tracepoint's record next to its probe.
    pub fn type_in_unit(&self, unit: u64, key: &str) -> Result<Option<u64>, String> {
        match *self {
            Names::Full(i) => Ok(i.types.get(key)),
            Names::Lazy { lazy, shared, .. } => {
                lazy.lock().map_err(|_| "DWARF index lock poisoned")?.type_in_unit(shared, unit, key)
            }
        }
    }

    /// Every type name (for suggestions): needs the whole index.
    pub fn full(&self) -> Result<&'a Index, String> {
        match *self {
            Names::Full(i) => Ok(i),
            Names::Lazy { owner, .. } => owner.full_index(),
        }
    }

    /// The subprogram whose body starts at (or just past) `addr`, and where its body starts.
    pub fn function_at(&self, addr: u64) -> Result<Option<(u64, u64)>, String> {
        self.lazy_or_full(|l, shared| l.function_at(shared, addr), |i| i.funcs_at.function_at(addr))
    }
}

/// The index made on demand: units indexed in link order up to where a type was found, plus the
/// units `.debug_aranges` pointed to for functions.
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    /// The units before this `.debug_info` offset are indexed, in link order: a type found there
    /// is its first definition.
    next: u64,
    types: HashMap<String, u64>,
    funcs_at: BTreeMap<u64, u64>,
    /// Units indexed out of order: their functions count, their types only for lookups scoped to
    /// them ([`Names::type_in_unit`]).
    visited: HashSet<u64>,
    unit_types: HashMap<u64, HashMap<String, u64>>,
    /// `.debug_aranges`: (start, end, unit start), sorted; `None` until read.
    aranges: Option<Vec<(u64, u64, u64)>>,
}

/// The share of `.debug_info` (in bytes, from its start) a lazy type lookup may index before the
/// whole index is built instead: types first defined past it are rare, and the parallel full
/// build (cached afterwards) is then the cheaper way.
const LAZY_SHARE: u64 = 32;

impl Lazy {
    /// `Some(answer)`, or `None` when the whole index must answer.
    fn type_get(&mut self, shared: &Shared, key: &str) -> Result<Option<Option<u64>>, String> {
        if let Some(&o) = self.types.get(key) {
            return Ok(Some(Some(o)));
        }
        let info_len = shared.info_len();
        while self.next < info_len {
            if self.next > info_len / LAZY_SHARE {
                return Ok(None);
            }
            let header = shared.header_at(self.next)?;
            self.next += header.length_including_self() as u64;
            let part = index_unit(shared.dwarf(), header)?;
            for (name, off) in part.types {
                self.types.entry(name).or_insert(off);
            }
            self.add_funcs(part.funcs_at);
            if let Some(&o) = self.types.get(key) {
                return Ok(Some(Some(o)));
            }
        }
        Ok(Some(None))
    }

    fn add_funcs(&mut self, funcs: Vec<(u64, u64)>) {
        for (addr, off) in funcs {
            let o = self.funcs_at.entry(addr).or_insert(off);
            *o = (*o).min(off);
        }
    }

    /// `Some(answer)`, or `None` when `.debug_aranges` is missing and the whole index must answer.
    fn function_at(&mut self, shared: &Shared, addr: u64) -> Result<Option<Option<(u64, u64)>>, String> {
        if let Some(hit) = function_in(&self.funcs_at, addr) {
            return Ok(Some(Some(hit)));
        }
        if self.aranges.is_none() {
            self.aranges = Some(read_aranges(shared)?);
        }
        let aranges = self.aranges.as_deref().unwrap_or(&[]);
        if aranges.is_empty() {
            return Ok(None);
        }
        // the unit whose code holds `addr`, or (patchable NOPs before a body) starts just past it
        let i = aranges.partition_point(|r| r.0 <= addr);
        let holding = i.checked_sub(1).and_then(|j| aranges.get(j)).filter(|r| addr < r.1);
        let next = aranges.get(i).filter(|r| r.0 - addr <= PATCH_PAD);
        let units: Vec<u64> = holding.into_iter().chain(next).map(|r| r.2).collect();
        for unit in units {
            self.visit(shared, unit)?;
        }
        Ok(Some(function_in(&self.funcs_at, addr)))
    }

    /// Index unit `unit` out of order, unless it is indexed already.
    fn visit(&mut self, shared: &Shared, unit: u64) -> Result<(), String> {
        if unit < self.next || !self.visited.insert(unit) {
            return Ok(());
        }
        let part = index_at(shared, unit)?;
        self.add_funcs(part.funcs_at);
        let mut types = HashMap::new();
        for (name, off) in part.types {
            types.entry(name).or_insert(off);
        }
        self.unit_types.insert(unit, types);
        Ok(())
    }

    fn type_in_unit(&mut self, shared: &Shared, unit: u64, key: &str) -> Result<Option<u64>, String> {
        if unit < self.next {
            return Ok(self.types.get(key).copied());
        }
        self.visit(shared, unit)?;
        Ok(self.unit_types.get(&unit).and_then(|t| t.get(key)).copied())
    }
}

/// `.debug_aranges` as sorted (start, end, unit start) triples; empty when the section is absent.
fn read_aranges(shared: &Shared) -> Result<Vec<(u64, u64, u64)>, String> {
    let mut out = Vec::new();
    let mut headers = shared.dwarf().debug_aranges.headers();
    while let Some(h) = headers.next().map_err(bad)? {
        let unit = h.debug_info_offset().0 as u64;
        let mut entries = h.entries();
        while let Some(e) = entries.next().map_err(bad)? {
            let r = e.range();
            if r.end > r.begin {
                out.push((r.begin, r.end, unit));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Index the one unit starting at `start`.
fn index_at(shared: &Shared, start: u64) -> Result<Part, String> {
    index_unit(shared.dwarf(), shared.header_at(start)?)
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
    let units: Vec<u64> = headers.iter().map(start_of).collect();
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
