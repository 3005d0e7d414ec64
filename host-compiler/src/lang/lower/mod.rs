//! Checking and code generation in one walk over the tree: names are resolved, types checked and
//! bytecode emitted together, so each error is found where the code for it would be generated.
//!
//! Registers: each probe body is one function. Block-local variables own a register for the rest of
//! their block; expression temporaries are a stack above them (per register file), reset after every
//! statement. An expression's result is either a local's own register (no copy) or the lowest free
//! temporary, so `var x = expr` adopts the temporary as `x`'s register.
//!
//! Values that can never exist in a correct program (a string added to an integer, a table read as a
//! scalar) are reported and replaced by `Val::Err`, which every later check accepts silently, so one
//! mistake gives one error.

use std::collections::HashMap;

use ktap_protocol::image::{ArgKind, KeyKind, ProbeKind};
use ktap_protocol::isa::{Arg, CtxField, Opcode, encode};
use ktap_protocol::limits::{
    DEFAULT_TABLE_CAPACITY, MAX_ARGS, MAX_GLOBALS, MAX_INT_REGS, MAX_PROBE_NAME, MAX_PROBES, MAX_STR,
    MAX_STR_REGS, MAX_TABLES,
};

use super::ast::*;
use super::diag::{Diagnostic, Span, did_you_mean, span};
use super::format_spec::{self, Piece};
use super::lexer::string_offsets;
use super::{Resolver, board_arch_name};
use crate::board::Arch;

mod call;
mod expr;
mod probe;
mod stmt;

/// Largest index of the 16-bit pools (strings, constants, formats).
const MAX_POOL: usize = u16::MAX as usize;

/// What the checker needs from outside the script.
pub struct Env<'a> {
    /// The board's architecture (how many `argN` exist).
    pub arch: Arch,
    /// Kernel symbols.
    pub resolver: &'a dyn Resolver,
    /// `compile` refuses kprobes without an address; `check` does not.
    pub need_addresses: bool,
}

/// A compiled function.
#[derive(Debug, Clone)]
pub struct FuncOut {
    /// Bytecode, ending with `ret`.
    pub code: Vec<u8>,
    /// Integer registers used.
    pub n_int: u8,
    /// String registers used.
    pub n_str: u8,
    /// Name for messages (the probe spec).
    pub name: String,
    /// The probe body.
    pub span: Span,
}

/// A probe of the image; `func` is its handler.
#[derive(Debug, Clone)]
pub struct ProbeOut {
    /// What to attach.
    pub kind: ProbeKind,
    /// Kernel address (kprobes).
    pub addr: u64,
    /// Symbol or tracepoint event name.
    pub name: String,
    /// Handler function.
    pub func: u16,
    /// Canonical spelling of the head.
    pub spec: String,
    /// The head as written.
    pub span: Span,
}

/// A table of the program.
#[derive(Debug, Clone)]
pub struct TableOut {
    /// Its name.
    pub name: String,
    /// Its declaration's name.
    pub span: Span,
    /// Key kind (integer when the script never indexes it).
    pub key: KeyKind,
    /// Capacity.
    pub capacity: u32,
}

/// Everything the image and sidecar are built from.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Functions, one per probe.
    pub funcs: Vec<FuncOut>,
    /// Probes in source order (a synthetic `trace_begin` for global initializers may come last).
    pub probes: Vec<ProbeOut>,
    /// 64-bit constant pool.
    pub consts: Vec<i64>,
    /// String constant pool.
    pub strings: Vec<Vec<u8>>,
    /// Formats: text (for the sidecar) and argument kinds (for the image).
    pub formats: Vec<(String, Vec<ArgKind>)>,
    /// Integer global names.
    pub globals: Vec<String>,
    /// Tables.
    pub tables: Vec<TableOut>,
}

/// Check and compile `script`, appending errors to `diags`.
pub fn lower(script: &Script, src: &str, env: &Env<'_>, diags: &mut Vec<Diagnostic>) -> Program {
    let mut l = Lower {
        src,
        env,
        diags,
        prog: Program::default(),
        globals: HashMap::new(),
        global_inits: Vec::new(),
        table_keys: Vec::new(),
        string_ids: HashMap::new(),
        const_ids: HashMap::new(),
        format_ids: HashMap::new(),
        f: FuncState::new(Where::Invalid),
        reported_pool: false,
    };
    for item in &script.items {
        if let Item::Global(decl) = item {
            l.declare_global(decl);
        }
    }
    let first_begin =
        script.items.iter().position(|i| matches!(i, Item::Probe(Probe { target: ProbeTarget::Begin, .. })));
    let has_inits = l.global_inits.iter().any(|(_, v)| *v != 0);
    for (i, item) in script.items.iter().enumerate() {
        if let Item::Probe(p) = item {
            l.probe(p, Some(i) == first_begin && has_inits);
        }
    }
    if has_inits && first_begin.is_none() {
        l.init_probe(script);
    }
    l.finish_tables();
    l.prog
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Kprobe,
    Kretprobe,
    Tracepoint,
    Begin,
    End,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Str,
    Err,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Str => "a string",
            Ty::Err => "an invalid value",
        }
    }
}

