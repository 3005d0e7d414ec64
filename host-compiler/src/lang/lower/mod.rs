//! Checking and code generation in one walk over the tree: names are resolved, types checked and
//! bytecode emitted together, so each error is found where the code for it would be generated.
//!
//! Registers: each probe body and each named function is one VM function. Block-local variables own
//! a register until their block ends; expression temporaries are a stack above them (per register
//! file), reset after every statement. An expression's result is either a local's own register (no
//! copy) or the lowest free temporary, so `var x = expr` adopts the temporary as `x`'s register.
//!
//! Named functions are compiled once per combination of argument kinds at their first call
//! (integer or string parameters), so a function is checked with the types it is really called
//! with; a call that reaches a function still being compiled is recursion, reported with the chain.
//!
//! Values that can never exist in a correct program (a string added to an integer, a table read as a
//! scalar) are reported and replaced by `Val::Err`, which every later check accepts silently, so one
//! mistake gives one error.

use std::collections::{HashMap, HashSet};

use ktap_protocol::image::{ArgKind, KeyKind, ProbeKind, RetKind, ValueKind};
use ktap_protocol::isa::{Arg, CtxField, Opcode, encode};
use ktap_protocol::limits::{
    DEFAULT_TABLE_CAPACITY, MAX_ARGS, MAX_GLOBALS, MAX_INT_REGS, MAX_KEYS, MAX_PROBE_NAME, MAX_PROBES,
    MAX_STR, MAX_STR_REGS, MAX_TABLES,
};

use super::ast::*;
use super::diag::{Diagnostic, Span, did_you_mean, join, span};
use super::format_spec::{self, Piece};
use super::lexer::string_offsets;
use super::{Resolver, board_arch_name};
use crate::board::Arch;
use crate::ktypes::TypeRef;
use crate::sidecar::{Names, SyscallProbe};

mod builtins;
mod call;
mod cond;
mod expr;
mod func;
mod member;
mod named;
mod probe;
mod stmt;
mod syscall;
mod table;

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
    /// Bytecode.
    pub code: Vec<u8>,
    /// Integer registers used.
    pub n_int: u8,
    /// String registers used.
    pub n_str: u8,
    /// Integer parameters (in r0..).
    pub params_int: u8,
    /// String parameters (in s0..).
    pub params_str: u8,
    /// What it returns.
    pub ret: RetKind,
    /// Name for messages (the probe spec or the function name).
    pub name: String,
    /// The body.
    pub span: Span,
}

/// A probe of the image; `func` is its handler.
#[derive(Debug, Clone)]
pub struct ProbeOut {
    /// What to attach.
    pub kind: ProbeKind,
    /// Kernel address (kprobes) or period in ns (timers).
    pub addr: u64,
    /// A timer on every CPU (`profile-N`).
    pub every_cpu: bool,
    /// Symbol or tracepoint event name.
    pub name: String,
    /// Handler function.
    pub func: u16,
    /// Canonical spelling of the head (one tracepoint of a glob).
    pub spec: String,
    /// The head as written.
    pub span: Span,
    /// A probe on system calls by name (`trace syscalls:sys_enter_NAME`).
    pub syscalls: Option<SyscallProbe>,
}

/// A table of the program.
#[derive(Debug, Clone)]
pub struct TableOut {
    /// Its name.
    pub name: String,
    /// Its declaration's name.
    pub span: Span,
    /// Key components (one integer when the script never indexes it).
    pub keys: Vec<KeyKind>,
    /// Which key components hold kernel stacks (`t[stack()]`), for the host to symbolize.
    pub stack_keys: Vec<bool>,
    /// Which key components the host shows by name (an index into [`Program::names`]).
    pub named_keys: Vec<Option<u16>>,
    /// Values: integers or an aggregate.
    pub value: ValueKind,
    /// `print_hist` of a plain table: one bar per key.
    pub bars: bool,
    /// Capacity.
    pub capacity: u32,
}

