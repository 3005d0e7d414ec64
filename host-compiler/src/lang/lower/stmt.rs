//! Statements: local declarations, assignments to locals, globals and table entries.

use super::*;

impl Lower<'_, '_> {
    pub(super) fn stmt(&mut self, s: &Stmt) {
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

    pub(super) fn local_decl(&mut self, d: &VarDecl) {
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
                Diagnostic::error(
                    format!("`{}` is already declared in this block", d.name.name),
                    d.name.span,
                )
                .label(first, "first declared here"),
            );
            return;
        }
        self.f.locals.push(Local { name: d.name.name.clone(), span: d.name.span, ty, reg });
    }

    pub(super) fn no_value(&mut self, e: &Expr) {
        let name = match &e.kind {
            ExprKind::Call { callee, .. } => callee.name.clone(),
            _ => "this call".into(),
        };
        self.err(Diagnostic::error(format!("`{name}(...)` does not return a value"), e.span));
    }

    pub(super) fn expect_int(&mut self, v: Val, e: &Expr, what: &str) -> Option<u8> {
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

    pub(super) fn assign(&mut self, target: &Expr, op: Option<BinOp>, op_span: Span, value: &Expr) {
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

    pub(super) fn assign_name(
        &mut self,
        id: &Ident,
        op: Option<BinOp>,
        op_text: &str,
        op_span: Span,
        value: &Expr,
    ) {
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
                (Ty::Int, Val::Int(r), Some(o)) => {
                    self.emit(arith(o), &[local.reg as i32, local.reg as i32, r as i32])
                }
                (Ty::Str, _, Some(_)) => self.err(
                    Diagnostic::error(
                        format!("{op_text} needs an integer, but `{}` is a string", id.name),
                        op_span,
                    )
                    .label(local.span, "declared as a string here"),
                ),
                (ty, v, _) => {
                    let found = if matches!(v, Val::Str(_)) { Ty::Str } else { Ty::Int };
                    self.err(
                        Diagnostic::error(
                            format!(
                                "type mismatch: `{}` holds {}, but this is {}",
                                id.name,
                                ty.name(),
                                found.name()
                            ),
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

    pub(super) fn assign_index(&mut self, t: u8, key: &Expr, op: Option<BinOp>, op_text: &str, value: &Expr) {
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
        let Some(key) = k.key_arg() else { return };
        let t = t as i32;
        match op {
            None => self.emit_keyed(Opcode::Tst, &[t, r as i32], key),
            Some(BinOp::Add) => self.emit_keyed(Opcode::Tadd, &[t, r as i32], key),
            Some(BinOp::Sub) => {
                let n = self.alloc_int(value.span);
                self.emit(Opcode::Neg, &[n as i32, r as i32]);
                self.emit_keyed(Opcode::Tadd, &[t, n as i32], key);
            }
            Some(o) => {
                let n = self.alloc_int(value.span);
                self.emit_keyed(Opcode::Tld, &[n as i32, t], key);
                self.emit(arith(o), &[n as i32, n as i32, r as i32]);
                self.emit_keyed(Opcode::Tst, &[t, n as i32], key);
            }
        }
    }

    pub(super) fn table_add(&mut self, t: u8, k: Val, r: u8) {
        if let Some(key) = k.key_arg() {
            self.emit_keyed(Opcode::Tadd, &[t as i32, r as i32], key);
        }
    }

    /// Emit a table op whose key list is the single register `key` (ISA v2 key lists).
    pub(super) fn emit_keyed(&mut self, op: Opcode, ops: &[i32], key: ktap_protocol::isa::Arg) {
        ktap_protocol::isa::encode(&mut self.f.code, op, ops, &[key]);
    }

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
    pub(super) fn key(&mut self, t: u8, key: &Expr) -> Option<Val> {
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
        let (first, reported) = self.table_keys.get_mut(t as usize)?;
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
}
