//! Expressions: constants, names (locals, globals, builtins), table reads, operators.

use super::*;

impl Lower<'_, '_> {
    pub(super) fn expr(&mut self, e: &Expr) -> Val {
        if !matches!(e.kind, ExprKind::Int(_))
            && let Some(v) = e.const_int()
        {
            let r = self.alloc_int(e.span);
            self.load_const(r, v, e.span);
            return Val::Int(r);
        }
        match &e.kind {
            ExprKind::Int(v) => {
                let r = self.alloc_int(e.span);
                self.load_const(r, *v, e.span);
                Val::Int(r)
            }
            ExprKind::Bool(b) => {
                let r = self.alloc_int(e.span);
                self.load_const(r, *b as i64, e.span);
                Val::Int(r)
            }
            ExprKind::Nil => {
                let r = self.alloc_int(e.span);
                self.load_const(r, 0, e.span);
                Val::Int(r)
            }
            ExprKind::Str(s) => {
                if s.len() > MAX_STR {
                    self.err(
                        Diagnostic::error(
                            format!(
                                "string literal is {} bytes, longer than the {MAX_STR}-byte limit",
                                s.len()
                            ),
                            e.span,
                        )
                        .note(format!("strings (keys, values, execname) are at most {MAX_STR} bytes")),
                    );
                    return Val::Err;
                }
                Val::Str(self.load_str(s, e.span))
            }
            ExprKind::Name(id) => self.name(id),
            ExprKind::Index { base, keys } => {
                let Some(t) = self.table_of(base) else {
                    for k in keys {
                        self.expr(k);
                    }
                    return Val::Err;
                };
                self.table_read(t, keys, e.span)
            }
            ExprKind::Member { .. } => self.member_chain(e),
            ExprKind::Unary { op, operand } => {
                if *op == UnOp::Not {
                    return self.truth_value(e);
                }
                let m = self.mark();
                let what = if *op == UnOp::Neg { "`-`" } else { "`~`" };
                let v = self.expr(operand);
                let Some(r) = self.expect_int(v, operand, what) else {
                    self.reset(m);
                    return Val::Err;
                };
                self.reset(m);
                let dst = self.alloc_int(e.span);
                if *op == UnOp::Neg {
                    self.emit(Opcode::Neg, &[dst as i32, r as i32]);
                } else {
                    let ones = self.alloc_int(e.span);
                    self.emit(Opcode::Movi, &[ones as i32, -1]);
                    self.emit(Opcode::Xor, &[dst as i32, r as i32, ones as i32]);
                    self.f.int_top = dst + 1;
                }
                Val::Int(dst)
            }
            ExprKind::Binary { op, .. } if op.is_comparison() || matches!(op, BinOp::And | BinOp::Or) => {
                self.truth_value(e)
            }
            ExprKind::Binary { op: BinOp::Concat, lhs, rhs, .. } => self.concat(lhs, rhs, e.span),
            ExprKind::Binary { op, lhs, rhs, .. } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Call { callee, args } => self.call(callee, args, e.span),
            ExprKind::Table(_) => {
                self.err(
                    Diagnostic::error("a table can only be created by a top-level `var NAME = {}`", e.span)
                        .note("tables are global; declare them outside probe blocks"),
                );
                Val::Err
            }
            ExprKind::Error => Val::Err,
        }
    }

    fn concat(&mut self, lhs: &Expr, rhs: &Expr, at: Span) -> Val {
        let m = self.mark();
        let va = self.expr(lhs);
        let a = self.expect_str(va, lhs, "`..`");
        let vb = self.expr(rhs);
        let b = self.expect_str(vb, rhs, "`..`");
        self.reset(m);
        let (Some(a), Some(b)) = (a, b) else { return Val::Err };
        let dst = self.alloc_str(at);
        self.emit(Opcode::Scat, &[dst as i32, a as i32, b as i32]);
        Val::Str(dst)
    }