/// A printf format (also the implicit one of `print`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOut {
    /// The text, for the sidecar.
    pub text: String,
    /// Argument kinds, for the image.
    pub kinds: Vec<ArgKind>,
    /// Which arguments are kernel stacks (for the host to symbolize).
    pub stacks: Vec<bool>,
    /// Which integer arguments the host shows by name (`%s`, `print`), from which names.
    pub names: Vec<Option<u16>>,
}

/// Everything the image and sidecar are built from.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Functions: probe handlers and named functions, by id.
    pub funcs: Vec<FuncOut>,
    /// Probes in source order (a synthetic `trace_begin` for global initializers may come last).
    pub probes: Vec<ProbeOut>,
    /// 64-bit constant pool.
    pub consts: Vec<i64>,
    /// String constant pool.
    pub strings: Vec<Vec<u8>>,
    /// Formats, by format id.
    pub formats: Vec<FormatOut>,
    /// Names of integer values (enums, system calls) the host shows them by, by names id.
    pub names: Vec<Names>,
    /// Integer global names.
    pub globals: Vec<String>,
    /// Tables.
    pub tables: Vec<TableOut>,
    /// Frame memory of the deepest call path, in bytes (the image's frame budget).
    pub frame_budget: u32,
}

/// Check and compile `script`, appending errors to `diags`.
///
/// A table's key kinds are decided by its first use in source order. A `for (k, v in pairs(t))`
/// that comes before every store into `t` cannot know them on the first walk, so the script is
/// lowered again with the key kinds the previous walk found, until a walk learns nothing new (a
/// loop body skipped for lack of key kinds may hold the first store into another table). Only the
/// last walk's diagnostics are kept.
pub fn lower(script: &Script, src: &str, env: &Env<'_>, diags: &mut Vec<Diagnostic>) -> Program {
    let mut seeds = Seeds::default();
    loop {
        let mut walk = Vec::new();
        let (prog, uses, pairs_before_keys, text_keys) =
            lower_pass(script, src, env, &mut walk, seeds.clone());
        let known = |u: &[TableUse]| u.iter().filter(|u| u.keys.is_some()).count();
        let more_text = text_keys.len() > seeds.text_keys.len();
        if !more_text && (!pairs_before_keys || known(&uses) == known(&seeds.tables)) {
            diags.extend(walk);
            return prog;
        }
        seeds.tables = uses
            .into_iter()
            .zip(&prog.tables)
            .map(|(u, t)| {
                // a key part where `probename` goes as text is a string part
                let keys = u.keys.map(|(mut kinds, at)| {
                    for (i, k) in kinds.iter_mut().enumerate() {
                        if text_keys.contains(&(t.name.clone(), i)) {
                            *k = KeyKind::Str;
                        }
                    }
                    (kinds, at)
                });
                TableUse { keys, stack_keys: u.stack_keys, named_keys: u.named_keys, ..TableUse::default() }
            })
            .collect();
        // names ids stay those of the first walk, so the seeded key names keep meaning the same
        seeds.names = prog.names;
        seeds.text_keys = text_keys;
    }
}

/// What a walk of [`lower`] starts from: what the previous walk found.
#[derive(Debug, Clone, Default)]
struct Seeds {
    /// Key kinds (and names) per table, by table index.
    tables: Vec<TableUse>,
    /// The names made so far, by names id.
    names: Vec<Names>,
    /// (table, key part) where a `syscalls:` handler's `probename` goes as text.
    text_keys: HashSet<(String, usize)>,
}

