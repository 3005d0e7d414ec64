//! `arg.NAME` and `->` / `.` chains through kernel types: the parameter comes from the resolver
//! (DWARF), each member is a byte offset, each `->` a bounded no-fault load (`ldk`). Character
//! arrays and `char *` at the end of a chain become strings (`kstr`).

use ktap_protocol::isa::Width;

use super::*;
use crate::ktypes::{ParamLoc, ParamsOf, Shape, TypeRef};

/// Where the chain's current object is.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Its value is in an integer register (a parameter, a loaded pointer).
    Value { reg: u8, ty: TypeRef },
    /// It lives in kernel memory at `reg + off`.
    Mem { reg: u8, off: i64, ty: TypeRef, bits: Option<(u8, u8)> },
}

impl Lower<'_, '_> {
    fn pointer_bytes(&self) -> u8 {
        match self.env.arch {
            Arch::Arm | Arch::Mips | Arch::Powerpc => 4,
            _ => 8,
        }
    }

    /// A value where an address is expected (`kernel_string(arg.name)`): a `char *` chain stays a
    /// pointer instead of becoming a string.
    pub(super) fn pointer_value(&mut self, e: &Expr) -> Val {
        if matches!(e.kind, ExprKind::Member { .. }) {
            return self.chain(e, false);
        }
        self.expr(e)
    }

    pub(super) fn member_chain(&mut self, e: &Expr) -> Val {
        self.chain(e, true)
    }

    fn chain(&mut self, e: &Expr, strings: bool) -> Val {
        // flatten: root, then (member, arrow) in order
        let mut steps = Vec::new();
        let mut cur = e;
        while let ExprKind::Member { base, name, arrow } = &cur.kind {
            steps.push((name, *arrow));
            cur = base;
        }
        steps.reverse();
        let root = match &cur.kind {
            ExprKind::Name(id) if id.name == "arg" && self.local("arg").is_none() => id,
            ExprKind::Error => return Val::Err,
            _ => {
                self.err(
                    Diagnostic::error(
                        "members are read from a probe's named arguments: `arg.NAME...`",
                        cur.span,
                    )
                    .note("e.g. `arg.skb->len`, `arg.file->f_path.dentry->d_name.name`"),
                );
                return Val::Err;
            }
        };
        let Some(((first, arrow), rest)) = steps.split_first() else { return Val::Err };
        if *arrow {
            self.err(Diagnostic::error("write `arg.NAME`, not `arg->NAME`", first.span));
            return Val::Err;
        }
        let Some(mut place) = self.param(root, first) else { return Val::Err };
        for (name, arrow) in rest {
            let Some(p) = self.step(place, name, *arrow) else { return Val::Err };
            place = p;
        }
        self.finish_chain(place, e.span, strings)
    }

