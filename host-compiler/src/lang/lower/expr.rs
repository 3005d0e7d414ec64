//! Expressions: constants, names (locals, globals, builtins), table reads and arithmetic.

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
                        .note("strings (keys, values, execname) are at most 64 bytes"),
                    );
                    return Val::Err;
                }
                let id = self.string_id(s.as_bytes(), e.span);
                let r = self.alloc_str(e.span);
                self.emit(Opcode::Lds, &[r as i32, id as i32]);
                Val::Str(r)
            }
            ExprKind::Name(id) => self.name(id),
            ExprKind::Index { base, key } => {
                let Some(t) = self.table_of(base) else {
                    self.expr(key);
                    return Val::Err;
                };
                let m = self.mark();
                let Some(k) = self.key(t, key) else { return Val::Err };
                self.reset(m);
                let dst = self.alloc_int(e.span);
                let Some(key) = k.key_arg() else { return Val::Err };
                self.emit_keyed(Opcode::Tld, &[dst as i32, t as i32], key);
                Val::Int(dst)
            }
            ExprKind::Unary { op: UnOp::Neg, operand } => {
                let m = self.mark();
                let v = self.expr(operand);
                let Some(r) = self.expect_int(v, operand, "`-`") else {
                    self.reset(m);
                    return Val::Err;
                };
                self.reset(m);
                let dst = self.alloc_int(e.span);
                self.emit(Opcode::Neg, &[dst as i32, r as i32]);
                Val::Int(dst)
            }
            ExprKind::Binary { op, lhs, rhs, .. } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Call { callee, args } => {
                if FUNCTIONS.contains(&callee.name.as_str()) {
                    return Val::Void;
                }
                let d = if builtin(&callee.name).is_some() || self.globals.contains_key(&callee.name) {
                    Diagnostic::error(format!("`{}` is not a function", callee.name), callee.span)
                } else {
                    let d = Diagnostic::error(format!("unknown function `{}`", callee.name), callee.span);
                    match did_you_mean(&callee.name, FUNCTIONS.iter().copied()) {
                        Some(s) => d.note(s),
                        None => d.note("the functions are `print` and `printf`"),
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
            ExprKind::Table => {
                self.err(
                    Diagnostic::error("a table can only be created by a top-level `var NAME = {}`", e.span)
                        .note("tables are global; declare them outside probe blocks"),
                );
                Val::Err
            }
            ExprKind::Error => Val::Err,
        }
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
        let (Some(a), Some(b)) = (a, b) else { return Val::Err };
        let dst = self.alloc_int(at);
        self.emit(arith(op), &[dst as i32, a as i32, b as i32]);
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
            Some((Global::Table(_), decl)) => {
                self.err(
                    Diagnostic::error(format!("table `{}` used as a value", id.name), id.span)
                        .label(decl, "declared as a table here")
                        .note(format!(
                            "read an entry with `{0}[key]`, or print it with `print({0})`",
                            id.name
                        )),
                );
                return Val::Err;
            }
            None => {}
        }
        match builtin(&id.name) {
            Some(Builtin::Comm) => {
                let s = self.alloc_str(id.span);
                self.emit(Opcode::Comm, &[s as i32]);
                Val::Str(s)
            }
            Some(Builtin::Ctx(field)) => {
                if !self.ctx_available(field, id) {
                    return Val::Err;
                }
                let r = self.alloc_int(id.span);
                self.emit(Opcode::Ctx, &[r as i32, field as i32]);
                Val::Int(r)
            }
            None if FUNCTIONS.contains(&id.name.as_str()) => {
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
        if field == CtxField::Retval && !matches!(at, Where::Kretprobe | Where::Invalid) {
            self.err(
                Diagnostic::error("`retval` is only available in kretprobe blocks", id.span)
                    .note(format!("this is a `{}` block", self.f.spec)),
            );
            return false;
        }
        if let Some(n) = field.arg_index() {
            if matches!(at, Where::Begin | Where::End) {
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
            let max = self.env.arch.register_args();
            if n >= max {
                self.err(
                    Diagnostic::error(
                        format!("`{}` is not available on {}", id.name, board_arch_name(self.env.arch)),
                        id.span,
                    )
                    .note(format!(
                        "the {} calling convention passes {max} arguments in registers: arg0 to arg{}",
                        board_arch_name(self.env.arch),
                        max - 1
                    )),
                );
                return false;
            }
        }
        true
    }
}
