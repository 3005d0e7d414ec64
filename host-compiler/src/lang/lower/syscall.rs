//! `trace syscalls:sys_enter_NAME` and `sys_exit_NAME` (and globs such as `sys_enter_*`).
//!
//! The `syscalls:*` events are ftrace-only on Debian kernels: no tracepoint a module can attach.
//! They are built on `raw_syscalls:sys_enter(regs, id)` and `raw_syscalls:sys_exit(regs, ret)`:
//! the handler starts with a test of the call's number (a binary search over the traced numbers,
//! in the VM), `argN` reads the user register the call's ABI passes argument N in from the saved
//! `struct pt_regs`, `retval` is `ret`, and `probename` names the real event
//! (`syscalls:sys_enter_openat`). Where it is only shown (printf and `print` arguments, table key
//! parts) it is the call's number, which the host shows by name; only a handler that uses it as
//! text otherwise (`..`, a comparison, a local, a string-keyed table) builds the name in the VM.
//! Numbers, names and register places come from the board's vmlinux through
//! [`Resolver::syscalls`].

use std::collections::HashSet;

use ktap_protocol::isa::Width;

use super::probe::is_glob;
use super::*;
use crate::lang::glob_match;

/// At most this many numbers are tested one by one; more are split in halves first.
const LINEAR: usize = 4;

/// The hidden local holding a `syscalls:` handler's `probename` as text.
const PROBENAME: &str = "#probename";

/// The calls of a `syscalls:` probe whose table is unknown (`check` without a vmlinux, or after an
/// error): the body is checked with every argument register available.
fn unknown_calls(exit: bool) -> SyscallProbe {
    SyscallProbe { exit, calls: Vec::new(), all: true, args: vec![(0, 8); 6], exit_nr: Some((0, 8)) }
}

impl Lower<'_, '_> {
    /// The attach point of a `syscalls:` probe; remembers the calls for its handler.
    pub(super) fn syscall_attach(
        &mut self,
        t: &ProbeTarget,
        subsys: &Ident,
        event: &Ident,
    ) -> Vec<(ProbeTarget, u64, String, bool)> {
        let at = join(subsys.span, event.span);
        let (exit, pattern) =
            match (event.name.strip_prefix("sys_enter_"), event.name.strip_prefix("sys_exit_")) {
                (Some(p), _) => (false, p),
                (_, Some(p)) => (true, p),
                _ => {
                    self.err(
                        Diagnostic::error(
                            format!("unknown system call event `syscalls:{}`", event.name),
                            event.span,
                        )
                        .note(
                            "system call events are `syscalls:sys_enter_NAME` and `syscalls:sys_exit_NAME`",
                        ),
                    );
                    return Vec::new();
                }
            };
        let raw = if exit { "sys_exit" } else { "sys_enter" };
        let sc = match self.env.resolver.syscalls() {
            Ok(sc) => sc,
            // `check` without a vmlinux: the body is still checked, with every argument register
            Err(_) if !self.env.need_addresses => {
                self.pending_syscall = Some(unknown_calls(exit));
                return vec![(t.clone(), 0, raw.into(), false)];
            }
            Err(msg) => {
                self.err(
                    Diagnostic::error(
                        format!("cannot number the system calls of `syscalls:{}`", event.name),
                        at,
                    )
                    .note(msg),
                );
                // the body is still checked as a syscall handler's
                self.pending_syscall = Some(unknown_calls(exit));
                return Vec::new();
            }
        };
        let calls: Vec<(u32, String)> =
            sc.table.iter().filter(|(_, n)| glob_match(pattern, n)).cloned().collect();
        if calls.is_empty() {
            let mut d = Diagnostic::error(format!("no system call matches `{pattern}`"), event.span);
            if !is_glob(pattern)
                && let Some(s) = did_you_mean(pattern, sc.table.iter().map(|(_, n)| n.as_str()))
            {
                d = d.note(s);
            }
            self.err(d.note("names come from the kernel's `sys_call_table`"));
            // the body is still checked as a syscall handler's
            self.pending_syscall = Some(unknown_calls(exit));
            return Vec::new();
        }
        let all = calls.len() == sc.table.len();
        if exit && sc.exit_nr.is_none() && !all {
            self.err(
                Diagnostic::error(
                    format!("`syscalls:{}` cannot be told apart from other calls here", event.name),
                    at,
                )
                .note(self.number_lost())
                .note("trace every call (`syscalls:sys_exit_*`) or `raw_syscalls:sys_exit`"),
            );
            // the body is still checked as a syscall handler's
            self.pending_syscall = Some(unknown_calls(exit));
            return Vec::new();
        }
        self.pending_syscall = Some(SyscallProbe { exit, calls, all, args: sc.args, exit_nr: sc.exit_nr });
        vec![(t.clone(), 0, raw.into(), false)]
    }

