//! A text assembler for whole images, driven by the ISA table ([`Opcode::operands`]) like the decoder
//! and the verifier. `ktap-host disasm` prints this language and `ktap-host asm` reads it, so the two
//! round-trip; verifier tests are written in it.
//!
//! ```text
//! ; comments start with `;` or `#` (outside string literals)
//! .func main int=3 str=1      a function with its frame; code up to the next .func is its body
//! .func g at=4 len=0          at=/len= override the code range written into the function table
//! .func f int=2 pint=1 pstr=0 ret=int   parameters (int, str) and return kind (void|int|str)
//! loop:                       a label; jump operands name a label or an absolute code offset `@N`
//!   0004  addi r0, r0, -1     a leading hex column (as disasm prints it) is ignored
//!         jnz r0, loop
//!         printf f0, (r0, s0)
//!         ctx r1, pid         context fields by script name, or `ctx7` for a raw byte
//!         tstat r0, t1, (s0, r2), avg     selectors: count|sum|min|max|avg, or `statN`
//!         ldk r1, r2, 16, u32             widths: u8..u64, s8..s64, or `widthN`
//! .byte 0xee 0x01             raw code bytes
//! .rept 300                   repeat the lines up to .endr (no nesting)
//! .endr
//! .const c0 = -5              pools and specs; the `c0 =` index is optional and checked
//! .string str0 = "dd\x00"
//! .globals 3
//! .table t0 key=str capacity=256
//! .table t1 key=int,str value=log2 capacity=64     value=int|stats|log2|linear
//! .table t2 key=int value=linear min=0 step=10 buckets=20 capacity=8
//! .probe p0 kprobe vfs_read @0xc01ad730 -> fn0
//! .probe p1 end -> fn1
//! .probe p2 timer profile-1ms period=1000000 every-cpu -> fn2
//! .format f0 (int, str)
//! .build-id 6b7461702d7273
//! .budget 500
//! .frame-budget 4096
//! ```

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::image::build::{ImageBuilder, OwnedProbe};
use crate::image::{
    ArgKind, FuncSpec, KeyKind, KeyShape, PROBE_EVERY_CPU, ProbeKind, ProbeSpec, RetKind, TableSpec,
    ValueKind,
};
use crate::isa::{self, Arg, CtxField, Opcode, OperandKind, Stat, Width};

/// An assembled image (not yet encoded: tests edit it before `build()`) and its labels.
#[derive(Debug, Clone, Default)]
pub struct Assembled {
    /// Everything the source declared.
    pub image: ImageBuilder,
    /// Code-section offset of every label.
    pub labels: BTreeMap<String, u32>,
}

/// Why a source did not assemble: the 1-based line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl core::error::Error for AsmError {}

/// Probe kinds by their listing name.
pub const PROBE_KINDS: &[(ProbeKind, &str)] = &[
    (ProbeKind::Kprobe, "kprobe"),
    (ProbeKind::Kretprobe, "kretprobe"),
    (ProbeKind::Tracepoint, "tracepoint"),
    (ProbeKind::Begin, "begin"),
    (ProbeKind::End, "end"),
    (ProbeKind::Timer, "timer"),
];

const RET_KINDS: &[(RetKind, &str)] =
    &[(RetKind::Void, "void"), (RetKind::Int, "int"), (RetKind::Str, "str")];

/// The `.func` attributes of `f` after its name, as the assembler reads them (` int=2 str=0 ...`);
/// defaults (no parameters, void) are left out.
pub fn func_attrs(f: &FuncSpec) -> String {
    let mut s = format!(" int={} str={}", f.n_int, f.n_str);
    if f.params_int != 0 || f.params_str != 0 {
        s.push_str(&format!(" pint={} pstr={}", f.params_int, f.params_str));
    }
    if f.ret != RetKind::Void {
        let ret = RET_KINDS.iter().find(|(k, _)| *k == f.ret).map_or("?", |(_, n)| *n);
        s.push_str(&format!(" ret={ret}"));
    }
    s
}