/// One walk over the script; tables start with `seeds`' key kinds (by table index) when given.
/// Also returns what each table's uses decided, whether a `pairs` loop met a table whose key
/// kinds were not known yet, and the key parts where `probename` must be text.
fn lower_pass(
    script: &Script,
    src: &str,
    env: &Env<'_>,
    diags: &mut Vec<Diagnostic>,
    seeds: Seeds,
) -> (Program, Vec<TableUse>, bool, HashSet<(String, usize)>) {
    let mut l = Lower {
        src,
        env,
        diags,
        prog: Program { names: seeds.names, ..Program::default() },
        globals: HashMap::new(),
        global_inits: Vec::new(),
        tables: Vec::new(),
        table_inits: Vec::new(),
        str_inits: Vec::new(),
        seeds: seeds.tables,
        pairs_before_keys: false,
        string_ids: HashMap::new(),
        const_ids: HashMap::new(),
        format_ids: HashMap::new(),
        f: FuncState::new(Where::Invalid),
        reported_pool: false,
        decls: HashMap::new(),
        specs: HashMap::new(),
        compiling: Vec::new(),
        func_depth: HashMap::new(),
        cur_head: span(0, 0),
        pending_syscall: None,
        enum_names: HashMap::new(),
        text_keys: seeds.text_keys,
    };
    for item in &script.items {
        match item {
            Item::Global(decl) => l.declare_global(decl),
            Item::Function(f) => l.declare_function(f),
            Item::Probe(_) => {}
        }
    }
    let first_begin =
        script.items.iter().position(|i| matches!(i, Item::Probe(Probe { target: ProbeTarget::Begin, .. })));
    let has_inits = l.has_inits();
    for (i, item) in script.items.iter().enumerate() {
        if let Item::Probe(p) = item {
            l.probe(p, Some(i) == first_begin && has_inits);
        }
    }
    if has_inits && first_begin.is_none() {
        l.init_probe(script);
    }
    l.finish_tables();
    l.frame_budget();
    (l.prog, l.tables, l.pairs_before_keys, l.text_keys)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Kprobe,
    Kretprobe,
    Tracepoint,
    Timer,
    Begin,
    End,
    Func,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    fn ty(self) -> Ty {
        match self {
            Val::Int(_) => Ty::Int,
            Val::Str(_) => Ty::Str,
            Val::Void | Val::Err => Ty::Err,
        }
    }

    fn arg(self) -> Option<Arg> {
        match self {
            Val::Int(r) => Some(Arg::Int(r)),
            Val::Str(r) => Some(Arg::Str(r)),
            Val::Void | Val::Err => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Int(u16),
    Table(u8),
    /// A string global, kept as the one key of a one-entry table.
    Str(u8),
}

/// A table constructor's entry: key, value, and where it is written.
type InitEntry = (InitKey, i64, Span);

/// A constant key of a table constructor.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InitKey {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone)]
struct Local {
    name: String,
    span: Span,
    ty: Ty,
    reg: u8,
    /// An integer the host shows by name: the names id.
    names: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    int: u8,
    str: u8,
}

/// A jump whose displacement is filled in later: where the instruction starts and where its
/// 2-byte displacement is.
#[derive(Debug, Clone, Copy)]
struct Patch {
    insn: usize,
    field: usize,
}

/// The loop a `break` / `continue` belongs to.
#[derive(Debug, Default)]
struct LoopCtx {
    breaks: Vec<Patch>,
    continues: Vec<Patch>,
}

struct FuncState {
    code: Vec<u8>,
    int_top: u8,
    str_top: u8,
    max_int: u8,
    max_str: u8,
    locals: Vec<Local>,
    /// Number of locals when each open block started.
    scopes: Vec<usize>,
    loops: Vec<LoopCtx>,
    at: Where,
    spec: String,
    /// The probe's tracepoint or function, for `arg.NAME`.
    target: Option<ProbeTarget>,
    out_of_regs: bool,
    reported_jump: bool,
    /// Jumps to the function's end (a false predicate).
    to_end: Vec<Patch>,
    /// A named function's return kind, decided by its first `return`.
    ret: Option<(RetKind, Span)>,
    /// Named functions this one calls, for the frame budget.
    callees: Vec<u16>,
    /// A probe on system calls by name: which, and where their number and arguments are.
    syscall: Option<SyscallProbe>,
    /// Member chains (by span) whose value is an enum, with the names id the host shows it by.
    named: HashMap<(usize, usize), u16>,
    /// A `syscalls:` handler's names of its calls, for `probename`.
    syscall_names: Option<u16>,
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
            scopes: Vec::new(),
            loops: Vec::new(),
            at,
            spec: String::new(),
            target: None,
            out_of_regs: false,
            reported_jump: false,
            to_end: Vec::new(),
            ret: None,
            callees: Vec::new(),
            syscall: None,
            named: HashMap::new(),
            syscall_names: None,
        }
    }
}

