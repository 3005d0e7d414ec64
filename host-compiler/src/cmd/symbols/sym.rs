//! `ktap-host symbols sym NAME|ADDR`: a symbol's addresses, or the symbol containing an address.

use std::fmt::Write;

use serde::Serialize;

use super::{Source, json};

/// `sym` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A symbol name, or an address in hex (`0xc0301a80`)
    pub what: String,
}

#[derive(Serialize)]
struct SymOut {
    name: String,
    address: String,
    /// Offset of the asked address into the symbol (address lookups).
    offset: Option<u64>,
    size: Option<u64>,
    kind: String,
    global: Option<bool>,
}

pub(crate) fn run(source: &Source, args: &Args, as_json: bool) -> anyhow::Result<String> {
    let addr = args.what.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok());
    let found: Vec<SymOut> = match (source, addr) {
        (Source::Elf(v), Some(a)) => v
            .symbol_at(a)?
            .map(|(s, off)| SymOut {
                name: s.name,
                address: format!("{:#x}", s.addr),
                offset: Some(off),
                size: Some(s.size),
                kind: s.kind.into(),
                global: Some(s.global),
            })
            .into_iter()
            .collect(),
        (Source::Elf(v), None) => v
            .symbols_named(&args.what)?
            .into_iter()
            .map(|s| SymOut {
                name: s.name,
                address: format!("{:#x}", s.addr),
                offset: None,
                size: Some(s.size),
                kind: s.kind.into(),
                global: Some(s.global),
            })
            .collect(),
        (Source::Map(m), Some(a)) => m
            .at(a)
            .map(|(s, off)| SymOut {
                name: s.name.clone(),
                address: format!("{:#x}", s.addr),
                offset: Some(off),
                size: None,
                kind: s.kind.to_string(),
                global: Some(s.kind.is_ascii_uppercase()),
            })
            .into_iter()
            .collect(),
        (Source::Map(m), None) => m
            .named(&args.what)
            .into_iter()
            .map(|s| SymOut {
                name: s.name.clone(),
                address: format!("{:#x}", s.addr),
                offset: None,
                size: None,
                kind: s.kind.to_string(),
                global: Some(s.kind.is_ascii_uppercase()),
            })
            .collect(),
    };
    if found.is_empty() {
        anyhow::bail!("no symbol {} `{}`", if addr.is_some() { "contains" } else { "named" }, args.what);
    }
    if as_json {
        return json(&found);
    }
    let mut out = String::new();
    for s in &found {
        let off = s.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
        let size = s.size.map(|z| format!(" size {z}")).unwrap_or_default();
        let scope = match s.global {
            Some(true) => " global",
            Some(false) => " local",
            None => "",
        };
        let _ = writeln!(out, "{}{off} {} {}{size}{scope}", s.name, s.address, s.kind);
    }
    Ok(out)
}
