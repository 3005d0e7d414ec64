//! Probes and globals: one function per probe block (per matched tracepoint, for globs), where it
//! attaches (resolved through the [`Resolver`]), the `trace_begin` that initializes globals, and
//! the final table shapes and frame budget.

use ktap_protocol::image::frame_bytes;
use ktap_protocol::limits::{MAX_FRAME_BUDGET, MAX_TIMER_PERIOD_NS, MIN_TIMER_PERIOD_NS};

use super::*;

/// `*` or `?` in a name: a glob.
pub(super) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

impl Lower<'_, '_> {
    pub(super) fn declare_global(&mut self, decl: &VarDecl) {
        let id = &decl.name;
        if !self.declarable(id) {
            return;
        }
        if let Some((_, first)) = self.globals.get(&id.name) {
            let first = *first;
            self.err(
                Diagnostic::error(format!("`{}` is declared twice", id.name), id.span)
                    .label(first, "first declared here"),
            );
            return;
        }
        let init = decl.init.as_ref();
        let capacity = match init.map(|e| &e.kind) {
            Some(ExprKind::Table(_)) => Some(DEFAULT_TABLE_CAPACITY),
            Some(ExprKind::Call { callee, args }) if callee.name == "table" => {
                Some(self.capacity(args, init.map_or(id.span, |e| e.span)))
            }
            _ => None,
        };
        if let Some(capacity) = capacity {
            let t = self.new_table(id, capacity);
            self.globals.insert(id.name.clone(), (Global::Table(t), id.span));
            if let Some(ExprKind::Table(entries)) = init.map(|e| &e.kind)
                && !entries.is_empty()
            {
                self.table_entries(t, entries, capacity);
            }
            return;
        }
        if let Some(ExprKind::Str(s)) = init.map(|e| &e.kind) {
            // a string global: a one-entry table whose key is the value (see `load_str_global`)
            let t = self.new_table(id, 1);
            if let Some(u) = self.tables.get_mut(t as usize)
                && u.keys.is_none()
            {
                u.keys = Some((vec![KeyKind::Str], id.span));
            }
            self.globals.insert(id.name.clone(), (Global::Str(t), id.span));
            if !s.is_empty() {
                self.str_inits.push((t, s.clone()));
            }
            return;
        }
        let value = match init.map(|e| (&e.kind, e)) {
            None | Some((ExprKind::Error, _)) => 0,
            Some((ExprKind::Nil, _)) => 0,
            Some((_, e)) => match e.const_int() {
                Some(v) => v,
                None => {
                    self.err(
                        Diagnostic::error("a global's initial value must be a constant", e.span)
                            .note("use integer literals and operators; assign other values in `trace_begin`"),
                    );
                    0
                }
            },
        };
        let n = self.prog.globals.len();
        if n >= MAX_GLOBALS as usize {
            self.err(Diagnostic::error(
                format!("too many globals: a program may have at most {MAX_GLOBALS}"),
                id.span,
            ));
        }
        let g = n.min(u16::MAX as usize) as u16;
        self.prog.globals.push(id.name.clone());
        self.global_inits.push((g, value));
        self.globals.insert(id.name.clone(), (Global::Int(g), id.span));
    }

    /// A new table named for `id` (its key kinds and values decided by its uses).
    fn new_table(&mut self, id: &Ident, capacity: u32) -> u8 {
        let n = self.prog.tables.len();
        if n >= MAX_TABLES as usize {
            self.err(Diagnostic::error(
                format!(
                    "too many tables: a program may have at most {MAX_TABLES} (string globals count too)"
                ),
                id.span,
            ));
        }
        self.prog.tables.push(TableOut {
            name: id.name.clone(),
            span: id.span,
            keys: vec![KeyKind::Int],
            stack_keys: vec![false],
            named_keys: vec![None],
            value: ValueKind::Int,
            bars: false,
            capacity,
        });
        let seed = self.seeds.get(n).cloned().unwrap_or_default();
        self.tables.push(seed);
        n.min(255) as u8
    }

