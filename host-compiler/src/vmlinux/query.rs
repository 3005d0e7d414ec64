//! The DWARF-backed queries on a [`Vmlinux`]: function parameters, tracepoint arguments, types and
//! layouts, and the compiler's [`Resolver`] over them.
//!
//! The name index is made on the first query that needs it: loaded from the cache when a valid one
//! exists, else built (with a progress bar on a terminal) and stored.

use std::io::IsTerminal;

use serde::Serialize;

use super::abi::Abi;
use super::cache::{self, Key};
use super::dwarf::index::{self, Index, Names};
use super::dwarf::{Debug, Die, R, Shared};
use super::{Layout, Vmlinux, VmlinuxError, hex};
use crate::ktypes::{Member, NEEDS_DWARF, Param, ParamsOf, Shape, TypeRef};
use crate::lang::Resolver;

/// What [`Vmlinux::store_index_cache`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexCache {
    /// Built and stored by this call.
    Built,
    /// A valid whole index was cached already.
    Cached,
    /// Another process holds the builder's lock: it is building the index now.
    Busy,
}

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
        Key {
            build_id: self.build_id.clone(),
            info_len: self.sections.len(".debug_info"),
            abbrev_len: self.sections.len(".debug_abbrev"),
        }
    }

    /// Make sure the whole DWARF index exists (cached or built now, and then cached). Returns
    /// whether it came from the cache; made already (by an earlier query) counts as a hit.
    pub fn prepare_types(&self) -> Result<bool, String> {
        self.shared()?;
        let hit = self.full.get().is_some() || self.load_cached().is_some();
        self.full_index()?;
        Ok(hit)
    }

    /// The whole index from the cache, if it holds a valid one (looked at once).
    fn load_cached(&self) -> Option<&Index> {
        self.cache_looked.get_or_init(|| {
            let key = self.cache_key();
            if let Some(i) = self.cache_dir.as_deref().and_then(|root| cache::load(root, &key)) {
                let _ = self.full.set(Ok(i));
            }
        });
        self.full.get().and_then(|r| r.as_ref().ok())
    }

    /// Build the index without looking at the cache, and store it (for benchmarks of the cold path).
    pub fn rebuild_type_index(&self) -> Result<(), String> {
        let idx = self.build_index(std::io::stderr().is_terminal())?;
        if let Some(root) = &self.cache_dir {
            cache::store(root, &self.cache_key(), &idx).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Whether a whole-index cache would save later runs time: this run read the DWARF (lazily: a
    /// type or argument query) and the cache holds no whole index of this kernel. `check`,
    /// `compile` and `push` then start a background builder ([`Vmlinux::store_index_cache`]).
    pub fn index_cache_wanted(&self) -> bool {
        self.cache_dir.is_some()
            && matches!(self.shared.get(), Some(Ok(_)))
            && self.cache_looked.get().is_some()
            && self.full.get().is_none()
    }

    /// Build the whole index and store it in the cache, unless a valid one is there already or
    /// another process is building it: builders hold an OS lock on `<entry>.lock` (released when
    /// they exit, however they exit), so concurrent runs build once. The store itself is atomic
    /// ([`cache::store`]); the lock only saves work.
    pub fn store_index_cache(&self, progress: bool) -> Result<IndexCache, String> {
        let root = self.cache_dir.as_deref().ok_or("no cache directory (set KTAP_CACHE or HOME)")?;
        self.dwarf_usable()?;
        let key = self.cache_key();
        let entry = cache::path_for(root, &key);
        let lock_path = entry.with_extension("idx.lock");
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", lock_path.display());
        if let Some(dir) = lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("cannot open", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(IndexCache::Busy),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", e)),
        }
        if cache::load(root, &key).is_some() {
            return Ok(IndexCache::Cached);
        }
        let idx = self.build_index(progress)?;
        cache::store(root, &key, &idx).map_err(|e| format!("cannot store {}: {e}", entry.display()))?;
        Ok(IndexCache::Built)
    }

    /// Use `dir` as the cache root instead of the user's (`None`: no cache at all).
    pub fn set_cache_dir(&mut self, dir: Option<std::path::PathBuf>) {
        self.cache_dir = dir;
    }

    /// Is the whole name index in memory (from the cache or built)? Until it is, queries are
    /// answered lazily, indexing only the units they need.
    pub fn has_full_index(&self) -> bool {
        matches!(self.full.get(), Some(Ok(_)))
    }

    /// The DWARF sections (inflated if compressed) and the units parsed so far.
    fn shared(&self) -> Result<&Shared, String> {
        self.shared
            .get_or_init(|| {
                self.dwarf_usable()?;
                // SAFETY: `Shared` is a field of `self` declared before `map`, so it is dropped
                // first; the map is never remapped or written while `self` lives.
                unsafe { Shared::new(&self.map, &self.sections, self.little_endian) }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Where this query looks names up: the whole index when it is cached (reading it costs about
    /// 10 ms and makes every later lookup a binary search) or already made, else lazily, indexing
    /// only the units the query needs (see docs/benchmarks.md).
    fn names(&self) -> Result<Names<'_>, String> {
        let shared = self.shared()?;
        self.load_cached();
        match self.full.get() {
            Some(Ok(i)) => {
                shared.learn_units(&i.units);
                Ok(Names::Full(i))
            }
            Some(Err(e)) => Err(e.clone()),
            None => Ok(Names::Lazy { lazy: &self.lazy, shared, owner: self }),
        }
    }

    /// The whole index: from the cache, else built now (with a progress bar on a terminal) and
    /// cached.
    pub(crate) fn full_index(&self) -> Result<&Index, String> {
        if let Some(i) = self.load_cached() {
            self.shared()?.learn_units(&i.units);
            return Ok(i);
        }
        self.full
            .get_or_init(|| {
                let idx = self.build_index(std::io::stderr().is_terminal())?;
                let key = self.cache_key();
                if let Some(Err(e)) = self.cache_dir.as_deref().map(|root| cache::store(root, &key, &idx)) {
                    eprintln!("warning: cannot cache the DWARF index of {}: {e}", self.path.display());
                }
                Ok(idx)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn dwarf_usable(&self) -> Result<(), String> {
        if let Some(e) = &self.sections.bad {
            return Err(format!("vmlinux {}: {e}", self.path.display()));
        }
        if !self.sections.has_info() {
            return Err(format!(
                "vmlinux {} has no DWARF: type and argument queries {NEEDS_DWARF}",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// The whole index, with a progress bar on stderr when `progress`.
    fn build_index(&self, progress: bool) -> Result<Index, String> {
        let dwarf = self.shared()?.dwarf();
        let total = gimli::Section::reader(&dwarf.debug_info).len() as u64;
        let bar = if progress {
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
        let idx = index::build(dwarf, &|done| bar.set_position(done));
        bar.finish_and_clear();
        idx
    }

    /// A query's view of the DWARF.
    fn debug(&self) -> Result<Debug<'_>, String> {
        let names = self.names()?;
        Ok(Debug::new(self.shared()?, names, self.abi()))
    }

    /// Parameters of kernel function `name`, located for a kprobe at its entry.
    pub fn function_info(&self, name: &str) -> Result<FuncInfo, String> {
        let addr = match self.function(name) {
            Ok(a) => a,
            Err(e @ VmlinuxError::NoFunction { .. }) => return Err(self.explain_missing(name, e)),
            Err(e) => return Err(e.to_string()),
        };
        let d = self.debug()?;
        let (die, low_pc) = d.index.function_at(addr)?.ok_or_else(|| {
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
        let inlined = self
            .debug()
            .ok()
            .and_then(|d| d.index.full().ok())
            .is_some_and(|i| i.abstract_funcs.get(name).is_some());
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
            let die = match self.function(&from) {
                Ok(a) => d.index.function_at(a)?.map(|f| f.0),
                Err(_) => None,
            };
            let Some(die) = die else {
                tried.push(from);
                continue;
            };
            let params = d.tracepoint_params(die)?;
            let record = match self.event_class(&d, event, d.unit_start(die)?) {
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
    /// class for a `DEFINE_EVENT`, found through the class its `event_<event>` points to. Both are
    /// defined in the unit that creates the event's tracepoints, which also holds its probe
    /// functions: `unit`, where `__traceiter_<event>` is.
    fn event_class(&self, d: &Debug<'_>, event: &str, unit: u64) -> Option<TypeRef> {
        let raw = |name: &str| {
            d.index.type_in_unit(unit, &format!("struct trace_event_raw_{name}")).ok().flatten().map(TypeRef)
        };
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

    fn kernel_slide(&self) -> Option<u64> {
        Some(self.slide())
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

    fn enumerators(&self, ty: &TypeRef) -> Result<Vec<(String, i64)>, String> {
        let d = self.debug()?;
        d.enumerators(d.peel(*ty)?)
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

    fn syscalls(&self) -> Result<crate::lang::Syscalls, String> {
        Vmlinux::syscalls(self)
    }

    fn kernel_release(&self) -> Option<String> {
        let elf = goblin::elf::Elf::parse(&self.map).ok()?;
        super::rodata::kernel_release(&elf, &self.map)
    }
}