    /// `arg.NAME`: the parameter's register.
    fn param(&mut self, root: &Ident, name: &Ident) -> Option<Place> {
        let of = match &self.f.target {
            Some(ProbeTarget::Kprobe { sym, ret: false, off: 0 }) => ParamsOf::Function(&sym.name),
            Some(ProbeTarget::Tracepoint { subsys, event }) => {
                ParamsOf::Tracepoint { subsys: &subsys.name, event: &event.name }
            }
            Some(ProbeTarget::Kprobe { ret: true, .. }) => {
                self.err(
                    Diagnostic::error(
                        "`arg.NAME` is not available in kretprobe blocks",
                        join(root.span, name.span),
                    )
                    .note("at the return the argument registers hold other values; read it in a kprobe"),
                );
                return None;
            }
            _ => {
                self.err(Diagnostic::error(
                    format!(
                        "`arg.NAME` needs a kprobe on a function's entry or a tracepoint; this is `{}`",
                        self.f.spec
                    ),
                    join(root.span, name.span),
                ));
                return None;
            }
        };
        let params = match self.env.resolver.params(of) {
            Ok(p) => p,
            Err(msg) => {
                self.err(
                    Diagnostic::error(
                        format!("cannot read the arguments of `{}`", self.f.spec),
                        join(root.span, name.span),
                    )
                    .note(msg),
                );
                return None;
            }
        };
        let Some(p) = params.iter().find(|p| p.name == name.name) else {
            let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            let mut d =
                Diagnostic::error(format!("`{}` has no argument `{}`", self.f.spec, name.name), name.span);
            d = match did_you_mean(&name.name, names.iter().copied()) {
                Some(s) => d.note(s),
                None => d.note(format!("its arguments: {}", names.join(", "))),
            };
            self.err(d);
            return None;
        };
        let n = match p.loc {
            ParamLoc::Arg(n) => n,
            ParamLoc::Pair { lo, hi } => return self.param_pair(name, lo, hi, p.ty),
            ParamLoc::Stack(_) | ParamLoc::Unavailable => {
                let why = self.unavailable_reason(&params, p);
                self.err(
                    Diagnostic::error(
                        format!("argument `{}` is not in a register the probe can read", name.name),
                        name.span,
                    )
                    .note(why),
                );
                return None;
            }
        };
        let field = CtxField::from_byte(CtxField::Arg0 as u8 + n)?;
        let id = Ident { name: format!("arg{n}"), span: name.span };
        if !self.ctx_available(field, &id) {
            return None;
        }
        let reg = self.alloc_int(name.span);
        self.emit(Opcode::Ctx, &[reg as i32, field as i32]);
        Some(Place::Value { reg, ty: p.ty })
    }

    /// A 64-bit argument on a 32-bit board: `argLO | argHI << 32`.
    fn param_pair(&mut self, name: &Ident, lo: u8, hi: u8, ty: TypeRef) -> Option<Place> {
        let lo_field = CtxField::from_byte(CtxField::Arg0 as u8 + lo)?;
        let hi_field = CtxField::from_byte(CtxField::Arg0 as u8 + hi)?;
        for (n, field) in [(lo, lo_field), (hi, hi_field)] {
            if !self.ctx_available(field, &Ident { name: format!("arg{n}"), span: name.span }) {
                return None;
            }
        }
        let reg = self.alloc_int(name.span);
        let t = self.alloc_int(name.span);
        self.emit(Opcode::Ctx, &[reg as i32, lo_field as i32]);
        // a 32-bit register may arrive sign-extended: keep its low word only
        self.load_const(t, 0xffff_ffff, name.span);
        self.emit(Opcode::And, &[reg as i32, reg as i32, t as i32]);
        let h = self.alloc_int(name.span);
        self.emit(Opcode::Ctx, &[h as i32, hi_field as i32]);
        self.emit(Opcode::Movi, &[t as i32, 32]);
        self.emit(Opcode::Shl, &[h as i32, h as i32, t as i32]);
        self.emit(Opcode::Or, &[reg as i32, reg as i32, h as i32]);
        self.f.int_top = reg + 1;
        Some(Place::Value { reg, ty })
    }

    /// Why the probe cannot read parameter `p`, for the error's note.
    fn unavailable_reason(&mut self, params: &[crate::ktypes::Param], p: &crate::ktypes::Param) -> String {
        let by_value = |s: &mut Self, q: &crate::ktypes::Param| {
            matches!(s.env.resolver.shape(&q.ty), Ok(Shape::Struct { .. } | Shape::Union { .. }))
        };
        if by_value(self, p) {
            return format!(
                "`{}` is a struct passed by value: the calling convention spreads it over registers and the stack; probe a function that takes a pointer to it",
                p.name
            );
        }
        let before = params.iter().take_while(|q| q.name != p.name).find(|q| by_value(self, q));
        if let Some(q) = before {
            return format!(
                "it follows `{}`, a struct passed by value, which moves the later arguments where the probe cannot tell",
                q.name
            );
        }
        match p.loc {
            ParamLoc::Stack(off) => format!("it is passed on the stack (at sp{off:+} on entry), which the probe does not read"),
            _ => "it was optimised out, or is passed in a way the probe cannot read (floating point, a register the probe does not see)".to_owned(),
        }
    }

