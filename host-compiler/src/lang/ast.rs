//! The syntax tree. Every node carries its byte span; parts the parser could not read are
//! [`ExprKind::Error`] / [`StmtKind::Error`] / [`ProbeTarget::Invalid`] nodes, so later stages see the
//! whole script and stay quiet about the broken parts (their errors are already reported).

use super::diag::Span;

/// A whole script: top-level items in source order.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The items.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    /// `var NAME = expr` (an integer global) or `var NAME = {}` / `table(N)` (a table).
    Global(VarDecl),
    /// A probe block.
    Probe(Probe),
    /// `function NAME(params) { ... }`.
    Function(FuncDecl),
}

/// `var NAME [= init]`, at top level or in a block.
#[derive(Debug, Clone)]
pub struct VarDecl {
    /// The declared name.
    pub name: Ident,
    /// The initial value (`None`: `var x` alone, an integer 0).
    pub init: Option<Expr>,
    /// The whole declaration.
    pub span: Span,
}

/// A named function.
#[derive(Debug, Clone)]
pub struct FuncDecl {
    /// Its name.
    pub name: Ident,
    /// Parameter names.
    pub params: Vec<Ident>,
    /// The body.
    pub body: Block,
}

/// A name as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A probe block: what it attaches to, its optional predicate and its body.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What it attaches to.
    pub target: ProbeTarget,
    /// The head (`kprobe:vfs_read`, `trace sched:sched_switch`, `trace_end`).
    pub head: Span,
    /// `/expr/` after the head: the body runs only when it is true (nonzero).
    pub pred: Option<Expr>,
    /// The body.
    pub body: Block,
}

/// Where a probe attaches.
#[derive(Debug, Clone)]
pub enum ProbeTarget {
    /// `kprobe:SYM[+OFF]` (`ret` false) or `kretprobe:SYM` (`ret` true), also after `trace`.
    Kprobe {
        /// Function symbol (may contain dots: `vfs_read.isra.0`).
        sym: Ident,
        /// Byte offset into the function (`+OFF`), 0 for its entry.
        off: u64,
        /// A return probe.
        ret: bool,
    },
    /// `trace SUBSYS:EVENT`; either part may be a glob with `*` and `?`.
    Tracepoint {
        /// Subsystem (`sched`).
        subsys: Ident,
        /// Event (`sched_switch`, `sys_enter_*`).
        event: Ident,
    },
    /// `tick-N{s,ms,us}` (one CPU) or `profile-N{s,ms,us}` (every CPU).
    Timer {
        /// The period in nanoseconds.
        period_ns: u64,
        /// `profile-`: on every online CPU.
        per_cpu: bool,
        /// The head text as written, for messages and the sidecar (`tick-1s`).
        text: String,
    },
    /// `trace_begin`.
    Begin,
    /// `trace_end`.
    End,
    /// A head the parser reported as wrong.
    Invalid,
}

impl ProbeTarget {
    /// The canonical spelling, for the sidecar and messages.
    pub fn spec(&self) -> String {
        match self {
            ProbeTarget::Kprobe { sym, off: 0, ret: false } => format!("kprobe:{}", sym.name),
            ProbeTarget::Kprobe { sym, off, ret: false } => format!("kprobe:{}+{off:#x}", sym.name),
            ProbeTarget::Kprobe { sym, ret: true, .. } => format!("kretprobe:{}", sym.name),
            ProbeTarget::Tracepoint { subsys, event } => format!("trace {}:{}", subsys.name, event.name),
            ProbeTarget::Timer { text, .. } => text.clone(),
            ProbeTarget::Begin => "trace_begin".into(),
            ProbeTarget::End => "trace_end".into(),
            ProbeTarget::Invalid => "<invalid probe>".into(),
        }
    }
}

/// `{ statements }`.
#[derive(Debug, Clone)]
pub struct Block {
    /// The statements.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// What it is.
    pub kind: StmtKind,
    /// The whole statement.
    pub span: Span,
}

