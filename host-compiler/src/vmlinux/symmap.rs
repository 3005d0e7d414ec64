//! `System.map` and `/proc/kallsyms` text: kernel symbols when there is no vmlinux.
//!
//! Both are lines of `ADDRESS TYPE NAME [\[MODULE\]]`. Such a map has addresses but no types, so
//! it resolves kprobes and tracepoint names, and every type or argument query fails with the
//! "needs a vmlinux with DWARF" error (the [`Resolver`] defaults). `/proc/kallsyms` read without
//! privilege shows zero addresses; that is refused, not taken for real addresses.
//!
//! A map has no build-id, so an image compiled from one lists the symbols it uses (the
//! [`Resolver::symbol_base`] this map answers) and the agent checks them against the running
//! kernel's `/proc/kallsyms` before loading (docs/symbols.md, "Tracing with only a System.map").

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::names::{closest, did_you_mean};
use crate::board::Arch;
use crate::lang::Resolver;

/// A parsed symbol map.
#[derive(Debug, Clone)]
pub struct SymbolMap {
    path: PathBuf,
    /// Function name -> addresses (`t`/`T`/`w`/`W` lines).
    funcs: HashMap<String, Vec<u64>>,
    /// Every line, by address.
    all: Vec<MapSym>,
    tracepoints: BTreeSet<String>,
    /// Run-time minus map address, set by [`SymbolMap::rebase`].
    slide: u64,
    /// The base symbol the map was rebased by, if it was.
    base: Option<String>,
    /// The board's arch, once known ([`SymbolMap::set_arch`]).
    arch: Option<Arch>,
}

/// Base symbols, in the order an unrebased map picks one for its SYMBOLS section: `_stext` is in
/// `/proc/kallsyms` on every arch we support (ARM lists no `_text`).
const UNREBASED_BASES: [&str; 2] = ["_stext", "_text"];

/// One line of a symbol map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSym {
    /// Address.
    pub addr: u64,
    /// The `nm` type letter.
    pub kind: char,
    /// Name.
    pub name: String,
    /// Module (kallsyms only), without brackets.
    pub module: Option<String>,
}

