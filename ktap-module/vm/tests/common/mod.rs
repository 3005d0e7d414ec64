//! Test helpers: a text assembler for the ISA (driven by `Opcode::operands`, like the verifier) and a
//! recording [`Env`].
//!
//! ```text
//! .func name int=4 str=1     start a function (frame sizes default to 0)
//! loop:                      a label (jump operands name labels, or `@+N` / `@-N` raw displacements)
//!     addi r0, r0, -1
//!     jnz r0, loop
//!     printf f0, (r0, s0)
//!     ctx r1, pid            context fields by script name, or `ctx7` for a raw byte
//!     ret
//! .byte 0xee 0x01            raw bytes
//! ```
#![allow(dead_code)]

use std::collections::HashMap;

use ktap_protocol::image::build::ImageBuilder;
use ktap_protocol::image::{FuncSpec, Image};
use ktap_protocol::isa::{self, Arg, CtxField, Opcode, OperandKind};
use ktap_protocol::limits::MAX_STR;
use ktap_protocol::record::{self, RecordKind, Value};
use ktap_vm::Env;

/// An assembled program: the image builder (code + funcs filled in) and the label offsets.
pub struct Asm {
    pub b: ImageBuilder,
    pub labels: HashMap<String, u32>,
}

impl Asm {
    /// Code offset of `label`.
    pub fn at(&self, label: &str) -> u32 {
        *self.labels.get(label).unwrap_or_else(|| panic!("no label {label}"))
    }

    /// Image offset of code offset `code_off` in the built image.
    pub fn image_off(&self, code_off: u32) -> u32 {
        let bytes = self.b.build();
        Image::parse(&bytes).unwrap().code_offset as u32 + code_off
    }

    /// Image offset of `label`.
    pub fn image_at(&self, label: &str) -> u32 {
        self.image_off(self.at(label))
    }
}

fn num(s: &str) -> i64 {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match t.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16),
        None => t.parse::<i64>(),
    }
    .unwrap_or_else(|_| panic!("bad number `{s}`"));
    if neg { -v } else { v }
}

fn prefixed(s: &str, p: &str) -> i64 {
    num(s.strip_prefix(p).unwrap_or_else(|| panic!("`{s}`: expected {p}N")))
}

/// Split operands at top-level commas (argument lists are parenthesised).
fn operands(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Assemble `src` into code and functions.
pub fn asm(src: &str) -> Asm {
    let mut code = Vec::new();
    let mut labels = HashMap::new();
    let mut funcs: Vec<FuncSpec> = Vec::new();
    let mut fixups: Vec<(usize, usize, String)> = Vec::new(); // (field pos, insn start, label)
    for raw in src.lines() {
        let line = raw.split(';').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix(".func") {
            if let Some(f) = funcs.last_mut() {
                f.code_len = code.len() as u32 - f.code_off;
            }
            let mut f = FuncSpec { code_off: code.len() as u32, code_len: 0, n_int: 0, n_str: 0 };
            for w in rest.split_whitespace().skip(1) {
                if let Some(n) = w.strip_prefix("int=") {
                    f.n_int = n.parse().unwrap();
                } else if let Some(n) = w.strip_prefix("str=") {
                    f.n_str = n.parse().unwrap();
                }
            }
            funcs.push(f);
            continue;
        }
        if let Some(rest) = line.strip_prefix(".byte") {
            code.extend(rest.split_whitespace().map(|b| num(b) as u8));
            continue;
        }
        if let Some(label) = line.strip_suffix(':') {
            labels.insert(label.to_string(), code.len() as u32);
            continue;
        }
        let (mn, rest) = line.split_once(' ').unwrap_or((line, ""));
        let op = *Opcode::ALL.iter().find(|o| o.mnemonic() == mn).unwrap_or_else(|| panic!("mnemonic {mn}"));
        let words = operands(rest);
        assert_eq!(words.len(), op.operands().len(), "`{line}`: wrong operand count");
        let start = code.len();
        let mut vals = Vec::new();
        let mut args = Vec::new();
        let mut field = 1usize;
        for (kind, w) in op.operands().iter().zip(&words) {
            let v = match kind {
                OperandKind::Reg => prefixed(w, "r"),
                OperandKind::SReg => prefixed(w, "s"),
                OperandKind::Imm => num(w),
                OperandKind::Const => prefixed(w, "c"),
                OperandKind::Str => prefixed(w, "str"),
                OperandKind::Table => prefixed(w, "t"),
                OperandKind::Global => prefixed(w, "g"),
                OperandKind::Format => prefixed(w, "f"),
                OperandKind::Func => prefixed(w, "fn"),
                OperandKind::Ctx => match CtxField::from_name(w) {
                    Some(f) => f as i64,
                    None => prefixed(w, "ctx"),
                },
                OperandKind::Jump => match w.strip_prefix('@') {
                    Some(d) => num(d),
                    None => {
                        fixups.push((start + field, start, w.clone()));
                        0
                    }
                },
                OperandKind::Args => {
                    let inner = w.trim_start_matches('(').trim_end_matches(')');
                    for a in operands(inner) {
                        args.push(match a.strip_prefix('s') {
                            Some(n) => Arg::Str(num(n) as u8),
                            None => Arg::Int(prefixed(&a, "r") as u8),
                        });
                    }
                    continue;
                }
            };
            field += kind.size();
            vals.push(v as i32);
        }
        isa::encode(&mut code, op, &vals, &args);
    }
    if let Some(f) = funcs.last_mut() {
        f.code_len = code.len() as u32 - f.code_off;
    }
    for (pos, start, label) in fixups {
        let target = *labels.get(&label).unwrap_or_else(|| panic!("no label {label}"));
        let disp = (target as i64 - start as i64) as i16;
        code[pos..pos + 2].copy_from_slice(&disp.to_le_bytes());
    }
    Asm { b: ImageBuilder { code, funcs, ..Default::default() }, labels }
}

/// One decoded record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    I(i64),
    S(Vec<u8>),
}

/// An [`Env`] with fixed context values that keeps what the VM emits.
pub struct TestEnv {
    pub comm: Vec<u8>,
    pub records: Vec<Vec<u8>>,
    /// Emits beyond this many are refused (a full ring).
    pub room: usize,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv { comm: b"dd".to_vec(), records: Vec::new(), room: usize::MAX }
    }
}

impl TestEnv {
    /// The records as (kind, id, values).
    pub fn decoded(&self) -> Vec<(RecordKind, u16, Vec<V>)> {
        let all = self.records.concat();
        record::records(&all)
            .map(|r| {
                let r = r.unwrap();
                let vals = r
                    .values()
                    .map(|v| match v.unwrap() {
                        Value::Int(i) => V::I(i),
                        Value::Str(s) => V::S(s.to_vec()),
                    })
                    .collect();
                (r.kind, r.id, vals)
            })
            .collect()
    }
}

impl Env for TestEnv {
    fn ctx(&mut self, field: CtxField) -> i64 {
        match field {
            CtxField::Pid => 42,
            CtxField::Tid => 43,
            CtxField::Cpu => 1,
            CtxField::Uid => 0,
            CtxField::TimeNs => 1_000_000,
            CtxField::Retval => -5,
            f => 100 + f.arg_index().map_or(0, i64::from),
        }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        let n = self.comm.len().min(MAX_STR);
        out[..n].copy_from_slice(&self.comm[..n]);
        n
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        if self.records.len() >= self.room {
            return false;
        }
        self.records.push(record.to_vec());
        true
    }
}