/// Statement kinds.
#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `var NAME = expr`: a block-local variable.
    Var(VarDecl),
    /// `target = value` (`op` is `None`) or `target op= value`.
    Assign {
        /// What is assigned (checked later to be a name or `t[key]`).
        target: Expr,
        /// The compound operator, if any.
        op: Option<BinOp>,
        /// The operator token (`=`, `+=`, ...).
        op_span: Span,
        /// The value.
        value: Expr,
    },
    /// `t[keys] <<< value`: record a value into an aggregation.
    Aggregate {
        /// The table entry.
        target: Expr,
        /// The `<<<` token.
        op_span: Span,
        /// The value recorded.
        value: Expr,
    },
    /// `if c { } elseif c { } else { }` (`elseif` may be spelled `else if`).
    If {
        /// Conditions and their blocks, in order.
        arms: Vec<(Expr, Block)>,
        /// The `else` block.
        otherwise: Option<Block>,
    },
    /// `while c { }`.
    While {
        /// The condition.
        cond: Expr,
        /// The body.
        body: Block,
    },
    /// `for (i = a, b[, step]) { }`: `i` counts from `a` to `b` inclusive.
    ForRange {
        /// The counter, a new local.
        var: Ident,
        /// First value.
        from: Expr,
        /// Last value (inclusive).
        to: Expr,
        /// Step (1 by default; a constant, not 0).
        step: Option<Expr>,
        /// The body.
        body: Block,
    },
    /// `for (k, v in pairs(t)) { }` (one name per key component, then the value).
    ForIn {
        /// The key names (one per key component) and the value name, in order.
        names: Vec<Ident>,
        /// The iterated expression (the table).
        table: Expr,
        /// The body.
        body: Block,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return [value]`.
    Return(Option<Expr>),
    /// `{ ... }`: a nested block with its own locals.
    Block(Block),
    /// An expression evaluated for its effect (a call).
    Expr(Expr),
    /// A statement the parser could not read (already reported).
    Error,
}

/// An expression.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Expression kinds.
#[derive(Debug, Clone)]
pub enum ExprKind {
    /// An integer literal.
    Int(i64),
    /// A string literal (escapes decoded).
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`: the value of a missing table entry.
    Nil,
    /// A name: local, global, table or builtin.
    Name(Ident),
    /// `base[key, ...]`.
    Index {
        /// The indexed expression (a table name).
        base: Box<Expr>,
        /// The key components (1..=4).
        keys: Vec<Expr>,
    },
    /// `base.name` (`arrow` false) or `base->name` (`arrow` true).
    Member {
        /// What is dereferenced (`arg`, `arg.file`, ...).
        base: Box<Expr>,
        /// The member.
        name: Ident,
        /// `->` rather than `.`.
        arrow: bool,
    },
    /// `callee(args)`.
    Call {
        /// The called name.
        callee: Ident,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `op operand`.
    Unary {
        /// The operator.
        op: UnOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `lhs op rhs`.
    Binary {
        /// The operator.
        op: BinOp,
        /// The operator token.
        op_span: Span,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `{}` or `{k = v, ["s"] = v, [2] = v, v}`: a table constructor (only as a top-level `var`
    /// initializer, or `{}` to empty a table).
    Table(Vec<TableEntry>),
    /// Something the parser could not read (already reported).
    Error,
}

/// One entry of a table constructor.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// `[k] =` or `name =` (as the string key `"name"`); `None` for a positional entry (keys 1, 2, ...).
    pub key: Option<Expr>,
    /// The value.
    pub value: Expr,
    /// The whole entry.
    pub span: Span,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
    /// `~x`
    BitNot,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&` (short-circuit)
    And,
    /// `||` (short-circuit)
    Or,
    /// `..` (string concatenation)
    Concat,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Concat => "..",
        }
    }

    /// A comparison (`== != < <= > >=`): its result is a boolean (0 or 1).
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }

    /// Evaluate on constants exactly as the VM does at run time (wrapping; `x / 0` is 0, `x % 0` is x;
    /// shifts use the low 6 bits of the count). `None` for `..`.
    pub fn fold(self, a: i64, b: i64) -> Option<i64> {
        Some(match self {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div if b == 0 => 0,
            BinOp::Div => a.wrapping_div(b),
            BinOp::Mod if b == 0 => a,
            BinOp::Mod => a.wrapping_rem(b),
            BinOp::BitAnd => a & b,
            BinOp::BitOr => a | b,
            BinOp::BitXor => a ^ b,
            BinOp::Shl => a.wrapping_shl((b & 63) as u32),
            BinOp::Shr => a.wrapping_shr((b & 63) as u32),
            BinOp::Eq => (a == b) as i64,
            BinOp::Ne => (a != b) as i64,
            BinOp::Lt => (a < b) as i64,
            BinOp::Le => (a <= b) as i64,
            BinOp::Gt => (a > b) as i64,
            BinOp::Ge => (a >= b) as i64,
            BinOp::And => (a != 0 && b != 0) as i64,
            BinOp::Or => (a != 0 || b != 0) as i64,
            BinOp::Concat => return None,
        })
    }
}

impl Expr {
    /// The value of a constant integer expression (literals, booleans and operators on them).
    pub fn const_int(&self) -> Option<i64> {
        match &self.kind {
            ExprKind::Int(v) => Some(*v),
            ExprKind::Bool(b) => Some(*b as i64),
            ExprKind::Unary { op, operand } => {
                let v = operand.const_int()?;
                Some(match op {
                    UnOp::Neg => v.wrapping_neg(),
                    UnOp::Not => (v == 0) as i64,
                    UnOp::BitNot => !v,
                })
            }
            ExprKind::Binary { op, lhs, rhs, .. } => op.fold(lhs.const_int()?, rhs.const_int()?),
            _ => None,
        }
    }
}