    /// The entries of a table constructor: constant keys of one kind (positional entries are keyed
    /// 1, 2, ...) and constant integer values, stored by `trace_begin`. The keys decide the table's
    /// key kind.
    fn table_entries(&mut self, t: u8, entries: &[TableEntry], capacity: u32) {
        if entries.len() > capacity as usize {
            let at = join(entries[0].span, entries[entries.len() - 1].span);
            self.err(Diagnostic::error(
                format!("{} entries do not fit a table of capacity {capacity}", entries.len()),
                at,
            ));
        }
        let mut next = 1;
        let mut kind: Option<(KeyKind, Span)> = None;
        let mut out = Vec::new();
        for e in entries {
            let (key, at) = match &e.key {
                None => {
                    next += 1;
                    (InitKey::Int(next - 1), e.span)
                }
                Some(k) => {
                    match (&k.kind, k.const_int()) {
                        (ExprKind::Str(s), _) => (InitKey::Str(s.clone()), k.span),
                        (_, Some(v)) => (InitKey::Int(v), k.span),
                        _ => {
                            self.err(
                            Diagnostic::error("a key in a table constructor must be a constant", k.span)
                                .note("write an integer or a string: `[1] = 5`, `[\"read\"] = 5`, `read = 5`"),
                        );
                            continue;
                        }
                    }
                }
            };
            let kk = if matches!(key, InitKey::Str(_)) { KeyKind::Str } else { KeyKind::Int };
            match kind {
                None => kind = Some((kk, at)),
                Some((first, first_at)) if first != kk => {
                    let name = |k: KeyKind| if k == KeyKind::Str { "a string" } else { "an integer" };
                    self.err(
                        Diagnostic::error(
                            format!("this key is {}, the table's keys are {}", name(kk), name(first)),
                            at,
                        )
                        .label(first_at, "the first key")
                        .note(
                            "positional entries are keyed 1, 2, ...; `name = v` is the string key \"name\"",
                        ),
                    );
                    continue;
                }
                Some(_) => {}
            }
            let Some(v) = e.value.const_int() else {
                self.err(
                    Diagnostic::error(
                        "a value in a table constructor must be an integer constant",
                        e.value.span,
                    )
                    .note("table values are integers; assign other values in `trace_begin`"),
                );
                continue;
            };
            out.push((key, v, e.span));
        }
        if let Some((k, at)) = kind
            && let Some(u) = self.tables.get_mut(t as usize)
            && u.keys.is_none()
        {
            u.keys = Some((vec![k], at));
            u.stack_keys = vec![false];
        }
        self.table_inits.push((t, out));
    }

    /// `table(N)`: a constant capacity within the VM's limits.
    fn capacity(&mut self, args: &[Expr], at: Span) -> u32 {
        let [n] = args else {
            self.err(Diagnostic::error("`table` takes one argument: the capacity", at));
            return DEFAULT_TABLE_CAPACITY;
        };
        let max = ktap_protocol::limits::MAX_TABLE_CAPACITY;
        match n.const_int() {
            Some(v) if v >= 1 && v <= i64::from(max) => v as u32,
            Some(v) => {
                self.err(
                    Diagnostic::error(format!("table capacity {v} is out of range"), n.span)
                        .note(format!("a table holds 1 to {max} entries")),
                );
                DEFAULT_TABLE_CAPACITY
            }
            None => {
                self.err(Diagnostic::error("a table's capacity must be a constant", n.span));
                DEFAULT_TABLE_CAPACITY
            }
        }
    }

    pub(super) fn probe(&mut self, p: &Probe, with_inits: bool) {
        let (at, kind) = match &p.target {
            ProbeTarget::Kprobe { ret: false, .. } => (Where::Kprobe, Some(ProbeKind::Kprobe)),
            ProbeTarget::Kprobe { ret: true, .. } => (Where::Kretprobe, Some(ProbeKind::Kretprobe)),
            ProbeTarget::Tracepoint { .. } => (Where::Tracepoint, Some(ProbeKind::Tracepoint)),
            ProbeTarget::Timer { .. } => (Where::Timer, Some(ProbeKind::Timer)),
            ProbeTarget::Begin => (Where::Begin, Some(ProbeKind::Begin)),
            ProbeTarget::End => (Where::End, Some(ProbeKind::End)),
            ProbeTarget::Invalid => (Where::Invalid, None),
        };
        if let Some(k @ (ProbeKind::Begin | ProbeKind::End)) = kind
            && let Some(first) = self.prog.probes.iter().find(|q| q.kind == k && !q.spec.contains('('))
        {
            let first = first.span;
            self.err(
                Diagnostic::error(format!("a second `{}` block", p.target.spec()), p.head)
                    .label(first, "the first one is here")
                    .note("a program has at most one `trace_begin` and one `trace_end`"),
            );
        }
        // one handler per attach point: a glob gives one per matching tracepoint
        self.cur_head = p.head;
        let targets = self.attach_points(&p.target);
        if targets.is_empty() {
            // still check the body once
            self.handler(p, at, p.target.clone(), with_inits);
            return;
        }
        for (target, addr, name, every_cpu) in targets {
            let spec = target.spec();
            let syscalls = self.pending_syscall.clone();
            let func = self.handler(p, at, target, with_inits);
            let Some(kind) = kind else { continue };
            if self.prog.probes.len() == MAX_PROBES as usize {
                self.err(Diagnostic::error(
                    format!("too many probes: a program may have at most {MAX_PROBES}"),
                    p.head,
                ));
            }
            self.prog.probes.push(ProbeOut {
                kind,
                addr,
                every_cpu,
                name,
                func,
                spec,
                span: p.head,
                syscalls,
            });
        }
    }