    /// The call's number, in a new register: `id` at entry, from the saved registers at exit.
    fn syscall_nr(&mut self, sc: &SyscallProbe, at: Span) -> u8 {
        let r = self.alloc_int(at);
        match (sc.exit, sc.exit_nr) {
            (false, _) => self.emit(Opcode::Ctx, &[r as i32, CtxField::Arg1 as i32]),
            (true, Some((off, bytes))) => {
                self.emit(Opcode::Ctx, &[r as i32, CtxField::Arg0 as i32]);
                let w = Width { bytes, signed: true };
                self.emit(Opcode::Ldk, &[r as i32, r as i32, off as i32, w.to_byte() as i32]);
            }
            (true, None) => self.emit(Opcode::Movi, &[r as i32, -1]),
        }
        r
    }

    /// A `syscalls:` handler's first instructions: calls other than the traced ones end the run.
    pub(super) fn syscall_filter(&mut self, at: Span) {
        let Some(sc) = self.f.syscall.clone() else { return };
        if sc.all {
            return;
        }
        let m = self.mark();
        let nr = self.syscall_nr(&sc, at);
        let (mut hit, mut miss) = (Vec::new(), Vec::new());
        self.nr_switch(nr, &sc.calls, &mut hit, &mut miss);
        self.f.to_end.extend(miss);
        self.patch_here(hit);
        self.reset(m);
    }

    /// Why a call's number is unknown at `sys_exit` on this arch.
    fn number_lost(&self) -> String {
        let arch = board_arch_name(self.env.arch);
        format!("on {arch} the saved registers do not keep the call's number until it returns")
    }

    /// A jump taken when register `nr` compares to `n` by `op` (`Jeq`, `Jlt`: below `n`).
    fn jump_if(&mut self, op: Opcode, nr: u8, n: u32) -> Patch {
        let m = self.mark();
        let k = self.alloc_int(self.cur_head);
        self.emit(Opcode::Movi, &[k as i32, n as i32]);
        let p = self.emit_jump(op, &[nr as i32, k as i32], &[]);
        self.reset(m);
        p
    }

    /// Binary search of register `nr` over `calls` (sorted by number): a match jumps through
    /// `hit`, a number not in `calls` through `miss`.
    fn nr_switch(&mut self, nr: u8, calls: &[(u32, String)], hit: &mut Vec<Patch>, miss: &mut Vec<Patch>) {
        if calls.len() <= LINEAR {
            for (n, _) in calls {
                hit.push(self.jump_if(Opcode::Jeq, nr, *n));
            }
            miss.push(self.emit_jump(Opcode::Jmp, &[], &[]));
            return;
        }
        let mid = calls.len() / 2;
        let low = self.jump_if(Opcode::Jlt, nr, calls[mid].0);
        self.nr_switch(nr, &calls[mid..], hit, miss);
        self.patch_here(vec![low]);
        self.nr_switch(nr, &calls[..mid], hit, miss);
    }

    /// `probename` of a `syscalls:` handler where it is shown (a printf or `print` argument, a
    /// table key part): the number of the call that hit, which the host shows as its event's
    /// name (`syscalls:sys_enter_openat`; see `named.rs`), so the VM builds no text.
    pub(super) fn syscall_probename_nr(&mut self, at: Span) -> Val {
        let Some(sc) = self.f.syscall.clone() else { return Val::Err };
        if let [(n, _)] = sc.calls.as_slice() {
            let r = self.alloc_int(at);
            self.load_const(r, i64::from(*n), at);
            return Val::Int(r);
        }
        if sc.exit && sc.exit_nr.is_none() {
            let note = self.number_lost();
            self.err(Diagnostic::error("`probename` cannot name the call that returned here", at).note(note));
            return Val::Err;
        }
        Val::Int(self.syscall_nr(&sc, at))
    }

    /// `probename` in a `syscalls:` handler: the event of the call that hit, computed once per run
    /// at the start of the handler (see [`Lower::syscall_probename_once`]).
    pub(super) fn syscall_probename(&mut self, at: Span) -> Val {
        let Some(sc) = self.f.syscall.clone() else { return Val::Err };
        if let [(_, name)] = sc.calls.as_slice() {
            let dir = if sc.exit { "sys_exit" } else { "sys_enter" };
            return Val::Str(self.load_str(&format!("syscalls:{dir}_{name}"), at));
        }
        if sc.exit && sc.exit_nr.is_none() {
            let note = self.number_lost();
            self.err(Diagnostic::error("`probename` cannot name the call that returned here", at).note(note));
            return Val::Err;
        }
        match self.f.locals.iter().find(|l| l.name == PROBENAME) {
            Some(l) => Val::Str(l.reg),
            // not computed: the walk found no use as text (cannot happen), or an error
            None => Val::Err,
        }
    }

