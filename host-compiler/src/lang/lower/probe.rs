//! Probes: one function per probe block, where it attaches (resolved through the [`Resolver`]),
//! and the `trace_begin` that initializes globals.

use super::*;

impl Lower<'_, '_> {
    pub(super) fn probe(&mut self, p: &Probe, with_inits: bool) {
        let (at, kind) = match &p.target {
            ProbeTarget::Kprobe { ret: false, .. } => (Where::Kprobe, Some(ProbeKind::Kprobe)),
            ProbeTarget::Kprobe { ret: true, .. } => (Where::Kretprobe, Some(ProbeKind::Kretprobe)),
            ProbeTarget::Tracepoint { .. } => (Where::Tracepoint, Some(ProbeKind::Tracepoint)),
            ProbeTarget::Begin => (Where::Begin, Some(ProbeKind::Begin)),
            ProbeTarget::End => (Where::End, Some(ProbeKind::End)),
            ProbeTarget::Invalid => (Where::Invalid, None),
        };
        if let Some(k @ (ProbeKind::Begin | ProbeKind::End)) = kind
            && let Some(first) = self.prog.probes.iter().find(|q| q.kind == k)
        {
            let first = first.span;
            self.err(
                Diagnostic::error(format!("a second `{}` block", p.target.spec()), p.head)
                    .label(first, "the first one is here")
                    .note("a program has at most one `trace_begin` and one `trace_end`"),
            );
        }
        let (addr, name) = self.attach_point(&p.target);
        self.f = FuncState::new(at);
        self.f.spec = p.target.spec();
        if with_inits {
            self.emit_inits(p.head);
        }
        for s in &p.body.stmts {
            self.stmt(s);
        }
        let Some(kind) = kind else { return };
        let func = self.finish_func(self.f.spec.clone(), p.body.span);
        if self.prog.probes.len() == MAX_PROBES as usize {
            self.err(Diagnostic::error(
                format!("too many probes: a program may have at most {MAX_PROBES}"),
                p.head,
            ));
        }
        self.prog.probes.push(ProbeOut { kind, addr, name, func, spec: p.target.spec(), span: p.head });
    }

    pub(super) fn finish_func(&mut self, name: String, span: Span) -> u16 {
        self.emit(Opcode::Ret, &[]);
        let f = std::mem::replace(&mut self.f, FuncState::new(Where::Invalid));
        let id = self.prog.funcs.len().min(u16::MAX as usize) as u16;
        self.prog.funcs.push(FuncOut { code: f.code, n_int: f.max_int, n_str: f.max_str, name, span });
        id
    }

    pub(super) fn emit_inits(&mut self, at: Span) {
        for (g, v) in self.global_inits.clone() {
            if v != 0 {
                let m = self.mark();
                let r = self.alloc_int(at);
                self.load_const(r, v, at);
                self.emit(Opcode::Stg, &[g as i32, r as i32]);
                self.reset(m);
            }
        }
    }

    /// No `trace_begin` but globals with initial values: a `trace_begin` of their own, last.
    pub(super) fn init_probe(&mut self, script: &Script) {
        let span = script
            .items
            .iter()
            .find_map(|i| match i {
                Item::Global(d) => Some(d.span),
                Item::Probe(_) => None,
            })
            .unwrap_or(span(0, 0));
        self.f = FuncState::new(Where::Begin);
        self.emit_inits(span);
        let spec = "trace_begin (global initializers)".to_string();
        let func = self.finish_func(spec.clone(), span);
        self.prog.probes.push(ProbeOut {
            kind: ProbeKind::Begin,
            addr: 0,
            name: String::new(),
            func,
            spec,
            span,
        });
    }

    /// Kernel address and image name of a probe; resolution errors are reported here.
    pub(super) fn attach_point(&mut self, t: &ProbeTarget) -> (u64, String) {
        match t {
            ProbeTarget::Kprobe { sym, .. } => {
                self.check_probe_name(sym);
                match self.env.resolver.kprobe_addr(&sym.name) {
                    Ok(0) if self.env.need_addresses => {
                        self.err(
                            Diagnostic::error(format!("no kernel address for `{}`", sym.name), sym.span).note(
                                "compiling a kprobe needs the board kernel's symbols: pass `--vmlinux PATH`",
                            ),
                        );
                        (0, sym.name.clone())
                    }
                    Ok(addr) => (addr, sym.name.clone()),
                    Err(msg) => {
                        self.err(
                            Diagnostic::error(
                                format!("cannot resolve kernel function `{}`", sym.name),
                                sym.span,
                            )
                            .note(msg),
                        );
                        (0, sym.name.clone())
                    }
                }
            }
            ProbeTarget::Tracepoint { subsys, event } => {
                self.check_probe_name(event);
                if let Err(msg) = self.env.resolver.tracepoint(&subsys.name, &event.name) {
                    let at = crate::lang::diag::join(subsys.span, event.span);
                    self.err(
                        Diagnostic::error(
                            format!("cannot resolve tracepoint `{}:{}`", subsys.name, event.name),
                            at,
                        )
                        .note(msg),
                    );
                }
                (0, event.name.clone())
            }
            ProbeTarget::Begin | ProbeTarget::End | ProbeTarget::Invalid => (0, String::new()),
        }
    }

    pub(super) fn check_probe_name(&mut self, id: &Ident) {
        if id.name.len() > MAX_PROBE_NAME {
            self.err(Diagnostic::error(
                format!(
                    "`{}` is {} bytes long; probe targets are at most {MAX_PROBE_NAME}",
                    id.name,
                    id.name.len()
                ),
                id.span,
            ));
        }
    }

    pub(super) fn finish_tables(&mut self) {
        for (t, (key, _)) in self.prog.tables.iter_mut().zip(&self.table_keys) {
            if let Some((k, _)) = key {
                t.key = *k;
            }
        }
    }
}