    /// Compile one handler for `target`; returns its function id.
    fn handler(&mut self, p: &Probe, at: Where, target: ProbeTarget, with_inits: bool) -> u16 {
        self.f = FuncState::new(at);
        self.f.spec = target.spec();
        self.f.target = Some(target);
        self.f.syscall = self.pending_syscall.take();
        if with_inits {
            self.emit_inits(p.head);
        }
        self.syscall_filter(p.head);
        self.make_syscall_names();
        self.open_scope();
        self.syscall_probename_once(p, p.head);
        if let Some(pred) = &p.pred {
            let m = self.mark();
            let skip = self.branch(pred, false);
            self.f.to_end.extend(skip);
            self.reset(m);
        }
        self.open_scope();
        for s in &p.body.stmts {
            self.stmt(s);
        }
        self.close_scope();
        self.close_scope();
        let ends = std::mem::take(&mut self.f.to_end);
        self.patch_here(ends);
        self.emit(Opcode::Ret, &[]);
        self.finish_func(self.f.spec.clone(), p.body.span, 0, 0, RetKind::Void)
    }

    pub(super) fn finish_func(&mut self, name: String, span: Span, pi: u8, ps: u8, ret: RetKind) -> u16 {
        let f = std::mem::replace(&mut self.f, FuncState::new(Where::Invalid));
        let id = self.prog.funcs.len().min(u16::MAX as usize) as u16;
        let own = frame_bytes(f.max_int, f.max_str);
        let below = f.callees.iter().filter_map(|c| self.func_depth.get(c)).copied().max().unwrap_or(0);
        self.func_depth.insert(id, own + below);
        self.prog.funcs.push(FuncOut {
            code: f.code,
            n_int: f.max_int,
            n_str: f.max_str,
            params_int: pi,
            params_str: ps,
            ret,
            name,
            span,
        });
        id
    }

    /// Whether globals need a `trace_begin` to set them.
    pub(super) fn has_inits(&self) -> bool {
        self.global_inits.iter().any(|(_, v)| *v != 0)
            || !self.table_inits.is_empty()
            || !self.str_inits.is_empty()
    }

