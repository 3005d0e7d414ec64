//! Calls: `print` (a generated format, or `ptable` for a table alone) and `printf` (a format
//! checked against its arguments on the host).

use super::*;

impl Lower<'_, '_> {
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
        }
        if !ok {
            return;
        }
        let kinds = convs.iter().map(|c| c.conv.arg_kind()).collect();
        let f = self.format_id(fmt.clone(), kinds, at);
        encode(&mut self.f.code, Opcode::Printf, &[f as i32], &regs);
    }
}
