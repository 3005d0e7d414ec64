//! Calls: statements that call (`print`, `printf`, `print_hist`, `delete`, `exit`, named functions)
//! and built-in functions with values (`len`, `count`, `kernel_string`, `stack`, ...).

use ktap_protocol::isa::Stat;
use ktap_protocol::limits::MAX_STACK;

use super::*;

/// `stack(...)`: a value the host symbolizes.
fn is_stack(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { callee, .. } if callee.name == "stack")
}

impl Lower<'_, '_> {
    /// A call used as a statement.
    pub(super) fn call_stmt(&mut self, e: &Expr) {
        let ExprKind::Call { callee, args } = &e.kind else { return };
        match callee.name.as_str() {
            "print" => self.print(args, e.span),
            "printf" => self.printf(args, e.span),
            "print_hist" => self.print_hist(args, e.span),
            "delete" => self.delete(args, e.span),
            "exit" => {
                if !args.is_empty() {
                    self.err(Diagnostic::error("`exit` takes no arguments", e.span));
                }
                self.emit(Opcode::Exit, &[]);
            }
            _ => {
                self.expr(e);
            }
        }
    }

    /// A call as a value.
    pub(super) fn call(&mut self, callee: &Ident, args: &[Expr], at: Span) -> Val {
        if let Some(v) = self.call_user(callee, args, at) {
            return v;
        }
        let name = callee.name.as_str();
        let arity = |l: &mut Self, lo: usize, hi: usize, usage: &str| -> bool {
            if args.len() < lo || args.len() > hi {
                l.err(Diagnostic::error(format!("wrong number of arguments: `{usage}`"), at));
                false
            } else {
                true
            }
        };
        match name {
            n if VOID_FUNCTIONS.contains(&n) => Val::Void,
            "count" | "sum" | "avg" | "min" | "max" => {
                let which = match name {
                    "count" => Stat::Count,
                    "sum" => Stat::Sum,
                    "avg" => Stat::Avg,
                    "min" => Stat::Min,
                    _ => Stat::Max,
                };
                self.stat(which, args, at)
            }
            "len" => {
                if !arity(self, 1, 1, "len(string or table)") {
                    return Val::Err;
                }
                if let ExprKind::Name(id) = &args[0].kind
                    && self.local(&id.name).is_none()
                    && let Some((Global::Table(t), _)) = self.globals.get(&id.name).copied()
                {
                    let d = self.alloc_int(at);
                    self.emit(Opcode::Tlen, &[d as i32, t as i32]);
                    return Val::Int(d);
                }
                let m = self.mark();
                let v = self.expr(&args[0]);
                let Some(s) = self.expect_str(v, &args[0], "`len`") else { return Val::Err };
                self.reset(m);
                let d = self.alloc_int(at);
                self.emit(Opcode::Slen, &[d as i32, s as i32]);
                Val::Int(d)
            }
            "kernel_string" | "user_string" => {
                if !arity(self, 1, 2, &format!("{name}(address[, max])")) {
                    return Val::Err;
                }
                let m = self.mark();
                let v = self.pointer_value(&args[0]);
                let Some(a) = self.expect_int(v, &args[0], &format!("`{name}`")) else { return Val::Err };
                let max = match args.get(1) {
                    Some(e) => {
                        let v = self.expr(e);
                        let Some(r) = self.expect_int(v, e, "the maximum length") else { return Val::Err };
                        r
                    }
                    None => {
                        let r = self.alloc_int(at);
                        self.emit(Opcode::Movi, &[r as i32, MAX_STR as i32]);
                        r
                    }
                };
                self.reset(m);
                let d = self.alloc_str(at);
                let op = if name == "kernel_string" { Opcode::Kstr } else { Opcode::Ustr };
                self.emit(op, &[d as i32, a as i32, max as i32]);
                Val::Str(d)
            }
            "stack" => {
                if !arity(self, 0, 1, "stack([depth])") {
                    return Val::Err;
                }
                let depth = match args.first() {
                    None => MAX_STACK as i64,
                    Some(e) => match e.const_int() {
                        Some(d) if d >= 1 && d <= MAX_STACK as i64 => d,
                        _ => {
                            self.err(
                                Diagnostic::error("the stack depth must be a constant", e.span)
                                    .note(format!("1 to {MAX_STACK} frames")),
                            );
                            return Val::Err;
                        }
                    },
                };
                if matches!(self.f.at, Where::Begin | Where::End) {
                    self.err(Diagnostic::error(
                        format!("`stack()` has no kernel stack in `{}`", self.f.spec),
                        at,
                    ));
                    return Val::Err;
                }
                let d = self.alloc_str(at);
                self.emit(Opcode::Kstack, &[d as i32, depth as i32]);
                Val::Str(d)
            }
            "gettimeofday_ns" | "gettimeofday_us" | "gettimeofday_ms" | "gettimeofday_s" => {
                if !arity(self, 0, 0, &format!("{name}()")) {
                    return Val::Err;
                }
                let d = self.alloc_int(at);
                self.emit(Opcode::Ctx, &[d as i32, CtxField::WallNs as i32]);
                let div = match name {
                    "gettimeofday_us" => 1_000,
                    "gettimeofday_ms" => 1_000_000,
                    "gettimeofday_s" => 1_000_000_000,
                    _ => 1,
                };
                if div > 1 {
                    let r = self.alloc_int(at);
                    self.emit(Opcode::Movi, &[r as i32, div]);
                    self.emit(Opcode::Div, &[d as i32, d as i32, r as i32]);
                    self.f.int_top = d + 1;
                }
                Val::Int(d)
            }
            "hist" | "lhist" => {
                self.err(
                    Diagnostic::error(format!("`{name}` is only used after `<<<`"), at)
                        .note(format!("write `t[k] <<< {name}(...)`")),
                );
                Val::Err
            }
            "pairs" => {
                self.err(
                    Diagnostic::error("`pairs` is only used in a `for` loop", at)
                        .note("write `for (k, v in pairs(t)) { ... }`"),
                );
                Val::Err
            }
            "table" => {
                self.err(Diagnostic::error("`table(N)` only declares a top-level table", at));
                Val::Err
            }
            _ => {
                let d = if builtins::is_value(name)
                    || self.globals.contains_key(name)
                    || self.local(name).is_some()
                {
                    Diagnostic::error(format!("`{name}` is not a function"), callee.span)
                } else {
                    let d = Diagnostic::error(format!("unknown function `{name}`"), callee.span);
                    let mut names: Vec<&str> = builtins::FUNCTION_NAMES.to_vec();
                    let user: Vec<String> = self.decls.keys().cloned().collect();
                    names.extend(user.iter().map(|s| s.as_str()));
                    match did_you_mean(name, names) {
                        Some(s) => d.note(s),
                        None => d,
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
        }
    }

    /// `delete(t[k])` removes one entry, `delete(t)` all of them.
    fn delete(&mut self, args: &[Expr], at: Span) {
        let [arg] = args else {
            self.err(Diagnostic::error("`delete` takes one table or table entry", at));
            return;
        };
        match &arg.kind {
            ExprKind::Index { base, keys } => {
                let Some(t) = self.table_of(base) else { return };
                let Some(k) = self.keys(t, keys, arg.span) else { return };
                self.emit_args(Opcode::Tdel, &[t as i32], &k);
            }
            _ => {
                let Some(t) = self.table_of(arg) else { return };
                self.emit(Opcode::Tclr, &[t as i32]);
            }
        }
    }

    /// `print_hist(t)`: an aggregation table with its histograms, or a plain table as bars.
    fn print_hist(&mut self, args: &[Expr], at: Span) {
        let [arg] = args else {
            self.err(Diagnostic::error("`print_hist` takes one aggregation table", at));
            return;
        };
        let Some(t) = self.table_of(arg) else { return };
        if let Some(u) = self.tables.get_mut(t as usize) {
            // an aggregation keeps log2 buckets for it; a plain table prints as bars
            u.log2 = true;
            u.print_hist = true;
        }
        self.emit(Opcode::Ptable, &[t as i32]);
    }

    pub(super) fn print(&mut self, args: &[Expr], at: Span) {
        let table_arg = |l: &Self, e: &Expr| match &e.kind {
            ExprKind::Name(id) if l.local(&id.name).is_none() => match l.globals.get(&id.name) {
                Some((Global::Table(t), _)) => Some(*t),
                _ => None,
            },
            _ => None,
        };
        if let [one] = args
            && let Some(t) = table_arg(self, one)
        {
            self.emit(Opcode::Ptable, &[t as i32]);
            return;
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
        let mut names = Vec::new();
        for a in args {
            let v = self.shown_value(a);
            names.push(if let Val::Int(_) = v { self.names_of(a) } else { None });
            match v {
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
        // a named integer prints as its name (`%s` of an integer: the host looks the name up)
        let parts: Vec<&str> = kinds
            .iter()
            .zip(&names)
            .map(|(k, n)| if *k == ArgKind::Int && n.is_none() { "%d" } else { "%s" })
            .collect();
        let text = format!("{}\n", parts.join(" "));
        let stacks = args.iter().map(is_stack).collect();
        let f = self.format_id(FormatOut { text, kinds, stacks, names }, at);
        self.emit_args(Opcode::Printf, &[f as i32], &regs);
    }

    pub(super) fn too_many_args(&mut self, what: &str, extra: Span) {
        self.err(Diagnostic::error(format!("{what} takes at most {MAX_ARGS} values"), extra));
    }

    pub(super) fn printf(&mut self, args: &[Expr], at: Span) {
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
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        let mut ok = true;
        for (c, a) in convs.iter().zip(values) {
            let v = self.shown_value(a);
            let named = if let Val::Int(_) = v { self.names_of(a) } else { None };
            let want = c.conv.arg_kind();
            // `%d`, `%x`, ... keep the number
            names.push(named.filter(|_| want == ArgKind::Str));
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
            // `%s` of an integer with names (an enum, a system call): the host prints the name
            if got != want && !(got == ArgKind::Int && named.is_some()) {
                let (w, g) = if want == ArgKind::Int {
                    ("an integer", "a string")
                } else {
                    ("a string", "an integer")
                };
                let conv_span = fmt_span(c.span.start, c.span.end);
                let conv_text = fmt.get(c.span.clone()).unwrap_or("%");
                self.err(
                    Diagnostic::error(format!("`{conv_text}` expects {w}, but this is {g}"), a.span)
                        .label(conv_span, "conversion here"),
                );
                ok = false;
            }
            regs.push(reg);
            kinds.push(got);
        }
        if !ok {
            return;
        }
        let stacks = values.iter().map(is_stack).collect();
        let f = self.format_id(FormatOut { text: fmt.clone(), kinds, stacks, names }, at);
        encode(&mut self.f.code, Opcode::Printf, &[f as i32], &regs);
    }
}
