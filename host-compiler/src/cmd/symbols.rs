//! `ktap-host symbols`: what the compiler knows about a kernel, for people writing scripts.
//!
//! One file per query under `symbols/`: `func` (parameters, types, where a kprobe finds them),
//! `type` (a pahole-like layout), `sym` (name to address and back), `tracepoint` (`TP_PROTO`
//! arguments and the trace record), `index` (build the DWARF index cache now). `--json` prints the
//! same facts as one JSON document.

mod func;
pub mod index;
mod sym;
mod tracepoint;
mod type_;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ktap_host::vmlinux::Vmlinux;
use ktap_host::vmlinux::symmap::SymbolMap;

/// Look up kernel functions, types, symbols and tracepoints. The first type or argument query
/// against a vmlinux indexes its DWARF once (cached by build-id in ~/.cache/ktap-rs/symbols).
#[derive(Debug, Args)]
pub struct Cmd {
    /// The board's unstripped vmlinux (e.g. from linux-image-*-dbg)
    #[arg(long, value_name = "PATH", required_unless_present = "system_map", conflicts_with = "system_map")]
    pub vmlinux: Option<PathBuf>,
    /// A System.map or saved /proc/kallsyms instead (symbols only: no types or arguments)
    #[arg(long, value_name = "PATH")]
    pub system_map: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub query: Query,
}

/// The queries.
#[derive(Debug, Subcommand)]
pub enum Query {
    /// A function's parameters: names, C types, and where a kprobe at its entry finds each one
    Func(func::Args),
    /// A type's layout (members with offsets and sizes), e.g. 'struct sk_buff'
    Type(type_::Args),
    /// A symbol by name (its addresses) or by address (0x..., the symbol+offset containing it)
    Sym(sym::Args),
    /// A tracepoint's probe arguments (TP_PROTO) and its trace record layout, e.g. sched:sched_switch
    Tracepoint(tracepoint::Args),
    /// Build and cache the whole DWARF name index now (check, compile and push start this in the
    /// background after a first lazy compile)
    Index(index::Args),
}

/// Where the facts come from.
pub(crate) enum Source {
    Elf(Box<Vmlinux>),
    Map(SymbolMap),
}

impl Cmd {
    /// Answer the query on stdout.
    pub fn run(self) -> anyhow::Result<()> {
        let source = match (&self.vmlinux, &self.system_map) {
            (Some(v), _) => Source::Elf(Box::new(Vmlinux::open(v)?)),
            (None, Some(m)) => Source::Map(SymbolMap::open(m).map_err(anyhow::Error::msg)?),
            (None, None) => anyhow::bail!("give --vmlinux or --system-map"),
        };
        let out = match self.query {
            Query::Func(a) => func::run(&source, &a, self.json),
            Query::Type(a) => type_::run(&source, &a, self.json),
            Query::Sym(a) => sym::run(&source, &a, self.json),
            Query::Tracepoint(a) => tracepoint::run(&source, &a, self.json),
            Query::Index(a) => index::run(&source, &a, self.json),
        }?;
        super::emit(&out)
    }
}

impl Source {
    /// The vmlinux, or the error every type query gets from a symbol map.
    pub(crate) fn vmlinux(&self) -> anyhow::Result<&Vmlinux> {
        match self {
            Source::Elf(v) => Ok(v),
            Source::Map(_) => Err(anyhow::anyhow!(
                "a System.map or kallsyms has no types: this query {}",
                ktap_host::ktypes::NEEDS_DWARF
            )),
        }
    }
}

/// Pretty JSON with a final newline.
pub(crate) fn json(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v).context("encoding JSON")? + "\n")
}