/// The `.table` attributes of `t` (`key=int,str value=log2 capacity=64`).
pub fn table_attrs(t: &TableSpec) -> String {
    let keys: Vec<&str> = (0..usize::from(t.keys.n))
        .map(|i| match t.keys.kind(i) {
            Some(KeyKind::Str) => "str",
            _ => "int",
        })
        .collect();
    // a raw shape the verifier will refuse is still listed so it round-trips
    let key = if t.keys.is_valid() || t.keys.n == 0 && t.keys.str_mask == 0 {
        format!("key={}", keys.join(","))
    } else {
        format!("keys={} strmask={}", t.keys.n, t.keys.str_mask)
    };
    let value = match t.value {
        ValueKind::Int => String::new(),
        ValueKind::Stats => " value=stats".to_string(),
        ValueKind::Log2 => " value=log2".to_string(),
        ValueKind::Linear { min, step, nbuckets } => {
            format!(" value=linear min={min} step={step} buckets={nbuckets}")
        }
    };
    format!("{key}{value} capacity={}", t.capacity)
}

/// The `.probe` line of `p` after its index (`kprobe vfs_read @0x... -> fn0`).
pub fn probe_line(p: &ProbeSpec<'_>) -> String {
    let mut s = probe_kind_name(p.kind).to_string();
    if !p.name.is_empty() {
        s.push(' ');
        s.push_str(&String::from_utf8_lossy(p.name));
    }
    if p.kind == ProbeKind::Timer {
        s.push_str(&format!(" period={}", p.addr));
    } else if p.addr != 0 {
        s.push_str(&format!(" @{:#x}", p.addr));
    }
    match p.flags {
        0 => {}
        PROBE_EVERY_CPU => s.push_str(" every-cpu"),
        f => s.push_str(&format!(" flags={f}")),
    }
    format!("{s} -> fn{}", p.func)
}

/// The listing name of a probe kind.
pub fn probe_kind_name(k: ProbeKind) -> &'static str {
    PROBE_KINDS.iter().find(|(p, _)| *p == k).map_or("?", |(_, n)| *n)
}

/// A string literal body for `bytes`: printable ASCII as is, `\\ \" \n \t \r`, anything else `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn unescape(lit: &str) -> Result<Vec<u8>, String> {
    let body = lit
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(|| format!("expected a string literal in double quotes, found `{lit}`"))?;
    let mut out = Vec::new();
    let mut it = body.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match it.next() {
            Some(b'\\') => b'\\',
            Some(b'"') => b'"',
            Some(b'n') => b'\n',
            Some(b't') => b'\t',
            Some(b'r') => b'\r',
            Some(b'x') => {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let hex = core::str::from_utf8(&hex).unwrap_or("");
                u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape `\\x{hex}`"))?
            }
            other => return Err(format!("bad escape `\\{}`", other.map_or(' ', char::from))),
        });
    }
    Ok(out)
}

/// A number: decimal or `0x` hex, optionally signed; hex may span the whole u64 range.
fn number(s: &str) -> Result<i128, String> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).map(i128::from),
        None => t.parse::<u64>().map(i128::from),
    }
    .map_err(|_| format!("`{s}` is not a number"))?;
    Ok(if neg { -v } else { v })
}

fn ranged(s: &str, lo: i128, hi: i128) -> Result<i128, String> {
    let v = number(s)?;
    if v < lo || v > hi {
        return Err(format!("`{s}` is outside {lo}..={hi}"));
    }
    Ok(v)
}

fn prefixed(s: &str, p: &str, hi: i128) -> Result<i128, String> {
    let n = s.strip_prefix(p).ok_or_else(|| format!("`{s}`: expected {p}N"))?;
    if n.starts_with('-') || n.starts_with('+') {
        return Err(format!("`{s}`: expected {p}N"));
    }
    ranged(n, 0, hi)
}

/// Split at top-level commas (argument lists are parenthesised).
fn operands(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = s.get(start..).unwrap_or("").trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out
}

/// The line without its comment (`;` or `#` outside a string literal).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_str => escaped = true,
            '"' => in_str = !in_str,
            ';' | '#' if !in_str => return line.get(..i).unwrap_or(""),
            _ => {}
        }
    }
    line
}

/// Drop an optional `NAME =` / `NAME` index prefix (`c3 =`, `t0`) after checking it is `expect`.
fn index_prefix<'s>(rest: &'s str, p: &str, expect: usize) -> Result<&'s str, String> {
    let rest = rest.trim();
    let (first, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let Some(n) = first.strip_prefix(p).filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok(rest);
    };
    if n.parse::<usize>().ok() != Some(expect) {
        return Err(format!("`{first}` is out of order: the next entry is {p}{expect}"));
    }
    let tail = tail.trim_start();
    Ok(tail.strip_prefix('=').unwrap_or(tail).trim())
}