/// Per table: the key shape and value kind its uses decided, with where they were decided.
#[derive(Debug, Clone, Default)]
struct TableUse {
    keys: Option<(Vec<KeyKind>, Span)>,
    stack_keys: Vec<bool>,
    /// Per key component, the names its uses agree on (see [`KeyNames`]).
    named_keys: Vec<KeyNames>,
    /// Per key component: a use stored `probename` there as the call's number.
    numbers: Vec<bool>,
    /// `<<<` seen (the table is an aggregate), where first.
    agg: Option<Span>,
    /// `lhist(v, min, max, step)` parameters and where.
    linear: Option<((i64, i64, u8), Span)>,
    /// `print_hist` or `hist()` seen: keep log2 buckets.
    log2: bool,
    /// `print_hist` seen.
    print_hist: bool,
    /// Scalar use (`t[k] = v`, `+=`, read), where first.
    scalar: Option<Span>,
    reported: bool,
}

/// What the uses of one integer key component say about showing it by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum KeyNames {
    /// No use gave it names (a plain integer, or a string).
    #[default]
    Plain,
    /// Uses with names agree on these (plain uses do not count against them).
    Named(u16),
    /// Uses gave it different names: shown as numbers.
    Mixed,
}

impl KeyNames {
    fn with(self, names: Option<u16>) -> KeyNames {
        match (self, names) {
            (k, None) | (k @ KeyNames::Mixed, _) => k,
            (KeyNames::Plain, Some(n)) => KeyNames::Named(n),
            (KeyNames::Named(a), Some(b)) if a == b => self,
            (KeyNames::Named(_), Some(_)) => KeyNames::Mixed,
        }
    }

    fn id(self) -> Option<u16> {
        match self {
            KeyNames::Named(n) => Some(n),
            KeyNames::Plain | KeyNames::Mixed => None,
        }
    }
}

/// What tells formats apart: text, stacks and names (which decide the argument kinds).
type FormatKey = (String, Vec<bool>, Vec<Option<u16>>);

/// A named function's specialization: its name and its parameters' kinds.
type SpecKey = (String, Vec<Ty>);

struct Lower<'a, 'd> {
    src: &'a str,
    env: &'a Env<'a>,
    diags: &'d mut Vec<Diagnostic>,
    prog: Program,
    globals: HashMap<String, (Global, Span)>,
    /// Integer globals with their initial values.
    global_inits: Vec<(u16, i64)>,
    tables: Vec<TableUse>,
    /// Table constructor entries, stored by `trace_begin`: (table, [(key, value, entry)]).
    table_inits: Vec<(u8, Vec<InitEntry>)>,
    /// String globals with an initial value: (their table, the value).
    str_inits: Vec<(u8, String)>,
    /// Key kinds known before the walk (the second walk of [`lower`]), by table index.
    seeds: Vec<TableUse>,
    /// A `pairs` loop met a table whose key kinds were not known yet.
    pairs_before_keys: bool,
    string_ids: HashMap<Vec<u8>, u16>,
    const_ids: HashMap<i64, u16>,
    format_ids: HashMap<FormatKey, u16>,
    f: FuncState,
    reported_pool: bool,
    /// Named functions by name.
    decls: HashMap<String, &'a FuncDecl>,
    /// Compiled specializations: (name, parameter types) -> (function id, return kind), `None` when
    /// its body has errors (reported once).
    specs: HashMap<SpecKey, Option<(u16, RetKind)>>,
    /// Functions being compiled, outermost first, with the call that started each.
    compiling: Vec<(String, Span)>,
    /// Deepest frame memory below each compiled function (itself included).
    func_depth: HashMap<u16, u32>,
    /// The head of the probe being compiled.
    cur_head: Span,
    /// The system calls the attach point being resolved traces, for its handler.
    pending_syscall: Option<SyscallProbe>,
    /// Enum types already asked of the resolver: their names id (`None`: not an enum, or no names).
    enum_names: HashMap<TypeRef, Option<u16>>,
    /// (table, key part) whose keys are strings where a `syscalls:` handler's `probename` goes:
    /// it is lowered as text there (found by a previous walk).
    text_keys: HashSet<(String, usize)>,
}

