//! Checking and code generation in one walk over the tree: names are resolved, types checked and
//! bytecode emitted together, so each error is found where the code for it would be generated.
//!
//! Registers: each probe body is one function. Block-local variables own a register for the rest of
//! their block; expression temporaries are a stack above them (per register file), reset after every
//! statement. An expression's result is either a local's own register (no copy) or the lowest free
//! temporary, so `var x = expr` adopts the temporary as `x`'s register.
//!
//! Values that can never exist in a correct program (a string added to an integer, a table read as a
//! scalar) are reported and replaced by [`Val::Err`], which every later check accepts silently, so one
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
            self.err(Diagnostic::error(format!("`{}` is a builtin and cannot be redeclared", id.name), id.span));
            return false;
        }
        if FUNCTIONS.contains(&id.name.as_str()) {
            self.err(Diagnostic::error(format!("`{}` is a function and cannot be redeclared", id.name), id.span));
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
            _ => match decl.init.const_int() {
                Some(v) => v,
                None => {
                    self.err(
                        Diagnostic::error("a global's initial value must be a constant", decl.init.span)
                            .note("use integer literals and `+ - * / %`; assign other values in `trace_begin`"),
                    );
                    0
                }
            },
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
            self.err(Diagnostic::error(format!("too many {what}: a program may have at most {MAX_POOL}"), at));
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

    // ---- probes ----

    fn probe(&mut self, p: &Probe, with_inits: bool) {
        let (at, kind) = match &p.target {
            ProbeTarget::Kprobe { ret: false, .. } => (Where::Kprobe, Some(ProbeKind::Kprobe)),
            ProbeTarget::Kprobe { ret: true, .. } => (Where::Kretprobe, Some(ProbeKind::Kretprobe)),
            ProbeTarget::Tracepoint { .. } => (Where::Tracepoint, Some(ProbeKind::Tracepoint)),
            ProbeTarget::Begin => (Where::Begin, Some(ProbeKind::Begin)),
            ProbeTarget::End => (Where::End, Some(ProbeKind::End)),
            ProbeTarget::Invalid => (Where::Invalid, None),
        };
        if let Some(k @ (ProbeKind::Begin | ProbeKind::End)) = kind {
            if let Some(first) = self.prog.probes.iter().find(|q| q.kind == k) {
                let first = first.span;
                self.err(
                    Diagnostic::error(format!("a second `{}` block", p.target.spec()), p.head)
                        .label(first, "the first one is here")
                        .note("a program has at most one `trace_begin` and one `trace_end`"),
                );
            }
        }
        let (addr, name) = self.attach_point(&p.target);
        self.f = FuncState::new(at);
        self.f.spec = p.target.spec();
        if with_inits {
            self.emit_inits(p.head);
        }
        for s in &p.body.stmts {
            self.stmt(s);
        }
        let Some(kind) = kind else { return };
        let func = self.finish_func(self.f.spec.clone(), p.body.span);
        if self.prog.probes.len() == MAX_PROBES as usize {
            self.err(Diagnostic::error(format!("too many probes: a program may have at most {MAX_PROBES}"), p.head));
        }
        self.prog.probes.push(ProbeOut { kind, addr, name, func, spec: p.target.spec(), span: p.head });
    }

    fn finish_func(&mut self, name: String, span: Span) -> u16 {
        self.emit(Opcode::Ret, &[]);
        let f = std::mem::replace(&mut self.f, FuncState::new(Where::Invalid));
        let id = self.prog.funcs.len().min(u16::MAX as usize) as u16;
        self.prog.funcs.push(FuncOut { code: f.code, n_int: f.max_int, n_str: f.max_str, name, span });
        id
    }

    fn emit_inits(&mut self, at: Span) {
        for (g, v) in self.global_inits.clone() {
            if v != 0 {
                let m = self.mark();
                let r = self.alloc_int(at);
                self.load_const(r, v, at);
                self.emit(Opcode::Stg, &[g as i32, r as i32]);
                self.reset(m);
            }
        }
    }

    /// No `trace_begin` but globals with initial values: a `trace_begin` of their own, last.
    fn init_probe(&mut self, script: &Script) {
        let span = script
            .items
            .iter()
            .find_map(|i| match i {
                Item::Global(d) => Some(d.span),
                Item::Probe(_) => None,
            })
            .unwrap_or(span(0, 0));
        self.f = FuncState::new(Where::Begin);
        self.emit_inits(span);
        let spec = "trace_begin (global initializers)".to_string();
        let func = self.finish_func(spec.clone(), span);
        self.prog.probes.push(ProbeOut { kind: ProbeKind::Begin, addr: 0, name: String::new(), func, spec, span });
    }

    /// Kernel address and image name of a probe; resolution errors are reported here.
    fn attach_point(&mut self, t: &ProbeTarget) -> (u64, String) {
        match t {
            ProbeTarget::Kprobe { sym, .. } => {
                self.check_probe_name(sym);
                match self.env.resolver.kprobe_addr(&sym.name) {
                    Ok(0) if self.env.need_addresses => {
                        self.err(
                            Diagnostic::error(format!("no kernel address for `{}`", sym.name), sym.span).note(
                                "compiling a kprobe needs the board kernel's symbols: pass `--vmlinux PATH`",
                            ),
                        );
                        (0, sym.name.clone())
                    }
                    Ok(addr) => (addr, sym.name.clone()),
                    Err(msg) => {
                        self.err(
                            Diagnostic::error(format!("cannot resolve kernel function `{}`", sym.name), sym.span)
                                .note(msg),
                        );
                        (0, sym.name.clone())
                    }
                }
            }
            ProbeTarget::Tracepoint { subsys, event } => {
                self.check_probe_name(event);
                if let Err(msg) = self.env.resolver.tracepoint(&subsys.name, &event.name) {
                    let at = super::diag::join(subsys.span, event.span);
                    self.err(
                        Diagnostic::error(format!("cannot resolve tracepoint `{}:{}`", subsys.name, event.name), at)
                            .note(msg),
                    );
                }
                (0, event.name.clone())
            }
            ProbeTarget::Begin | ProbeTarget::End | ProbeTarget::Invalid => (0, String::new()),
        }
    }

    fn check_probe_name(&mut self, id: &Ident) {
        if id.name.len() > MAX_PROBE_NAME {
            self.err(Diagnostic::error(
                format!("`{}` is {} bytes long; probe targets are at most {MAX_PROBE_NAME}", id.name, id.name.len()),
                id.span,
            ));
        }
    }

    fn finish_tables(&mut self) {
        for (t, (key, _)) in self.prog.tables.iter_mut().zip(&self.table_keys) {
            if let Some((k, _)) = key {
                t.key = *k;
            }
        }
    }

    // ---- statements ----

    fn stmt(&mut self, s: &Stmt) {
        let m = self.mark();
        match &s.kind {
            StmtKind::Var(d) => {
                self.local_decl(d);
                return;
            }
            StmtKind::Assign { target, op, op_span, value } => self.assign(target, *op, *op_span, value),
            StmtKind::Expr(e) => match &e.kind {
                ExprKind::Call { callee, args } if callee.name == "print" => self.print(args, e.span),
                ExprKind::Call { callee, args } if callee.name == "printf" => self.printf(args, e.span),
                ExprKind::Call { .. } | ExprKind::Error => {
                    self.expr(e);
                }
                ExprKind::Name(id) if FUNCTIONS.contains(&id.name.as_str()) => {
                    self.expr(e);
                }
                _ => {
                    self.err(
                        Diagnostic::error("this expression does nothing", e.span)
                            .note("a statement is an assignment, a `var` declaration or a call"),
                    );
                }
            },
            StmtKind::Error => {}
        }
        self.reset(m);
    }

    fn local_decl(&mut self, d: &VarDecl) {
        let m = self.mark();
        let ok = self.declarable(&d.name);
        let v = self.expr(&d.init);
        let (ty, reg) = match v {
            Val::Int(r) if r == m.int && self.f.int_top == m.int + 1 => (Ty::Int, r),
            Val::Int(r) => {
                self.reset(m);
                let dst = self.alloc_int(d.span);
                self.emit(Opcode::Mov, &[dst as i32, r as i32]);
                (Ty::Int, dst)
            }
            Val::Str(r) if r == m.str && self.f.str_top == m.str + 1 => {
                self.f.int_top = m.int;
                (Ty::Str, r)
            }
            Val::Str(r) => {
                self.reset(m);
                let dst = self.alloc_str(d.span);
                self.emit(Opcode::Movs, &[dst as i32, r as i32]);
                (Ty::Str, dst)
            }
            Val::Void => {
                self.no_value(&d.init);
                self.reset(m);
                (Ty::Err, 0)
            }
            Val::Err => {
                self.reset(m);
                (Ty::Err, 0)
            }
        };
        if ty == Ty::Int {
            self.f.str_top = m.str;
        }
        if !ok {
            return;
        }
        // one level of blocks for now: every local of this function is in the same block
        if let Some(prev) = self.f.locals.iter().find(|l| l.name == d.name.name) {
            let first = prev.span;
            self.err(
                Diagnostic::error(format!("`{}` is already declared in this block", d.name.name), d.name.span)
                    .label(first, "first declared here"),
            );
            return;
        }
        self.f.locals.push(Local { name: d.name.name.clone(), span: d.name.span, ty, reg });
    }

    fn no_value(&mut self, e: &Expr) {
        let name = match &e.kind {
            ExprKind::Call { callee, .. } => callee.name.clone(),
            _ => "this call".into(),
        };
        self.err(Diagnostic::error(format!("`{name}(...)` does not return a value"), e.span));
    }

    fn expect_int(&mut self, v: Val, e: &Expr, what: &str) -> Option<u8> {
        match v {
            Val::Int(r) => Some(r),
            Val::Str(_) => {
                self.err(Diagnostic::error(format!("{what} needs an integer, but this is a string"), e.span));
                None
            }
            Val::Void => {
                self.no_value(e);
                None
            }
            Val::Err => None,
        }
    }

    fn assign(&mut self, target: &Expr, op: Option<BinOp>, op_span: Span, value: &Expr) {
        let op_text = match op {
            Some(o) => format!("`{}=`", o.symbol()),
            None => "`=`".to_string(),
        };
        match &target.kind {
            ExprKind::Name(id) => self.assign_name(id, op, &op_text, op_span, value),
            ExprKind::Index { base, key } => {
                let Some(t) = self.table_of(base) else {
                    self.expr(key);
                    self.expr(value);
                    return;
                };
                self.assign_index(t, key, op, &op_text, value);
            }
            ExprKind::Error => {
                self.expr(value);
            }
            _ => {
                self.err(
                    Diagnostic::error("cannot assign to this expression", target.span)
                        .note("assign to a variable (`x = ...`) or a table entry (`t[key] = ...`)"),
                );
                self.expr(value);
            }
        }
    }

    fn assign_name(&mut self, id: &Ident, op: Option<BinOp>, op_text: &str, op_span: Span, value: &Expr) {
        if let Some(local) = self.local(&id.name).cloned() {
            // `x += c`, `x -= c`: one `addi`
            let imm = match (local.ty, op, value.const_int()) {
                (Ty::Int, Some(BinOp::Add), Some(c)) => i32::try_from(c).ok(),
                (Ty::Int, Some(BinOp::Sub), Some(c)) => c.checked_neg().and_then(|n| i32::try_from(n).ok()),
                _ => None,
            };
            if let Some(imm) = imm {
                self.emit(Opcode::Addi, &[local.reg as i32, local.reg as i32, imm]);
                return;
            }
            let v = self.expr(value);
            match (local.ty, v, op) {
                (_, Val::Err, _) | (Ty::Err, _, _) => {}
                (_, Val::Void, _) => self.no_value(value),
                (Ty::Int, Val::Int(r), None) => {
                    if r != local.reg {
                        self.emit(Opcode::Mov, &[local.reg as i32, r as i32]);
                    }
                }
                (Ty::Str, Val::Str(r), None) => {
                    if r != local.reg {
                        self.emit(Opcode::Movs, &[local.reg as i32, r as i32]);
                    }
                }
                (Ty::Int, Val::Int(r), Some(o)) => self.emit(arith(o), &[local.reg as i32, local.reg as i32, r as i32]),
                (Ty::Str, _, Some(_)) => self.err(
                    Diagnostic::error(format!("{op_text} needs an integer, but `{}` is a string", id.name), op_span)
                        .label(local.span, "declared as a string here"),
                ),
                (ty, v, _) => {
                    let found = if matches!(v, Val::Str(_)) { Ty::Str } else { Ty::Int };
                    self.err(
                        Diagnostic::error(
                            format!("type mismatch: `{}` holds {}, but this is {}", id.name, ty.name(), found.name()),
                            value.span,
                        )
                        .label(local.span, format!("declared as {} here", ty.name())),
                    );
                }
            }
            return;
        }
        match self.globals.get(&id.name).copied() {
            Some((Global::Int(g), _)) => {
                let v = self.expr(value);
                let Some(r) = self.expect_int(v, value, op_text) else { return };
                match op {
                    None => self.emit(Opcode::Stg, &[g as i32, r as i32]),
                    Some(BinOp::Add) => self.emit(Opcode::Addg, &[g as i32, r as i32]),
                    Some(o) => {
                        let t = self.alloc_int(value.span);
                        self.emit(Opcode::Ldg, &[t as i32, g as i32]);
                        self.emit(arith(o), &[t as i32, t as i32, r as i32]);
                        self.emit(Opcode::Stg, &[g as i32, t as i32]);
                    }
                }
            }
            Some((Global::Table(_), decl)) => {
                self.err(
                    Diagnostic::error(format!("cannot assign to table `{}` itself", id.name), id.span)
                        .label(decl, "declared as a table here")
                        .note(format!("assign to an entry: `{}[key] = ...`", id.name)),
                );
                self.expr(value);
            }
            None if builtin(&id.name).is_some() => {
                self.err(Diagnostic::error(format!("cannot assign to builtin `{}`", id.name), id.span).note(
                    "builtins (pid, tid, cpu, uid, time, execname, argN, retval) are read-only; copy into a `var`",
                ));
                self.expr(value);
            }
            None => {
                self.unknown(id, true);
                self.expr(value);
            }
        }
    }

    fn assign_index(&mut self, t: u8, key: &Expr, op: Option<BinOp>, op_text: &str, value: &Expr) {
        let Some(k) = self.key(t, key) else {
            self.expr(value);
            return;
        };
        // `t[k] -= c`: add the negated constant
        let v = match (op, value.const_int()) {
            (Some(BinOp::Sub), Some(c)) => {
                let r = self.alloc_int(value.span);
                self.load_const(r, c.wrapping_neg(), value.span);
                return self.table_add(t, k, r);
            }
            _ => self.expr(value),
        };
        let Some(r) = self.expect_int(v, value, op_text) else { return };
        let (st, ld, add) = match k {
            Val::Str(_) => (Opcode::Tsts, Opcode::Tlds, Opcode::Tadds),
            _ => (Opcode::Tst, Opcode::Tld, Opcode::Tadd),
        };
        let kr = match k {
            Val::Int(r) | Val::Str(r) => r as i32,
            Val::Void | Val::Err => return,
        };
        let t = t as i32;
        match op {
            None => self.emit(st, &[t, kr, r as i32]),
            Some(BinOp::Add) => self.emit(add, &[t, kr, r as i32]),
            Some(BinOp::Sub) => {
                let n = self.alloc_int(value.span);
                self.emit(Opcode::Neg, &[n as i32, r as i32]);
                self.emit(add, &[t, kr, n as i32]);
            }
            Some(o) => {
                let n = self.alloc_int(value.span);
                self.emit(ld, &[n as i32, t, kr]);
                self.emit(arith(o), &[n as i32, n as i32, r as i32]);
                self.emit(st, &[t, kr, n as i32]);
            }
        }
    }

    fn table_add(&mut self, t: u8, k: Val, r: u8) {
        match k {
            Val::Str(s) => self.emit(Opcode::Tadds, &[t as i32, s as i32, r as i32]),
            Val::Int(i) => self.emit(Opcode::Tadd, &[t as i32, i as i32, r as i32]),
            Val::Void | Val::Err => {}
        }
    }

    /// The table a base expression names; reports anything else.
    fn table_of(&mut self, base: &Expr) -> Option<u8> {
        let ExprKind::Name(id) = &base.kind else {
            if !matches!(base.kind, ExprKind::Error) {
                self.err(Diagnostic::error("only tables can be indexed", base.span));
            }
            return None;
        };
        if let Some(l) = self.local(&id.name) {
            let d = Diagnostic::error(format!("`{}` is not a table", id.name), id.span)
                .label(l.span, format!("declared here as {}", l.ty.name()));
            self.err(d);
            return None;
        }
        match self.globals.get(&id.name).copied() {
            Some((Global::Table(t), _)) => Some(t),
            Some((Global::Int(_), decl)) => {
                self.err(
                    Diagnostic::error(format!("`{}` is not a table", id.name), id.span)
                        .label(decl, "declared here as an integer")
                        .note(format!("declare a table with `var {} = {{}}`", id.name)),
                );
                None
            }
            None if builtin(&id.name).is_some() => {
                self.err(Diagnostic::error(format!("builtin `{}` is not a table", id.name), id.span));
                None
            }
            None => {
                self.unknown(id, false);
                None
            }
        }
    }

    /// Evaluate a table key and record its kind; `None` after an error.
    fn key(&mut self, t: u8, key: &Expr) -> Option<Val> {
        let v = self.expr(key);
        let kind = match v {
            Val::Int(_) => KeyKind::Int,
            Val::Str(_) => KeyKind::Str,
            Val::Void => {
                self.no_value(key);
                return None;
            }
            Val::Err => return None,
        };
        let Some((first, reported)) = self.table_keys.get_mut(t as usize) else { return None };
        match *first {
            None => *first = Some((kind, key.span)),
            Some((k, first_span)) if k != kind => {
                if !*reported {
                    *reported = true;
                    let name = self.prog.tables.get(t as usize).map_or(String::new(), |t| t.name.clone());
                    let (now, then) = match kind {
                        KeyKind::Str => ("a string", "an integer"),
                        KeyKind::Int => ("an integer", "a string"),
                    };
                    self.err(
                        Diagnostic::error(
                            format!("table `{name}` is indexed by {now} here, but by {then} elsewhere"),
                            key.span,
                        )
                        .label(first_span, format!("first indexed by {then} here"))
                        .note("a table's keys are either all integers or all strings"),
                    );
                }
                return None;
            }
            Some(_) => {}
        }
        Some(v)
    }

    // ---- calls ----

    fn print(&mut self, args: &[Expr], at: Span) {
        let table_arg = |l: &Self, e: &Expr| match &e.kind {
            ExprKind::Name(id) if l.local(&id.name).is_none() => match l.globals.get(&id.name) {
                Some((Global::Table(t), _)) => Some(*t),
                _ => None,
            },
            _ => None,
        };
        if let [one] = args {
            if let Some(t) = table_arg(self, one) {
                self.emit(Opcode::Ptable, &[t as i32]);
                return;
            }
        }
        if let Some(e) = args.iter().find(|e| table_arg(self, e).is_some()) {
            self.err(
                Diagnostic::error("a table can only be printed on its own", e.span)
                    .note("use `print(t)` in a statement of its own"),
            );
            return;
        }
        if args.len() > MAX_ARGS {
            self.too_many_args("`print`", args[MAX_ARGS].span);
            return;
        }
        let mut regs = Vec::new();
        let mut kinds = Vec::new();
        for a in args {
            match self.expr(a) {
                Val::Int(r) => {
                    regs.push(Arg::Int(r));
                    kinds.push(ArgKind::Int);
                }
                Val::Str(r) => {
                    regs.push(Arg::Str(r));
                    kinds.push(ArgKind::Str);
                }
                Val::Void => {
                    self.no_value(a);
                    return;
                }
                Val::Err => return,
            }
        }
        let parts: Vec<&str> = kinds.iter().map(|k| if *k == ArgKind::Int { "%d" } else { "%s" }).collect();
        let text = format!("{}\n", parts.join(" "));
        let f = self.format_id(text, kinds, at);
        encode(&mut self.f.code, Opcode::Printf, &[f as i32], &regs);
    }

    fn too_many_args(&mut self, what: &str, extra: Span) {
        self.err(Diagnostic::error(format!("{what} takes at most {MAX_ARGS} values"), extra));
    }

    fn printf(&mut self, args: &[Expr], at: Span) {
        let Some(first) = args.first() else {
            self.err(Diagnostic::error("`printf` needs a format string", at));
            return;
        };
        let ExprKind::Str(fmt) = &first.kind else {
            if !matches!(first.kind, ExprKind::Error) {
                self.err(
                    Diagnostic::error("`printf`'s first argument must be a string literal", first.span)
                        .note("formats are checked when compiling: write the format in place, e.g. `printf(\"%d\\n\", x)`"),
                );
            }
            for a in &args[1..] {
                self.expr(a);
            }
            return;
        };
        let offsets = string_offsets(self.src, first.span);
        let fmt_span = |start: usize, end: usize| -> Span {
            let s = offsets.get(start).copied().unwrap_or(first.span.start);
            let e = offsets.get(end).copied().unwrap_or(first.span.end);
            Span { start: s, end: e.max(s + 1) }
        };
        let pieces = match format_spec::parse(fmt) {
            Ok(p) => p,
            Err(e) => {
                self.err(Diagnostic::error(format!("invalid format: {}", e.kind), fmt_span(e.start, e.end)).note(
                    "conversions: %d %i %u %x %X %o %c %s %p %%, with flags `-+ 0#`, a width and a precision",
                ));
                return;
            }
        };
        let convs: Vec<_> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Conv(c) => Some(c),
                Piece::Text(_) => None,
            })
            .collect();
        let values = &args[1..];
        if values.len() > MAX_ARGS {
            self.too_many_args("`printf` after its format", values[MAX_ARGS].span);
            return;
        }
        if convs.len() != values.len() {
            let (msg, primary) = if values.len() > convs.len() {
                let extra = &values[convs.len()];
                let n = convs.len();
                let has = if n == 1 { "1 conversion".to_string() } else { format!("{n} conversions") };
                (format!("more values than conversions: the format has {has}"), extra.span)
            } else {
                let given = match values.len() {
                    0 => "no values are given".to_string(),
                    1 => "1 value is given".to_string(),
                    n => format!("{n} values are given"),
                };
                (format!("the format has {} conversions but {given}", convs.len()), at)
            };
            let mut d = Diagnostic::error(msg, primary);
            if values.len() < convs.len() {
                let c = convs[values.len()];
                d = d.label(fmt_span(c.span.start, c.span.end), "this conversion has no value");
            } else {
                d = d.label(first.span, "format here");
            }
            self.err(d);
            return;
        }
        let mut regs = Vec::new();
        let mut ok = true;
        for (c, a) in convs.iter().zip(values) {
            let v = self.expr(a);
            let want = c.conv.arg_kind();
            let (reg, got) = match v {
                Val::Int(r) => (Arg::Int(r), ArgKind::Int),
                Val::Str(r) => (Arg::Str(r), ArgKind::Str),
                Val::Void => {
                    self.no_value(a);
                    ok = false;
                    continue;
                }
                Val::Err => {
                    ok = false;
                    continue;
                }
            };
            if got != want {
                let (w, g) = if want == ArgKind::Int { ("an integer", "a string") } else { ("a string", "an integer") };
                let conv_span = fmt_span(c.span.start, c.span.end);
                let conv_text = fmt.get(c.span.clone()).unwrap_or("%");
                self.err(
                    Diagnostic::error(format!("`{conv_text}` expects {w}, but this is {g}"), a.span)
                        .label(conv_span, "conversion here"),
                );
                ok = false;
            }
            regs.push(reg);
        }
        if !ok {
            return;
        }
        let kinds = convs.iter().map(|c| c.conv.arg_kind()).collect();
        let f = self.format_id(fmt.clone(), kinds, at);
        encode(&mut self.f.code, Opcode::Printf, &[f as i32], &regs);
    }

    // ---- expressions ----

    fn expr(&mut self, e: &Expr) -> Val {
        if !matches!(e.kind, ExprKind::Int(_)) {
            if let Some(v) = e.const_int() {
                let r = self.alloc_int(e.span);
                self.load_const(r, v, e.span);
                return Val::Int(r);
            }
        }
        match &e.kind {
            ExprKind::Int(v) => {
                let r = self.alloc_int(e.span);
                self.load_const(r, *v, e.span);
                Val::Int(r)
            }
            ExprKind::Str(s) => {
                if s.len() > MAX_STR {
                    self.err(
                        Diagnostic::error(
                            format!("string literal is {} bytes, longer than the {MAX_STR}-byte limit", s.len()),
                            e.span,
                        )
                        .note("strings (keys, values, execname) are at most 64 bytes"),
                    );
                    return Val::Err;
                }
                let id = self.string_id(s.as_bytes(), e.span);
                let r = self.alloc_str(e.span);
                self.emit(Opcode::Lds, &[r as i32, id as i32]);
                Val::Str(r)
            }
            ExprKind::Name(id) => self.name(id),
            ExprKind::Index { base, key } => {
                let Some(t) = self.table_of(base) else {
                    self.expr(key);
                    return Val::Err;
                };
                let m = self.mark();
                let Some(k) = self.key(t, key) else { return Val::Err };
                self.reset(m);
                let dst = self.alloc_int(e.span);
                match k {
                    Val::Str(s) => self.emit(Opcode::Tlds, &[dst as i32, t as i32, s as i32]),
                    Val::Int(r) => self.emit(Opcode::Tld, &[dst as i32, t as i32, r as i32]),
                    Val::Void | Val::Err => return Val::Err,
                }
                Val::Int(dst)
            }
            ExprKind::Unary { op: UnOp::Neg, operand } => {
                let m = self.mark();
                let v = self.expr(operand);
                let Some(r) = self.expect_int(v, operand, "`-`") else {
                    self.reset(m);
                    return Val::Err;
                };
                self.reset(m);
                let dst = self.alloc_int(e.span);
                self.emit(Opcode::Neg, &[dst as i32, r as i32]);
                Val::Int(dst)
            }
            ExprKind::Binary { op, lhs, rhs, .. } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Call { callee, args } => {
                if FUNCTIONS.contains(&callee.name.as_str()) {
                    return Val::Void;
                }
                let d = if builtin(&callee.name).is_some() || self.globals.contains_key(&callee.name) {
                    Diagnostic::error(format!("`{}` is not a function", callee.name), callee.span)
                } else {
                    let d = Diagnostic::error(format!("unknown function `{}`", callee.name), callee.span);
                    match did_you_mean(&callee.name, FUNCTIONS.iter().copied()) {
                        Some(s) => d.note(s),
                        None => d.note("the functions are `print` and `printf`"),
                    }
                };
                self.err(d);
                let m = self.mark();
                for a in args {
                    self.expr(a);
                }
                self.reset(m);
                Val::Err
            }
            ExprKind::Table => {
                self.err(
                    Diagnostic::error("a table can only be created by a top-level `var NAME = {}`", e.span)
                        .note("tables are global; declare them outside probe blocks"),
                );
                Val::Err
            }
            ExprKind::Error => Val::Err,
        }
    }

    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, at: Span) -> Val {
        let m = self.mark();
        let what = format!("`{}`", op.symbol());
        // `x + c` and `x - c` with a small constant: one `addi`
        let imm = rhs.const_int().and_then(|c| match op {
            BinOp::Add => i32::try_from(c).ok(),
            BinOp::Sub => c.checked_neg().and_then(|n| i32::try_from(n).ok()),
            _ => None,
        });
        if let Some(imm) = imm {
            let v = self.expr(lhs);
            let Some(a) = self.expect_int(v, lhs, &what) else {
                self.reset(m);
                return Val::Err;
            };
            self.reset(m);
            let dst = self.alloc_int(at);
            self.emit(Opcode::Addi, &[dst as i32, a as i32, imm]);
            return Val::Int(dst);
        }
        let va = self.expr(lhs);
        let a = self.expect_int(va, lhs, &what);
        let vb = self.expr(rhs);
        let b = self.expect_int(vb, rhs, &what);
        self.reset(m);
        let (Some(a), Some(b)) = (a, b) else { return Val::Err };
        let dst = self.alloc_int(at);
        self.emit(arith(op), &[dst as i32, a as i32, b as i32]);
        Val::Int(dst)
    }

    fn name(&mut self, id: &Ident) -> Val {
        if let Some(l) = self.local(&id.name) {
            return match l.ty {
                Ty::Int => Val::Int(l.reg),
                Ty::Str => Val::Str(l.reg),
                Ty::Err => Val::Err,
            };
        }
        match self.globals.get(&id.name).copied() {
            Some((Global::Int(g), _)) => {
                let r = self.alloc_int(id.span);
                self.emit(Opcode::Ldg, &[r as i32, g as i32]);
                return Val::Int(r);
            }
            Some((Global::Table(_), decl)) => {
                self.err(
                    Diagnostic::error(format!("table `{}` used as a value", id.name), id.span)
                        .label(decl, "declared as a table here")
                        .note(format!("read an entry with `{0}[key]`, or print it with `print({0})`", id.name)),
                );
                return Val::Err;
            }
            None => {}
        }
        match builtin(&id.name) {
            Some(Builtin::Comm) => {
                let s = self.alloc_str(id.span);
                self.emit(Opcode::Comm, &[s as i32]);
                Val::Str(s)
            }
            Some(Builtin::Ctx(field)) => {
                if !self.ctx_available(field, id) {
                    return Val::Err;
                }
                let r = self.alloc_int(id.span);
                self.emit(Opcode::Ctx, &[r as i32, field as i32]);
                Val::Int(r)
            }
            None if FUNCTIONS.contains(&id.name.as_str()) => {
                self.err(Diagnostic::error(format!("`{}` is a function; call it", id.name), id.span));
                Val::Err
            }
            None => {
                self.unknown(id, false);
                Val::Err
            }
        }
    }

    /// `retval` only in kretprobes; `argN` only below the arch's register count, never in begin/end.
    fn ctx_available(&mut self, field: CtxField, id: &Ident) -> bool {
        let at = self.f.at;
        if field == CtxField::Retval && !matches!(at, Where::Kretprobe | Where::Invalid) {
            self.err(
                Diagnostic::error("`retval` is only available in kretprobe blocks", id.span)
                    .note(format!("this is a `{}` block", self.f.spec)),
            );
            return false;
        }
        if let Some(n) = field.arg_index() {
            if matches!(at, Where::Begin | Where::End) {
                self.err(Diagnostic::error(
                    format!("`{}` has no value in `{}`: it is not called with arguments", id.name, self.f.spec),
                    id.span,
                ));
                return false;
            }
            let max = self.env.arch.register_args();
            if n >= max {
                self.err(
                    Diagnostic::error(
                        format!("`{}` is not available on {}", id.name, board_arch_name(self.env.arch)),
                        id.span,
                    )
                    .note(format!(
                        "the {} calling convention passes {max} arguments in registers: arg0 to arg{}",
                        board_arch_name(self.env.arch),
                        max - 1
                    )),
                );
                return false;
            }
        }
        true
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
