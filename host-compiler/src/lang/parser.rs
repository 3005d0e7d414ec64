//! The parser: tokens to a [`Script`], never failing. Errors are collected with byte ranges and the
//! parser resynchronises (to the next statement inside a block, to the next item at top level), so one
//! run reports every syntax error it can.
//!
//! Grammar (this slice; `#` comments, `;` optional, a statement ends at `;`, a newline or `}`):
//!
//! ```text
//! script  := item*
//! item    := 'var' NAME '=' expr | head block
//! head    := ('kprobe'|'kretprobe') ':' SYMBOL | 'trace' SUBSYS ':' EVENT
//!          | 'trace' ('kprobe'|'kretprobe') ':' SYMBOL | 'trace_begin' | 'trace_end'
//! block   := '{' stmt* '}'
//! stmt    := 'var' NAME '=' expr | expr (('=' | '+=' | '-=' | '*=' | '/=' | '%=') expr)?
//! expr    := binary operators by precedence (`* / %` above `+ -`), unary '-', postfix call / index
//! primary := INT | STRING | NAME | '(' expr ')' | '{' '}'
//! ```
//!
//! Architecture invariant: nesting is bounded ([`MAX_DEPTH`]), so no later recursive pass (checking,
//! code generation, even dropping the tree) can overflow the stack on hostile input.

use super::ast::*;
use super::diag::{Diagnostic, Span, join, span};
use super::lexer::{Tok, Token, lex};

/// Deepest expression nesting accepted (parentheses, operator chains, calls, indexing).
pub const MAX_DEPTH: u32 = 128;

/// Words with a meaning now or in the full language; they cannot name variables.
pub const KEYWORDS: &[&str] = &[
    "var",
    "trace",
    "trace_begin",
    "trace_end",
    "if",
    "else",
    "while",
    "for",
    "in",
    "function",
    "return",
    "break",
    "continue",
    "nil",
    "true",
    "false",
];

/// Statement keywords of the full language that this version does not implement yet.
const NOT_YET: &[&str] = &["if", "else", "while", "for", "function", "return", "break", "continue"];

/// Parse `src`, appending lexer and parser errors to `diags`.
pub fn parse(src: &str, diags: &mut Vec<Diagnostic>) -> Script {
    let toks = lex(src, diags);
    let mut p = Parser { src, toks, pos: 0, diags, depth: 0, stmt_start: 0 };
    p.script()
}

struct Parser<'s, 'd> {
    src: &'s str,
    toks: Vec<Token>,
    pos: usize,
    diags: &'d mut Vec<Diagnostic>,
    depth: u32,
    /// Token index where the current statement (or item) started: recovery stops at the next line
    /// only after leaving the statement's first line.
    stmt_start: usize,
}

/// An expression with the depth of its tree.
type Parsed = (Expr, u32);

fn err_expr(at: Span) -> Expr {
    Expr { kind: ExprKind::Error, span: at }
}

impl Parser<'_, '_> {
    fn tok(&self) -> &Token {
        // the token list always ends with Eof and `pos` never passes it
        self.toks.get(self.pos).or(self.toks.last()).expect("token list ends with Eof")
    }

    fn peek(&self, n: usize) -> &Token {
        self.toks.get(self.pos + n).or(self.toks.last()).expect("token list ends with Eof")
    }

    fn at(&self, t: &Tok) -> bool {
        &self.tok().tok == t
    }

