//! The syntax tree. Every node carries its byte span; parts the parser could not read are
//! [`ExprKind::Error`] / [`ProbeTarget::Invalid`] nodes, so later stages see the whole script and stay
//! quiet about the broken parts (their errors are already reported).
//!
//! Kept general where the language will grow: calls take a list of expressions, indexing takes any
//! base expression, statements live in [`Block`]s (for `if`/`while` bodies later), and binary
//! operators come from one precedence table in the parser.

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
    /// `var NAME = expr` (an integer global) or `var NAME = {}` (a table).
    Global(VarDecl),
    /// A probe block.
    Probe(Probe),
}

/// `var NAME = init`, at top level or in a block.
#[derive(Debug, Clone)]
pub struct VarDecl {
    /// The declared name.
    pub name: Ident,
    /// The initial value.
    pub init: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// A name as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A probe block: what it attaches to and its body.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What it attaches to.
    pub target: ProbeTarget,
    /// The head (`kprobe:vfs_read`, `trace sched:sched_switch`, `trace_end`).
    pub head: Span,
    /// The body.
    pub body: Block,
}

/// Where a probe attaches.
#[derive(Debug, Clone)]
pub enum ProbeTarget {
    /// `kprobe:SYM` (`ret` false) or `kretprobe:SYM` (`ret` true), also spelled `trace kprobe:SYM`.
    Kprobe {
        /// Function symbol (may contain dots: `vfs_read.isra.0`).
        sym: Ident,
        /// A return probe.
        ret: bool,
    },
    /// `trace SUBSYS:EVENT`.
    Tracepoint {
        /// Subsystem (`sched`).
        subsys: Ident,
        /// Event (`sched_switch`).
        event: Ident,
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
            ProbeTarget::Kprobe { sym, ret: false } => format!("kprobe:{}", sym.name),
            ProbeTarget::Kprobe { sym, ret: true } => format!("kretprobe:{}", sym.name),
            ProbeTarget::Tracepoint { subsys, event } => format!("trace {}:{}", subsys.name, event.name),
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
    /// A name: local, global, table or builtin.
    Name(Ident),
    /// `base[key]`.
    Index {
        /// The indexed expression (a table name).
        base: Box<Expr>,
        /// The key.
        key: Box<Expr>,
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
    /// `{}`: a table constructor (only as a top-level `var` initializer).
    Table,
    /// Something the parser could not read (already reported).
    Error,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
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
        }
    }

    /// Evaluate on constants exactly as the VM does at run time (wrapping; `x / 0` is 0, `x % 0` is x).
    pub fn fold(self, a: i64, b: i64) -> i64 {
        match self {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div if b == 0 => 0,
            BinOp::Div => a.wrapping_div(b),
            BinOp::Mod if b == 0 => a,
            BinOp::Mod => a.wrapping_rem(b),
        }
    }
}

impl Expr {
    /// The value of a constant expression (literals and operators on them), if it is one.
    pub fn const_int(&self) -> Option<i64> {
        match &self.kind {
            ExprKind::Int(v) => Some(*v),
            ExprKind::Unary { op: UnOp::Neg, operand } => operand.const_int().map(i64::wrapping_neg),
            ExprKind::Binary { op, lhs, rhs, .. } => Some(op.fold(lhs.const_int()?, rhs.const_int()?)),
            _ => None,
        }
    }
}
