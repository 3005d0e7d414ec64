//! The DWARF-backed queries on a [`Vmlinux`]: function parameters, tracepoint arguments, types and
//! layouts, and the compiler's [`Resolver`] over them.
//!
//! The name index is made on the first query that needs it: loaded from the cache when a valid one
//! exists, else built (with a progress bar on a terminal) and stored.

use std::io::IsTerminal;

use serde::Serialize;

use super::abi::Abi;
use super::cache::{self, Key};
use super::dwarf::index::{self, Index};
use super::dwarf::{Debug, Die, R};
use super::{Layout, Vmlinux, VmlinuxError, hex};
use crate::ktypes::{Member, NEEDS_DWARF, Param, ParamsOf, Shape, TypeRef};
use crate::lang::Resolver;

/// A probe-able function: its symbol, address and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FuncInfo {
    /// The symbol asked for (`tcp_sendmsg`, or a clone such as `foo.isra.0`).
    pub name: String,
    /// Link-time address of its first instruction.
    pub addr: u64,
    /// The function's source name when the symbol is a gcc clone of it.
    pub clone_of: Option<String>,
    /// Return type.
    pub ret: TypeRef,
    /// Parameters in order, with where a kprobe at the entry finds them.
    pub params: Vec<Param>,
}

/// A tracepoint: the arguments its probe receives, and its trace record layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracepointInfo {
    /// `TP_PROTO` arguments (`Arg(n)`: the probe's n-th argument).
    pub params: Vec<Param>,
    /// The function they were read from (`__traceiter_<event>`).
    pub from: String,
    /// The record ftrace writes: `struct trace_event_raw_<event>`, or that of its `DEFINE_EVENT` class.
    pub record: Option<Layout>,
}

impl Vmlinux {
    /// Does the file carry DWARF type information?
    pub fn has_dwarf(&self) -> bool {
        self.sections.has_info()
    }

    /// The kernel's calling convention.
    pub fn abi(&self) -> Abi {
        Abi { machine: self.machine, is_64: self.is_64, little_endian: self.little_endian }
    }

    fn cache_key(&self) -> Key {
        let len = |n: &str| self.sections.ranges.get(n).map_or(0, |r| r.len() as u64);
        Key {
            build_id: self.build_id.clone(),
            info_len: len(".debug_info"),
            abbrev_len: len(".debug_abbrev"),
        }
    }

    /// Make sure the DWARF index exists (cached or built now). Returns whether it came from the cache.
    /// Made already (by an earlier query) counts as a hit.
    pub fn prepare_types(&self) -> Result<bool, String> {
        let mut hit = true;
        self.index
            .get_or_init(|| {
                let (index, from_disk) = self.load_or_build_index()?;
                hit = from_disk;
                Ok(index)
            })
            .as_ref()
            .map(|_| hit)
            .map_err(Clone::clone)
    }