    fn shape_of(&mut self, ty: &TypeRef, at: Span) -> Option<Shape> {
        match self.env.resolver.shape(ty) {
            Ok(s) => Some(s),
            Err(msg) => {
                self.err(Diagnostic::error("cannot read this kernel type", at).note(msg));
                None
            }
        }
    }

    /// Load the value of a place that holds a scalar (integer, enum, bool or pointer).
    fn load(&mut self, place: Place, at: Span) -> Option<(u8, TypeRef)> {
        match place {
            Place::Value { reg, ty } => Some((reg, ty)),
            Place::Mem { reg, off, ty, bits } => {
                let (bytes, signed) = match self.shape_of(&ty, at)? {
                    Shape::Int { size, signed } => (size, signed),
                    Shape::Enum { size, .. } => (size, false),
                    Shape::Bool => (1, false),
                    Shape::Ptr { .. } => (self.pointer_bytes(), false),
                    other => {
                        let tn = self.env.resolver.type_name(&ty);
                        self.err(
                            Diagnostic::error(format!("this is `{tn}`, which has no single value"), at)
                                .note(describe(&other)),
                        );
                        return None;
                    }
                };
                if !matches!(bytes, 1 | 2 | 4 | 8) {
                    self.err(Diagnostic::error(format!("a {bytes}-byte integer cannot be read"), at));
                    return None;
                }
                let Ok(off) = i32::try_from(off) else {
                    self.err(Diagnostic::error("this member is too far from its base", at));
                    return None;
                };
                let w = Width { bytes, signed: signed && bits.is_none() };
                self.emit(Opcode::Ldk, &[reg as i32, reg as i32, off, w.to_byte() as i32]);
                if let Some((shift, size)) = bits {
                    // keep `size` bits above `shift`, sign-extended for signed fields
                    let t = self.alloc_int(at);
                    let up = 64 - i32::from(shift) - i32::from(size);
                    self.emit(Opcode::Movi, &[t as i32, up.max(0)]);
                    self.emit(Opcode::Shl, &[reg as i32, reg as i32, t as i32]);
                    self.emit(Opcode::Movi, &[t as i32, 64 - i32::from(size)]);
                    if signed {
                        self.emit(Opcode::Shr, &[reg as i32, reg as i32, t as i32]);
                    } else {
                        // logical shift: arithmetic shift, then clear the copied sign bits
                        self.emit(Opcode::Shr, &[reg as i32, reg as i32, t as i32]);
                        let mask = if size >= 64 { -1i64 } else { (1i64 << size) - 1 };
                        self.load_const(t, mask, at);
                        self.emit(Opcode::And, &[reg as i32, reg as i32, t as i32]);
                    }
                    self.f.int_top = reg + 1;
                }
                Some((reg, ty))
            }
        }
    }

    fn step(&mut self, place: Place, name: &Ident, arrow: bool) -> Option<Place> {
        let (reg, off, ty) = if arrow {
            // `p->m`: p must be a pointer to a struct or union
            let (reg, pty) = self.load(place, name.span)?;
            let Shape::Ptr { to } = self.shape_of(&pty, name.span)? else {
                let tn = self.env.resolver.type_name(&pty);
                self.err(
                    Diagnostic::error(
                        format!("`->{}` needs a pointer, but this is `{tn}`", name.name),
                        name.span,
                    )
                    .note("use `.` for a member of a struct that is not behind a pointer"),
                );
                return None;
            };
            (reg, 0, to)
        } else {
            match place {
                Place::Mem { reg, off, ty, .. } => (reg, off, ty),
                Place::Value { ty, .. } => {
                    let tn = self.env.resolver.type_name(&ty);
                    let hint = if matches!(self.shape_of(&ty, name.span)?, Shape::Ptr { .. }) {
                        format!("this is a pointer (`{tn}`): write `->{}`", name.name)
                    } else {
                        format!("this is `{tn}`, not a struct")
                    };
                    self.err(
                        Diagnostic::error(format!("`.{}` needs a struct or union", name.name), name.span)
                            .note(hint),
                    );
                    return None;
                }
            }
        };
        match self.shape_of(&ty, name.span)? {
            Shape::Struct { .. } | Shape::Union { .. } => {}
            other => {
                let tn = self.env.resolver.type_name(&ty);
                self.err(
                    Diagnostic::error(
                        format!("`{}` is not a member of `{tn}`: it is not a struct", name.name),
                        name.span,
                    )
                    .note(describe(&other)),
                );
                return None;
            }
        }
        let m = match self.env.resolver.member(&ty, &name.name) {
            Ok(m) => m,
            Err(msg) => {
                let tn = self.env.resolver.type_name(&ty);
                self.err(
                    Diagnostic::error(format!("`{tn}` has no member `{}`", name.name), name.span).note(msg),
                );
                return None;
            }
        };
        Some(Place::Mem { reg, off: off.wrapping_add(m.offset as i64), ty: m.ty, bits: m.bits })
    }