/// The result of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    /// In integer register n.
    Int(u8),
    /// In string register n.
    Str(u8),
    /// A call that returns nothing.
    Void,
    /// An error, already reported.
    Err,
}

impl Val {
    /// This value as one entry of a table key list.
    fn key_arg(self) -> Option<ktap_protocol::isa::Arg> {
        match self {
            Val::Int(r) => Some(ktap_protocol::isa::Arg::Int(r)),
            Val::Str(r) => Some(ktap_protocol::isa::Arg::Str(r)),
            Val::Void | Val::Err => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Int(u16),
    Table(u8),
}

#[derive(Debug, Clone)]
struct Local {
    name: String,
    span: Span,
    ty: Ty,
    reg: u8,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    int: u8,
    str: u8,
}

struct FuncState {
    code: Vec<u8>,
    int_top: u8,
    str_top: u8,
    max_int: u8,
    max_str: u8,
    locals: Vec<Local>,
    at: Where,
    spec: String,
    out_of_regs: bool,
}

impl FuncState {
    fn new(at: Where) -> FuncState {
        FuncState {
            code: Vec::new(),
            int_top: 0,
            str_top: 0,
            max_int: 0,
            max_str: 0,
            locals: Vec::new(),
            at,
            spec: String::new(),
            out_of_regs: false,
        }
    }
}

struct Lower<'a, 'd> {
    src: &'a str,
    env: &'a Env<'a>,
    diags: &'d mut Vec<Diagnostic>,
    prog: Program,
    globals: HashMap<String, (Global, Span)>,
    /// Integer globals with their initial values.
    global_inits: Vec<(u16, i64)>,
    /// First use of each table: key kind and where, and whether a conflict was reported.
    table_keys: Vec<(Option<(KeyKind, Span)>, bool)>,
    string_ids: HashMap<Vec<u8>, u16>,
    const_ids: HashMap<i64, u16>,
    format_ids: HashMap<String, u16>,
    f: FuncState,
    reported_pool: bool,
}

enum Builtin {
    Ctx(CtxField),
    Comm,
}

fn builtin(name: &str) -> Option<Builtin> {
    if name == "execname" {
        return Some(Builtin::Comm);
    }
    CtxField::from_name(name).map(Builtin::Ctx)
}

const FUNCTIONS: &[&str] = &["print", "printf"];

impl Lower<'_, '_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    // ---- names ----

    fn builtin_names() -> impl Iterator<Item = &'static str> {
        std::iter::once("execname").chain(CtxField::ALL.iter().map(|(_, n)| *n))
    }

    fn unknown(&mut self, id: &Ident, assigning: bool) {
        let locals: Vec<String> = self.f.locals.iter().map(|l| l.name.clone()).collect();
        let globals: Vec<String> = self.globals.keys().cloned().collect();
        let mut candidates: Vec<&str> = locals.iter().chain(globals.iter()).map(|s| s.as_str()).collect();
        for b in Self::builtin_names() {
            candidates.push(b);
        }
        let mut d = Diagnostic::error(format!("unknown identifier `{}`", id.name), id.span);
        if let Some(s) = did_you_mean(&id.name, candidates) {
            d = d.note(s);
        }
        if assigning {
            d = d.note(format!("declare it first: `var {} = ...` (at top level for a global)", id.name));
        }
        self.err(d);
    }

    /// Names that cannot be declared (builtins, functions); reports and returns false.
    fn declarable(&mut self, id: &Ident) -> bool {
        if builtin(&id.name).is_some() {
            self.err(Diagnostic::error(
                format!("`{}` is a builtin and cannot be redeclared", id.name),
                id.span,
            ));
            return false;
        }
        if FUNCTIONS.contains(&id.name.as_str()) {
            self.err(Diagnostic::error(
                format!("`{}` is a function and cannot be redeclared", id.name),
                id.span,
            ));
            return false;
        }
        true
    }

