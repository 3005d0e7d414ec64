//! A listing of an image in the text assembly of `ktap_protocol::asm`: every function disassembled
//! one instruction per line (offsets are within the code section, as jump targets are), then the
//! pools and specs as directives, with names and format strings from the sidecar as comments when one
//! is given. `ktap-host asm` reads it back to the same bytes. Used by `ktap-host disasm` and the
//! compiler's golden tests.

use std::fmt::Write;

use ktap_protocol::asm::{escape, func_attrs, probe_line, table_attrs};
use ktap_protocol::image::{ArgKind, Image, ImageError};
use ktap_protocol::isa::decode_all;

use crate::sidecar::{Sidecar, Slot};

/// List `bytes` (an image), using `sidecar` for names and format strings if given.
pub fn disassemble(bytes: &[u8], sidecar: Option<&Sidecar>) -> Result<String, ImageError> {
    let img = Image::parse(bytes)?;
    let mut o = String::new();
    let name = |v: Option<&String>| v.map(|s| format!("  ; {s}")).unwrap_or_default();
    let sc = sidecar;

    let _ = writeln!(o, "; image: {} bytes", bytes.len());
    if let Some(sc) = sc {
        let _ = writeln!(o, "; source: {}", sc.source_file);
    }
    let funcs: Vec<_> = img.funcs().collect();
    // code position the next `.func` starts at when it gives no `at=`
    let mut next = 0u64;
    for (i, f) in funcs.iter().enumerate() {
        let end = f.code_off as u64 + f.code_len as u64;
        let range = if f.code_off as u64 == next && end <= img.code.len() as u64 {
            String::new()
        } else {
            format!(" at={} len={}", f.code_off, f.code_len)
        };
        let n = name(sc.and_then(|s| s.funcs.get(i)).map(|f| &f.name));
        let _ = writeln!(o, ".func fn{i}{}{range}{n}", func_attrs(f));
        if !range.is_empty() {
            // an odd range (overlap, gap, out of bounds): the code is listed once, elsewhere
            continue;
        }
        next = end;
        let start = f.code_off as usize;
        // decode within the whole code section so offsets and jump targets are section-relative
        let code = img.code.get(..end as usize).unwrap_or(&[]);
        let mut pos = start;
        for insn in decode_all(code.get(start..).unwrap_or(&[])) {
            match insn {
                Ok(insn) => {
                    let mut shifted = insn;
                    shifted.offset += start as u32;
                    let _ = writeln!(o, "  {pos:04x}  {shifted}");
                    pos += insn.len as usize;
                }
                Err(e) => {
                    let rest = code.get(pos..).unwrap_or(&[]);
                    let raw: Vec<String> = rest.iter().map(|b| format!("{b:#04x}")).collect();
                    let _ = writeln!(o, "  {pos:04x}  .byte {}  ; {e}", raw.join(" "));
                    break;
                }
            }
        }
    }

    for (i, c) in img.consts().enumerate() {
        let _ = writeln!(o, ".const c{i} = {c}  ; {:#x}", c as u64);
    }

    let mut i = 0;
    img.strings(|s| {
        let _ = writeln!(o, ".string str{i} = \"{}\"", escape(s));
        i += 1;
    });

    let _ = writeln!(o, ".globals {}", img.globals);
    if let Some(sc) = sc {
        for (i, g) in sc.globals.iter().enumerate() {
            let _ = writeln!(o, "  ; g{i}  {g}");
        }
    }

    for (i, t) in img.tables().enumerate() {
        let n = name(sc.and_then(|s| s.tables.get(i)).map(|t| &t.name));
        let shown = named(sc, |s| match s {
            Slot::TableKey { table, key } if table as usize == i => Some(format!("key {key}")),
            _ => None,
        });
        let _ = writeln!(o, ".table t{i} {}{n}{shown}", table_attrs(&t));
    }

    let mut i = 0;
    img.probes(|p| {
        let n = name(sc.and_then(|s| s.probes.get(i)).map(|p| &p.spec));
        let _ = writeln!(o, ".probe p{i} {}{n}", probe_line(&p));
        i += 1;
    });

    let mut i = 0;
    img.formats(|f| {
        let kinds: Vec<&str> = f
            .iter()
            .map(|k| match ArgKind::from_u8(*k) {
                Some(ArgKind::Int) => "int",
                Some(ArgKind::Str) => "str",
                None => "?",
            })
            .collect();
        let text = sc.and_then(|s| s.formats.get(i)).map(|t| format!("  ; {t:?}")).unwrap_or_default();
        let shown = named(sc, |s| match s {
            Slot::FormatArg { format, arg } if format as usize == i => Some(format!("arg {arg}")),
            _ => None,
        });
        let _ = writeln!(o, ".format f{i} ({}){text}{shown}", kinds.join(", "));
        i += 1;
    });

    let id: String = img.build_id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(o, ".build-id {id}");
    let budget = if img.budget == 0 { "  ; the VM default" } else { "" };
    let _ = writeln!(o, ".budget {}{budget}", img.budget);
    if img.frame_budget != 0 {
        let _ = writeln!(o, ".frame-budget {}", img.frame_budget);
    }
    Ok(o)
}

/// A comment naming the integers of one table or format the host shows by name: `which` picks the
/// sidecar's slots of that table or format and says which part they are (`key 0`, `arg 1`).
fn named(sc: Option<&Sidecar>, which: impl Fn(Slot) -> Option<String>) -> String {
    let Some(sc) = sc else { return String::new() };
    let parts: Vec<String> = sc
        .named
        .iter()
        .filter_map(|n| {
            let part = which(n.slot)?;
            let what = sc.names.get(n.names as usize).map_or("?", |names| names.what.as_str());
            Some(format!("{part} by name: {what}"))
        })
        .collect();
    if parts.is_empty() { String::new() } else { format!("  ; {}", parts.join(", ")) }
}