    fn text(&self, t: &Token) -> &str {
        self.src.get(t.span.start..t.span.end).unwrap_or("")
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    /// Span of the previous token's end, for "expected X after Y" errors.
    fn prev_end(&self) -> Span {
        let end = self.pos.checked_sub(1).and_then(|p| self.toks.get(p)).map_or(0, |t| t.span.end);
        span(end, end)
    }

    fn describe(&self, t: &Token) -> String {
        match &t.tok {
            Tok::Eof => "end of file".into(),
            Tok::Ident => format!("`{}`", self.text(t)),
            Tok::Int(_) => "integer".into(),
            Tok::Str(_) => "string".into(),
            _ => format!("`{}`", self.text(t)),
        }
    }

    fn error_here(&mut self, expected: &str) {
        let t = self.tok().clone();
        if let Tok::Other(op) = t.tok {
            let d = Diagnostic::error(format!("operator `{op}` is not supported yet"), t.span)
                .note("this version has `+ - * / %` and unary `-`");
            self.diags.push(d);
            return;
        }
        let found = self.describe(&t);
        let at = if t.tok == Tok::Eof || t.nl_before { self.prev_end() } else { t.span };
        let d = Diagnostic::error(format!("expected {expected}, found {found}"), at);
        self.diags.push(d);
    }

    fn expect(&mut self, t: Tok, what: &str) -> bool {
        if self.at(&t) {
            self.bump();
            true
        } else {
            self.error_here(what);
            false
        }
    }

    // ---- recovery ----

    /// Skip a balanced `{ ... }` starting at the current `{`.
    fn skip_braces(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.bump().tok {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                Tok::Eof => return,
                _ => {}
            }
        }
    }