impl SymbolMap {
    /// Read and parse a `System.map` or a saved `/proc/kallsyms`.
    pub fn open(path: &Path) -> Result<SymbolMap, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read symbol map {}: {e}", path.display()))?;
        SymbolMap::parse(path, &text)
    }

    /// Parse symbol map text; errors name `path:line`.
    pub fn parse(path: &Path, text: &str) -> Result<SymbolMap, String> {
        let mut map = SymbolMap {
            path: path.to_owned(),
            funcs: HashMap::new(),
            all: Vec::new(),
            tracepoints: BTreeSet::new(),
            slide: 0,
            base: None,
            arch: None,
        };
        for (no, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), no + 1);
            let mut f = line.split_whitespace();
            let (Some(a), Some(k), Some(name)) = (f.next(), f.next(), f.next()) else {
                return Err(format!("{}: expected `ADDRESS TYPE NAME`, found `{line}`", at()));
            };
            let addr =
                u64::from_str_radix(a, 16).map_err(|_| format!("{}: `{a}` is not a hex address", at()))?;
            let mut kc = k.chars();
            let (Some(kind), None) = (kc.next(), kc.next()) else {
                return Err(format!("{}: `{k}` is not a one-letter symbol type", at()));
            };
            let module = f.next().map(|m| m.trim_matches(|c| c == '[' || c == ']').to_owned());
            if matches!(kind, 't' | 'T' | 'w' | 'W') && module.is_none() {
                map.funcs.entry(name.to_owned()).or_default().push(addr);
            }
            if let Some(ev) = name.strip_prefix("__tracepoint_") {
                map.tracepoints.insert(ev.to_owned());
            }
            map.all.push(MapSym { addr, kind, name: name.to_owned(), module });
        }
        if map.all.is_empty() {
            return Err(format!("symbol map {} is empty", path.display()));
        }
        if map.all.iter().all(|s| s.addr == 0) {
            return Err(format!(
                "symbol map {} has only zero addresses (kallsyms read without root, or kptr_restrict): read it as root",
                path.display()
            ));
        }
        map.all.sort_by_key(|s| s.addr);
        Ok(map)
    }

    /// The arch of the board the map's kernel runs on: kprobes on PowerPC64 need a function's
    /// local entry point, which only the vmlinux's symbol table records (`st_other`), so they are
    /// refused there rather than attached at the global entry most calls skip.
    pub fn set_arch(&mut self, arch: Arch) {
        self.arch = Some(arch);
    }

    /// The file the map was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Use the running kernel's address of `symbol` (the base the agent reports, `_text` or
    /// `_stext`): every address this map answers moves by the difference. A saved kallsyms of the
    /// same boot moves by 0. Address 0 (unknown) keeps the map's addresses; a map without the symbol
    /// is an error.
    pub fn rebase(&mut self, symbol: &str, runtime: u64) -> Result<(), String> {
        if runtime == 0 {
            self.slide = 0;
            return Ok(());
        }
        let at = self.base_addr(symbol).ok_or_else(|| {
            format!(
                "the board reports its kernel base as `{symbol}` at {runtime:#x}, but {} has no `{symbol}`",
                self.path.display()
            )
        })?;
        self.slide = runtime.wrapping_sub(at);
        self.base = Some(symbol.to_owned());
        Ok(())
    }

    /// The map's (unrebased) address of a kernel (non-module) symbol `name`.
    fn base_addr(&self, name: &str) -> Option<u64> {
        self.all.iter().find(|s| s.name == name && s.module.is_none()).map(|s| s.addr)
    }

    /// Run-time kernel addresses to `function+0xoff` for printed stacks. A map has no sizes, so an
    /// address belongs to the closest function at or below it, and only below `_etext` (when the
    /// map has it); anything else prints as hex (the renderer's fallback).
    pub fn symbolizer<'s>(&self) -> crate::format::Symbolizer<'s> {
        let funcs: Vec<(u64, String)> = self
            .all
            .iter()
            .filter(|s| matches!(s.kind, 't' | 'T' | 'w' | 'W') && s.module.is_none())
            .map(|s| (s.addr, s.name.clone()))
            .collect();
        let end = self.base_addr("_etext").unwrap_or(u64::MAX);
        let slide = self.slide;
        Box::new(move |runtime| {
            let addr = runtime.wrapping_sub(slide);
            if addr >= end {
                return None;
            }
            let (start, name) = funcs.get(funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?)?;
            Some(format!("{name}+{:#x}", addr - start))
        })
    }

    /// Symbols called `name`.
    pub fn named(&self, name: &str) -> Vec<&MapSym> {
        self.all.iter().filter(|s| s.name == name).collect()
    }

    /// The closest symbol at or below `addr`, and the offset into it.
    pub fn at(&self, addr: u64) -> Option<(&MapSym, u64)> {
        let i = self.all.partition_point(|s| s.addr <= addr);
        let s = self.all.get(i.checked_sub(1)?)?;
        Some((s, addr - s.addr))
    }

    /// Address of function `name`.
    pub fn function(&self, name: &str) -> Result<u64, String> {
        match self.funcs.get(name).map(|v| v.as_slice()) {
            Some([one]) => Ok(*one),
            Some(many) => Err(format!(
                "kernel function `{name}` is ambiguous in {}: {} functions of that name",
                self.path.display(),
                many.len()
            )),
            None => Err(format!(
                "no kernel function `{name}` in {}{}",
                self.path.display(),
                did_you_mean(closest(name, self.funcs.keys().map(|s| s.as_str())))
            )),
        }
    }
}

/// Addresses from the map as they are (a `/proc/kallsyms` saved from the running board already has
/// run-time addresses); types need DWARF.
impl Resolver for SymbolMap {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        let addr = self.function(sym)?;
        if self.arch == Some(Arch::Powerpc64) {
            return Err(format!(
                "a kprobe on powerpc64 must sit at `{sym}`'s local entry point, which {} does not record: give the vmlinux (--vmlinux)",
                self.path.display()
            ));
        }
        Ok(addr.wrapping_add(self.slide))
    }

    fn symbol_base(&self) -> Option<(String, u64)> {
        let name = match &self.base {
            Some(b) => b.as_str(),
            None => UNREBASED_BASES.into_iter().find(|b| self.base_addr(b).is_some())?,
        };
        Some((name.to_owned(), self.base_addr(name)?.wrapping_add(self.slide)))
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        if self.tracepoints.contains(event) {
            return Ok(());
        }
        Err(format!(
            "no tracepoint `{subsys}:{event}` in {} (no symbol `__tracepoint_{event}`){}",
            self.path.display(),
            did_you_mean(closest(event, self.tracepoints.iter().map(|s| s.as_str())))
        ))
    }
}
