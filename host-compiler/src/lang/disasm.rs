//! A readable listing of an image: every section, functions disassembled one instruction per line
//! (offsets are within the code section, as jump targets are), with names and format strings from
//! the sidecar when one is given. Used by `ktap-host disasm` and the compiler's golden tests.

use std::fmt::Write;

use ktap_protocol::image::{ArgKind, Image, ImageError, KeyKind, ProbeKind};
use ktap_protocol::isa::decode_all;

use crate::sidecar::Sidecar;

/// List `bytes` (an image), using `sidecar` for names and format strings if given.
pub fn disassemble(bytes: &[u8], sidecar: Option<&Sidecar>) -> Result<String, ImageError> {
    let img = Image::parse(bytes)?;
    let mut o = String::new();
    let name = |v: Option<&String>| v.map(|s| format!("  ; {s}")).unwrap_or_default();
    let sc = sidecar;

    let _ = writeln!(o, "image: {} bytes", bytes.len());
    if let Some(sc) = sc {
        let _ = writeln!(o, "source: {}", sc.source_file);
    }
    let funcs: Vec<_> = img.funcs().collect();
    let _ = writeln!(o, "funcs: {}", funcs.len());
    for (i, f) in funcs.iter().enumerate() {
        let _ = writeln!(
            o,
            "fn{i}: code {:#06x}..{:#06x}, int regs {}, str regs {}{}",
            f.code_off,
            f.code_off as u64 + f.code_len as u64,
            f.n_int,
            f.n_str,
            name(sc.and_then(|s| s.funcs.get(i)).map(|f| &f.name)),
        );
        let start = f.code_off as usize;
        let end = start.saturating_add(f.code_len as usize).min(img.code.len());
        // decode within the whole code section so offsets and jump targets are section-relative
        let code = img.code.get(..end).unwrap_or(&[]);
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
                    let _ = writeln!(o, "  {pos:04x}  <{e}>");
                    break;
                }
            }
        }
    }

    let consts: Vec<_> = img.consts().collect();
    let _ = writeln!(o, "consts: {}", consts.len());
    for (i, c) in consts.iter().enumerate() {
        let _ = writeln!(o, "  c{i} = {c} ({:#x})", *c as u64);
    }

    let mut strings = Vec::new();
    img.strings(|s| strings.push(s));
    let _ = writeln!(o, "strings: {}", strings.len());
    for (i, s) in strings.iter().enumerate() {
        let _ = writeln!(o, "  str{i} = {:?}", String::from_utf8_lossy(s));
    }

    let _ = writeln!(o, "globals: {}", img.globals);
    if let Some(sc) = sc {
        for (i, g) in sc.globals.iter().enumerate() {
            let _ = writeln!(o, "  g{i}  ; {g}");
        }
    }

    let tables: Vec<_> = img.tables().collect();
    let _ = writeln!(o, "tables: {}", tables.len());
    for (i, t) in tables.iter().enumerate() {
        let key = match t.key {
            KeyKind::Int => "int",
            KeyKind::Str => "str",
        };
        let n = name(sc.and_then(|s| s.tables.get(i)).map(|t| &t.name));
        let _ = writeln!(o, "  t{i}: key {key}, capacity {}{n}", t.capacity);
    }

    let mut probes = Vec::new();
    img.probes(|p| probes.push(p));
    let _ = writeln!(o, "probes: {}", probes.len());
    for (i, p) in probes.iter().enumerate() {
        let kind = match p.kind {
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Kretprobe => "kretprobe",
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::Begin => "begin",
            ProbeKind::End => "end",
        };
        let target = String::from_utf8_lossy(p.name);
        let addr = if p.addr != 0 { format!(" @{:#x}", p.addr) } else { String::new() };
        let sep = if target.is_empty() { "" } else { " " };
        let n = name(sc.and_then(|s| s.probes.get(i)).map(|p| &p.spec));
        let _ = writeln!(o, "  p{i}: {kind}{sep}{target}{addr} -> fn{}{n}", p.func);
    }

    let mut formats = Vec::new();
    img.formats(|f| formats.push(f));
    let _ = writeln!(o, "formats: {}", formats.len());
    for (i, f) in formats.iter().enumerate() {
        let kinds: Vec<&str> = f
            .iter()
            .map(|k| match ArgKind::from_u8(*k) {
                Some(ArgKind::Int) => "int",
                Some(ArgKind::Str) => "str",
                None => "?",
            })
            .collect();
        let text = sc.and_then(|s| s.formats.get(i)).map(|t| format!(" {t:?}")).unwrap_or_default();
        let _ = writeln!(o, "  f{i}: ({}){text}", kinds.join(", "));
    }

    let id: String = img.build_id.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(o, "build-id: {}", if id.is_empty() { "(none)" } else { &id });
    let budget = if img.budget == 0 { " (VM default)" } else { "" };
    let _ = writeln!(o, "budget: {}{budget}", img.budget);
    Ok(o)
}
