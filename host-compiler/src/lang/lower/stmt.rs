//! Statements: local declarations, assignments (locals, globals, table entries), aggregations and
//! control flow (`if`, `while`, both `for`s, `break`, `continue`, `return`).

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
            StmtKind::Aggregate { target, op_span, value } => self.aggregate(target, *op_span, value),
            StmtKind::Expr(e) => {
                match &e.kind {
                    ExprKind::Call { .. } | ExprKind::Error => {
                        self.call_stmt(e);
                    }
                    ExprKind::Name(id)
                        if builtins::is_function(&id.name) || self.decls.contains_key(&id.name) =>
                    {
                        self.err(Diagnostic::error(format!("`{}` is a function; call it", id.name), id.span));
                    }
                    _ => {
                        self.err(Diagnostic::error("this expression does nothing", e.span).note(
                            "a statement is an assignment, a `var` declaration, a call or control flow",
                        ));
                    }
                }
            }
            StmtKind::If { arms, otherwise } => self.if_stmt(arms, otherwise.as_ref()),
            StmtKind::While { cond, body } => {
                let top = self.here();
                let exit = self.branch(cond, false);
                self.reset(m);
                self.loop_back_to(top, body, exit);
            }
            StmtKind::ForRange { var, from, to, step, body } => {
                self.for_range(var, from, to, step.as_ref(), body)
            }
            StmtKind::ForIn { names, table, body } => self.for_in(names, table, body),
            StmtKind::Break | StmtKind::Continue => {
                let brk = matches!(s.kind, StmtKind::Break);
                if self.f.loops.is_empty() {
                    let w = if brk { "break" } else { "continue" };
                    self.err(Diagnostic::error(format!("`{w}` outside a loop"), s.span));
                } else {
                    let p = self.emit_jump(Opcode::Jmp, &[], &[]);
                    if let Some(l) = self.f.loops.last_mut() {
                        if brk { l.breaks.push(p) } else { l.continues.push(p) }
                    }
                }
            }
            StmtKind::Return(v) => self.ret(v.as_ref(), s.span),
            StmtKind::Block(b) => self.block(b),
            StmtKind::Error => {}
        }
        self.reset(m);
    }

    /// A nested block: its locals end with it.
    pub(super) fn block(&mut self, b: &Block) {
        self.open_scope();
        for s in &b.stmts {
            self.stmt(s);
        }
        self.close_scope();
    }

    fn if_stmt(&mut self, arms: &[(Expr, Block)], otherwise: Option<&Block>) {
        let mut to_end = Vec::new();
        for (i, (cond, body)) in arms.iter().enumerate() {
            let m = self.mark();
            let next = self.branch(cond, false);
            self.reset(m);
            self.block(body);
            let last = i + 1 == arms.len() && otherwise.is_none();
            if !last {
                to_end.push(self.emit_jump(Opcode::Jmp, &[], &[]));
            }
            self.patch_here(next);
        }
        if let Some(b) = otherwise {
            self.block(b);
        }
        self.patch_here(to_end);
    }

    /// `for (i = a, b[, step])`: `i` from `a` while `i <= b` (`>=` for a negative step).
    fn for_range(&mut self, var: &Ident, from: &Expr, to: &Expr, step: Option<&Expr>, body: &Block) {
        let step_v = match step {
            None => 1,
            Some(e) => match e.const_int() {
                Some(0) => {
                    self.err(Diagnostic::error("a loop step of 0 never ends", e.span));
                    1
                }
                Some(v) if i32::try_from(v).is_ok() => v,
                _ => {
                    self.err(
                        Diagnostic::error("the loop step must be a constant (32-bit, not 0)", e.span)
                            .note("write `for (i = a, b, 2)`; use `while` for other loops"),
                    );
                    1
                }
            },
        };
        self.open_scope();
        let (Some(i), Some(end)) =
            (self.int_in_new_reg(from, "a `for` start"), self.int_in_new_reg(to, "a `for` end"))
        else {
            self.close_scope();
            return;
        };
        self.f.locals.push(Local { name: "#end".into(), span: to.span, ty: Ty::Int, reg: end, names: None });
        self.declarable(var);
        self.add_local(var, Ty::Int, i);
        let top = self.here();
        // leave when i > end (step > 0) or i < end (step < 0)
        let exit = if step_v > 0 {
            self.emit_jump(Opcode::Jlt, &[end as i32, i as i32], &[])
        } else {
            self.emit_jump(Opcode::Jlt, &[i as i32, end as i32], &[])
        };
        self.f.loops.push(LoopCtx::default());
        self.block(body);
        let ctx = self.f.loops.pop().unwrap_or_default();
        self.patch_here(ctx.continues);
        self.emit(Opcode::Addi, &[i as i32, i as i32, step_v as i32]);
        self.jump_back(top);
        self.patch_here(vec![exit]);
        self.patch_here(ctx.breaks);
        self.close_scope();
    }

    /// Evaluate integer `e` into a register of its own (allocated first, so temporaries stay above it).
    fn int_in_new_reg(&mut self, e: &Expr, what: &str) -> Option<u8> {
        let dst = self.alloc_int(e.span);
        let v = self.expr(e);
        let r = self.expect_int(v, e, what)?;
        if r != dst {
            self.emit(Opcode::Mov, &[dst as i32, r as i32]);
        }
        self.f.int_top = dst + 1;
        Some(dst)
    }

    /// `for (k..., v in pairs(t))`: `tnext` over the table's entries.
    fn for_in(&mut self, names: &[Ident], table: &Expr, body: &Block) {
        let Some(t) = self.table_of(table) else { return };
        let Some((keys, _)) = self.tables.get(t as usize).and_then(|u| u.keys.clone()) else {
            self.pairs_before_keys = true;
            self.err(
                Diagnostic::error(
                    "this table is never given a key, so its key kinds are unknown",
                    table.span,
                )
                .note("store into the table somewhere in the script (e.g. `t[k] = v`)"),
            );
            return;
        };
        if names.len() != keys.len() + 1 {
            let want = keys.len() + 1;
            self.err(Diagnostic::error(
                format!(
                    "this table has {} key part{}: the loop needs {want} names (keys, then the value)",
                    keys.len(),
                    if keys.len() == 1 { "" } else { "s" }
                ),
                join(names[0].span, names[names.len() - 1].span),
            ));
            return;
        }
        self.open_scope();
        let cursor = self.alloc_int(table.span);
        self.f.locals.push(Local {
            name: "#cursor".into(),
            span: table.span,
            ty: Ty::Int,
            reg: cursor,
            names: None,
        });
        self.emit(Opcode::Movi, &[cursor as i32, 0]);
        // key variables keep the names their table's keys are shown by
        let key_names: Vec<Option<u16>> = self
            .tables
            .get(t as usize)
            .map(|u| u.named_keys.iter().map(|n| n.id()).collect())
            .unwrap_or_default();
        let mut args = Vec::new();
        for (i, (n, k)) in names.iter().zip(&keys).enumerate() {
            let (ty, reg) = match k {
                KeyKind::Str => (Ty::Str, self.alloc_str(n.span)),
                KeyKind::Int => (Ty::Int, self.alloc_int(n.span)),
            };
            args.push(if ty == Ty::Str { Arg::Str(reg) } else { Arg::Int(reg) });
            if n.name != "_" && self.declarable(n) {
                self.add_local(n, ty, reg);
                self.name_local(n, key_names.get(i).copied().flatten());
            }
        }
        let Some(vname) = names.last() else { return };
        let v = self.alloc_int(vname.span);
        if vname.name != "_" && self.declarable(vname) {
            self.add_local(vname, Ty::Int, v);
        }
        let top = self.here();
        let done = self.emit_jump(Opcode::Tnext, &[cursor as i32, t as i32, v as i32], &args);
        self.loop_back_to(top, body, vec![done]);
        self.close_scope();
    }

    /// A loop whose `continue`s and back edge go to `top` (its test): the body, the back edge, then
    /// the loop's `exits` and `break`s land after it.
    fn loop_back_to(&mut self, top: usize, body: &Block, exits: Vec<Patch>) {
        self.f.loops.push(LoopCtx::default());
        self.block(body);
        let ctx = self.f.loops.pop().unwrap_or_default();
        for p in ctx.continues {
            self.patch(p, top);
        }
        self.jump_back(top);
        self.patch_here(exits);
        self.patch_here(ctx.breaks);
    }

    pub(super) fn local_decl(&mut self, d: &VarDecl) {
        let m = self.mark();
        let ok = self.declarable(&d.name);
        let Some(init) = &d.init else {
            let r = self.alloc_int(d.span);
            self.emit(Opcode::Movi, &[r as i32, 0]);
            if ok {
                self.add_local(&d.name, Ty::Int, r);
            }
            return;
        };
        if let ExprKind::Table(_) | ExprKind::Call { .. } = &init.kind
            && (matches!(init.kind, ExprKind::Table(_))
                || matches!(&init.kind, ExprKind::Call { callee, .. } if callee.name == "table"))
        {
            self.err(
                Diagnostic::error("tables are global: declare them at top level", init.span)
                    .note(format!("move `var {} = ...` outside the block", d.name.name)),
            );
            return;
        }
        let v = self.expr(init);
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
                self.no_value(init);
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
        if ok {
            self.add_local(&d.name, ty, reg);
            if ty == Ty::Int {
                let names = self.names_of(init);
                self.name_local(&d.name, names);
            }
        }
    }

    pub(super) fn no_value(&mut self, e: &Expr) {
        let name = match &e.kind {
            ExprKind::Call { callee, .. } => callee.name.clone(),
            _ => "this call".into(),
        };
        self.err(Diagnostic::error(format!("`{name}(...)` does not return a value"), e.span));
    }

    pub(super) fn expect_int(&mut self, v: Val, e: &Expr, what: &str) -> Option<u8> {
        self.expect(v, e, what, Ty::Int)
    }

    pub(super) fn expect_str(&mut self, v: Val, e: &Expr, what: &str) -> Option<u8> {
        self.expect(v, e, what, Ty::Str)
    }

    /// The register of `v` if it is of type `want`; anything else is reported (once).
    fn expect(&mut self, v: Val, e: &Expr, what: &str, want: Ty) -> Option<u8> {
        match v {
            Val::Int(r) if want == Ty::Int => Some(r),
            Val::Str(r) if want == Ty::Str => Some(r),
            Val::Int(_) | Val::Str(_) => {
                let found = v.ty().name();
                self.err(Diagnostic::error(
                    format!("{what} needs {}, but this is {found}", want.name()),
                    e.span,
                ));
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
            ExprKind::Index { base, keys } => {
                let Some(t) = self.table_of(base) else {
                    for k in keys {
                        self.expr(k);
                    }
                    self.expr(value);
                    return;
                };
                self.assign_index(t, keys, target.span, op, &op_text, value);
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
                    if let Some(opc) = arith(o) {
                        self.emit(opc, &[local.reg as i32, local.reg as i32, r as i32])
                    }
                }
                (Ty::Str, _, Some(_)) => self.err(
                    Diagnostic::error(
                        format!("{op_text} needs an integer, but `{}` is a string", id.name),
                        op_span,
                    )
                    .label(local.span, "declared as a string here")
                    .note("join strings with `..`: `s = s .. \"x\"`"),
                ),
                (ty, v, _) => {
                    self.err(
                        Diagnostic::error(
                            format!(
                                "type mismatch: `{}` holds {}, but this is {}",
                                id.name,
                                ty.name(),
                                v.ty().name()
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
                        if let Some(opc) = arith(o) {
                            self.emit(opc, &[t as i32, t as i32, r as i32]);
                        }
                        self.emit(Opcode::Stg, &[g as i32, t as i32]);
                    }
                }
            }
            Some((Global::Str(t), decl)) => {
                let v = self.expr(value);
                if op.is_some() {
                    self.err(
                        Diagnostic::error(
                            format!("{op_text} needs an integer, but `{}` is a string", id.name),
                            op_span,
                        )
                        .label(decl, "declared as a string here")
                        .note("join strings with `..`: `s = s .. \"x\"`"),
                    );
                    return;
                }
                match v {
                    Val::Str(r) => self.store_str_global(t, r, value.span),
                    Val::Err => {}
                    Val::Void => self.no_value(value),
                    Val::Int(_) => self.err(
                        Diagnostic::error(
                            format!("type mismatch: `{}` holds a string, but this is an integer", id.name),
                            value.span,
                        )
                        .label(decl, "declared as a string here"),
                    ),
                }
            }
            Some((Global::Table(t), decl)) => {
                if op.is_none() && matches!(&value.kind, ExprKind::Nil | ExprKind::Table(_)) {
                    if let ExprKind::Table(entries) = &value.kind
                        && let Some(e) = entries.first()
                    {
                        self.err(
                            Diagnostic::error(
                                "only a top-level `var` initializer fills a table with entries",
                                e.span,
                            )
                            .note(format!(
                                "`{} = {{}}` empties the table; then assign entries one by one",
                                id.name
                            )),
                        );
                        return;
                    }
                    // `t = {}` / `t = nil`: empty it
                    self.emit(Opcode::Tclr, &[t as i32]);
                    return;
                }
                self.err(
                    Diagnostic::error(format!("cannot assign to table `{}` itself", id.name), id.span)
                        .label(decl, "declared as a table here")
                        .note(format!(
                            "assign to an entry: `{}[key] = ...`; empty it with `delete({})`",
                            id.name, id.name
                        )),
                );
                self.expr(value);
            }
            None if builtins::is_value(&id.name) => {
                self.err(Diagnostic::error(format!("cannot assign to builtin `{}`", id.name), id.span).note(
                    "builtins (pid, tid, cpu, uid, time, execname, argN, retval, ...) are read-only; copy into a `var`",
                ));
                self.expr(value);
            }
            None => {
                self.unknown(id, true);
                self.expr(value);
            }
        }
    }
}