struct Func {
    spec: FuncSpec,
    explicit_len: bool,
}

#[derive(Default)]
struct State {
    out: Assembled,
    funcs: Vec<Func>,
    /// (code position of the jump field, instruction start, label, line)
    fixups: Vec<(usize, usize, String, usize)>,
}

impl State {
    fn close_func(&mut self) {
        let len = self.out.image.code.len();
        if let Some(f) = self.funcs.last_mut() {
            if !f.explicit_len {
                f.spec.code_len = (len as u32).wrapping_sub(f.spec.code_off);
            }
        }
    }

    fn directive(&mut self, name: &str, rest: &str) -> Result<(), String> {
        let img = &mut self.out.image;
        match name {
            ".func" => {
                self.close_func();
                let code_off = self.out.image.code.len() as u32;
                let mut f = Func { spec: FuncSpec { code_off, ..FuncSpec::default() }, explicit_len: false };
                for w in rest.split_whitespace().skip(1) {
                    let (k, v) = w.split_once('=').ok_or_else(|| format!("`{w}`: expected KEY=VALUE"))?;
                    match k {
                        "int" => f.spec.n_int = ranged(v, 0, 255)? as u8,
                        "str" => f.spec.n_str = ranged(v, 0, 255)? as u8,
                        "pint" => f.spec.params_int = ranged(v, 0, 255)? as u8,
                        "pstr" => f.spec.params_str = ranged(v, 0, 255)? as u8,
                        "ret" => {
                            f.spec.ret = RET_KINDS
                                .iter()
                                .find(|(_, n)| *n == v)
                                .map(|(k, _)| *k)
                                .ok_or_else(|| format!("`{v}`: return kinds are void, int and str"))?;
                        }
                        "at" => f.spec.code_off = ranged(v, 0, u32::MAX.into())? as u32,
                        "len" => {
                            f.spec.code_len = ranged(v, 0, u32::MAX.into())? as u32;
                            f.explicit_len = true;
                        }
                        _ => {
                            return Err(format!(
                                "`{k}`: a function takes int=, str=, pint=, pstr=, ret=, at= and len="
                            ));
                        }
                    }
                }
                self.funcs.push(f);
            }
            ".byte" => {
                for b in rest.split_whitespace() {
                    img.code.push(ranged(b, -128, 255)? as u8);
                }
            }
            ".const" => {
                let v = index_prefix(rest, "c", img.consts.len())?;
                img.consts.push(ranged(v, i64::MIN.into(), u64::MAX.into())? as i64);
            }
            ".string" => {
                let v = index_prefix(rest, "str", img.strings.len())?;
                img.strings.push(unescape(v)?);
            }
            ".globals" => img.globals = ranged(rest.trim(), 0, u16::MAX.into())? as u16,
            ".budget" => img.budget = ranged(rest.trim(), 0, u32::MAX.into())? as u32,
            ".frame-budget" => img.frame_budget = ranged(rest.trim(), 0, u32::MAX.into())? as u32,
            ".build-id" => {
                let hex = rest.trim();
                if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("`{hex}` is not hex bytes"));
                }
                img.build_id = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or(""), 16).unwrap_or(0))
                    .collect();
            }
            ".table" => {
                let v = index_prefix(rest, "t", img.tables.len())?;
                img.tables.push(table(v)?);
            }
            ".format" => {
                let v = index_prefix(rest, "f", img.formats.len())?;
                let inner = v
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| format!("`{v}`: expected (int, str, ...)"))?;
                let kinds = operands(inner)
                    .into_iter()
                    .map(|k| match k {
                        "int" => Ok(ArgKind::Int),
                        "str" => Ok(ArgKind::Str),
                        _ => Err(format!("`{k}`: argument kinds are int and str")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                img.formats.push(kinds);
            }
            ".probe" => {
                let v = index_prefix(rest, "p", img.probes.len())?;
                let (spec, func) = v
                    .split_once("->")
                    .ok_or_else(|| "a probe is `KIND [NAME] [@ADDR] -> fnN`".to_string())?;
                let func = prefixed(func.trim(), "fn", u16::MAX.into())? as u16;
                let mut words = spec.split_whitespace();
                let kind = words.next().unwrap_or("");
                let kind =
                    PROBE_KINDS.iter().find(|(_, n)| *n == kind).map(|(k, _)| *k).ok_or_else(|| {
                        format!("`{kind}`: probe kinds are kprobe, kretprobe, tracepoint, begin, end, timer")
                    })?;
                let mut p = OwnedProbe { kind, func, addr: 0, flags: 0, name: Vec::new() };
                for w in words {
                    if w == "every-cpu" {
                        p.flags |= PROBE_EVERY_CPU;
                        continue;
                    }
                    match (w.strip_prefix('@'), w.split_once('=')) {
                        (Some(a), _) | (None, Some(("period", a))) => {
                            p.addr = ranged(a, 0, u64::MAX.into())? as u64;
                        }
                        (None, Some(("flags", f))) => p.flags = ranged(f, 0, 255)? as u8,
                        _ if p.name.is_empty() => p.name = w.as_bytes().to_vec(),
                        _ => return Err(format!("`{w}`: a probe has one name")),
                    }
                }
                img.probes.push(p);
            }
            _ => return Err(format!("unknown directive `{name}`")),
        }
        Ok(())
    }

    /// One line without its comment.
    fn line(&mut self, text: &str, line: usize) -> Result<(), AsmError> {
        let st = self;
        let err = |message: String| AsmError { line, message };
        if text.is_empty() {
            return Ok(());
        }
        if text.starts_with('.') {
            let name = text.split_whitespace().next().unwrap_or("");
            let rest = text.get(name.len()..).unwrap_or("");
            st.directive(name, rest).map_err(err)?;
            return Ok(());
        }
        if let Some(label) = text.strip_suffix(':') {
            if label.is_empty() || label.contains(char::is_whitespace) {
                return Err(err(format!("`{text}` is not a label")));
            }
            let at = st.out.image.code.len() as u32;
            if st.out.labels.insert(label.to_string(), at).is_some() {
                return Err(err(format!("label `{label}` defined twice")));
            }
            return Ok(());
        }
        // a leading hex offset column, as the disassembler prints it, is ignored
        let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let is_mnemonic = Opcode::ALL.iter().any(|o| o.mnemonic() == first);
        let body = if !is_mnemonic && !rest.is_empty() && first.bytes().all(|b| b.is_ascii_hexdigit()) {
            rest.trim()
        } else {
            text
        };
        st.insn(body, line).map_err(err)
    }

    fn insn(&mut self, text: &str, line: usize) -> Result<(), String> {
        let (mn, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let op = *Opcode::ALL
            .iter()
            .find(|o| o.mnemonic() == mn)
            .ok_or_else(|| format!("unknown mnemonic `{mn}`"))?;
        let words = operands(rest);
        if words.len() != op.operands().len() {
            return Err(format!("`{mn}` takes {} operands, found {}", op.operands().len(), words.len()));
        }
        let code = &mut self.out.image.code;
        let start = code.len();
        let mut vals = Vec::new();
        let mut args = Vec::new();
        let mut field = start + 1;
        for (kind, w) in op.operands().iter().zip(words) {
            let byte = 255;
            let short = u16::MAX.into();
            let v = match kind {
                OperandKind::Reg => prefixed(w, "r", byte)?,
                OperandKind::SReg => prefixed(w, "s", byte)?,
                OperandKind::Imm => ranged(w, i32::MIN.into(), i32::MAX.into())?,
                OperandKind::Const => prefixed(w, "c", short)?,
                OperandKind::Str => prefixed(w, "str", short)?,
                OperandKind::Table => prefixed(w, "t", byte)?,
                OperandKind::Global => prefixed(w, "g", short)?,
                OperandKind::Format => prefixed(w, "f", short)?,
                OperandKind::Func => prefixed(w, "fn", short)?,
                OperandKind::Ctx => match CtxField::from_name(w) {
                    Some(f) => f as i128,
                    None => prefixed(w, "ctx", byte)?,
                },
                OperandKind::Stat => match Stat::ALL.iter().find(|(_, n)| *n == w) {
                    Some((s, _)) => *s as i128,
                    None => prefixed(w, "stat", byte)?,
                },
                OperandKind::Width => match Width::from_name(w) {
                    Some(x) => x.to_byte().into(),
                    None => prefixed(w, "width", byte)?,
                },
                OperandKind::Count => ranged(w, 0, byte)?,
                OperandKind::Jump => match w.strip_prefix('@') {
                    Some(t) => {
                        let disp = number(t)? - start as i128;
                        if disp < i16::MIN.into() || disp > i16::MAX.into() {
                            return Err(format!("`{w}` is too far from the jump at {start:#x}"));
                        }
                        disp
                    }
                    None => {
                        self.fixups.push((field, start, w.to_string(), line));
                        0
                    }
                },
                OperandKind::Args => {
                    let inner = w
                        .strip_prefix('(')
                        .and_then(|v| v.strip_suffix(')'))
                        .ok_or_else(|| format!("`{w}`: expected (rN, sN, ...)"))?;
                    for a in operands(inner) {
                        args.push(match a.strip_prefix('s') {
                            Some(_) => Arg::Str(prefixed(a, "s", 127)? as u8),
                            None => Arg::Int(prefixed(a, "r", 127)? as u8),
                        });
                    }
                    field += 1 + args.len();
                    continue;
                }
            };
            field += kind.size();
            vals.push(v as i32);
        }
        isa::encode(code, op, &vals, &args);
        Ok(())
    }
}

