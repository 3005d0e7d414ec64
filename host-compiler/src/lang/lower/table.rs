//! Tables: which table an expression names, key tuples (their shape is fixed by the first use),
//! reads, stores, `<<<` aggregations and the statistics read from them.

use ktap_protocol::isa::Stat;
use ktap_protocol::limits::MAX_LINEAR_BUCKETS;

use super::*;

impl Lower<'_, '_> {
    /// The table a base expression names; reports anything else.
    pub(super) fn table_of(&mut self, base: &Expr) -> Option<u8> {
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
            Some((g @ (Global::Int(_) | Global::Str(_)), decl)) => {
                let kind = if matches!(g, Global::Str(_)) { "a string" } else { "an integer" };
                self.err(
                    Diagnostic::error(format!("`{}` is not a table", id.name), id.span)
                        .label(decl, format!("declared here as {kind}"))
                        .note(format!("declare a table with `var {} = {{}}`", id.name)),
                );
                None
            }
            None if builtins::is_value(&id.name) => {
                self.err(Diagnostic::error(format!("builtin `{}` is not a table", id.name), id.span));
                None
            }
            None => {
                self.unknown(id, false);
                None
            }
        }
    }

    fn table_name(&self, t: u8) -> String {
        self.prog.tables.get(t as usize).map_or(String::new(), |t| t.name.clone())
    }

    /// Evaluate a key tuple and check it against the table's shape (set by its first use);
    /// `None` after an error.
    pub(super) fn keys(&mut self, t: u8, keys: &[Expr], at: Span) -> Option<Vec<Arg>> {
        if keys.len() > MAX_KEYS {
            self.err(Diagnostic::error(
                format!("a key has at most {MAX_KEYS} parts; this one has {}", keys.len()),
                at,
            ));
            return None;
        }
        let mut args = Vec::new();
        let mut kinds = Vec::new();
        let mut stacks = Vec::new();
        let mut names = Vec::new();
        // key parts where `probename` is the call's number (not text)
        let mut numbers = Vec::new();
        let mut ok = true;
        let name = self.table_name(t);
        for (i, k) in keys.iter().enumerate() {
            let text = self.text_keys.contains(&(name.clone(), i));
            let v = if text { self.expr(k) } else { self.shown_value(k) };
            let int = matches!(v, Val::Int(_));
            names.push(if int { self.names_of(k) } else { None });
            numbers.push(int && self.f.syscall.is_some() && super::syscall::is_probename(k));
            match v {
                Val::Int(r) => {
                    args.push(Arg::Int(r));
                    kinds.push(KeyKind::Int);
                }
                Val::Str(r) => {
                    args.push(Arg::Str(r));
                    kinds.push(KeyKind::Str);
                }
                Val::Void => {
                    self.no_value(k);
                    ok = false;
                }
                Val::Err => ok = false,
            }
            stacks.push(matches!(&k.kind, ExprKind::Call { callee, .. } if callee.name == "stack"));
        }
        if !ok {
            return None;
        }
        let u = self.tables.get_mut(t as usize)?;
        u.numbers.resize(numbers.len().max(u.numbers.len()), false);
        for (n, new) in u.numbers.iter_mut().zip(&numbers) {
            *n |= new;
        }
        match &u.keys {
            Some((first, _)) if *first != kinds && first.len() == kinds.len() => {
                // a part that is a string in one use and `probename` as a number in another: the
                // script is lowered again with `probename` as text there
                let parts: Vec<usize> = (0..kinds.len()).filter(|i| first[*i] != kinds[*i]).collect();
                if parts.iter().all(|i| u.numbers[*i]) {
                    for i in parts {
                        self.text_keys.insert((name.clone(), i));
                    }
                    return None;
                }
            }
            _ => {}
        }
        let u = self.tables.get_mut(t as usize)?;
        match &u.keys {
            None => {
                u.keys = Some((kinds, at));
                u.stack_keys = stacks;
                u.named_keys = names.into_iter().map(|n| KeyNames::Plain.with(n)).collect();
            }
            Some((first, first_at)) if *first != kinds => {
                if !u.reported {
                    u.reported = true;
                    let first_at = *first_at;
                    let shape = |ks: &[KeyKind]| {
                        let parts: Vec<&str> = ks
                            .iter()
                            .map(|k| if *k == KeyKind::Str { "string" } else { "integer" })
                            .collect();
                        format!("[{}]", parts.join(", "))
                    };
                    let (now, then) = (shape(&kinds), shape(first));
                    self.err(
                        Diagnostic::error(
                            format!("table `{name}` is indexed by {now} here, but by {then} elsewhere"),
                            at,
                        )
                        .label(first_at, format!("first indexed by {then} here"))
                        .note("every key of a table has the same parts: the same number, each an integer or a string"),
                    );
                }
                return None;
            }
            Some(_) => {
                for (s, new) in u.stack_keys.iter_mut().zip(stacks) {
                    *s |= new;
                }
                u.named_keys.resize(names.len(), KeyNames::Plain);
                for (k, new) in u.named_keys.iter_mut().zip(names) {
                    *k = k.with(new);
                }
            }
        }
        Some(args)
    }

    /// Note a scalar use of a table (store, add, read); refuses aggregate tables.
    fn scalar_use(&mut self, t: u8, at: Span) -> bool {
        let name = self.table_name(t);
        let Some(u) = self.tables.get_mut(t as usize) else { return false };
        if let Some(first) = u.agg {
            if !u.reported {
                u.reported = true;
                self.err(
                    Diagnostic::error(format!("`{name}` holds aggregations; it cannot be used as a plain table"), at)
                        .label(first, "values are recorded with `<<<` here")
                        .note(format!("read it with `count({name}[k])`, `sum`, `avg`, `min`, `max`; print it with `print_hist({name})`")),
                );
            }
            return false;
        }
        u.scalar.get_or_insert(at);
        true
    }

    /// `t[keys]` as a value.
    pub(super) fn table_read(&mut self, t: u8, keys: &[Expr], at: Span) -> Val {
        let m = self.mark();
        let Some(args) = self.keys(t, keys, at) else {
            self.reset(m);
            return Val::Err;
        };
        if !self.scalar_use(t, at) {
            self.reset(m);
            return Val::Err;
        }
        self.reset(m);
        let dst = self.alloc_int(at);
        self.emit_args(Opcode::Tld, &[dst as i32, t as i32], &args);
        Val::Int(dst)
    }

    pub(super) fn assign_index(
        &mut self,
        t: u8,
        keys: &[Expr],
        at: Span,
        op: Option<BinOp>,
        op_text: &str,
        value: &Expr,
    ) {
        let Some(args) = self.keys(t, keys, at) else {
            self.expr(value);
            return;
        };
        if op.is_none() && matches!(value.kind, ExprKind::Nil) {
            // `t[k] = nil` deletes the entry
            self.emit_args(Opcode::Tdel, &[t as i32], &args);
            return;
        }
        if !self.scalar_use(t, at) {
            self.expr(value);
            return;
        }
        // `t[k] += c` and `t[k] -= c` (adding the negated constant): one `taddi`, the canonical
        // count needs no register for its constant
        let add = match (op, value.const_int()) {
            (Some(BinOp::Add), Some(c)) => Some(c),
            (Some(BinOp::Sub), Some(c)) => Some(c.wrapping_neg()),
            _ => None,
        };
        if let Some(c) = add {
            match i32::try_from(c) {
                Ok(imm) => self.emit_args(Opcode::Taddi, &[t as i32, imm], &args),
                Err(_) => {
                    let r = self.alloc_int(value.span);
                    self.load_const(r, c, value.span);
                    self.emit_args(Opcode::Tadd, &[t as i32, r as i32], &args);
                }
            }
            return;
        }
        let v = self.expr(value);
        let Some(r) = self.expect_int(v, value, op_text) else { return };
        let t = t as i32;
        match op {
            None => self.emit_args(Opcode::Tst, &[t, r as i32], &args),
            Some(BinOp::Add) => self.emit_args(Opcode::Tadd, &[t, r as i32], &args),
            Some(BinOp::Sub) => {
                let n = self.alloc_int(value.span);
                self.emit(Opcode::Neg, &[n as i32, r as i32]);
                self.emit_args(Opcode::Tadd, &[t, n as i32], &args);
            }
            Some(o) => {
                let n = self.alloc_int(value.span);
                self.emit_args(Opcode::Tld, &[n as i32, t], &args);
                if let Some(opc) = arith(o) {
                    self.emit(opc, &[n as i32, n as i32, r as i32]);
                }
                self.emit_args(Opcode::Tst, &[t, n as i32], &args);
            }
        }
    }

    /// `t[keys] <<< value`, `<<< hist(v)` or `<<< lhist(v, min, max, step)`.
    pub(super) fn aggregate(&mut self, target: &Expr, op_span: Span, value: &Expr) {
        let ExprKind::Index { base, keys } = &target.kind else {
            if !matches!(target.kind, ExprKind::Error) {
                self.err(
                    Diagnostic::error("`<<<` records into a table entry", target.span)
                        .note("write `t[key] <<< value`"),
                );
            }
            self.expr(value);
            return;
        };
        let Some(t) = self.table_of(base) else {
            self.expr(value);
            return;
        };
        let name = self.table_name(t);
        // what is recorded, and which buckets the table keeps
        let (v, linear, log2) = match &value.kind {
            ExprKind::Call { callee, args } if callee.name == "hist" => {
                let [v] = args.as_slice() else {
                    self.err(Diagnostic::error("`hist` takes one value", value.span));
                    return;
                };
                (v, None, true)
            }
            ExprKind::Call { callee, args } if callee.name == "lhist" => {
                let [v, min, max, step] = args.as_slice() else {
                    self.err(
                        Diagnostic::error(
                            "`lhist` takes a value, a minimum, a maximum and a step",
                            value.span,
                        )
                        .note("e.g. `t[k] <<< lhist(v, 0, 100, 10)`"),
                    );
                    return;
                };
                let Some(p) = self.linear_params(min, max, step, value.span) else { return };
                (v, Some(p), false)
            }
            _ => (value, None, false),
        };
        let Some(u) = self.tables.get_mut(t as usize) else { return };
        if let Some(first) = u.scalar {
            if !u.reported {
                u.reported = true;
                self.err(
                    Diagnostic::error(
                        format!("`{name}` is a plain table; `<<<` needs an aggregation table"),
                        op_span,
                    )
                    .label(first, "used as a plain table here")
                    .note("use a separate table for aggregations"),
                );
            }
            return;
        }
        u.agg.get_or_insert(op_span);
        u.log2 |= log2;
        if let Some(p) = linear {
            match u.linear {
                None => u.linear = Some((p, value.span)),
                Some((q, first)) if q != p => {
                    self.err(
                        Diagnostic::error(format!("`{name}` gets different `lhist` bounds here"), value.span)
                            .label(first, "first bounds here"),
                    );
                    return;
                }
                Some(_) => {}
            }
        }
        let m = self.mark();
        let Some(args) = self.keys(t, keys, target.span) else {
            self.expr(v);
            return;
        };
        let val = self.expr(v);
        let Some(r) = self.expect_int(val, v, "`<<<`") else { return };
        self.emit_args(Opcode::Tagg, &[t as i32, r as i32], &args);
        self.reset(m);
    }

    /// `lhist` bounds: constants, `step > 0`, at most `MAX_LINEAR_BUCKETS` buckets.
    fn linear_params(&mut self, min: &Expr, max: &Expr, step: &Expr, at: Span) -> Option<(i64, i64, u8)> {
        let (Some(lo), Some(hi), Some(st)) = (min.const_int(), max.const_int(), step.const_int()) else {
            self.err(Diagnostic::error("`lhist` bounds must be constants", at));
            return None;
        };
        if st <= 0 || hi <= lo {
            self.err(Diagnostic::error("`lhist` needs min < max and a positive step", at));
            return None;
        }
        let n = (hi as i128 - lo as i128 + st as i128 - 1) / st as i128;
        if n > i128::from(MAX_LINEAR_BUCKETS) {
            self.err(
                Diagnostic::error(
                    format!("`lhist` would have {n} buckets; at most {MAX_LINEAR_BUCKETS}"),
                    at,
                )
                .note("use a larger step"),
            );
            return None;
        }
        Some((lo, st, n as u8))
    }

    /// `count(t[k])`, `sum`, `avg`, `min`, `max`.
    pub(super) fn stat(&mut self, which: Stat, args: &[Expr], at: Span) -> Val {
        let fname = which.name();
        let [arg] = args else {
            self.err(Diagnostic::error(format!("`{fname}` takes one table entry: `{fname}(t[k])`"), at));
            return Val::Err;
        };
        let ExprKind::Index { base, keys } = &arg.kind else {
            self.err(Diagnostic::error(
                format!("`{fname}` reads an aggregation entry: `{fname}(t[k])`"),
                arg.span,
            ));
            return Val::Err;
        };
        let Some(t) = self.table_of(base) else { return Val::Err };
        let name = self.table_name(t);
        let u = self.tables.get_mut(t as usize);
        if let Some(u) = u
            && u.agg.is_none()
        {
            if let Some(first) = u.scalar {
                self.err(
                    Diagnostic::error(format!("`{name}` is a plain table, not an aggregation"), arg.span)
                        .label(first, "used as a plain table here")
                        .note(format!("record values with `{name}[k] <<< v` to use `{fname}`")),
                );
                return Val::Err;
            }
            u.agg = Some(arg.span);
        }
        let m = self.mark();
        let Some(keys) = self.keys(t, keys, arg.span) else { return Val::Err };
        self.reset(m);
        let dst = self.alloc_int(at);
        self.emit_args(Opcode::Tstat, &[dst as i32, t as i32, which as i32], &keys);
        Val::Int(dst)
    }
}
