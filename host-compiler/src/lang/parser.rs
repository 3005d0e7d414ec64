//! The parser: tokens to a [`Script`], never failing. Errors are collected with byte ranges and the
//! parser resynchronises (to the next statement inside a block, to the next item at top level), so one
//! run reports every syntax error it can.
//!
//! Grammar (`#` comments, `;` optional: a statement ends at `;`, a newline or `}`):
//!
//! ```text
//! script  := item*
//! item    := 'var' NAME ('=' expr)? | 'function' NAME '(' (NAME (',' NAME)*)? ')' block
//!          | head ('/' expr '/')? block
//! head    := ('kprobe'|'kretprobe') ':' SYMBOL ('+' INT)? | 'trace' SUBSYS ':' EVENT   (globs: * ?)
//!          | 'trace' ('kprobe'|'kretprobe') ':' SYMBOL | 'trace_begin' | 'trace_end'
//!          | ('tick'|'profile') '-' N ('s'|'ms'|'us')          (written without spaces)
//! block   := '{' stmt* '}'
//! stmt    := 'var' NAME ('=' expr)? | 'if' expr block (('elseif' | 'else' 'if') expr block)* ('else' block)?
//!          | 'while' expr block | 'for' '(' NAME '=' expr ',' expr (',' expr)? ')' block
//!          | 'for' '(' NAME (',' NAME)* 'in' 'pairs' '(' expr ')' ')' block
//!          | 'break' | 'continue' | 'return' expr? | block
//!          | expr (('=' | '+=' | '-=' | '*=' | '/=' | '%=' | '<<<') expr)?
//! expr    := binary operators by precedence, lowest first:
//!            || && | ^ & (== !=) (< <= > >=) .. (<< >>) (+ -) (* / %)
//! unary   := ('-' | '!' | '~') unary | postfix
//! postfix := primary ('[' expr (',' expr)* ']' | '(' args ')' | '.' NAME | '->' NAME)*
//! primary := INT | STRING | 'true' | 'false' | 'nil' | NAME | '(' expr ')' | '{' '}'
//! ```
//!
//! Architecture invariant: nesting is bounded ([`MAX_DEPTH`], expressions and blocks together), so no
//! later recursive pass (checking, code generation, even dropping the tree) can overflow the stack
//! on hostile input.

use super::ast::*;
use super::diag::{Diagnostic, Span, did_you_mean, join, span};
use super::lexer::{Tok, Token, lex};

/// Deepest nesting accepted (parentheses, operator chains, calls, indexing, blocks).
pub const MAX_DEPTH: u32 = 128;