    /// Build the index without looking at the cache, and store it (for benchmarks of the cold path).
    pub fn rebuild_type_index(&self) -> Result<(), String> {
        let idx = self.build_index()?;
        if let Some(root) = &self.cache_dir {
            cache::store(root, &self.cache_key(), &idx).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Use `dir` as the cache root instead of the user's (`None`: no cache at all).
    pub fn set_cache_dir(&mut self, dir: Option<std::path::PathBuf>) {
        self.cache_dir = dir;
    }

    /// The index, and whether it came from the cache.
    fn load_or_build_index(&self) -> Result<(Index, bool), String> {
        let key = self.cache_key();
        self.dwarf_usable()?;
        if let Some(i) = self.cache_dir.as_deref().and_then(|root| cache::load(root, &key)) {
            return Ok((i, true));
        }
        let idx = self.build_index()?;
        if let Some(Err(e)) = self.cache_dir.as_deref().map(|root| cache::store(root, &key, &idx)) {
            eprintln!("warning: cannot cache the DWARF index of {}: {e}", self.path.display());
        }
        Ok((idx, false))
    }

    fn dwarf_usable(&self) -> Result<(), String> {
        if self.sections.compressed {
            return Err(format!(
                "vmlinux {} has compressed DWARF sections, which ktap-host does not read: decompress them with `objcopy --decompress-debug-sections`",
                self.path.display()
            ));
        }
        if !self.sections.has_info() {
            return Err(format!(
                "vmlinux {} has no DWARF: type and argument queries {NEEDS_DWARF}",
                self.path.display()
            ));
        }
        Ok(())
    }

    fn build_index(&self) -> Result<Index, String> {
        self.dwarf_usable()?;
        let dwarf = self.sections.load(&self.map, self.little_endian);
        let total = self.sections.ranges.get(".debug_info").map_or(0, |r| r.len() as u64);
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(format!("indexing DWARF of build-id {} (once)", hex(&self.build_id)));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let idx = index::build(&dwarf, &|done| bar.set_position(done));
        bar.finish_and_clear();
        idx
    }

    /// A query's view of the DWARF.
    fn debug(&self) -> Result<Debug<'_>, String> {
        self.prepare_types()?;
        let index = self.index.get().and_then(|r| r.as_ref().ok()).ok_or("DWARF index missing")?;
        Ok(Debug::new(self.sections.load(&self.map, self.little_endian), index, self.abi()))
    }

    /// Parameters of kernel function `name`, located for a kprobe at its entry.
    pub fn function_info(&self, name: &str) -> Result<FuncInfo, String> {
        let addr = match self.function(name) {
            Ok(a) => a,
            Err(e @ VmlinuxError::NoFunction { .. }) => return Err(self.explain_missing(name, e)),
            Err(e) => return Err(e.to_string()),
        };
        let d = self.debug()?;
        let (die, low_pc) = d.index.funcs_at.function_at(addr).ok_or_else(|| {
            format!("kernel function `{name}` at {addr:#x} has no DWARF (assembly, or built without -g): its parameters are unknown; use arg0.. instead")
        })?;
        let (unit, entry) = d.die(die)?;
        let source = source_name(&d, &unit, &entry)?;
        let own = source.as_deref() == Some(name);
        // locations at the body's first instruction: patchable NOPs before it move no argument
        let params = d.function_params(die, low_pc, own)?;
        Ok(FuncInfo {
            name: name.to_owned(),
            addr,
            clone_of: source.filter(|s| s != name),
            ret: origin_type(&d, &unit, &entry)?,
            params,
        })
    }

    /// Why `name` has no symbol: inlined everywhere, or misspelt; with alternatives.
    fn explain_missing(&self, name: &str, e: VmlinuxError) -> String {
        let inlined = self.debug().ok().is_some_and(|d| d.index.abstract_funcs.contains_key(name));
        if !inlined {
            return e.to_string();
        }
        let alternatives = self.function_suggestions(name);
        let alt = if alternatives.is_empty() {
            "probe a function that calls it".to_owned()
        } else {
            format!(
                "probe {} or a function that calls it",
                alternatives.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
            )
        };
        format!(
            "kernel function `{name}` is inlined into its callers everywhere in vmlinux {} (no out-of-line copy to attach a kprobe to): {alt}",
            self.path.display()
        )
    }

    /// A tracepoint's `TP_PROTO` arguments and record layout.
    pub fn tracepoint_info(&self, subsys: &str, event: &str) -> Result<TracepointInfo, String> {
        self.check_tracepoint(subsys, event).map_err(|e| e.to_string())?;
        let d = self.debug()?;
        let mut tried = Vec::new();
        for from in [format!("__traceiter_{event}"), format!("trace_event_raw_event_{event}")] {
            let die = self.function(&from).ok().and_then(|a| d.index.funcs_at.function_at(a)).map(|f| f.0);
            let Some(die) = die else {
                tried.push(from);
                continue;
            };
            let params = d.tracepoint_params(die)?;
            let record = match self.event_class(&d, event) {
                Some(class) => Some(d.layout(class)?),
                None => None,
            };
            return Ok(TracepointInfo { params, from, record });
        }
        Err(format!(
            "tracepoint `{subsys}:{event}` exists, but its arguments are unknown: no DWARF for {}",
            tried.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(" or ")
        ))
    }

    /// The record struct of an event: `trace_event_raw_<event>` for a `TRACE_EVENT`, else that of its
    /// class for a `DEFINE_EVENT`, found through the class its `event_<event>` points to.
    fn event_class(&self, d: &Debug<'_>, event: &str) -> Option<TypeRef> {
        let raw = |name: &str| d.index.types.get(&format!("struct trace_event_raw_{name}")).map(TypeRef);
        if let Some(t) = raw(event) {
            return Some(t);
        }
        let call = d.type_by_name("struct trace_event_call").ok()?;
        let class_off = d.member(call, "class").ok()?.offset;
        let var =
            self.symbols_named(&format!("event_{event}")).ok()?.into_iter().find(|s| s.kind == "object")?;
        let class_addr = self.word_at(var.addr.checked_add(class_off)?)?;
        let (sym, 0) = self.symbol_at(class_addr).ok()?? else { return None };
        raw(sym.name.strip_prefix("event_class_")?)
    }

    /// A type by its C name (`struct sk_buff`, `u32`, `enum pid_type`).
    pub fn type_named(&self, name: &str) -> Result<TypeRef, String> {
        self.debug()?.type_by_name(name)
    }

    /// The layout of a type, like `pahole -C`.
    pub fn layout(&self, ty: TypeRef) -> Result<Layout, String> {
        self.debug()?.layout(ty)
    }

    /// Size of a type in bytes, if it has one.
    pub fn type_size(&self, ty: TypeRef) -> Result<Option<u64>, String> {
        self.debug()?.size_of(ty)
    }
}

/// The source name of a subprogram DIE (through abstract origins for clones and inline copies).
fn source_name<'a>(
    d: &Debug<'a>,
    unit: &gimli::Unit<R<'a>>,
    die: &Die<'a>,
) -> Result<Option<String>, String> {
    if let Some(n) = d.name(unit, die) {
        return Ok(Some(n));
    }
    match Debug::reference(unit, die, gimli::DW_AT_abstract_origin) {
        Some(o) => {
            let (u, od) = d.die(o)?;
            Ok(d.name(&u, &od))
        }
        None => Ok(None),
    }
}