    /// Skip to the start of the next statement: after a `;`, before a `}`, or at a new line.
    fn recover_stmt(&mut self) {
        let start = self.stmt_start;
        loop {
            let t = self.tok().clone();
            match t.tok {
                Tok::Eof | Tok::RBrace => return,
                _ if t.nl_before && self.pos > start => return,
                Tok::Semi => {
                    self.bump();
                    return;
                }
                Tok::LBrace => self.skip_braces(),
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn at_item_start(&self) -> bool {
        let t = self.tok();
        t.tok == Tok::Ident
            && (matches!(self.text(t), "var" | "trace" | "trace_begin" | "trace_end" | "function")
                || self.peek(1).tok == Tok::Colon)
    }

    /// Skip to the next line that starts a top-level item, skipping whole `{ ... }` blocks.
    fn recover_item(&mut self) {
        let start = self.pos;
        loop {
            let t = self.tok().clone();
            match t.tok {
                Tok::Eof => return,
                _ if t.nl_before && self.pos > start && self.at_item_start() => return,
                Tok::LBrace => self.skip_braces(),
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// After a statement: `;`, a new line, `}` or the end must follow.
    fn end_stmt(&mut self) {
        if self.at(&Tok::Semi) {
            self.bump();
        } else if !(self.tok().nl_before || self.at(&Tok::RBrace)) {
            self.error_here("`;` or a new line after the statement");
            self.recover_stmt();
        }
    }

    // ---- items ----

    fn script(&mut self) -> Script {
        let mut items = Vec::new();
        while !self.at(&Tok::Eof) {
            let before = self.pos;
            if let Some(item) = self.item() {
                items.push(item);
            }
            if self.pos == before {
                self.bump();
            }
        }
        Script { items }
    }

    fn item(&mut self) -> Option<Item> {
        self.stmt_start = self.pos;
        let t = self.tok().clone();
        if t.tok == Tok::Semi {
            self.bump();
            return None;
        }
        if t.tok == Tok::RBrace {
            self.bump();
            self.diags.push(Diagnostic::error("unmatched `}`", t.span));
            return None;
        }
        let word = if t.tok == Tok::Ident { self.text(&t).to_owned() } else { String::new() };
        if word == "var" {
            let decl = self.var_decl();
            self.end_item();
            return decl.map(Item::Global);
        }
        if word == "function" {
            self.diags.push(
                Diagnostic::error("functions are not supported yet", t.span)
                    .note("this version has probe blocks and top-level `var` declarations"),
            );
            self.recover_item();
            return None;
        }
        let is_head = matches!(word.as_str(), "trace" | "trace_begin" | "trace_end")
            || (t.tok == Tok::Ident && self.peek(1).tok == Tok::Colon);
        if !is_head {
            self.diags.push(
                Diagnostic::error(format!("expected a probe or `var` at top level, found {}", self.describe(&t)), t.span)
                    .note("top level holds `var NAME = ...` and probe blocks: `kprobe:SYM { ... }`, `kretprobe:SYM { ... }`, `trace SUBSYS:EVENT { ... }`, `trace_begin { ... }`, `trace_end { ... }`")
                    .note("statements go inside a probe block (`trace_begin` runs once at the start)"),
            );
            self.recover_item();
            return None;
        }
        let target = self.probe_head();
        let head = join(t.span, self.prev_end());
        if !self.at(&Tok::LBrace) {
            // an invalid head has been reported already
            if !matches!(target, ProbeTarget::Invalid) {
                self.error_here("`{` to start the probe body");
            }
            // an invalid head may be followed by more junk before its body: find the body on this line
            while !self.at(&Tok::Eof) && !self.at(&Tok::LBrace) && !self.tok().nl_before {
                self.bump();
            }
            if !self.at(&Tok::LBrace) {
                self.recover_item();
                return None;
            }
        }
        let body = self.block();
        Some(Item::Probe(Probe { target, head, body }))
    }

    fn end_item(&mut self) {
        if self.at(&Tok::Semi) {
            self.bump();
        } else if !self.tok().nl_before {
            self.error_here("`;` or a new line after the declaration");
            self.recover_item();
        }
    }

    /// A kernel symbol: a name, with any directly adjacent `.name` / `.123` parts (`vfs_read.isra.0`).
    fn symbol(&mut self, what: &str) -> Option<Ident> {
        if !self.at(&Tok::Ident) {
            self.error_here(what);
            return None;
        }
        let first = self.bump();
        let mut sp = first.span;
        while matches!(self.tok().tok, Tok::Ident | Tok::Int(_) | Tok::Dot) && self.tok().span.start == sp.end
        {
            sp.end = self.bump().span.end;
        }
        Some(Ident { name: self.src.get(sp.start..sp.end).unwrap_or("").to_owned(), span: sp })
    }

    fn probe_head(&mut self) -> ProbeTarget {
        let first = self.bump();
        let word = self.text(&first).to_owned();
        match word.as_str() {
            "trace_begin" => return ProbeTarget::Begin,
            "trace_end" => return ProbeTarget::End,
            "trace" => {
                let Some(sub) = self.symbol("a tracepoint `SUBSYS:EVENT` after `trace`") else {
                    return ProbeTarget::Invalid;
                };
                if !self.expect(Tok::Colon, "`:` between the subsystem and the event") {
                    return ProbeTarget::Invalid;
                }
                if sub.name == "kprobe" || sub.name == "kretprobe" {
                    return self.kprobe_sym(sub.name == "kretprobe");
                }
                let Some(event) = self.symbol("an event name after `:`") else { return ProbeTarget::Invalid };
                return ProbeTarget::Tracepoint { subsys: sub, event };
            }
            _ => {}
        }
        self.bump(); // the ':'
        match word.as_str() {
            "kprobe" | "kretprobe" => self.kprobe_sym(word == "kretprobe"),
            _ => {
                let mut d = Diagnostic::error(format!("unknown probe kind `{word}`"), first.span)
                    .note("probes are `kprobe:SYM`, `kretprobe:SYM`, `trace SUBSYS:EVENT`, `trace_begin` and `trace_end`");
                if matches!(word.as_str(), "tracepoint" | "tp" | "t") {
                    d = d.note("a tracepoint is written `trace SUBSYS:EVENT`");
                } else if let Some(s) = super::diag::did_you_mean(&word, ["kprobe", "kretprobe"]) {
                    d = d.note(s);
                }
                self.diags.push(d);
                // skip the target (`sched:sched_switch`, `do_sys_open`) up to the body
                while !self.at(&Tok::Eof) && !self.at(&Tok::LBrace) && !self.tok().nl_before {
                    self.bump();
                }
                ProbeTarget::Invalid
            }
        }
    }

    fn kprobe_sym(&mut self, ret: bool) -> ProbeTarget {
        match self.symbol("a kernel function name") {
            Some(sym) => ProbeTarget::Kprobe { sym, ret },
            None => ProbeTarget::Invalid,
        }
    }

    fn block(&mut self) -> Block {
        let open = self.bump(); // '{'
        let mut stmts = Vec::new();
        loop {
            if self.at(&Tok::RBrace) {
                let close = self.bump();
                return Block { stmts, span: join(open.span, close.span) };
            }
            if self.at(&Tok::Eof) || (self.tok().nl_before && self.at_top_level_head()) {
                let d = Diagnostic::error("this `{` is never closed", open.span);
                let d =
                    if self.at(&Tok::Eof) { d } else { d.label(self.tok().span, "a new probe starts here") };
                self.diags.push(d);
                return Block { stmts, span: join(open.span, self.prev_end()) };
            }
            let before = self.pos;
            if let Some(s) = self.stmt() {
                stmts.push(s);
            }
            if self.pos == before {
                self.bump();
            }
        }
    }

    /// A probe head or top-level declaration at the start of a line: a missing `}` is more likely than
    /// such a line inside a block. (`var` is also a statement, so it does not count.)
    fn at_top_level_head(&self) -> bool {
        let t = self.tok();
        if t.tok != Tok::Ident {
            return false;
        }
        match self.text(t) {
            "trace" | "trace_begin" | "trace_end" | "function" => true,
            "kprobe" | "kretprobe" => self.peek(1).tok == Tok::Colon,
            _ => false,
        }
    }

    // ---- statements ----

    fn stmt(&mut self) -> Option<Stmt> {
        self.stmt_start = self.pos;
        let t = self.tok().clone();
        if t.tok == Tok::Semi {
            self.bump();
            return None;
        }
        let word = if t.tok == Tok::Ident { self.text(&t) } else { "" };
        if word == "var" {
            let d = self.var_decl();
            self.end_stmt();
            return d.map(|d| Stmt { span: d.span, kind: StmtKind::Var(d) });
        }
        if NOT_YET.contains(&word) {
            self.diags.push(
                Diagnostic::error(format!("`{word}` is not supported yet"), t.span).note(
                    "this version has assignments, `var` declarations and calls to `print` and `printf`",
                ),
            );
            self.recover_stmt();
            return None;
        }
        if t.tok == Tok::LBrace {
            self.diags.push(Diagnostic::error("nested blocks are not supported yet", t.span));
            self.skip_braces();
            return None;
        }
        let (target, _) = self.expr();
        if matches!(target.kind, ExprKind::Error) {
            self.recover_stmt();
            return Some(Stmt { kind: StmtKind::Error, span: target.span });
        }
        let op = match self.tok().tok {
            Tok::Assign => Some(None),
            Tok::OpAssign(c) => Some(Some(match c {
                '+' => BinOp::Add,
                '-' => BinOp::Sub,
                '*' => BinOp::Mul,
                '/' => BinOp::Div,
                _ => BinOp::Mod,
            })),
            _ => None,
        };
        let Some(op) = op else {
            let span = target.span;
            self.end_stmt();
            return Some(Stmt { kind: StmtKind::Expr(target), span });
        };
        let op_tok = self.bump();
        if self.tok().nl_before {
            // `x =` with nothing after it on its line: the next line is a statement of its own
            let d =
                Diagnostic::error(format!("expected a value after `{}`", self.text(&op_tok)), op_tok.span);
            self.diags.push(d);
            return Some(Stmt { kind: StmtKind::Error, span: join(target.span, op_tok.span) });
        }
        let (value, _) = self.expr();
        let span = join(target.span, value.span);
        if matches!(value.kind, ExprKind::Error) {
            self.recover_stmt();
        } else {
            self.end_stmt();
        }
        Some(Stmt { kind: StmtKind::Assign { target, op, op_span: op_tok.span, value }, span })
    }

    /// `var NAME = expr` (the `var` is current).
    fn var_decl(&mut self) -> Option<VarDecl> {
        let kw = self.bump();
        if !self.at(&Tok::Ident) {
            self.error_here("a variable name after `var`");
            self.recover_stmt();
            return None;
        }
        let nt = self.bump();
        let name = Ident { name: self.text(&nt).to_owned(), span: nt.span };
        if KEYWORDS.contains(&name.name.as_str()) {
            self.diags.push(Diagnostic::error(format!("`{}` is a reserved word", name.name), name.span));
        }
        if !self.at(&Tok::Assign) {
            self.error_here("`=` and an initial value");
            self.recover_stmt();
            let init = err_expr(self.prev_end());
            return Some(VarDecl { span: join(kw.span, name.span), name, init });
        }
        let eq = self.bump();
        if self.tok().nl_before {
            self.diags.push(Diagnostic::error("expected a value after `=`", eq.span));
            return Some(VarDecl { span: join(kw.span, eq.span), name, init: err_expr(eq.span) });
        }
        let (init, _) = self.expr();
        if matches!(init.kind, ExprKind::Error) {
            self.recover_stmt();
        }
        Some(VarDecl { span: join(kw.span, init.span), name, init })
    }

    // ---- expressions ----

    fn too_deep(&mut self, at: Span) -> Parsed {
        self.diags.push(
            Diagnostic::error("expression nested too deeply", at)
                .note(format!("at most {MAX_DEPTH} levels of nesting are allowed")),
        );
        // skip the rest of the expression so the error is reported once
        let mut parens = 0i64;
        loop {
            match self.tok().tok {
                Tok::Eof => break,
                Tok::LParen | Tok::LBracket => parens += 1,
                Tok::RParen | Tok::RBracket => {
                    parens -= 1;
                    if parens < 0 {
                        break;
                    }
                }
                Tok::Semi | Tok::RBrace | Tok::LBrace => break,
                _ if self.tok().nl_before => break,
                _ => {}
            }
            self.bump();
        }
        (err_expr(at), 1)
    }

    fn expr(&mut self) -> Parsed {
        self.binary(0)
    }

    /// Precedence climbing over the binary operator table.
    fn binary(&mut self, min_prec: u8) -> Parsed {
        let (mut lhs, mut depth) = self.unary();
        while let Some((op, prec)) = binop(&self.tok().tok) {
            if prec < min_prec {
                break;
            }
            let op_tok = self.bump();
            if depth + self.depth >= MAX_DEPTH {
                return self.too_deep(op_tok.span);
            }
            self.depth += 1;
            let (rhs, rdepth) = self.binary(prec + 1);
            self.depth -= 1;
            let span = join(lhs.span, rhs.span);
            depth = depth.max(rdepth) + 1;
            let kind = ExprKind::Binary { op, op_span: op_tok.span, lhs: Box::new(lhs), rhs: Box::new(rhs) };
            lhs = Expr { kind, span };
        }
        (lhs, depth)
    }

    fn unary(&mut self) -> Parsed {
        if self.at(&Tok::Minus) {
            let m = self.bump();
            if self.depth >= MAX_DEPTH {
                return self.too_deep(m.span);
            }
            self.depth += 1;
            let (operand, d) = self.unary();
            self.depth -= 1;
            let span = join(m.span, operand.span);
            return (
                Expr { kind: ExprKind::Unary { op: UnOp::Neg, operand: Box::new(operand) }, span },
                d + 1,
            );
        }
        if self.at(&Tok::Plus) {
            let p = self.tok().span;
            self.diags.push(Diagnostic::error("unary `+` is not supported", p));
            self.bump();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Parsed {
        let (mut e, mut depth) = self.primary();
        loop {
            match self.tok().tok {
                Tok::LBracket => {
                    let open = self.bump();
                    if depth + self.depth >= MAX_DEPTH {
                        return self.too_deep(open.span);
                    }
                    self.depth += 1;
                    let (key, kd) = self.expr();
                    self.depth -= 1;
                    let close = self.tok().span;
                    if !self.expect(Tok::RBracket, "`]`") {
                        let span = join(e.span, key.span);
                        return (err_expr(span), 1);
                    }
                    let span = join(e.span, close);
                    depth = depth.max(kd) + 1;
                    e = Expr { kind: ExprKind::Index { base: Box::new(e), key: Box::new(key) }, span };
                }
                Tok::LParen if !self.tok().nl_before => {
                    let open = self.bump();
                    let ExprKind::Name(callee) = e.kind.clone() else {
                        self.diags.push(Diagnostic::error("only a name can be called", e.span));
                        self.skip_parens();
                        return (err_expr(join(e.span, self.prev_end())), 1);
                    };
                    if self.depth >= MAX_DEPTH {
                        return self.too_deep(open.span);
                    }
                    self.depth += 1;
                    let (args, ad) = self.call_args();
                    self.depth -= 1;
                    let Some(args) = args else {
                        return (err_expr(join(e.span, self.prev_end())), 1);
                    };
                    let span = join(e.span, self.prev_end());
                    depth = depth.max(ad) + 1;
                    e = Expr { kind: ExprKind::Call { callee, args }, span };
                }
                _ => return (e, depth),
            }
        }
    }

    /// Skip to after the `)` matching an already consumed `(`.
    fn skip_parens(&mut self) {
        let mut depth = 1usize;
        loop {
            match self.tok().tok {
                Tok::Eof | Tok::RBrace | Tok::LBrace => return,
                Tok::LParen => depth += 1,
                Tok::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    /// Arguments after `(` up to and including `)`; `None` after a reported error.
    fn call_args(&mut self) -> (Option<Vec<Expr>>, u32) {
        let mut args = Vec::new();
        let mut depth = 0;
        if self.at(&Tok::RParen) {
            self.bump();
            return (Some(args), 0);
        }
        loop {
            let (a, d) = self.expr();
            depth = depth.max(d);
            let bad = matches!(a.kind, ExprKind::Error);
            args.push(a);
            if bad {
                self.skip_parens();
                return (None, depth);
            }
            match self.tok().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    return (Some(args), depth);
                }
                _ => {
                    self.error_here("`,` or `)` in the argument list");
                    self.skip_parens();
                    return (None, depth);
                }
            }
        }
    }

    fn primary(&mut self) -> Parsed {
        let t = self.tok().clone();
        match &t.tok {
            Tok::Int(v) => {
                self.bump();
                (Expr { kind: ExprKind::Int(*v), span: t.span }, 1)
            }
            Tok::Str(s) => {
                self.bump();
                (Expr { kind: ExprKind::Str(s.clone()), span: t.span }, 1)
            }
            Tok::Ident => {
                let name = self.text(&t).to_owned();
                if KEYWORDS.contains(&name.as_str()) {
                    self.diags.push(Diagnostic::error(
                        format!("expected an expression, found keyword `{name}`"),
                        t.span,
                    ));
                    return (err_expr(t.span), 1);
                }
                self.bump();
                (Expr { kind: ExprKind::Name(Ident { name, span: t.span }), span: t.span }, 1)
            }
            Tok::LParen => {
                let open = self.bump();
                if self.depth >= MAX_DEPTH {
                    return self.too_deep(open.span);
                }
                self.depth += 1;
                let (e, d) = self.expr();
                self.depth -= 1;
                if matches!(e.kind, ExprKind::Error) {
                    return (e, d);
                }
                if !self.expect(Tok::RParen, "`)`") {
                    return (err_expr(join(open.span, e.span)), 1);
                }
                (e, d)
            }
            Tok::LBrace => {
                self.bump();
                if self.at(&Tok::RBrace) {
                    let close = self.bump();
                    return (Expr { kind: ExprKind::Table, span: join(t.span, close.span) }, 1);
                }
                self.diags.push(
                    Diagnostic::error("table constructors with entries are not supported yet", t.span)
                        .note("declare an empty table with `var t = {}` and fill it in a probe"),
                );
                self.bump_until_brace_close();
                (err_expr(join(t.span, self.prev_end())), 1)
            }
            _ => {
                self.error_here("an expression");
                (err_expr(if t.nl_before || t.tok == Tok::Eof { self.prev_end() } else { t.span }), 1)
            }
        }
    }

    fn bump_until_brace_close(&mut self) {
        loop {
            match self.tok().tok {
                Tok::Eof => return,
                Tok::RBrace => {
                    self.bump();
                    return;
                }
                _ if self.tok().nl_before => return,
                _ => {
                    self.bump();
                }
            }
        }
    }
}

/// The binary operator table: operator and precedence (higher binds tighter).
fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Plus => (BinOp::Add, 1),
        Tok::Minus => (BinOp::Sub, 1),
        Tok::Star => (BinOp::Mul, 2),
        Tok::Slash => (BinOp::Div, 2),
        Tok::Percent => (BinOp::Mod, 2),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Script {
        let mut d = Vec::new();
        let s = parse(src, &mut d);
        assert!(d.is_empty(), "{d:#?}");
        s
    }

    fn errors(src: &str) -> Vec<String> {
        let mut d = Vec::new();
        parse(src, &mut d);
        d.into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn skeleton() {
        let s = parse_ok(
            "var reads = {}\nkprobe:vfs_read {\n reads[execname] += 1\n}\ntrace_end { print(reads) }\n",
        );
        assert_eq!(s.items.len(), 3);
        let Item::Probe(p) = &s.items[1] else { panic!() };
        assert_eq!(p.target.spec(), "kprobe:vfs_read");
        assert_eq!(p.body.stmts.len(), 1);
    }

    #[test]
    fn heads() {
        let s = parse_ok(
            "trace sched:sched_switch {}\ntrace kretprobe:vfs_read.isra.0 {}\nkretprobe:f{}\ntrace_begin{}",
        );
        let specs: Vec<_> = s
            .items
            .iter()
            .map(|i| match i {
                Item::Probe(p) => p.target.spec(),
                Item::Global(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            specs,
            ["trace sched:sched_switch", "kretprobe:vfs_read.isra.0", "kretprobe:f", "trace_begin"]
        );
    }

    #[test]
    fn precedence() {
        let s = parse_ok("var x = 1 + 2 * 3 - -4 % 3; var y = (1 + 2) * 3");
        let Item::Global(x) = &s.items[0] else { panic!() };
        assert_eq!(x.init.const_int(), Some(1 + 6 + 4 % 3));
        let Item::Global(y) = &s.items[1] else { panic!() };
        assert_eq!(y.init.const_int(), Some(9));
    }

    #[test]
    fn recovers_and_reports_several_errors() {
        let e = errors("kprobe:f {\n x =\n y = (1 +)\n print(1 2)\n}\nuprobe:g { }\n} var = 3\n");
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(e.iter().any(|m| m == "unknown probe kind `uprobe`"));
        assert!(e.iter().any(|m| m == "unmatched `}`"));
    }

    #[test]
    fn statements_need_a_separator() {
        assert_eq!(
            errors("trace_end { a = 1 b = 2 }"),
            ["expected `;` or a new line after the statement, found `b`"]
        );
        parse_ok("trace_end { a = 1; b = 2 }");
    }

    #[test]
    fn unclosed_block_before_next_probe() {
        let e = errors("kprobe:f {\n x = 1\nkprobe:g { y = 2 }\n");
        assert_eq!(e, ["this `{` is never closed"]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("trace_end {{ x = {}1{} }}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(errors(&deep).contains(&"expression nested too deeply".to_string()));
        let long = format!("trace_end {{ x = 1{} }}", " + 1".repeat(100_000));
        assert!(errors(&long).contains(&"expression nested too deeply".to_string()));
        let neg = format!("trace_end {{ x = {}1 }}", "-".repeat(100_000));
        assert!(errors(&neg).contains(&"expression nested too deeply".to_string()));
        let idx = format!("trace_end {{ x = t{} }}", "[1]".repeat(100_000));
        assert!(errors(&idx).contains(&"expression nested too deeply".to_string()));
    }
}