/// Words with a meaning in the language; they cannot name variables.
pub const KEYWORDS: &[&str] = &[
    "var",
    "trace",
    "trace_begin",
    "trace_end",
    "if",
    "else",
    "elseif",
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

/// Parse `src`, appending lexer and parser errors to `diags`.
pub fn parse(src: &str, diags: &mut Vec<Diagnostic>) -> Script {
    let toks = lex(src, diags);
    let mut p = Parser { src, toks, pos: 0, diags, depth: 0, stmt_start: 0, in_pred: false };
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
    /// Parsing a `/predicate/` outside parentheses: `/` ends it instead of dividing.
    in_pred: bool,
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

    fn at_word(&self, w: &str) -> bool {
        self.tok().tok == Tok::Ident && self.text(self.tok()) == w
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
        if let Tok::Other(op @ ("?" | "$" | "@")) = t.tok {
            let d = Diagnostic::error(format!("`{op}` is not an operator of the language"), t.span);
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
                || self.peek(1).tok == Tok::Colon
                || self.timer_word())
    }

    /// `tick-` / `profile-` directly followed by a number: a timer head.
    fn timer_word(&self) -> bool {
        let t = self.tok();
        t.tok == Tok::Ident
            && matches!(self.text(t), "tick" | "profile")
            && self.peek(1).tok == Tok::Minus
            && self.peek(1).span.start == t.span.end
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
            return self.function().map(Item::Function);
        }
        let is_head = matches!(word.as_str(), "trace" | "trace_begin" | "trace_end")
            || (t.tok == Tok::Ident && self.peek(1).tok == Tok::Colon)
            || self.timer_word();
        if !is_head {
            self.diags.push(
                Diagnostic::error(format!("expected a probe, `function` or `var` at top level, found {}", self.describe(&t)), t.span)
                    .note("top level holds `var NAME = ...`, `function NAME(...) { ... }` and probe blocks: `kprobe:SYM { ... }`, `kretprobe:SYM { ... }`, `trace SUBSYS:EVENT { ... }`, `tick-1s { ... }`, `trace_begin { ... }`, `trace_end { ... }`")
                    .note("statements go inside a probe block (`trace_begin` runs once at the start)"),
            );
            self.recover_item();
            return None;
        }
        let target = self.probe_head();
        let head = join(t.span, self.prev_end());
        let mut pred = None;
        if self.at(&Tok::Slash) && !matches!(target, ProbeTarget::Invalid) {
            pred = self.predicate();
        }
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
        Some(Item::Probe(Probe { target, head, pred, body }))
    }

    /// `/ expr /` (the first `/` is current).
    fn predicate(&mut self) -> Option<Expr> {
        let open = self.bump();
        self.in_pred = true;
        let (e, _) = self.expr();
        self.in_pred = false;
        if matches!(e.kind, ExprKind::Error) {
            while !self.at(&Tok::Eof) && !self.at(&Tok::LBrace) && !self.tok().nl_before {
                self.bump();
            }
            return None;
        }
        if !self.at(&Tok::Slash) {
            self.diags.push(
                Diagnostic::error("this predicate is not closed", open.span)
                    .label(self.tok().span, "expected `/` before this")
                    .note("a predicate is written between slashes: `kprobe:f /pid == 1/ { ... }`"),
            );
            while !self.at(&Tok::Eof) && !self.at(&Tok::LBrace) && !self.tok().nl_before {
                self.bump();
            }
            return None;
        }
        self.bump();
        Some(e)
    }

    fn end_item(&mut self) {
        if self.at(&Tok::Semi) {
            self.bump();
        } else if !self.tok().nl_before {
            self.error_here("`;` or a new line after the declaration");
            self.recover_item();
        }
    }

    /// `function NAME(a, b) { ... }` (the `function` is current).
    fn function(&mut self) -> Option<FuncDecl> {
        self.bump();
        let Some(name) = self.declared_name("a function name after `function`") else {
            self.recover_item();
            return None;
        };
        if !self.expect(Tok::LParen, "`(` and the parameter list") {
            self.recover_item();
            return None;
        }
        let mut params = Vec::new();
        if !self.at(&Tok::RParen) {
            loop {
                if !self.at(&Tok::Ident) {
                    self.error_here("a parameter name");
                    self.recover_item();
                    return None;
                }
                let pt = self.bump();
                params.push(Ident { name: self.text(&pt).to_owned(), span: pt.span });
                if self.at(&Tok::Comma) {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        if !self.expect(Tok::RParen, "`,` or `)` in the parameter list") {
            self.recover_item();
            return None;
        }
        if !self.at(&Tok::LBrace) {
            self.error_here("`{` to start the function body");
            self.recover_item();
            return None;
        }
        let body = self.block();
        Some(FuncDecl { name, params, body })
    }

    /// The text of the head: the current token and every token glued to it (no space between),
    /// up to a `{` or `/`. Returns the text and its span.
    fn glued(&mut self) -> (String, Span) {
        let first = self.bump();
        let mut sp = first.span;
        while !matches!(self.tok().tok, Tok::LBrace | Tok::Slash | Tok::Eof | Tok::Semi)
            && self.tok().span.start == sp.end
        {
            sp.end = self.bump().span.end;
        }
        (self.src.get(sp.start..sp.end).unwrap_or("").to_owned(), sp)
    }

    fn probe_head(&mut self) -> ProbeTarget {
        let first = self.tok().clone();
        let word = self.text(&first).to_owned();
        match word.as_str() {
            "trace_begin" => {
                self.bump();
                return ProbeTarget::Begin;
            }
            "trace_end" => {
                self.bump();
                return ProbeTarget::End;
            }
            "trace" => {
                self.bump();
                if !self.at(&Tok::Ident) && !self.at(&Tok::Star) {
                    self.error_here("a tracepoint `SUBSYS:EVENT` after `trace`");
                    return ProbeTarget::Invalid;
                }
                let (text, sp) = self.glued();
                return self.head_text(&text, sp, true);
            }
            _ => {}
        }
        let (text, sp) = self.glued();
        self.head_text(&text, sp, false)
    }

    /// Read a probe head from its text (`kprobe:f+0x10`, `sched:sched_*`, `tick-10ms`).
    fn head_text(&mut self, text: &str, sp: Span, after_trace: bool) -> ProbeTarget {
        let sub = |a: usize, b: usize| span(sp.start + a, sp.start + b);
        for (kind, per_cpu) in [("tick-", false), ("profile-", true)] {
            if let Some(rest) = text.strip_prefix(kind) {
                return self.timer(text, rest, per_cpu, sp);
            }
        }
        let Some(colon) = text.find(':') else {
            let mut d = Diagnostic::error(format!("`{text}` is not a probe"), sp).note(
                "probes are `kprobe:SYM`, `kretprobe:SYM`, `trace SUBSYS:EVENT`, `tick-N`/`profile-N` (with s, ms or us), `trace_begin` and `trace_end`",
            );
            if let Some(s) = did_you_mean(text, ["trace_begin", "trace_end", "kprobe", "kretprobe"]) {
                d = d.note(s);
            }
            self.diags.push(d);
            return ProbeTarget::Invalid;
        };
        let (kind, target) = (&text[..colon], &text[colon + 1..]);
        let target_span = sub(colon + 1, text.len());
        if kind == "kprobe" || kind == "kretprobe" {
            let ret = kind == "kretprobe";
            let (sym, off) = match target.split_once('+') {
                Some((s, o)) => (s, Some(o)),
                None => (target, None),
            };
            if sym.is_empty() {
                self.diags.push(
                    Diagnostic::error(
                        format!("expected a kernel function name after `{kind}:`"),
                        span(sp.end, sp.end),
                    )
                    .note("write the function's symbol, e.g. `kprobe:vfs_read`"),
                );
                return ProbeTarget::Invalid;
            }
            if !is_symbol(sym) {
                self.diags.push(
                    Diagnostic::error(format!("`{sym}` is not a kernel function name"), target_span)
                        .note("write the function's symbol, e.g. `kprobe:vfs_read`"),
                );
                return ProbeTarget::Invalid;
            }
            let sym = Ident { name: sym.to_owned(), span: sub(colon + 1, colon + 1 + sym.len()) };
            let off = match off {
                None => 0,
                Some(o) => {
                    let at = sub(colon + 2 + sym.name.len(), text.len());
                    let parsed = match o.strip_prefix("0x").or_else(|| o.strip_prefix("0X")) {
                        Some(h) => u64::from_str_radix(h, 16).ok(),
                        None => o.parse::<u64>().ok(),
                    };
                    match parsed {
                        Some(v) if !ret => v,
                        Some(_) => {
                            self.diags.push(
                                Diagnostic::error(
                                    "a kretprobe attaches to a whole function, not an offset",
                                    at,
                                )
                                .note("write `kretprobe:SYM`"),
                            );
                            return ProbeTarget::Invalid;
                        }
                        None => {
                            self.diags.push(Diagnostic::error(
                                format!("`{o}` is not a byte offset (decimal or 0x hexadecimal)"),
                                at,
                            ));
                            return ProbeTarget::Invalid;
                        }
                    }
                }
            };
            return ProbeTarget::Kprobe { sym, off, ret };
        }
        if !after_trace {
            let kw = sub(0, colon);
            let mut d = Diagnostic::error(format!("unknown probe kind `{kind}`"), kw).note(
                "probes are `kprobe:SYM`, `kretprobe:SYM`, `trace SUBSYS:EVENT`, `tick-N`/`profile-N`, `trace_begin` and `trace_end`",
            );
            if matches!(kind, "tracepoint" | "tp" | "t") {
                d = d.note("a tracepoint is written `trace SUBSYS:EVENT`");
            } else if let Some(s) = did_you_mean(kind, ["kprobe", "kretprobe"]) {
                d = d.note(s);
            } else if !kind.is_empty() && is_glob_name(kind) {
                d = d.note(format!("a tracepoint is written `trace {text}`"));
            }
            self.diags.push(d);
            return ProbeTarget::Invalid;
        }
        if !is_glob_name(kind) || !is_glob_name(target) {
            let bad = if is_glob_name(kind) { target_span } else { sub(0, colon) };
            self.diags.push(
                Diagnostic::error(format!("`{text}` is not a tracepoint name"), bad)
                    .note("write `trace SUBSYS:EVENT`; `*` and `?` match any characters (`trace sched:*`)"),
            );
            return ProbeTarget::Invalid;
        }
        ProbeTarget::Tracepoint {
            subsys: Ident { name: kind.to_owned(), span: sub(0, colon) },
            event: Ident { name: target.to_owned(), span: target_span },
        }
    }

    fn timer(&mut self, text: &str, rest: &str, per_cpu: bool, sp: Span) -> ProbeTarget {
        let digits = rest.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &rest[digits.len()..];
        let scale = match unit {
            "s" => 1_000_000_000u64,
            "ms" => 1_000_000,
            "us" => 1_000,
            _ => 0,
        };
        let n = digits.parse::<u64>().ok().filter(|n| *n > 0);
        match (n, scale) {
            (Some(n), s) if s > 0 => match n.checked_mul(s) {
                Some(period_ns) => ProbeTarget::Timer { period_ns, per_cpu, text: text.to_owned() },
                None => {
                    self.diags.push(Diagnostic::error(format!("the period of `{text}` is too long"), sp));
                    ProbeTarget::Invalid
                }
            },
            _ => {
                self.diags.push(Diagnostic::error(format!("`{text}` is not a timer"), sp).note(
                    "write a positive whole number and a unit: `tick-1s`, `tick-100ms`, `profile-500us`",
                ));
                ProbeTarget::Invalid
            }
        }
    }

    fn block(&mut self) -> Block {
        let open = self.bump(); // '{'
        let mut stmts = Vec::new();
        if self.depth >= MAX_DEPTH {
            self.diags.push(
                Diagnostic::error("blocks nested too deeply", open.span)
                    .note(format!("at most {MAX_DEPTH} levels of nesting are allowed")),
            );
            self.pos -= 1;
            self.skip_braces();
            return Block { stmts, span: join(open.span, self.prev_end()) };
        }
        self.depth += 1;
        let b = loop {
            if self.at(&Tok::RBrace) {
                let close = self.bump();
                break Block { stmts, span: join(open.span, close.span) };
            }
            if self.at(&Tok::Eof) || (self.tok().nl_before && self.at_top_level_head()) {
                let d = Diagnostic::error("this `{` is never closed", open.span);
                let d =
                    if self.at(&Tok::Eof) { d } else { d.label(self.tok().span, "a new probe starts here") };
                self.diags.push(d);
                break Block { stmts, span: join(open.span, self.prev_end()) };
            }
            let before = self.pos;
            if let Some(s) = self.stmt() {
                stmts.push(s);
            }
            if self.pos == before {
                self.bump();
            }
        };
        self.depth -= 1;
        b
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
            _ => self.timer_word(),
        }
    }

    // ---- statements ----

    /// A block where one is required (after `if`, `while`, ...); `None` after an error.
    fn body(&mut self, after: &str) -> Option<Block> {
        if self.at(&Tok::LBrace) {
            return Some(self.block());
        }
        self.error_here(&format!("`{{` to start the body of `{after}`"));
        self.recover_stmt();
        None
    }

    /// A condition: an expression (parentheses are ordinary grouping).
    fn cond(&mut self) -> Option<Expr> {
        let (e, _) = self.expr();
        if matches!(e.kind, ExprKind::Error) {
            // skip to the body, parse it for its errors
            while !self.at(&Tok::Eof) && !self.at(&Tok::LBrace) && !self.tok().nl_before {
                self.bump();
            }
            if self.at(&Tok::LBrace) {
                self.block();
            }
            return None;
        }
        Some(e)
    }

    fn stmt(&mut self) -> Option<Stmt> {
        self.stmt_start = self.pos;
        let t = self.tok().clone();
        if t.tok == Tok::Semi {
            self.bump();
            return None;
        }
        let word = if t.tok == Tok::Ident { self.text(&t).to_owned() } else { String::new() };
        let kind = match word.as_str() {
            "var" => {
                let d = self.var_decl();
                self.end_stmt();
                return d.map(|d| Stmt { span: d.span, kind: StmtKind::Var(d) });
            }
            "if" => self.if_stmt()?,
            "while" => {
                self.bump();
                let cond = self.cond()?;
                let body = self.body("while")?;
                StmtKind::While { cond, body }
            }
            "for" => self.for_stmt()?,
            "break" | "continue" => {
                self.bump();
                self.end_stmt();
                let k = if word == "break" { StmtKind::Break } else { StmtKind::Continue };
                return Some(Stmt { kind: k, span: t.span });
            }
            "return" => {
                self.bump();
                let value = if self.tok().nl_before || matches!(self.tok().tok, Tok::Semi | Tok::RBrace) {
                    None
                } else {
                    let (e, _) = self.expr();
                    if matches!(e.kind, ExprKind::Error) {
                        self.recover_stmt();
                        return Some(Stmt { kind: StmtKind::Error, span: t.span });
                    }
                    Some(e)
                };
                let sp = join(t.span, self.prev_end());
                self.end_stmt();
                return Some(Stmt { kind: StmtKind::Return(value), span: sp });
            }
            "else" | "elseif" => {
                self.diags.push(Diagnostic::error(format!("`{word}` without an `if`"), t.span));
                self.bump();
                self.recover_stmt();
                if self.at(&Tok::LBrace) {
                    self.block();
                }
                return None;
            }
            "function" => {
                self.diags.push(
                    Diagnostic::error("functions are declared at top level", t.span)
                        .note("move `function NAME(...) { ... }` out of this block"),
                );
                self.recover_stmt();
                return None;
            }
            _ if t.tok == Tok::LBrace => StmtKind::Block(self.block()),
            _ => return self.simple_stmt(),
        };
        Some(Stmt { kind, span: join(t.span, self.prev_end()) })
    }

    fn if_stmt(&mut self) -> Option<StmtKind> {
        self.bump();
        let mut arms = Vec::new();
        let mut otherwise = None;
        let cond = self.cond()?;
        let body = self.body("if")?;
        arms.push((cond, body));
        loop {
            let else_if = if self.at_word("elseif") {
                self.bump();
                true
            } else if self.at_word("else") {
                self.bump();
                if self.at_word("if") {
                    self.bump();
                    true
                } else {
                    false
                }
            } else {
                break;
            };
            if else_if {
                let cond = self.cond()?;
                let body = self.body("elseif")?;
                arms.push((cond, body));
            } else {
                otherwise = Some(self.body("else")?);
                break;
            }
        }
        Some(StmtKind::If { arms, otherwise })
    }

    fn for_stmt(&mut self) -> Option<StmtKind> {
        let kw = self.bump();
        let paren = self.at(&Tok::LParen);
        if paren {
            self.bump();
        }
        let mut names = Vec::new();
        loop {
            if !self.at(&Tok::Ident) {
                self.error_here("a loop variable name");
                self.recover_stmt();
                return None;
            }
            let nt = self.bump();
            names.push(Ident { name: self.text(&nt).to_owned(), span: nt.span });
            if self.at(&Tok::Comma) && names.len() < 8 {
                self.bump();
                continue;
            }
            break;
        }
        let kind = if self.at(&Tok::Assign) && names.len() == 1 {
            self.bump();
            let (from, _) = self.expr();
            if !self.expect(Tok::Comma, "`,` and the last value (`for (i = 1, 10)`)") {
                self.recover_stmt();
                return None;
            }
            let (to, _) = self.expr();
            let step = if self.at(&Tok::Comma) {
                self.bump();
                Some(self.expr().0)
            } else {
                None
            };
            let var = names.pop()?;
            (StmtKind::ForRange { var, from, to, step, body: Block { stmts: vec![], span: kw.span } }, true)
        } else if self.at_word("in") {
            self.bump();
            let (iter, _) = self.expr();
            let table = match iter.kind {
                ExprKind::Call { callee, mut args } if callee.name == "pairs" && args.len() == 1 => {
                    args.pop()?
                }
                ExprKind::Error => iter,
                _ => {
                    self.diags.push(
                        Diagnostic::error("`for ... in` iterates over `pairs(TABLE)`", iter.span)
                            .note("write `for (k, v in pairs(t)) { ... }`"),
                    );
                    err_expr(iter.span)
                }
            };
            if names.len() < 2 {
                self.diags.push(
                    Diagnostic::error(
                        "`for ... in pairs(t)` needs a key name and a value name",
                        names[0].span,
                    )
                    .note(
                        "write `for (k, v in pairs(t))`; a table keyed by tuples takes one name per key part",
                    ),
                );
            }
            (StmtKind::ForIn { names, table, body: Block { stmts: vec![], span: kw.span } }, true)
        } else {
            self.error_here("`=` (a counting loop) or `in` (a table loop)");
            self.recover_stmt();
            return None;
        };
        if paren && !self.expect(Tok::RParen, "`)` to close the loop head") {
            self.recover_stmt();
            if self.at(&Tok::LBrace) {
                self.block();
            }
            return None;
        }
        let body = self.body("for")?;
        Some(match kind.0 {
            StmtKind::ForRange { var, from, to, step, .. } => {
                StmtKind::ForRange { var, from, to, step, body }
            }
            StmtKind::ForIn { names, table, .. } => StmtKind::ForIn { names, table, body },
            other => other,
        })
    }

    fn simple_stmt(&mut self) -> Option<Stmt> {
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
        let agg = self.at(&Tok::Other("<<<"));
        if op.is_none() && !agg {
            let span = target.span;
            self.end_stmt();
            return Some(Stmt { kind: StmtKind::Expr(target), span });
        }
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
        let kind = match op {
            Some(op) => StmtKind::Assign { target, op, op_span: op_tok.span, value },
            None => StmtKind::Aggregate { target, op_span: op_tok.span, value },
        };
        Some(Stmt { kind, span })
    }

    /// The name a declaration introduces (reserved words are reported but kept, so the rest of the
    /// declaration is still checked); `None` when there is no name.
    fn declared_name(&mut self, what: &str) -> Option<Ident> {
        if !self.at(&Tok::Ident) {
            self.error_here(what);
            return None;
        }
        let nt = self.bump();
        let name = Ident { name: self.text(&nt).to_owned(), span: nt.span };
        if KEYWORDS.contains(&name.name.as_str()) {
            self.diags.push(Diagnostic::error(format!("`{}` is a reserved word", name.name), name.span));
        }
        Some(name)
    }

    /// `var NAME [= expr]` (the `var` is current).
    fn var_decl(&mut self) -> Option<VarDecl> {
        let kw = self.bump();
        let Some(name) = self.declared_name("a variable name after `var`") else {
            self.recover_stmt();
            return None;
        };
        if !self.at(&Tok::Assign) {
            if self.tok().nl_before || matches!(self.tok().tok, Tok::Semi | Tok::RBrace | Tok::Eof) {
                return Some(VarDecl { span: join(kw.span, name.span), name, init: None });
            }
            self.error_here("`=` and an initial value");
            self.recover_stmt();
            let init = Some(err_expr(self.prev_end()));
            return Some(VarDecl { span: join(kw.span, name.span), name, init });
        }
        let eq = self.bump();
        if self.tok().nl_before {
            self.diags.push(Diagnostic::error("expected a value after `=`", eq.span));
            return Some(VarDecl { span: join(kw.span, eq.span), name, init: Some(err_expr(eq.span)) });
        }
        let (init, _) = self.expr();
        if matches!(init.kind, ExprKind::Error) {
            self.recover_stmt();
        }
        Some(VarDecl { span: join(kw.span, init.span), name, init: Some(init) })
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
        if matches!(lhs.kind, ExprKind::Error) {
            return (lhs, depth);
        }
        while let Some((op, prec)) = binop(&self.tok().tok) {
            if prec < min_prec || (op == BinOp::Div && self.in_pred) {
                break;
            }
            let op_tok = self.bump();
            if depth + self.depth >= MAX_DEPTH {
                return self.too_deep(op_tok.span);
            }
            if self.tok().nl_before && matches!(self.tok().tok, Tok::Eof | Tok::RBrace) {
                self.diags.push(Diagnostic::error(
                    format!("expected a value after `{}`", op.symbol()),
                    op_tok.span,
                ));
                return (err_expr(op_tok.span), 1);
            }
            self.depth += 1;
            let (rhs, rdepth) = self.binary(prec + 1);
            self.depth -= 1;
            if matches!(rhs.kind, ExprKind::Error) {
                return (rhs, rdepth);
            }
            let span = join(lhs.span, rhs.span);
            depth = depth.max(rdepth) + 1;
            let kind = ExprKind::Binary { op, op_span: op_tok.span, lhs: Box::new(lhs), rhs: Box::new(rhs) };
            lhs = Expr { kind, span };
        }
        (lhs, depth)
    }

    fn unary(&mut self) -> Parsed {
        let op = match self.tok().tok {
            Tok::Minus => Some(UnOp::Neg),
            Tok::Other("!") => Some(UnOp::Not),
            Tok::Other("~") => Some(UnOp::BitNot),
            _ => None,
        };
        if let Some(op) = op {
            let m = self.bump();
            if self.depth >= MAX_DEPTH {
                return self.too_deep(m.span);
            }
            self.depth += 1;
            let (operand, d) = self.unary();
            self.depth -= 1;
            if matches!(operand.kind, ExprKind::Error) {
                return (operand, d);
            }
            let span = join(m.span, operand.span);
            return (Expr { kind: ExprKind::Unary { op, operand: Box::new(operand) }, span }, d + 1);
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
        if matches!(e.kind, ExprKind::Error) {
            return (e, depth);
        }
        loop {
            match self.tok().tok {
                Tok::LBracket => {
                    let open = self.bump();
                    if depth + self.depth >= MAX_DEPTH {
                        return self.too_deep(open.span);
                    }
                    self.depth += 1;
                    let saved = std::mem::replace(&mut self.in_pred, false);
                    let mut keys = Vec::new();
                    let mut kd = 0;
                    loop {
                        let (key, d) = self.expr();
                        kd = kd.max(d);
                        let bad = matches!(key.kind, ExprKind::Error);
                        keys.push(key);
                        if bad || !self.at(&Tok::Comma) {
                            break;
                        }
                        self.bump();
                    }
                    self.in_pred = saved;
                    self.depth -= 1;
                    if keys.iter().any(|k| matches!(k.kind, ExprKind::Error)) {
                        return (err_expr(join(e.span, self.prev_end())), 1);
                    }
                    let close = self.tok().span;
                    if !self.expect(Tok::RBracket, "`,` or `]`") {
                        return (err_expr(join(e.span, self.prev_end())), 1);
                    }
                    let span = join(e.span, close);
                    depth = depth.max(kd) + 1;
                    e = Expr { kind: ExprKind::Index { base: Box::new(e), keys }, span };
                }
                Tok::Dot | Tok::Other("->") => {
                    let op = self.bump();
                    if depth + self.depth >= MAX_DEPTH {
                        return self.too_deep(op.span);
                    }
                    if !self.at(&Tok::Ident) {
                        self.error_here(&format!("a member name after `{}`", self.text(&op)));
                        return (err_expr(join(e.span, op.span)), 1);
                    }
                    let nt = self.bump();
                    let name = Ident { name: self.text(&nt).to_owned(), span: nt.span };
                    let arrow = op.tok != Tok::Dot;
                    let span = join(e.span, nt.span);
                    depth += 1;
                    e = Expr { kind: ExprKind::Member { base: Box::new(e), name, arrow }, span };
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
                    let saved = std::mem::replace(&mut self.in_pred, false);
                    let (args, ad) = self.call_args();
                    self.in_pred = saved;
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
                let kind = match name.as_str() {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    "nil" => ExprKind::Nil,
                    _ if KEYWORDS.contains(&name.as_str()) => {
                        self.diags.push(Diagnostic::error(
                            format!("expected an expression, found keyword `{name}`"),
                            t.span,
                        ));
                        return (err_expr(t.span), 1);
                    }
                    _ => ExprKind::Name(Ident { name, span: t.span }),
                };
                self.bump();
                (Expr { kind, span: t.span }, 1)
            }
            Tok::LParen => {
                let open = self.bump();
                if self.depth >= MAX_DEPTH {
                    return self.too_deep(open.span);
                }
                self.depth += 1;
                let saved = std::mem::replace(&mut self.in_pred, false);
                let (e, d) = self.expr();
                self.in_pred = saved;
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
                let open = self.bump();
                if self.depth >= MAX_DEPTH {
                    return self.too_deep(open.span);
                }
                self.depth += 1;
                let saved = std::mem::replace(&mut self.in_pred, false);
                let r = self.table_constructor(open.span);
                self.in_pred = saved;
                self.depth -= 1;
                r
            }
            Tok::Dur(..) => {
                self.bump();
                self.diags.push(
                    Diagnostic::error(format!("unexpected `{}`", self.text(&t)), t.span).note(
                        "numbers with a unit are only for timer probes (`tick-1s`); write plain integers",
                    ),
                );
                (err_expr(t.span), 1)
            }
            _ => {
                self.error_here("an expression");
                (err_expr(if t.nl_before || t.tok == Tok::Eof { self.prev_end() } else { t.span }), 1)
            }
        }
    }

    /// The entries of `{ ... }` after the `{` at `open`: `[k] = v`, `name = v` or `v`, separated by
    /// `,` or `;` (a trailing one allowed).
    fn table_constructor(&mut self, open: Span) -> Parsed {
        let mut entries = Vec::new();
        loop {
            if self.at(&Tok::RBrace) {
                let close = self.bump();
                return (Expr { kind: ExprKind::Table(entries), span: join(open, close.span) }, 1);
            }
            let start = self.tok().span;
            let key = if self.at(&Tok::LBracket) {
                self.bump();
                let (k, _) = self.expr();
                if matches!(k.kind, ExprKind::Error)
                    || !self.expect(Tok::RBracket, "`]`")
                    || !self.expect(Tok::Assign, "`=` after `[key]`")
                {
                    self.bump_until_brace_close();
                    return (err_expr(join(open, self.prev_end())), 1);
                }
                Some(k)
            } else if self.tok().tok == Tok::Ident && self.peek(1).tok == Tok::Assign {
                let name = self.bump();
                self.bump();
                Some(Expr { kind: ExprKind::Str(self.text(&name).to_owned()), span: name.span })
            } else {
                None
            };
            let (value, _) = self.expr();
            if matches!(value.kind, ExprKind::Error) {
                self.bump_until_brace_close();
                return (err_expr(join(open, self.prev_end())), 1);
            }
            entries.push(TableEntry { key, span: join(start, value.span), value });
            if matches!(self.tok().tok, Tok::Comma | Tok::Semi) {
                self.bump();
            } else if !self.at(&Tok::RBrace) {
                self.error_here("`,` or `}` in the table constructor");
                self.bump_until_brace_close();
                return (err_expr(join(open, self.prev_end())), 1);
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

/// A kernel symbol: letters, digits, `_` and `.` (gcc clones: `vfs_read.isra.0`), not starting with a digit.
fn is_symbol(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A tracepoint subsystem or event name, possibly a glob (`*`, `?`).
fn is_glob_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'*' | b'?' | b'-' | b'.'))
}

/// The binary operator table: operator and precedence (higher binds tighter).
fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Other("||") => (BinOp::Or, 1),
        Tok::Other("&&") => (BinOp::And, 2),
        Tok::Other("|") => (BinOp::BitOr, 3),
        Tok::Other("^") => (BinOp::BitXor, 4),
        Tok::Other("&") => (BinOp::BitAnd, 5),
        Tok::Other("==") => (BinOp::Eq, 6),
        Tok::Other("!=") => (BinOp::Ne, 6),
        Tok::Other("<") => (BinOp::Lt, 7),
        Tok::Other("<=") => (BinOp::Le, 7),
        Tok::Other(">") => (BinOp::Gt, 7),
        Tok::Other(">=") => (BinOp::Ge, 7),
        Tok::Other("..") => (BinOp::Concat, 8),
        Tok::Other("<<") => (BinOp::Shl, 9),
        Tok::Other(">>") => (BinOp::Shr, 9),
        Tok::Plus => (BinOp::Add, 10),
        Tok::Minus => (BinOp::Sub, 10),
        Tok::Star => (BinOp::Mul, 11),
        Tok::Slash => (BinOp::Div, 11),
        Tok::Percent => (BinOp::Mod, 11),
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
                _ => unreachable!(),
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
        assert_eq!(x.init.as_ref().and_then(|e| e.const_int()), Some(1 + 6 + 4 % 3));
        let Item::Global(y) = &s.items[1] else { panic!() };
        assert_eq!(y.init.as_ref().and_then(|e| e.const_int()), Some(9));
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