    /// At the start of a `syscalls:` handler over more than one call that needs `probename` as
    /// text (see [`probename_text_needed`]): the event's name into a register the whole run reads. A binary search over the numbers
    /// (after the number filter, every number reaching it is one of the calls; for a whole-table
    /// pattern, numbers the table does not name get the raw event's name), each leaf loading the
    /// call's name, shared by `sys_enter_` and `sys_exit_`; then the prefix is joined on.
    pub(super) fn syscall_probename_once(&mut self, p: &Probe, at: Span) {
        let Some(sc) = self.f.syscall.clone() else { return };
        if sc.calls.len() < 2
            || (sc.exit && sc.exit_nr.is_none())
            || !probename_text_needed(p, &self.text_keys)
        {
            return;
        }
        let dir = if sc.exit { "sys_exit" } else { "sys_enter" };
        let s = self.alloc_str(at);
        self.f.locals.push(Local { name: PROBENAME.into(), span: at, ty: Ty::Str, reg: s, names: None });
        let m = self.mark();
        let nr = self.syscall_nr(&sc, at);
        // (number, name); `None`: a number between the table's that names no call
        let mut items: Vec<(u32, Option<&str>)> = Vec::new();
        let (mut raw, mut named) = (Vec::new(), Vec::new());
        if sc.all {
            let (lo, hi) = (sc.calls[0].0, sc.calls[sc.calls.len() - 1].0);
            let mut it = sc.calls.iter().peekable();
            for n in lo..=hi {
                let name = it.next_if(|(c, _)| *c == n).map(|(_, name)| name.as_str());
                items.push((n, name));
            }
            // an item covers the numbers up to the next one's: a run of unnamed numbers is one item
            items.dedup_by(|next, prev| prev.1.is_none() && next.1.is_none());
            let k = self.alloc_int(at);
            self.emit(Opcode::Movi, &[k as i32, lo as i32]);
            raw.push(self.emit_jump(Opcode::Jlt, &[nr as i32, k as i32], &[]));
            self.emit(Opcode::Movi, &[k as i32, hi as i32]);
            raw.push(self.emit_jump(Opcode::Jlt, &[k as i32, nr as i32], &[]));
        } else {
            items = sc.calls.iter().map(|(n, name)| (*n, Some(name.as_str()))).collect();
        }
        self.name_search(nr, &items, s, &mut named, &mut raw);
        self.patch_here(named);
        let p = self.load_str(&format!("syscalls:{dir}_"), at);
        self.emit(Opcode::Scat, &[s as i32, p as i32, s as i32]);
        let done = self.emit_jump(Opcode::Jmp, &[], &[]);
        self.patch_here(raw);
        let id = self.string_id(format!("raw_syscalls:{dir}").as_bytes(), at);
        self.emit(Opcode::Lds, &[s as i32, id as i32]);
        self.patch_here(vec![done]);
        self.reset(m);
    }

    /// Binary search of register `nr` over `items` (sorted by first number, each covering the
    /// numbers up to the next; `nr` known to be in one): each leaf loads the name into `s` and jumps
    /// through `named`, or through `raw` for numbers without a name.
    fn name_search(
        &mut self,
        nr: u8,
        items: &[(u32, Option<&str>)],
        s: u8,
        named: &mut Vec<Patch>,
        raw: &mut Vec<Patch>,
    ) {
        let at = self.cur_head;
        if let [(_, name)] = items {
            match name {
                Some(name) => {
                    let id = self.string_id(name.as_bytes(), at);
                    self.emit(Opcode::Lds, &[s as i32, id as i32]);
                    named.push(self.emit_jump(Opcode::Jmp, &[], &[]));
                }
                None => raw.push(self.emit_jump(Opcode::Jmp, &[], &[])),
            }
            return;
        }
        let mid = items.len() / 2;
        let low = self.jump_if(Opcode::Jlt, nr, items[mid].0);
        self.name_search(nr, &items[mid..], s, named, raw);
        self.patch_here(vec![low]);
        self.name_search(nr, &items[..mid], s, named, raw);
    }