    /// The chain's value: a scalar, or a string for `char` arrays and `char *`.
    fn finish_chain(&mut self, place: Place, at: Span, strings: bool) -> Val {
        let ty = match place {
            Place::Value { ty, .. } | Place::Mem { ty, .. } => ty,
        };
        let Some(shape) = self.shape_of(&ty, at) else { return Val::Err };
        let is_char =
            |l: &mut Self, t: &TypeRef| matches!(l.env.resolver.shape(t), Ok(Shape::Int { size: 1, .. }));
        match shape {
            Shape::Array { elem, len, .. } if is_char(self, &elem) => {
                let Place::Mem { reg, off, .. } = place else { return Val::Err };
                let Ok(off) = i32::try_from(off) else { return Val::Err };
                if off != 0 {
                    self.emit(Opcode::Addi, &[reg as i32, reg as i32, off]);
                }
                let max = len.map_or(MAX_STR as u64, |n| n.min(MAX_STR as u64));
                let mr = self.alloc_int(at);
                self.emit(Opcode::Movi, &[mr as i32, max as i32]);
                let d = self.alloc_str(at);
                self.emit(Opcode::Kstr, &[d as i32, reg as i32, mr as i32]);
                self.f.int_top = reg + 1;
                Val::Str(d)
            }
            Shape::Ptr { to } if strings && is_char(self, &to) => {
                let Some((reg, _)) = self.load(place, at) else { return Val::Err };
                let mr = self.alloc_int(at);
                self.emit(Opcode::Movi, &[mr as i32, MAX_STR as i32]);
                let d = self.alloc_str(at);
                self.emit(Opcode::Kstr, &[d as i32, reg as i32, mr as i32]);
                self.f.int_top = reg + 1;
                Val::Str(d)
            }
            Shape::Struct { .. } | Shape::Union { .. } | Shape::Array { .. } => {
                if let Place::Mem { reg, off, .. } = place
                    && !strings
                {
                    // an address is wanted: the member's address
                    let Ok(off) = i32::try_from(off) else { return Val::Err };
                    self.emit(Opcode::Addi, &[reg as i32, reg as i32, off]);
                    return Val::Int(reg);
                }
                let tn = self.env.resolver.type_name(&ty);
                self.err(
                    Diagnostic::error(format!("this is `{tn}`, which has no single value"), at)
                        .note("pick a member with `.` or `->`"),
                );
                Val::Err
            }
            _ => match self.load(place, at) {
                Some((reg, ty)) => {
                    // an enum is shown by name on the host
                    if strings {
                        self.note_type(at, ty);
                    }
                    Val::Int(reg)
                }
                None => Val::Err,
            },
        }
    }
}

fn describe(s: &Shape) -> String {
    match s {
        Shape::Struct { name, .. } => format!("a struct `{name}`: pick a member with `.`"),
        Shape::Union { name, .. } => format!("a union `{name}`: pick a member with `.`"),
        Shape::Array { .. } => "an array".into(),
        Shape::Ptr { .. } => "a pointer: use `->`".into(),
        Shape::Func => "a function".into(),
        Shape::Void => "void".into(),
        Shape::Other(t) => format!("a {t}"),
        Shape::Int { .. } | Shape::Enum { .. } | Shape::Bool => "a number".into(),
    }
}
