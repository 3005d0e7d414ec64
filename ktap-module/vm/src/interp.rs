//! The interpreter loop.
//!
//! Budget: a taken backward jump from instruction `i` to `t` costs `i - t + 1`, the length of the loop
//! it closes; `ptable` costs one unit per entry. Between two backward jumps the program counter only
//! grows, so a hit executes at most `budget + 2 * function length` instructions (the `Tick` of rhai
//! and the fuel of wasmi, paid per loop rather than per instruction).

use ktap_protocol::isa::Arg;
use ktap_protocol::limits::MAX_STR;
use ktap_protocol::record::{RecordKind, RecordWriter};

use crate::error::RunError;
use crate::program::{Counters, Env, Program};
use crate::table::{Key, Table};
use crate::verified::{AluOp, ArgList, Cond, Op, StrBuf};

/// The mutable state one run works on, borrowed from the [`Program`] apart from the code.
struct Frame<'p> {
    regs: &'p mut [i64],
    sregs: &'p mut [StrBuf],
    globals: &'p mut [i64],
    tables: &'p mut [Table],
    rec: &'p mut [u8],
    counters: &'p mut Counters,
    /// Index of the current instruction (for faults).
    pc: u32,
}

impl Frame<'_> {
    fn fault(&self) -> RunError {
        RunError::Fault { pc: self.pc }
    }

    fn r(&self, r: u8) -> Result<i64, RunError> {
        self.regs.get(usize::from(r)).copied().ok_or(self.fault())
    }

    fn set(&mut self, r: u8, v: i64) -> Result<(), RunError> {
        let f = self.fault();
        *self.regs.get_mut(usize::from(r)).ok_or(f)? = v;
        Ok(())
    }

    fn s(&self, r: u8) -> Result<&StrBuf, RunError> {
        self.sregs.get(usize::from(r)).ok_or(self.fault())
    }

    fn set_s(&mut self, r: u8, v: &[u8]) -> Result<(), RunError> {
        let f = self.fault();
        self.sregs.get_mut(usize::from(r)).ok_or(f)?.set(v);
        Ok(())
    }

    fn global(&mut self, g: u16) -> Result<&mut i64, RunError> {
        let f = self.fault();
        self.globals.get_mut(usize::from(g)).ok_or(f)
    }

    fn table(&mut self, t: u8) -> Result<&mut Table, RunError> {
        let f = self.fault();
        self.tables.get_mut(usize::from(t)).ok_or(f)
    }

    /// `table[key] = f(old)`, inserting if absent; a full table refuses and is counted.
    fn update(&mut self, t: u8, key: Key<'_>, f: impl FnOnce(i64) -> i64) -> Result<(), RunError> {
        match self.table(t)?.entry(key) {
            Ok(v) => *v = f(*v),
            Err(_) => self.counters.table_full = self.counters.table_full.wrapping_add(1),
        }
        Ok(())
    }

    fn emit(
        &mut self,
        env: &mut impl Env,
        kind: RecordKind,
        id: u16,
        fill: impl FnOnce(&mut RecordWriter<'_>),
    ) {
        let mut w = RecordWriter::new(self.rec, kind, id);
        fill(&mut w);
        let ok = match w.finish() {
            Some(bytes) => env.emit(bytes),
            None => false,
        };
        if !ok {
            self.counters.ring_dropped = self.counters.ring_dropped.wrapping_add(1);
        }
    }

    fn printf(&mut self, env: &mut impl Env, f: u16, args: ArgList) -> Result<(), RunError> {
        // read the registers first: the writer borrows the record buffer
        let mut ints = [0i64; 8];
        let mut strs = [None::<u8>; 8];
        for (i, b) in args.bytes.iter().take(args.n.into()).enumerate() {
            match Arg::from_byte(*b) {
                Arg::Int(r) => *ints.get_mut(i).ok_or(self.fault())? = self.r(r)?,
                Arg::Str(r) => {
                    self.s(r)?;
                    *strs.get_mut(i).ok_or(self.fault())? = Some(r);
                }
            }
        }
        let Frame { rec, sregs, counters, .. } = self;
        let mut w = RecordWriter::new(rec, RecordKind::Printf, f);
        for (i, s) in strs.iter().take(args.n.into()).enumerate() {
            match s.and_then(|r| sregs.get(usize::from(r))) {
                Some(s) => w.str(s.as_bytes()),
                None => w.int(ints.get(i).copied().unwrap_or(0)),
            }
        }
        if !w.finish().is_some_and(|bytes| env.emit(bytes)) {
            counters.ring_dropped = counters.ring_dropped.wrapping_add(1);
        }
        Ok(())
    }

    fn ptable(&mut self, env: &mut impl Env, t: u8) -> Result<(), RunError> {
        let f = self.fault();
        let Frame { tables, rec, counters, .. } = self;
        let table = tables.get(usize::from(t)).ok_or(f)?;
        let id = u16::from(t);
        let mut dropped = 0u64;
        let mut e = 0usize;
        while let Some((key, value)) = table.entry_at(e) {
            let mut w = RecordWriter::new(rec, RecordKind::TableEntry, id);
            match key {
                Key::Int(k) => w.int(k),
                Key::Str(s) => w.str(s),
            }
            w.int(value);
            if !w.finish().is_some_and(|bytes| env.emit(bytes)) {
                dropped = dropped.wrapping_add(1);
            }
            e = e.wrapping_add(1);
        }
        let (len, refused) = (table.len() as i64, table.refused as i64);
        counters.ring_dropped = counters.ring_dropped.wrapping_add(dropped);
        self.emit(env, RecordKind::TableEnd, id, |w| {
            w.int(len);
            w.int(refused);
        });
        Ok(())
    }
}

