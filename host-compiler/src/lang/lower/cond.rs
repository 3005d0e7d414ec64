//! Conditions: comparisons, `!`, `&&` and `||` compiled straight to conditional jumps, and
//! materialized as 0/1 when used as values.

use super::*;

impl Lower<'_, '_> {
    /// Emit code that jumps when `e`'s truth equals `when` and falls through otherwise; returns the
    /// jumps to patch. Strings are true when not empty; `nil` is false.
    pub(super) fn branch(&mut self, e: &Expr, when: bool) -> Vec<Patch> {
        if let Some(c) = e.const_int() {
            return if (c != 0) == when { vec![self.emit_jump(Opcode::Jmp, &[], &[])] } else { Vec::new() };
        }
        match &e.kind {
            ExprKind::Unary { op: UnOp::Not, operand } => self.branch(operand, !when),
            ExprKind::Binary { op: op @ (BinOp::And | BinOp::Or), lhs, rhs, .. } => {
                // `a && b` jumps on true only if both are; on false if either is false
                let short = *op == BinOp::Or; // the value that decides `a op b` from `a` alone
                if when == short {
                    let mut j = self.branch(lhs, when);
                    j.extend(self.branch(rhs, when));
                    j
                } else {
                    let skip = self.branch(lhs, !when);
                    let j = self.branch(rhs, when);
                    self.patch_here(skip);
                    j
                }
            }
            ExprKind::Binary { op, lhs, rhs, .. } if op.is_comparison() => {
                self.compare(*op, lhs, rhs, when, e.span)
            }
            _ => {
                let m = self.mark();
                let v = self.expr(e);
                self.reset(m);
                match v {
                    Val::Int(r) => {
                        let op = if when { Opcode::Jnz } else { Opcode::Jz };
                        vec![self.emit_jump(op, &[r as i32], &[])]
                    }
                    Val::Str(s) => {
                        let n = self.alloc_int(e.span);
                        self.emit(Opcode::Slen, &[n as i32, s as i32]);
                        self.reset(m);
                        let op = if when { Opcode::Jnz } else { Opcode::Jz };
                        vec![self.emit_jump(op, &[n as i32], &[])]
                    }
                    Val::Void => {
                        self.no_value(e);
                        Vec::new()
                    }
                    Val::Err => Vec::new(),
                }
            }
        }
    }

    fn compare(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, when: bool, at: Span) -> Vec<Patch> {
        // `x == nil` / `s != nil`: compare against 0 or the empty string
        let nil_l = matches!(lhs.kind, ExprKind::Nil);
        let nil_r = matches!(rhs.kind, ExprKind::Nil);
        if (nil_l || nil_r) && matches!(op, BinOp::Eq | BinOp::Ne) {
            let other = if nil_l { rhs } else { lhs };
            let is_nil = op == BinOp::Eq;
            // jump when (other is empty) == (when == is_nil)
            return self.branch(other, when != is_nil);
        }
        let m = self.mark();
        let a = self.expr(lhs);
        let b = self.expr(rhs);
        self.reset(m);
        let sym = op.symbol();
        match (a, b) {
            (Val::Int(x), Val::Int(y)) => {
                let op = if when { op } else { negate(op) };
                let (opc, p, q) = match op {
                    BinOp::Eq => (Opcode::Jeq, x, y),
                    BinOp::Ne => (Opcode::Jne, x, y),
                    BinOp::Lt => (Opcode::Jlt, x, y),
                    BinOp::Le => (Opcode::Jle, x, y),
                    BinOp::Gt => (Opcode::Jlt, y, x),
                    _ => (Opcode::Jle, y, x),
                };
                vec![self.emit_jump(opc, &[p as i32, q as i32], &[])]
            }
            (Val::Str(x), Val::Str(y)) if matches!(op, BinOp::Eq | BinOp::Ne) => {
                let eq = (op == BinOp::Eq) == when;
                let opc = if eq { Opcode::Jseq } else { Opcode::Jsne };
                vec![self.emit_jump(opc, &[x as i32, y as i32], &[])]
            }
            (Val::Str(_), Val::Str(_)) => {
                self.err(
                    Diagnostic::error(format!("strings cannot be ordered with `{sym}`"), at)
                        .note("strings compare only with `==` and `!=`"),
                );
                Vec::new()
            }
            (Val::Int(_), Val::Str(_)) | (Val::Str(_), Val::Int(_)) => {
                let (l, r) = (a.ty().name(), b.ty().name());
                self.err(
                    Diagnostic::error(format!("`{sym}` compares {l} with {r}"), at)
                        .label(lhs.span, l)
                        .label(rhs.span, r),
                );
                Vec::new()
            }
            (Val::Void, _) => {
                self.no_value(lhs);
                Vec::new()
            }
            (_, Val::Void) => {
                self.no_value(rhs);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A condition as a value: 1 when true, 0 when false.
    pub(super) fn truth_value(&mut self, e: &Expr) -> Val {
        let m = self.mark();
        let before = self.diags.len();
        let dst = self.alloc_int(e.span);
        self.emit(Opcode::Movi, &[dst as i32, 0]);
        let skip = self.branch(e, false);
        self.emit(Opcode::Movi, &[dst as i32, 1]);
        self.patch_here(skip);
        self.reset(m);
        let dst2 = self.alloc_int(e.span);
        debug_assert_eq!(dst, dst2);
        if self.diags.len() > before { Val::Err } else { Val::Int(dst) }
    }
}

/// The comparison that is true exactly when `op` is false.
fn negate(op: BinOp) -> BinOp {
    match op {
        BinOp::Eq => BinOp::Ne,
        BinOp::Ne => BinOp::Eq,
        BinOp::Lt => BinOp::Ge,
        BinOp::Le => BinOp::Gt,
        BinOp::Gt => BinOp::Le,
        BinOp::Ge => BinOp::Lt,
        other => other,
    }
}