/// The return type of a subprogram DIE, through its abstract origin.
fn origin_type<'a>(d: &Debug<'a>, unit: &gimli::Unit<R<'a>>, die: &Die<'a>) -> Result<TypeRef, String> {
    if die.attr_value(gimli::DW_AT_type).is_some() {
        return Ok(Debug::type_of(unit, die));
    }
    match Debug::reference(unit, die, gimli::DW_AT_abstract_origin) {
        Some(o) => {
            let (u, od) = d.die(o)?;
            Ok(Debug::type_of(&u, &od))
        }
        None => Ok(Debug::type_of(unit, die)),
    }
}

/// Kprobe addresses rebased to the running kernel; tracepoints checked against the symbol table;
/// parameters and types from DWARF.
impl Resolver for Vmlinux {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        self.kprobe_address(sym).map_err(|e| e.to_string())
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        self.check_tracepoint(subsys, event).map_err(|e| e.to_string())
    }

    fn params(&self, of: ParamsOf<'_>) -> Result<Vec<Param>, String> {
        match of {
            ParamsOf::Function(name) => self.function_info(name).map(|f| f.params),
            ParamsOf::Tracepoint { subsys, event } => self.tracepoint_info(subsys, event).map(|t| t.params),
        }
    }

    fn shape(&self, ty: &TypeRef) -> Result<Shape, String> {
        self.debug()?.shape(*ty)
    }

    fn type_name(&self, ty: &TypeRef) -> String {
        match self.debug() {
            Ok(d) => d.type_name(*ty),
            Err(_) => "?".into(),
        }
    }

    fn member(&self, ty: &TypeRef, name: &str) -> Result<Member, String> {
        self.debug()?.member(*ty, name)
    }

    fn enum_name(&self, ty: &TypeRef, value: i64) -> Option<String> {
        self.debug().ok()?.enum_name(*ty, value)
    }

    fn tracepoints_matching(&self, subsys: &str, event: &str) -> Result<Vec<(String, String)>, String> {
        let elf = goblin::elf::Elf::parse(&self.map).map_err(|e| e.to_string())?;
        let all = super::rodata::tracepoint_events(&elf, &self.map);
        if all.is_empty() {
            return Err(format!(
                "{} has no `_ftrace_events` table to list its tracepoints",
                self.path.display()
            ));
        }
        let m = crate::lang::glob_match;
        Ok(all.into_iter().filter(|(s, e)| m(subsys, s) && m(event, e)).collect())
    }

    fn kernel_release(&self) -> Option<String> {
        let elf = goblin::elf::Elf::parse(&self.map).ok()?;
        super::rodata::kernel_release(&elf, &self.map)
    }
}