    pub(super) fn emit_inits(&mut self, at: Span) {
        for (t, entries) in self.table_inits.clone() {
            for (key, v, at) in entries {
                let m = self.mark();
                let k = match &key {
                    InitKey::Int(k) => {
                        let r = self.alloc_int(at);
                        self.load_const(r, *k, at);
                        Arg::Int(r)
                    }
                    InitKey::Str(s) => Arg::Str(self.load_str(s, at)),
                };
                let r = self.alloc_int(at);
                self.load_const(r, v, at);
                self.emit_args(Opcode::Tst, &[t as i32, r as i32], &[k]);
                self.reset(m);
            }
        }
        for (t, s) in self.str_inits.clone() {
            let m = self.mark();
            let r = self.load_str(&s, at);
            self.store_str_global(t, r, at);
            self.reset(m);
        }
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
                _ => None,
            })
            .unwrap_or(span(0, 0));
        self.f = FuncState::new(Where::Begin);
        self.emit_inits(span);
        self.emit(Opcode::Ret, &[]);
        let spec = "trace_begin (global initializers)".to_string();
        let func = self.finish_func(spec.clone(), span, 0, 0, RetKind::Void);
        self.prog.probes.push(ProbeOut {
            kind: ProbeKind::Begin,
            addr: 0,
            every_cpu: false,
            name: String::new(),
            func,
            spec,
            span,
            syscalls: None,
        });
    }

    /// Where a probe attaches: (target, address or period, image name, every CPU) for each attach
    /// point; resolution errors are reported here. Empty after an error.
    fn attach_points(&mut self, t: &ProbeTarget) -> Vec<(ProbeTarget, u64, String, bool)> {
        match t {
            ProbeTarget::Kprobe { sym, off, .. } => {
                self.check_probe_name(sym);
                let addr = match self.env.resolver.kprobe_addr(&sym.name) {
                    Ok(0) if self.env.need_addresses => {
                        self.err(
                            Diagnostic::error(format!("no kernel address for `{}`", sym.name), sym.span).note(
                                "compiling a kprobe needs the board kernel's symbols: pass `--vmlinux PATH`",
                            ),
                        );
                        0
                    }
                    Ok(0) => 0,
                    Ok(addr) => addr.wrapping_add(*off),
                    Err(msg) => {
                        self.err(
                            Diagnostic::error(format!("unknown kernel function `{}`", sym.name), sym.span)
                                .note(msg),
                        );
                        return Vec::new();
                    }
                };
                vec![(t.clone(), addr, sym.name.clone(), false)]
            }
            ProbeTarget::Tracepoint { subsys, event } if subsys.name == "syscalls" => {
                self.syscall_attach(t, subsys, event)
            }
            ProbeTarget::Tracepoint { subsys, event } if is_glob(&subsys.name) || is_glob(&event.name) => {
                let at = join(subsys.span, event.span);
                match self.env.resolver.tracepoints_matching(&subsys.name, &event.name) {
                    Ok(list) if list.is_empty() => {
                        self.err(Diagnostic::error(
                            format!("no tracepoint matches `{}:{}`", subsys.name, event.name),
                            at,
                        ));
                        Vec::new()
                    }
                    Ok(list)
                        if self.env.need_addresses && list.iter().any(|(s, e)| is_glob(s) || is_glob(e)) =>
                    {
                        // a kernel that cannot list its tracepoints (no vmlinux) left the pattern as is
                        self.err(
                            Diagnostic::error(
                                format!("cannot expand tracepoint pattern `{}:{}`", subsys.name, event.name),
                                at,
                            )
                            .note("compiling a tracepoint pattern needs the board kernel's vmlinux: pass `--vmlinux PATH`"),
                        );
                        Vec::new()
                    }
                    Ok(list) => list
                        .into_iter()
                        .map(|(s, e)| {
                            let target = ProbeTarget::Tracepoint {
                                subsys: Ident { name: s, span: subsys.span },
                                event: Ident { name: e.clone(), span: event.span },
                            };
                            (target, 0, e, false)
                        })
                        .collect(),
                    Err(msg) => {
                        self.err(
                            Diagnostic::error(
                                format!("cannot expand tracepoint pattern `{}:{}`", subsys.name, event.name),
                                at,
                            )
                            .note(msg),
                        );
                        Vec::new()
                    }
                }
            }
            ProbeTarget::Tracepoint { subsys, event } => {
                self.check_probe_name(event);
                if let Err(msg) = self.env.resolver.tracepoint(&subsys.name, &event.name) {
                    let at = join(subsys.span, event.span);
                    self.err(
                        Diagnostic::error(format!("unknown tracepoint `{}:{}`", subsys.name, event.name), at)
                            .note(msg),
                    );
                    return Vec::new();
                }
                vec![(t.clone(), 0, event.name.clone(), false)]
            }
            ProbeTarget::Timer { period_ns, per_cpu, text } => {
                if *period_ns < MIN_TIMER_PERIOD_NS || *period_ns > MAX_TIMER_PERIOD_NS {
                    self.err(
                        Diagnostic::error(format!("the period of `{text}` is out of range"), self.f_head())
                            .note("timer periods are 1ms to 3600s"),
                    );
                    return Vec::new();
                }
                vec![(t.clone(), *period_ns, String::new(), *per_cpu)]
            }
            ProbeTarget::Begin | ProbeTarget::End => vec![(t.clone(), 0, String::new(), false)],
            ProbeTarget::Invalid => Vec::new(),
        }
    }

    /// The head of the probe being compiled (set by `probe` before resolving).
    fn f_head(&self) -> Span {
        self.cur_head
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

    /// Key shapes and value kinds as the uses decided them.
    pub(super) fn finish_tables(&mut self) {
        for (t, u) in self.prog.tables.iter_mut().zip(&self.tables) {
            if let Some((k, _)) = &u.keys {
                t.keys = k.clone();
                t.stack_keys = u.stack_keys.clone();
                t.stack_keys.resize(k.len(), false);
                t.named_keys = u.named_keys.iter().map(|n| n.id()).collect();
                t.named_keys.resize(k.len(), None);
            }
            t.bars = u.print_hist && u.agg.is_none();
            t.value = match (u.agg, u.linear, u.log2) {
                (None, ..) => ValueKind::Int,
                (Some(_), Some(((min, step, nbuckets), _)), _) => ValueKind::Linear { min, step, nbuckets },
                (Some(_), None, true) => ValueKind::Log2,
                (Some(_), None, false) => ValueKind::Stats,
            };
        }
    }

    /// The image's frame budget: the deepest call path, checked against the VM's limit.
    pub(super) fn frame_budget(&mut self) {
        let deepest = self.func_depth.values().copied().max().unwrap_or(0);
        if deepest > MAX_FRAME_BUDGET {
            let at = self.prog.funcs.first().map_or(span(0, 0), |f| f.span);
            self.err(
                Diagnostic::error(
                    format!(
                        "the deepest call path needs {deepest} bytes of frames, more than {MAX_FRAME_BUDGET}"
                    ),
                    at,
                )
                .note(
                    "string variables take 129 bytes each in every frame; use fewer, or fewer nested calls",
                ),
            );
        }
        self.prog.frame_budget = deepest.min(MAX_FRAME_BUDGET);
    }
}