    /// `argN` (entry) or `retval` (exit) of a `syscalls:` handler.
    pub(super) fn syscall_value(&mut self, field: CtxField, id: &Ident) -> Val {
        let Some(sc) = self.f.syscall.clone() else { return Val::Err };
        if field == CtxField::Retval {
            if !sc.exit {
                self.err(
                    Diagnostic::error("`retval` is only available in `syscalls:sys_exit_*` blocks", id.span)
                        .note("at sys_enter the call has not run yet"),
                );
                return Val::Err;
            }
            let r = self.alloc_int(id.span);
            self.emit(Opcode::Ctx, &[r as i32, CtxField::Arg1 as i32]);
            return Val::Int(r);
        }
        let n = usize::from(field.arg_index().unwrap_or(0));
        if sc.exit {
            self.err(
                Diagnostic::error(
                    format!("`{}` is not available in `syscalls:sys_exit_*` blocks", id.name),
                    id.span,
                )
                .note("a call's arguments are read at entry: trace `syscalls:sys_enter_NAME` too"),
            );
            return Val::Err;
        }
        let Some(&(off, bytes)) = sc.args.get(n) else {
            let max = sc.args.len();
            self.err(
                Diagnostic::error(
                    format!("`{}` is not available on {}", id.name, board_arch_name(self.env.arch)),
                    id.span,
                )
                .note(format!(
                    "system calls there pass {max} arguments in registers: arg0 to arg{}",
                    max.saturating_sub(1)
                )),
            );
            return Val::Err;
        };
        let r = self.alloc_int(id.span);
        self.emit(Opcode::Ctx, &[r as i32, CtxField::Arg0 as i32]);
        let w = Width { bytes, signed: true };
        self.emit(Opcode::Ldk, &[r as i32, r as i32, off as i32, w.to_byte() as i32]);
        Val::Int(r)
    }
}

/// A bare `probename`.
pub(super) fn is_probename(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(id) if id.name == "probename")
}

/// Does the handler of `p` use `probename` as text, anywhere but as a printf or `print` argument
/// or as a key part of a table that takes it as a number (every part not in `text_keys`, which
/// lists (table, part) whose keys are strings)?
pub(super) fn probename_text_needed(p: &Probe, text_keys: &HashSet<(String, usize)>) -> bool {
    p.pred.as_ref().is_some_and(|e| expr_needs_text(e, text_keys)) || block_needs_text(&p.body, text_keys)
}

fn block_needs_text(b: &Block, tk: &HashSet<(String, usize)>) -> bool {
    b.stmts.iter().any(|s| stmt_needs_text(s, tk))
}

fn stmt_needs_text(s: &Stmt, tk: &HashSet<(String, usize)>) -> bool {
    let e = |x: &Expr| expr_needs_text(x, tk);
    let b = |x: &Block| block_needs_text(x, tk);
    match &s.kind {
        StmtKind::Var(d) => d.init.as_ref().is_some_and(e),
        StmtKind::Assign { target, value, .. } | StmtKind::Aggregate { target, value, .. } => {
            e(target) || e(value)
        }
        StmtKind::If { arms, otherwise } => {
            arms.iter().any(|(c, body)| e(c) || b(body)) || otherwise.as_ref().is_some_and(b)
        }
        StmtKind::While { cond, body } => e(cond) || b(body),
        StmtKind::ForRange { from, to, step, body, .. } => {
            e(from) || e(to) || step.as_ref().is_some_and(e) || b(body)
        }
        StmtKind::ForIn { table, body, .. } => e(table) || b(body),
        StmtKind::Return(v) => v.as_ref().is_some_and(e),
        StmtKind::Block(body) => b(body),
        StmtKind::Expr(x) => e(x),
        StmtKind::Break | StmtKind::Continue | StmtKind::Error => false,
    }
}

fn expr_needs_text(x: &Expr, tk: &HashSet<(String, usize)>) -> bool {
    let e = |y: &Expr| expr_needs_text(y, tk);
    match &x.kind {
        ExprKind::Name(id) => id.name == "probename",
        ExprKind::Index { base, keys } => {
            let table = match &base.kind {
                ExprKind::Name(id) => Some(id.name.as_str()),
                _ => None,
            };
            e(base)
                || keys.iter().enumerate().any(|(i, k)| {
                    if is_probename(k) { table.is_none_or(|t| tk.contains(&(t.to_owned(), i))) } else { e(k) }
                })
        }
        ExprKind::Call { callee, args } if matches!(callee.name.as_str(), "print" | "printf") => {
            args.iter().any(|a| !is_probename(a) && e(a))
        }
        ExprKind::Call { args, .. } => args.iter().any(e),
        ExprKind::Member { base, .. } => e(base),
        ExprKind::Unary { operand, .. } => e(operand),
        ExprKind::Binary { lhs, rhs, .. } => e(lhs) || e(rhs),
        ExprKind::Int(_) | ExprKind::Str(_) | ExprKind::Bool(_) | ExprKind::Nil | ExprKind::Table(_) => false,
        ExprKind::Error => false,
    }
}
