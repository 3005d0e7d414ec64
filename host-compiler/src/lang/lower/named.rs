//! Integers the host shows by name: values whose kernel type is an enum (`arg.type`, a member, a
//! tracepoint argument, through typedefs) and a `syscalls:` handler's `probename` (the call's
//! number). The device only ever holds the number; the sidecar says which printf argument or table
//! key component holds such a value and carries the names, so the kernel stays free of text and a
//! `syscalls:sys_enter_*` handler needs no name lookup in the VM.
//!
//! The static type travels with the expression: a member chain records its names id by span
//! ([`FuncState::named`]), a local declared from such a value keeps it, a `pairs` loop's key
//! variables take their table's.

use super::*;
use crate::ktypes::Shape;

impl Lower<'_, '_> {
    /// The names id the host shows `e`'s value by, if it has one (call after lowering `e`, and
    /// only for an integer value: a `probename` lowered as text has none).
    pub(super) fn names_of(&self, e: &Expr) -> Option<u16> {
        match &e.kind {
            ExprKind::Member { .. } => self.f.named.get(&(e.span.start, e.span.end)).copied(),
            ExprKind::Name(id) => match self.local(&id.name) {
                Some(l) => l.names,
                None if id.name == "probename" => self.f.syscall_names,
                None => None,
            },
            _ => None,
        }
    }

    /// A value where it is only shown (a printf or `print` argument, a table key part): a
    /// `syscalls:` handler's `probename` is then the call's number, shown by name on the host.
    pub(super) fn shown_value(&mut self, e: &Expr) -> Val {
        if self.f.syscall.is_some() && super::syscall::is_probename(e) {
            return self.syscall_probename_nr(e.span);
        }
        self.expr(e)
    }

    /// The local just declared as `id` holds a value shown by `names`.
    pub(super) fn name_local(&mut self, id: &Ident, names: Option<u16>) {
        if let Some(l) = self.f.locals.iter_mut().rev().find(|l| l.name == id.name && l.span == id.span) {
            l.names = names;
        }
    }

    /// A names id for `names`: an equal table already made is shared.
    fn names_id(&mut self, names: Names) -> Option<u16> {
        if let Some(i) = self.prog.names.iter().position(|n| *n == names) {
            return Some(i as u16);
        }
        if self.prog.names.len() >= MAX_POOL {
            return None;
        }
        self.prog.names.push(names);
        Some((self.prog.names.len() - 1) as u16)
    }

    /// The names of enum type `ty` (typedefs peeled by the resolver); `None` if it is not an enum
    /// or the resolver cannot list its enumerators (the value then prints as a number).
    pub(super) fn enum_names(&mut self, ty: TypeRef) -> Option<u16> {
        if let Some(id) = self.enum_names.get(&ty) {
            return *id;
        }
        let id = match self.env.resolver.shape(&ty) {
            Ok(Shape::Enum { name, size }) => match self.env.resolver.enumerators(&ty) {
                Ok(values) if !values.is_empty() => {
                    let what = if name.is_empty() {
                        self.env.resolver.type_name(&ty)
                    } else {
                        format!("enum {name}")
                    };
                    let values = values.into_iter().map(|(n, v)| (v, n)).collect();
                    self.names_id(Names::new(what, size, values, None))
                }
                _ => None,
            },
            _ => None,
        };
        self.enum_names.insert(ty, id);
        id
    }

    /// Remember that the member chain `at` holds a value of type `ty`, for [`Lower::names_of`].
    pub(super) fn note_type(&mut self, at: Span, ty: TypeRef) {
        if let Some(id) = self.enum_names(ty) {
            self.f.named.insert((at.start, at.end), id);
        }
    }

    /// Make the names of a `syscalls:` handler's `probename` (at its start): each traced call's
    /// event, and the raw event (with the number) for a number the kernel's table does not name.
    pub(super) fn make_syscall_names(&mut self) {
        let Some(sc) = self.f.syscall.as_ref() else { return };
        let dir = if sc.exit { "sys_exit" } else { "sys_enter" };
        let values =
            sc.calls.iter().map(|(n, name)| (i64::from(*n), format!("syscalls:{dir}_{name}"))).collect();
        let names =
            Names::new(format!("system calls ({dir})"), 0, values, Some(format!("raw_syscalls:{dir}")));
        self.f.syscall_names = self.names_id(names);
    }
}