fn alu(op: AluOp, a: i64, b: i64) -> i64 {
    match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Mul => a.wrapping_mul(b),
        // checked_* fail only for b == 0 and MIN / -1 (which wraps to MIN, remainder 0)
        AluOp::Div => a.checked_div(b).unwrap_or(if b == 0 { 0 } else { a.wrapping_neg() }),
        AluOp::Mod => a.checked_rem(b).unwrap_or(if b == 0 { a } else { 0 }),
        AluOp::And => a & b,
        AluOp::Or => a | b,
        AluOp::Xor => a ^ b,
        AluOp::Shl => a.wrapping_shl((b & 63) as u32),
        AluOp::Shr => a.wrapping_shr((b & 63) as u32),
    }
}

fn cond(c: Cond, a: i64, b: i64) -> bool {
    match c {
        Cond::Zero => a == 0,
        Cond::NonZero => a != 0,
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Lt => a < b,
        Cond::Le => a <= b,
    }
}

impl Program {
    pub(crate) fn exec(&mut self, func: u16, env: &mut impl Env) -> Result<(), RunError> {
        let Program { v, globals, tables, regs, sregs, rec, counters } = self;
        let f = *v.funcs.get(usize::from(func)).ok_or(RunError::NoSuchFunc)?;
        let mut budget = v.budget;
        for r in regs.iter_mut().take(f.n_int.into()) {
            *r = 0;
        }
        for s in sregs.iter_mut().take(f.n_str.into()) {
            *s = StrBuf::EMPTY;
        }
        let mut fr = Frame {
            regs: regs.as_mut_slice(),
            sregs: sregs.as_mut_slice(),
            globals: globals.as_mut_slice(),
            tables: tables.as_mut_slice(),
            rec: rec.as_mut_slice(),
            counters,
            pc: f.start,
        };
        let mut pc = f.start;
        loop {
            fr.pc = pc;
            let op = *v.ops.get(pc as usize).ok_or(fr.fault())?;
            let next = pc.wrapping_add(1);
            pc = match op {
                Op::Ret => return Ok(()),
                Op::Jmp { to } => branch(pc, to, &mut budget)?,
                Op::Br { cond: c, a, b, to } => {
                    if cond(c, fr.r(a)?, fr.r(b)?) {
                        branch(pc, to, &mut budget)?
                    } else {
                        next
                    }
                }
                Op::StrBr { eq, a, b, to } => {
                    if (fr.s(a)?.as_bytes() == fr.s(b)?.as_bytes()) == eq {
                        branch(pc, to, &mut budget)?
                    } else {
                        next
                    }
                }
                Op::Movi { d, imm } => {
                    fr.set(d, imm.into())?;
                    next
                }
                Op::Ldc { d, c } => {
                    let x = *v.consts.get(usize::from(c)).ok_or(fr.fault())?;
                    fr.set(d, x)?;
                    next
                }
                Op::Mov { d, s } => {
                    fr.set(d, fr.r(s)?)?;
                    next
                }
                Op::Alu { op, d, a, b } => {
                    fr.set(d, alu(op, fr.r(a)?, fr.r(b)?))?;
                    next
                }
                Op::Neg { d, s } => {
                    fr.set(d, fr.r(s)?.wrapping_neg())?;
                    next
                }
                Op::Not { d, s } => {
                    fr.set(d, i64::from(fr.r(s)? == 0))?;
                    next
                }
                Op::Addi { d, s, imm } => {
                    fr.set(d, fr.r(s)?.wrapping_add(imm.into()))?;
                    next
                }
                Op::Ldg { d, g } => {
                    let x = *fr.global(g)?;
                    fr.set(d, x)?;
                    next
                }
                Op::Stg { g, s } => {
                    *fr.global(g)? = fr.r(s)?;
                    next
                }
                Op::Addg { g, s } => {
                    let x = fr.r(s)?;
                    let slot = fr.global(g)?;
                    *slot = slot.wrapping_add(x);
                    next
                }
                Op::Ctx { d, field } => {
                    fr.set(d, env.ctx(field))?;
                    next
                }
                Op::Comm { d } => {
                    let mut buf = [0u8; MAX_STR];
                    let n = env.comm(&mut buf).min(MAX_STR);
                    fr.set_s(d, buf.get(..n).unwrap_or(&[]))?;
                    next
                }
                Op::Lds { d, s } => {
                    let f = fr.fault();
                    fr.set_s(d, v.string(s).ok_or(f)?)?;
                    next
                }
                Op::Movs { d, s } => {
                    let x = *fr.s(s)?;
                    fr.set_s(d, x.as_bytes())?;
                    next
                }
                Op::Tld { d, t, k } => {
                    let key = fr.r(k)?;
                    let x = fr.table(t)?.get(Key::Int(key)).unwrap_or(0);
                    fr.set(d, x)?;
                    next
                }
                Op::Tlds { d, t, k } => {
                    let key = *fr.s(k)?;
                    let x = fr.table(t)?.get(Key::Str(key.as_bytes())).unwrap_or(0);
                    fr.set(d, x)?;
                    next
                }
                Op::Tst { t, k, v: val } => {
                    let (key, x) = (fr.r(k)?, fr.r(val)?);
                    fr.update(t, Key::Int(key), |_| x)?;
                    next
                }
                Op::Tsts { t, k, v: val } => {
                    let (key, x) = (*fr.s(k)?, fr.r(val)?);
                    fr.update(t, Key::Str(key.as_bytes()), |_| x)?;
                    next
                }
                Op::Tadd { t, k, v: val } => {
                    let (key, x) = (fr.r(k)?, fr.r(val)?);
                    fr.update(t, Key::Int(key), |old| old.wrapping_add(x))?;
                    next
                }
                Op::Tadds { t, k, v: val } => {
                    let (key, x) = (*fr.s(k)?, fr.r(val)?);
                    fr.update(t, Key::Str(key.as_bytes()), |old| old.wrapping_add(x))?;
                    next
                }
                Op::Tdel { t, k } => {
                    let key = fr.r(k)?;
                    fr.table(t)?.remove(Key::Int(key));
                    next
                }
                Op::Tdels { t, k } => {
                    let key = *fr.s(k)?;
                    fr.table(t)?.remove(Key::Str(key.as_bytes()));
                    next
                }
                Op::Printf { f, args } => {
                    fr.printf(env, f, args)?;
                    next
                }
                Op::Ptable { t } => {
                    let cost = u32::try_from(fr.table(t)?.len()).unwrap_or(u32::MAX);
                    budget = budget.checked_sub(cost).ok_or(RunError::BudgetExhausted)?;
                    fr.ptable(env, t)?;
                    next
                }
            };
        }
    }
}

/// The target of a taken jump from `pc` to `to`, charging budget if it goes backward.
fn branch(pc: u32, to: u32, budget: &mut u32) -> Result<u32, RunError> {
    if to <= pc {
        let cost = pc.wrapping_sub(to).wrapping_add(1);
        *budget = budget.checked_sub(cost).ok_or(RunError::BudgetExhausted)?;
    }
    Ok(to)
}