const VOID_FUNCTIONS: &[&str] = &["print", "printf", "print_hist", "delete", "exit"];

impl<'a> Lower<'a, '_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    // ---- names ----

    fn unknown(&mut self, id: &Ident, assigning: bool) {
        let locals: Vec<String> = self.f.locals.iter().map(|l| l.name.clone()).collect();
        let globals: Vec<String> = self.globals.keys().cloned().collect();
        let mut candidates: Vec<&str> = locals.iter().chain(globals.iter()).map(|s| s.as_str()).collect();
        candidates.extend(builtins::VALUE_NAMES.iter().copied());
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
        if builtins::is_value(&id.name) {
            self.err(Diagnostic::error(
                format!("`{}` is a builtin and cannot be redeclared", id.name),
                id.span,
            ));
            return false;
        }
        if matches!(id.name.as_str(), "print" | "printf") || self.decls.contains_key(&id.name) {
            self.err(Diagnostic::error(
                format!("`{}` is a function and cannot be redeclared", id.name),
                id.span,
            ));
            return false;
        }
        true
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

    fn format_id(&mut self, f: FormatOut, at: Span) -> u16 {
        let key = (f.text.clone(), f.stacks.clone(), f.names.clone());
        if let Some(id) = self.format_ids.get(&key) {
            return *id;
        }
        if self.prog.formats.len() >= MAX_POOL {
            self.pool_full("formats", at);
            return 0;
        }
        let id = self.prog.formats.len() as u16;
        self.prog.formats.push(f);
        self.format_ids.insert(key, id);
        id
    }

    // ---- registers and emission ----

    fn emit(&mut self, op: Opcode, ops: &[i32]) {
        encode(&mut self.f.code, op, ops, &[]);
    }

    fn emit_args(&mut self, op: Opcode, ops: &[i32], args: &[Arg]) {
        encode(&mut self.f.code, op, ops, args);
    }

    fn here(&self) -> usize {
        self.f.code.len()
    }

    /// Emit a jump-carrying instruction (its displacement, the last operand, is patched later).
    fn emit_jump(&mut self, op: Opcode, ops: &[i32], args: &[Arg]) -> Patch {
        let insn = self.here();
        let mut all = ops.to_vec();
        all.push(0);
        encode(&mut self.f.code, op, &all, args);
        Patch { insn, field: self.here() - 2 }
    }

    /// Point `p` at byte `target` of the current function.
    fn patch(&mut self, p: Patch, target: usize) {
        let disp = target as i64 - p.insn as i64;
        let Ok(d) = i16::try_from(disp) else {
            if !self.f.reported_jump {
                self.f.reported_jump = true;
                let at = self.prog.funcs.last().map_or(span(0, 0), |f| f.span);
                self.err(
                    Diagnostic::error(
                        format!("`{}` is too large: a jump spans {disp} bytes", self.f.spec),
                        at,
                    )
                    .note("jumps reach at most 32 KiB; move parts of the body into functions"),
                );
            }
            return;
        };
        if let Some(b) = self.f.code.get_mut(p.field..p.field + 2) {
            b.copy_from_slice(&d.to_le_bytes());
        }
    }

    fn patch_here(&mut self, ps: Vec<Patch>) {
        let at = self.here();
        for p in ps {
            self.patch(p, at);
        }
    }

    /// An unconditional backward jump to `target`.
    fn jump_back(&mut self, target: usize) {
        let p = self.emit_jump(Opcode::Jmp, &[], &[]);
        self.patch(p, target);
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

    fn load_str(&mut self, s: &str, at: Span) -> u8 {
        let id = self.string_id(s.as_bytes(), at);
        let r = self.alloc_str(at);
        self.emit(Opcode::Lds, &[r as i32, id as i32]);
        r
    }

    // ---- string globals ----
    //
    // The VM's globals are integers; a string global is the single key of a table with capacity 1.
    // Storing empties the table and stores the string as its key; loading iterates to the one
    // entry (an empty table reads as "", the value before the first store).

    fn load_str_global(&mut self, t: u8, at: Span) -> u8 {
        let s = self.load_str("", at);
        let m = self.mark();
        let cursor = self.alloc_int(at);
        let v = self.alloc_int(at);
        self.emit(Opcode::Movi, &[cursor as i32, 0]);
        let none = self.emit_jump(Opcode::Tnext, &[cursor as i32, t as i32, v as i32], &[Arg::Str(s)]);
        self.patch_here(vec![none]);
        self.reset(m);
        s
    }

    fn store_str_global(&mut self, t: u8, s: u8, at: Span) {
        let m = self.mark();
        self.emit(Opcode::Tclr, &[t as i32]);
        let one = self.alloc_int(at);
        self.emit(Opcode::Movi, &[one as i32, 1]);
        self.emit_args(Opcode::Tst, &[t as i32, one as i32], &[Arg::Str(s)]);
        self.reset(m);
    }

    // ---- scopes ----

    fn open_scope(&mut self) {
        self.f.scopes.push(self.f.locals.len());
    }

    fn close_scope(&mut self) {
        let n = self.f.scopes.pop().unwrap_or(0);
        self.f.locals.truncate(n);
        // registers of the dropped locals are free again
        let int = self.f.locals.iter().filter(|l| l.ty == Ty::Int).map(|l| l.reg + 1).max();
        let str = self.f.locals.iter().filter(|l| l.ty == Ty::Str).map(|l| l.reg + 1).max();
        self.f.int_top = int.unwrap_or(self.base_int()).max(self.base_int());
        self.f.str_top = str.unwrap_or(self.base_str()).max(self.base_str());
    }

    /// Registers below this are parameters.
    fn base_int(&self) -> u8 {
        0
    }

    fn base_str(&self) -> u8 {
        0
    }

    /// A new local named `id` of type `ty` in register `reg` (which the caller allocated).
    fn add_local(&mut self, id: &Ident, ty: Ty, reg: u8) {
        let start = self.f.scopes.last().copied().unwrap_or(0);
        if let Some(prev) = self.f.locals[start..].iter().find(|l| l.name == id.name) {
            let first = prev.span;
            self.err(
                Diagnostic::error(format!("`{}` is already declared in this block", id.name), id.span)
                    .label(first, "first declared here"),
            );
            return;
        }
        self.f.locals.push(Local { name: id.name.clone(), span: id.span, ty, reg, names: None });
    }
}

fn arith(op: BinOp) -> Option<Opcode> {
    Some(match op {
        BinOp::Add => Opcode::Add,
        BinOp::Sub => Opcode::Sub,
        BinOp::Mul => Opcode::Mul,
        BinOp::Div => Opcode::Div,
        BinOp::Mod => Opcode::Mod,
        BinOp::BitAnd => Opcode::And,
        BinOp::BitOr => Opcode::Or,
        BinOp::BitXor => Opcode::Xor,
        BinOp::Shl => Opcode::Shl,
        BinOp::Shr => Opcode::Shr,
        _ => return None,
    })
}