    fn declare_global(&mut self, decl: &VarDecl) {
        let id = &decl.name;
        if !self.declarable(id) {
            return;
        }
        if let Some((_, first)) = self.globals.get(&id.name) {
            let first = *first;
            self.err(
                Diagnostic::error(format!("`{}` is declared twice", id.name), id.span)
                    .label(first, "first declared here"),
            );
            return;
        }
        if let ExprKind::Table = decl.init.kind {
            let n = self.prog.tables.len();
            if n >= MAX_TABLES as usize {
                self.err(Diagnostic::error(
                    format!("too many tables: a program may have at most {MAX_TABLES}"),
                    id.span,
                ));
            }
            self.prog.tables.push(TableOut {
                name: id.name.clone(),
                span: id.span,
                key: KeyKind::Int,
                capacity: DEFAULT_TABLE_CAPACITY,
            });
            self.table_keys.push((None, false));
            self.globals.insert(id.name.clone(), (Global::Table(n.min(255) as u8), id.span));
            return;
        }
        let value = match &decl.init.kind {
            ExprKind::Error => 0,
            ExprKind::Str(_) => {
                self.err(
                    Diagnostic::error("string globals are not supported yet", decl.init.span)
                        .note("globals are integers or tables; a string can live in a block-local `var`"),
                );
                0
            }
            _ => {
                match decl.init.const_int() {
                    Some(v) => v,
                    None => {
                        self.err(
                        Diagnostic::error("a global's initial value must be a constant", decl.init.span)
                            .note("use integer literals and `+ - * / %`; assign other values in `trace_begin`"),
                    );
                        0
                    }
                }
            }
        };
        let n = self.prog.globals.len();
        if n >= MAX_GLOBALS as usize {
            self.err(Diagnostic::error(
                format!("too many globals: a program may have at most {MAX_GLOBALS}"),
                id.span,
            ));
        }
        let g = n.min(u16::MAX as usize) as u16;
        self.prog.globals.push(id.name.clone());
        self.global_inits.push((g, value));
        self.globals.insert(id.name.clone(), (Global::Int(g), id.span));
    }

    fn local(&self, name: &str) -> Option<&Local> {
        self.f.locals.iter().rev().find(|l| l.name == name)
    }

    // ---- pools ----

    fn pool_full(&mut self, what: &str, at: Span) {
        if !self.reported_pool {
            self.reported_pool = true;
            self.err(Diagnostic::error(
                format!("too many {what}: a program may have at most {MAX_POOL}"),
                at,
            ));
        }
    }

    fn string_id(&mut self, s: &[u8], at: Span) -> u16 {
        if let Some(id) = self.string_ids.get(s) {
            return *id;
        }
        if self.prog.strings.len() >= MAX_POOL {
            self.pool_full("string constants", at);
            return 0;
        }
        let id = self.prog.strings.len() as u16;
        self.prog.strings.push(s.to_vec());
        self.string_ids.insert(s.to_vec(), id);
        id
    }

    fn const_id(&mut self, v: i64, at: Span) -> u16 {
        if let Some(id) = self.const_ids.get(&v) {
            return *id;
        }
        if self.prog.consts.len() >= MAX_POOL {
            self.pool_full("64-bit constants", at);
            return 0;
        }
        let id = self.prog.consts.len() as u16;
        self.prog.consts.push(v);
        self.const_ids.insert(v, id);
        id
    }

    fn format_id(&mut self, text: String, kinds: Vec<ArgKind>, at: Span) -> u16 {
        if let Some(id) = self.format_ids.get(&text) {
            return *id;
        }
        if self.prog.formats.len() >= MAX_POOL {
            self.pool_full("formats", at);
            return 0;
        }
        let id = self.prog.formats.len() as u16;
        self.format_ids.insert(text.clone(), id);
        self.prog.formats.push((text, kinds));
        id
    }

    // ---- registers and emission ----

    fn emit(&mut self, op: Opcode, ops: &[i32]) {
        encode(&mut self.f.code, op, ops, &[]);
    }

    fn mark(&self) -> Mark {
        Mark { int: self.f.int_top, str: self.f.str_top }
    }

    fn reset(&mut self, m: Mark) {
        self.f.int_top = m.int;
        self.f.str_top = m.str;
    }

    fn out_of_regs(&mut self, file: &str, max: u8, at: Span) {
        if !self.f.out_of_regs {
            self.f.out_of_regs = true;
            self.err(
                Diagnostic::error(format!("this needs more than {max} {file} registers"), at)
                    .note("split the expression, or use fewer block-local variables"),
            );
        }
    }

    fn alloc_int(&mut self, at: Span) -> u8 {
        if self.f.int_top >= MAX_INT_REGS {
            self.out_of_regs("integer", MAX_INT_REGS, at);
            return MAX_INT_REGS - 1;
        }
        let r = self.f.int_top;
        self.f.int_top += 1;
        self.f.max_int = self.f.max_int.max(self.f.int_top);
        r
    }

    fn alloc_str(&mut self, at: Span) -> u8 {
        if self.f.str_top >= MAX_STR_REGS {
            self.out_of_regs("string", MAX_STR_REGS, at);
            return MAX_STR_REGS - 1;
        }
        let r = self.f.str_top;
        self.f.str_top += 1;
        self.f.max_str = self.f.max_str.max(self.f.str_top);
        r
    }

    fn load_const(&mut self, r: u8, v: i64, at: Span) {
        match i32::try_from(v) {
            Ok(imm) => self.emit(Opcode::Movi, &[r as i32, imm]),
            Err(_) => {
                let c = self.const_id(v, at);
                self.emit(Opcode::Ldc, &[r as i32, c as i32]);
            }
        }
    }
}

fn arith(op: BinOp) -> Opcode {
    match op {
        BinOp::Add => Opcode::Add,
        BinOp::Sub => Opcode::Sub,
        BinOp::Mul => Opcode::Mul,
        BinOp::Div => Opcode::Div,
        BinOp::Mod => Opcode::Mod,
    }
}