    pub(super) fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, at: Span) -> Val {
        let m = self.mark();
        let what = format!("`{}`", op.symbol());
        // `x + c` and `x - c` with a small constant: one `addi`
        let imm = rhs.const_int().and_then(|c| match op {
            BinOp::Add => i32::try_from(c).ok(),
            BinOp::Sub => c.checked_neg().and_then(|n| i32::try_from(n).ok()),
            _ => None,
        });
        if let Some(imm) = imm {
            let v = self.expr(lhs);
            let Some(a) = self.expect_int(v, lhs, &what) else {
                self.reset(m);
                return Val::Err;
            };
            self.reset(m);
            let dst = self.alloc_int(at);
            self.emit(Opcode::Addi, &[dst as i32, a as i32, imm]);
            return Val::Int(dst);
        }
        let va = self.expr(lhs);
        let a = self.expect_int(va, lhs, &what);
        let vb = self.expr(rhs);
        let b = self.expect_int(vb, rhs, &what);
        self.reset(m);
        let (Some(a), Some(b), Some(opc)) = (a, b, arith(op)) else { return Val::Err };
        let dst = self.alloc_int(at);
        self.emit(opc, &[dst as i32, a as i32, b as i32]);
        Val::Int(dst)
    }

    pub(super) fn name(&mut self, id: &Ident) -> Val {
        if let Some(l) = self.local(&id.name) {
            return match l.ty {
                Ty::Int => Val::Int(l.reg),
                Ty::Str => Val::Str(l.reg),
                Ty::Err => Val::Err,
            };
        }
        match self.globals.get(&id.name).copied() {
            Some((Global::Int(g), _)) => {
                let r = self.alloc_int(id.span);
                self.emit(Opcode::Ldg, &[r as i32, g as i32]);
                return Val::Int(r);
            }
            Some((Global::Str(t), _)) => return Val::Str(self.load_str_global(t, id.span)),
            Some((Global::Table(_), decl)) => {
                self.err(
                    Diagnostic::error(format!("table `{}` used as a value", id.name), id.span)
                        .label(decl, "declared as a table here")
                        .note(format!(
                            "read an entry with `{0}[key]`, count entries with `len({0})`, or print it with `print({0})`",
                            id.name
                        )),
                );
                return Val::Err;
            }
            None => {}
        }
        match id.name.as_str() {
            "execname" => {
                let s = self.alloc_str(id.span);
                self.emit(Opcode::Comm, &[s as i32]);
                return Val::Str(s);
            }
            "probename" if self.f.syscall.is_some() => return self.syscall_probename(id.span),
            "probename" => {
                let name = match &self.f.target {
                    Some(ProbeTarget::Tracepoint { subsys, event }) => {
                        format!("{}:{}", subsys.name, event.name)
                    }
                    Some(t) => t.spec(),
                    None => {
                        self.err(
                            Diagnostic::error("`probename` has no value in a function", id.span)
                                .note("pass it as an argument from the probe block"),
                        );
                        return Val::Err;
                    }
                };
                let name: String = name.chars().take(MAX_STR).collect();
                return Val::Str(self.load_str(&name, id.span));
            }
            "arch" => {
                return Val::Str(self.load_str(board_arch_name(self.env.arch), id.span));
            }
            "kernel_v" => {
                let v = self.env.resolver.kernel_release().unwrap_or_else(|| "unknown".into());
                let v: String = v.chars().take(MAX_STR).collect();
                return Val::Str(self.load_str(&v, id.span));
            }
            "arg" => {
                self.err(
                    Diagnostic::error("`arg` needs a parameter name: `arg.NAME`", id.span)
                        .note("e.g. `arg.skb->len`; `arg0` .. `arg9` read arguments by position"),
                );
                return Val::Err;
            }
            _ => {}
        }
        match builtins::ctx_field(&id.name) {
            Some(field)
                if self.f.syscall.is_some() && (field.arg_index().is_some() || field == CtxField::Retval) =>
            {
                self.syscall_value(field, id)
            }
            Some(field) => {
                if !self.ctx_available(field, id) {
                    return Val::Err;
                }
                let r = self.alloc_int(id.span);
                self.emit(Opcode::Ctx, &[r as i32, field as i32]);
                Val::Int(r)
            }
            None if builtins::is_function(&id.name) || self.decls.contains_key(&id.name) => {
                self.err(Diagnostic::error(format!("`{}` is a function; call it", id.name), id.span));
                Val::Err
            }
            None => {
                self.unknown(id, false);
                Val::Err
            }
        }
    }

    /// `retval` only in kretprobes; `argN` only below the arch's register count, never in begin/end.
    pub(super) fn ctx_available(&mut self, field: CtxField, id: &Ident) -> bool {
        let at = self.f.at;
        if field == CtxField::Retval && !matches!(at, Where::Kretprobe | Where::Invalid | Where::Func) {
            self.err(
                Diagnostic::error("`retval` is only available in kretprobe blocks", id.span)
                    .note(format!("this is a `{}` block", self.f.spec)),
            );
            return false;
        }
        if let Some(n) = field.arg_index() {
            if matches!(at, Where::Begin | Where::End | Where::Timer) {
                self.err(Diagnostic::error(
                    format!(
                        "`{}` has no value in `{}`: it is not called with arguments",
                        id.name, self.f.spec
                    ),
                    id.span,
                ));
                return false;
            }
            if at == Where::Kretprobe {
                self.err(
                    Diagnostic::error(format!("`{}` is not available in kretprobe blocks", id.name), id.span)
                        .note("when the function returns, its argument registers hold other values")
                        .note("read the argument in a kprobe on the same function"),
                );
                return false;
            }
            let max = if at == Where::Tracepoint { 6 } else { self.env.arch.register_args() };
            if n >= max {
                let d = if at == Where::Tracepoint {
                    Diagnostic::error(format!("`{}` is not available in tracepoints", id.name), id.span)
                        .note("a tracepoint passes its first 6 arguments: arg0 to arg5")
                } else {
                    Diagnostic::error(
                        format!("`{}` is not available on {}", id.name, board_arch_name(self.env.arch)),
                        id.span,
                    )
                    .note(format!(
                        "the {} calling convention passes {max} arguments in registers: arg0 to arg{}",
                        board_arch_name(self.env.arch),
                        max - 1
                    ))
                };
                self.err(d);
                return false;
            }
        }
        true
    }
}