/// A `.table` directive's attributes.
fn table(v: &str) -> Result<TableSpec, String> {
    let mut t = TableSpec::single(KeyKind::Int, 0);
    let (mut min, mut step, mut nb) = (0i64, 0i64, 0u8);
    let mut linear = false;
    for w in v.split_whitespace() {
        let (k, x) = w.split_once('=').ok_or_else(|| format!("`{w}`: expected KEY=VALUE"))?;
        let int = |lo: i128, hi: i128| ranged(x, lo, hi);
        match k {
            "key" => {
                let kinds = x
                    .split(',')
                    .map(|k| match k {
                        "int" => Ok(KeyKind::Int),
                        "str" => Ok(KeyKind::Str),
                        _ => Err(format!("`{k}`: key kinds are int and str")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                t.keys = KeyShape::of(&kinds);
            }
            "keys" => t.keys.n = int(0, 255)? as u8,
            "strmask" => t.keys.str_mask = int(0, 255)? as u8,
            "value" => {
                t.value = match x {
                    "int" => ValueKind::Int,
                    "stats" => ValueKind::Stats,
                    "log2" => ValueKind::Log2,
                    "linear" => {
                        linear = true;
                        ValueKind::Int
                    }
                    _ => return Err(format!("`{x}`: values are int, stats, log2 and linear")),
                }
            }
            "min" => min = int(i64::MIN.into(), i64::MAX.into())? as i64,
            "step" => step = int(i64::MIN.into(), i64::MAX.into())? as i64,
            "buckets" => nb = int(0, 255)? as u8,
            "capacity" => t.capacity = int(0, u32::MAX.into())? as u32,
            _ => {
                return Err(format!(
                    "`{w}`: a table takes key=int|str[,...], value=int|stats|log2|linear \
                     (min=, step=, buckets=) and capacity=N"
                ));
            }
        }
    }
    if linear {
        t.value = ValueKind::Linear { min, step, nbuckets: nb };
    }
    Ok(t)
}

/// Most times a `.rept` block may repeat.
const MAX_REPT: i128 = 1 << 20;

/// Assemble `src`.
pub fn assemble(src: &str) -> Result<Assembled, AsmError> {
    let mut st = State::default();
    // an open `.rept N` block: N and its (line number, text) lines
    let mut rept: Option<(i128, Vec<(usize, &str)>)> = None;
    for (i, raw) in src.lines().enumerate() {
        let line = i + 1;
        let text = strip_comment(raw).trim();
        let word = text.split_whitespace().next().unwrap_or("");
        match (word, rept.as_mut()) {
            (".rept", None) => {
                let n = text.get(word.len()..).unwrap_or("").trim();
                let n = ranged(n, 0, MAX_REPT).map_err(|message| AsmError { line, message })?;
                rept = Some((n, Vec::new()));
            }
            (".rept", Some(_)) => {
                return Err(AsmError { line, message: "`.rept` blocks do not nest".to_string() });
            }
            (".endr", Some(_)) => {
                if let Some((n, body)) = rept.take() {
                    for _ in 0..n {
                        for (line, text) in &body {
                            st.line(text, *line)?;
                        }
                    }
                }
            }
            (".endr", None) => {
                return Err(AsmError { line, message: "`.endr` without `.rept`".to_string() });
            }
            (_, Some((_, body))) => body.push((line, text)),
            (_, None) => st.line(text, line)?,
        }
    }
    if rept.is_some() {
        return Err(AsmError { line: src.lines().count(), message: "`.rept` without `.endr`".to_string() });
    }
    st.close_func();
    for (pos, start, label, line) in core::mem::take(&mut st.fixups) {
        let target = *st
            .out
            .labels
            .get(&label)
            .ok_or_else(|| AsmError { line, message: format!("no label `{label}`") })?;
        let disp = i64::from(target) - start as i64;
        let disp = i16::try_from(disp)
            .map_err(|_| AsmError { line, message: format!("label `{label}` is too far") })?;
        if let Some(field) = st.out.image.code.get_mut(pos..pos + 2) {
            field.copy_from_slice(&disp.to_le_bytes());
        }
    }
    st.out.image.funcs = st.funcs.into_iter().map(|f| f.spec).collect();
    Ok(st.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    #[test]
    fn a_program_with_every_section() {
        let a = assemble(
            "
            .func main int=2 str=1   ; the handler
            top:
              0000  movi r0, 3
                    addi r0, r0, -1
                    jnz r0, top
                    jnz r0, @0
                    printf f0, (r0, s0)
                    ret
            .func end at=0 len=1
            .const c0 = -5
            .const 0xffffffffffffffff
            .string str0 = \"a;b\\x00\\\"\"
            .globals 2
            .table t0 key=str capacity=8
            .table t1 key=int,str value=linear min=-5 step=10 buckets=3 capacity=2
            .probe p0 kprobe vfs_read @0xc0001000 -> fn0
            .probe end -> fn1
            .probe timer tick-1s period=1000000000 every-cpu -> fn1
            .format f0 (int, str)
            .build-id 00ff
            .budget 77
            ",
        )
        .unwrap();
        let b = &a.image;
        assert_eq!(a.labels["top"], 0);
        assert_eq!(b.funcs.len(), 2);
        assert_eq!(b.funcs[1], FuncSpec { code_off: 0, code_len: 1, ..FuncSpec::default() });
        assert_eq!(
            b.tables[1],
            TableSpec {
                keys: KeyShape::of(&[KeyKind::Int, KeyKind::Str]),
                value: ValueKind::Linear { min: -5, step: 10, nbuckets: 3 },
                capacity: 2
            }
        );
        assert_eq!((b.probes[2].addr, b.probes[2].flags), (1_000_000_000, PROBE_EVERY_CPU));
        assert_eq!(b.funcs[0].code_len as usize, b.code.len());
        assert_eq!(b.consts, [-5, -1]);
        assert_eq!(b.strings, [b"a;b\0\"".to_vec()]);
        assert_eq!(b.probes[0].addr, 0xc000_1000);
        assert_eq!(b.probes[1].kind, ProbeKind::End);
        assert_eq!(b.build_id, [0, 0xff]);
        let bytes = b.build();
        let img = Image::parse(&bytes).unwrap();
        let text: Vec<String> = isa::decode_all(img.code).map(|i| i.unwrap().to_string()).collect();
        assert_eq!(text[2], "jnz r0, @0");
        assert_eq!(text[3], "jnz r0, @0");
    }

    #[test]
    fn errors_name_the_line() {
        for (src, want) in [
            ("ret\nbogus r1", "line 2: unknown mnemonic `bogus`"),
            ("movi r0", "line 1: `movi` takes 2 operands, found 1"),
            ("movi r256, 1", "line 1: `256` is outside 0..=255"),
            ("jmp nowhere", "line 1: no label `nowhere`"),
            (".const c1 = 4", "line 1: `c1` is out of order: the next entry is c0"),
            (".string \"\\q\"", "line 1: bad escape `\\q`"),
        ] {
            assert_eq!(assemble(src).unwrap_err().to_string(), want, "{src}");
        }
    }

    #[test]
    fn rept_repeats_its_block() {
        let a =
            assemble(".rept 3\n.func f\nret\n.endr\n.rept 2\n.table key=int capacity=1\n.endr\n").unwrap();
        assert_eq!(a.image.funcs.len(), 3);
        assert_eq!(a.image.funcs[2], FuncSpec { code_off: 2, code_len: 1, ..FuncSpec::default() });
        assert_eq!(a.image.tables.len(), 2);
        assert_eq!(assemble(".rept 2\nret").unwrap_err().to_string(), "line 2: `.rept` without `.endr`");
        assert_eq!(assemble(".endr").unwrap_err().to_string(), "line 1: `.endr` without `.rept`");
    }

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let lit = format!("\"{}\"", escape(&all));
        assert_eq!(unescape(&lit).unwrap(), all);
    }
}
