//! Named functions: declaration, specialization per argument kinds at the first call, `return`,
//! and recursion (a call reaching a function still being compiled) as a compile error.

use ktap_protocol::limits::MAX_CALL_DEPTH;

use super::*;

impl<'a> Lower<'a, '_> {
    pub(super) fn declare_function(&mut self, f: &'a FuncDecl) {
        let id = &f.name;
        if builtins::is_value(&id.name) || builtins::is_function(&id.name) {
            self.err(Diagnostic::error(
                format!("`{}` is a builtin and cannot be redefined", id.name),
                id.span,
            ));
            return;
        }
        if let Some(prev) = self.decls.get(&id.name) {
            let first = prev.name.span;
            self.err(
                Diagnostic::error(format!("function `{}` is defined twice", id.name), id.span)
                    .label(first, "first defined here"),
            );
            return;
        }
        for (i, p) in f.params.iter().enumerate() {
            if let Some(q) = f.params[..i].iter().find(|q| q.name == p.name) {
                self.err(
                    Diagnostic::error(format!("parameter `{}` is named twice", p.name), p.span)
                        .label(q.span, "first here"),
                );
            }
        }
        if f.params.len() > MAX_ARGS {
            self.err(Diagnostic::error(
                format!("`{}` has {} parameters; at most {MAX_ARGS}", id.name, f.params.len()),
                id.span,
            ));
        }
        self.decls.insert(id.name.clone(), f);
    }

    /// A call of a named function; `None` when `name` is not one.
    pub(super) fn call_user(&mut self, callee: &Ident, args: &[Expr], at: Span) -> Option<Val> {
        let decl = *self.decls.get(&callee.name)?;
        if args.len() != decl.params.len() {
            self.err(
                Diagnostic::error(
                    format!(
                        "`{}` takes {} argument{}, but {} {} given",
                        callee.name,
                        decl.params.len(),
                        if decl.params.len() == 1 { "" } else { "s" },
                        args.len(),
                        if args.len() == 1 { "is" } else { "are" }
                    ),
                    at,
                )
                .label(decl.name.span, "defined here"),
            );
            for a in args {
                self.expr(a);
            }
            return Some(Val::Err);
        }
        // recursion: the callee is still being compiled
        if let Some(pos) = self.compiling.iter().position(|(n, _)| *n == callee.name) {
            let mut chain: Vec<String> =
                self.compiling[pos..].iter().map(|(n, _)| format!("`{n}`")).collect();
            chain.push(format!("`{}`", callee.name));
            let mut d = Diagnostic::error(
                format!("recursion is not allowed: {}", chain.join(" calls ")),
                callee.span,
            )
            .label(decl.name.span, format!("`{}` is defined here", callee.name));
            for (n, call) in &self.compiling[pos + 1..] {
                d = d.label(*call, format!("`{n}` is called here"));
            }
            d = d.note("the VM refuses call cycles so every hit ends in bounded time; use a loop");
            self.err(d);
            for a in args {
                self.expr(a);
            }
            return Some(Val::Err);
        }
        let m = self.mark();
        let mut vals = Vec::new();
        for a in args {
            let v = self.expr(a);
            if v == Val::Void {
                self.no_value(a);
            }
            vals.push(v);
        }
        if vals.iter().any(|v| matches!(v, Val::Err | Val::Void)) {
            self.reset(m);
            return Some(Val::Err);
        }
        let tys: Vec<Ty> = vals.iter().map(|v| v.ty()).collect();
        if self.compiling.len() + 1 >= MAX_CALL_DEPTH {
            self.err(
                Diagnostic::error(format!("calls nest more than {MAX_CALL_DEPTH} deep here"), callee.span)
                    .note("the VM allows a probe handler and at most 8 nested calls"),
            );
            self.reset(m);
            return Some(Val::Err);
        }
        let key = (callee.name.clone(), tys.clone());
        let (id, ret) = match self.specs.get(&key) {
            Some(Some(x)) => *x,
            Some(None) => {
                self.reset(m);
                return Some(Val::Err);
            }
            None => {
                let before = self.diags.len();
                let x = self.compile_function(decl, &tys, callee.span);
                if self.diags.len() > before {
                    // its errors are reported once; its return kind may be wrong, so stay quiet here
                    self.specs.insert(key, None);
                    self.reset(m);
                    return Some(Val::Err);
                }
                self.specs.insert(key, Some(x));
                x
            }
        };
        self.f.callees.push(id);
        let regs: Vec<Arg> = vals.iter().filter_map(|v| v.arg()).collect();
        self.reset(m);
        Some(match ret {
            RetKind::Str => {
                let d = self.alloc_str(at);
                self.emit_args(Opcode::Calls, &[d as i32, id as i32], &regs);
                Val::Str(d)
            }
            RetKind::Int => {
                let d = self.alloc_int(at);
                self.emit_args(Opcode::Call, &[d as i32, id as i32], &regs);
                Val::Int(d)
            }
            RetKind::Void => {
                let d = self.alloc_int(at);
                self.emit_args(Opcode::Call, &[d as i32, id as i32], &regs);
                self.reset(m);
                Val::Void
            }
        })
    }

    /// Compile `decl` with parameters of kinds `tys`; returns its id and return kind.
    fn compile_function(&mut self, decl: &'a FuncDecl, tys: &[Ty], call: Span) -> (u16, RetKind) {
        self.compiling.push((decl.name.name.clone(), call));
        let outer = std::mem::replace(&mut self.f, FuncState::new(Where::Func));
        self.f.spec = format!("function {}", decl.name.name);
        // parameters arrive in r0.. and s0.., each file in call order
        let (mut ni, mut ns) = (0u8, 0u8);
        self.open_scope();
        for (p, ty) in decl.params.iter().zip(tys) {
            let reg = match ty {
                Ty::Str => {
                    ns += 1;
                    self.alloc_str(p.span)
                }
                _ => {
                    ni += 1;
                    self.alloc_int(p.span)
                }
            };
            self.add_local(p, *ty, reg);
        }
        for s in &decl.body.stmts {
            self.stmt(s);
        }
        self.close_scope();
        let ret = self.f.ret.map_or(RetKind::Void, |(k, _)| k);
        // falling off the end returns 0 / "" / nothing
        match ret {
            RetKind::Void => self.emit(Opcode::Ret, &[]),
            RetKind::Int => {
                let r = self.alloc_int(decl.body.span);
                self.emit(Opcode::Movi, &[r as i32, 0]);
                self.emit(Opcode::Retv, &[r as i32]);
            }
            RetKind::Str => {
                let r = self.load_str("", decl.body.span);
                self.emit(Opcode::Rets, &[r as i32]);
            }
        }
        let name = self.f.spec.clone();
        let id = self.finish_func(name, decl.body.span, ni, ns, ret);
        self.f = outer;
        self.compiling.pop();
        (id, ret)
    }

    /// `return [value]`.
    pub(super) fn ret(&mut self, value: Option<&Expr>, at: Span) {
        if self.f.at != Where::Func {
            if let Some(v) = value {
                self.err(
                    Diagnostic::error("a probe block cannot return a value", v.span)
                        .note("`return` alone ends the probe's run"),
                );
                return;
            }
            // leave the handler through its end (the common `ret`)
            let p = self.emit_jump(Opcode::Jmp, &[], &[]);
            self.f.to_end.push(p);
            return;
        }
        let (kind, reg) = match value {
            None => (RetKind::Void, None),
            Some(e) => match self.expr(e) {
                Val::Int(r) => (RetKind::Int, Some(Val::Int(r))),
                Val::Str(r) => (RetKind::Str, Some(Val::Str(r))),
                Val::Void => {
                    self.no_value(e);
                    return;
                }
                Val::Err => return,
            },
        };
        match self.f.ret {
            Some((k, first)) if k != kind => {
                let name = |k: RetKind| match k {
                    RetKind::Void => "nothing",
                    RetKind::Int => "an integer",
                    RetKind::Str => "a string",
                };
                self.err(
                    Diagnostic::error(
                        format!(
                            "this returns {}, but the function returns {} elsewhere",
                            name(kind),
                            name(k)
                        ),
                        at,
                    )
                    .label(first, "first return here"),
                );
                return;
            }
            None => self.f.ret = Some((kind, at)),
            Some(_) => {}
        }
        match reg {
            None => self.emit(Opcode::Ret, &[]),
            Some(Val::Int(r)) => self.emit(Opcode::Retv, &[r as i32]),
            Some(Val::Str(r)) => self.emit(Opcode::Rets, &[r as i32]),
            Some(_) => {}
        }
    }
}
