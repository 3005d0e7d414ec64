//! `System.map` and `/proc/kallsyms` text: kernel symbols when there is no vmlinux.
//!
//! Both are lines of `ADDRESS TYPE NAME [\[MODULE\]]`. Such a map has addresses but no types, so
//! it resolves kprobes and tracepoint names, and every type or argument query fails with the
//! "needs a vmlinux with DWARF" error (the [`Resolver`] defaults). `/proc/kallsyms` read without
//! privilege shows zero addresses; that is refused, not taken for real addresses.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::names::{closest, did_you_mean};
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
}

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
        self.function(sym)
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
