//! The interpreter loop.
//!
//! Budget (see `ktap_protocol::isa` and its `cost` constants): a taken backward jump from instruction
//! `i` to `t` costs `i - t + 1`, the length of the loop it closes; calls, table operations, memory
//! reads and stack captures cost fixed amounts; `ptable` and `tclr` one unit per entry. Between two
//! charged instructions the program counter only grows within one function, so a hit executes at most
//! about `budget * longest function` instructions (the `Tick` of rhai and the fuel of wasmi, paid per
//! loop rather than per instruction).
//!
//! Calls use an explicit frame stack in the program's preallocated memory: frame k's registers start
//! right after frame k-1's in one register array sized by the verifier for the deepest call path.
//! The interpreter never recurses, so its kernel stack use does not depend on the program.

use alloc::vec::Vec;

use ktap_protocol::isa::{Arg, Stat, cost};
use ktap_protocol::limits::{MAX_CALL_DEPTH, MAX_STACK, MAX_STR};
use ktap_protocol::record::{RecordKind, RecordWriter};

use crate::error::RunError;
use crate::program::{Counters, Env, Program};
use crate::table::{AGG_COUNT, AGG_MAX, AGG_MIN, AGG_STATS, AGG_SUM, Comp, KeyParts, One, Table, components};
use crate::verified::{AluOp, ArgList, Cond, FuncInfo, Op, StrBuf};

/// Where to resume after a call returns.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallFrame {
    /// The caller.
    func: u16,
    /// Instruction after the call.
    ret_pc: u32,
    /// The caller's register bases.
    ib: u32,
    sb: u32,
    /// Destination register of the result.
    dest: u8,
    /// The result goes to a string register.
    str_result: bool,
}

/// Preallocated frame stack: one entry per active call.
pub(crate) type FrameStack = [CallFrame; MAX_CALL_DEPTH];

/// The program's mutable memory and the registers of the run in progress. It lives in the
/// [`Program`] and is used in place: building a borrowed copy of a dozen slices on every hit cost
/// more guest instructions than a short handler's own work (the in-guest profile).
#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) regs: Vec<i64>,
    pub(crate) sregs: Vec<StrBuf>,
    pub(crate) globals: Vec<i64>,
    pub(crate) tables: Vec<Table>,
    pub(crate) rec: Vec<u8>,
    pub(crate) counters: Counters,
    /// Register bases of the current frame.
    ib: usize,
    sb: usize,
    /// Index of the current instruction (for faults).
    pc: u32,
    budget: u32,
}

impl Machine {
    /// A machine over preallocated memory.
    pub(crate) fn new(
        regs: Vec<i64>,
        sregs: Vec<StrBuf>,
        globals: Vec<i64>,
        tables: Vec<Table>,
        rec: Vec<u8>,
    ) -> Machine {
        Machine {
            regs,
            sregs,
            globals,
            tables,
            rec,
            counters: Counters::default(),
            ib: 0,
            sb: 0,
            pc: 0,
            budget: 0,
        }
    }

    fn fault(&self) -> RunError {
        RunError::Fault { pc: self.pc }
    }

    fn charge(&mut self, cost: u32) -> Result<(), RunError> {
        self.budget = self.budget.checked_sub(cost).ok_or(RunError::BudgetExhausted)?;
        Ok(())
    }

    fn r(&self, r: u8) -> Result<i64, RunError> {
        self.regs.get(self.ib.wrapping_add(r.into())).copied().ok_or(self.fault())
    }

    fn set(&mut self, r: u8, v: i64) -> Result<(), RunError> {
        let f = self.fault();
        *self.regs.get_mut(self.ib.wrapping_add(r.into())).ok_or(f)? = v;
        Ok(())
    }

    fn s(&self, r: u8) -> Result<&StrBuf, RunError> {
        self.sregs.get(self.sb.wrapping_add(r.into())).ok_or(self.fault())
    }

    fn set_s(&mut self, r: u8, v: &[u8]) -> Result<(), RunError> {
        self.s_mut(r)?.set(v);
        Ok(())
    }

    fn s_mut(&mut self, r: u8) -> Result<&mut StrBuf, RunError> {
        let f = self.fault();
        self.sregs.get_mut(self.sb.wrapping_add(r.into())).ok_or(f)
    }

    fn global(&mut self, g: u16) -> Result<&mut i64, RunError> {
        let f = self.fault();
        self.globals.get_mut(usize::from(g)).ok_or(f)
    }

    fn table(&mut self, t: u8) -> Result<&mut Table, RunError> {
        let f = self.fault();
        self.tables.get_mut(usize::from(t)).ok_or(f)
    }

    /// Table `t` and the key its registers `keys` hold (read in place, never copied).
    fn key<'k>(&'k mut self, t: u8, keys: &'k ArgList) -> Result<(&'k mut Table, RegKey<'k>), RunError> {
        let f = self.fault();
        let Machine { regs, sregs, tables, ib, sb, .. } = self;
        let key = RegKey { keys, regs, sregs, ib: *ib, sb: *sb };
        Ok((tables.get_mut(usize::from(t)).ok_or(f)?, key))
    }

    /// Apply `f` to the value slots of `table[keys]`, inserting if absent; a full table refuses and
    /// is counted.
    fn update(&mut self, t: u8, keys: &ArgList, f: impl FnOnce(&mut [i64])) -> Result<(), RunError> {
        self.charge(cost::TABLE)?;
        let fault = self.fault();
        let Machine { regs, sregs, tables, ib, sb, .. } = self;
        let full = match one_key(keys, regs, sregs, *ib, *sb, fault)? {
            Some(k) => tables.get_mut(usize::from(t)).ok_or(fault)?.entry_one(k).map(f).is_err(),
            None => {
                let (table, key) = self.key(t, keys)?;
                table.entry(&key).map(f).is_err()
            }
        };
        if full {
            self.counters.table_full = self.counters.table_full.wrapping_add(1);
        }
        Ok(())
    }

    /// The value slots of `table[keys]` through `f`, or `None` if absent.
    fn lookup<T>(
        &mut self,
        t: u8,
        keys: &ArgList,
        f: impl FnOnce(&[i64]) -> T,
    ) -> Result<Option<T>, RunError> {
        self.charge(cost::TABLE)?;
        let fault = self.fault();
        if let Some(k) = one_key(keys, &self.regs, &self.sregs, self.ib, self.sb, fault)? {
            return Ok(self.tables.get(usize::from(t)).ok_or(fault)?.get_one(k).map(f));
        }
        let (table, key) = self.key(t, keys)?;
        Ok(table.get(&key).map(f))
    }

    fn emit(
        &mut self,
        env: &mut impl Env,
        kind: RecordKind,
        id: u16,
        fill: impl FnOnce(&mut RecordWriter<'_>),
    ) {
        let mut w = RecordWriter::new(&mut self.rec, kind, id);
        fill(&mut w);
        let ok = match w.finish() {
            Some(bytes) => env.emit(bytes),
            None => false,
        };
        if !ok {
            self.counters.ring_dropped = self.counters.ring_dropped.wrapping_add(1);
        }
    }

    fn printf(&mut self, env: &mut impl Env, f: u16, args: &ArgList) -> Result<(), RunError> {
        // read the registers first: the writer borrows the record buffer
        let mut ints = [0i64; 8];
        let mut strs = [None::<usize>; 8];
        for (i, b) in args.bytes.iter().take(args.n.into()).enumerate() {
            match Arg::from_byte(*b) {
                Arg::Int(r) => *ints.get_mut(i).ok_or(self.fault())? = self.r(r)?,
                Arg::Str(r) => {
                    self.s(r)?;
                    *strs.get_mut(i).ok_or(self.fault())? = Some(self.sb.wrapping_add(r.into()));
                }
            }
        }
        let Machine { rec, sregs, counters, .. } = self;
        let mut w = RecordWriter::new(rec, RecordKind::Printf, f);
        for (i, s) in strs.iter().take(args.n.into()).enumerate() {
            match s.and_then(|r| sregs.get(r)) {
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
        let Machine { tables, rec, counters, .. } = self;
        let table = tables.get(usize::from(t)).ok_or(f)?;
        let id = u16::from(t);
        let aggregate = table.spec.value.is_aggregate();
        let mut dropped = 0u64;
        let mut e = 0usize;
        while let Some((key, value)) = table.entry_at(e) {
            let mut w = RecordWriter::new(rec, RecordKind::TableEntry, id);
            for c in components(table.spec.keys, key) {
                match c {
                    Comp::Int(k) => w.int(k),
                    Comp::Str(s) => w.str(s),
                }
            }
            if aggregate {
                for v in value.iter().take(AGG_STATS) {
                    w.int(*v);
                }
                let mut counts = [0u64; 66];
                for (d, s) in counts.iter_mut().zip(value.iter().skip(AGG_STATS)) {
                    *d = *s as u64;
                }
                w.buckets(counts.get(..value.len().saturating_sub(AGG_STATS)).unwrap_or(&[]));
            } else {
                w.int(value.first().copied().unwrap_or(0));
            }
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

    /// `tnext`: the entry at index >= cursor into the key registers and `v`; `false` when done.
    fn tnext(&mut self, c: u8, t: u8, keys: &ArgList, v: u8) -> Result<bool, RunError> {
        self.charge(cost::TABLE)?;
        let cursor = usize::try_from(self.r(c)?).unwrap_or(0);
        let f = self.fault();
        let Machine { tables, regs, sregs, ib, sb, .. } = self;
        let table = tables.get(usize::from(t)).ok_or(f)?;
        let Some((key, value)) = table.entry_at(cursor) else { return Ok(false) };
        for (b, comp) in keys.bytes.iter().take(keys.n.into()).zip(components(table.spec.keys, key)) {
            match (Arg::from_byte(*b), comp) {
                (Arg::Int(r), Comp::Int(x)) => *regs.get_mut(ib.wrapping_add(r.into())).ok_or(f)? = x,
                (Arg::Str(r), Comp::Str(x)) => sregs.get_mut(sb.wrapping_add(r.into())).ok_or(f)?.set(x),
                _ => return Err(f),
            }
        }
        let x = value.first().copied().unwrap_or(0);
        self.set(v, x)?;
        self.set(c, cursor.wrapping_add(1) as i64)?;
        Ok(true)
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

fn stat(v: &[i64], s: Stat) -> i64 {
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    match s {
        Stat::Count => at(AGG_COUNT),
        Stat::Sum => at(AGG_SUM),
        Stat::Min => at(AGG_MIN),
        Stat::Max => at(AGG_MAX),
        Stat::Avg => at(AGG_SUM).checked_div(at(AGG_COUNT)).unwrap_or(0),
    }
}

/// The key of a table instruction, read from the current frame's registers.
struct RegKey<'a> {
    keys: &'a ArgList,
    regs: &'a [i64],
    sregs: &'a [StrBuf],
    ib: usize,
    sb: usize,
}

impl KeyParts for RegKey<'_> {
    fn len(&self) -> usize {
        usize::from(self.keys.n)
    }

    fn part(&self, i: usize) -> Option<Comp<'_>> {
        let b = *self.keys.bytes.get(..self.len())?.get(i)?;
        Some(match Arg::from_byte(b) {
            Arg::Int(r) => Comp::Int(*self.regs.get(self.ib.wrapping_add(r.into()))?),
            Arg::Str(r) => Comp::Str(self.sregs.get(self.sb.wrapping_add(r.into()))?.as_bytes()),
        })
    }
}

/// The key `keys` names when it is a single register (what the compiler emits most: `t[execname]`,
/// `t[pid]`), read in place from the frame at `ib`/`sb`; `None` for a tuple key.
fn one_key<'k>(
    keys: &ArgList,
    regs: &'k [i64],
    sregs: &'k [StrBuf],
    ib: usize,
    sb: usize,
    fault: RunError,
) -> Result<Option<One<'k>>, RunError> {
    let (1, Some(b)) = (keys.n, keys.bytes.first()) else { return Ok(None) };
    Ok(Some(match Arg::from_byte(*b) {
        Arg::Int(r) => One::Int(*regs.get(ib.wrapping_add(r.into())).ok_or(fault)?),
        Arg::Str(r) => One::Str(sregs.get(sb.wrapping_add(r.into())).ok_or(fault)?),
    }))
}

/// Zero the registers of `f`'s frame (at bases `ib`/`sb`) that its verified `clear_*` ranges name;
/// `None` if they lie outside the register files.
fn clear_frame(regs: &mut [i64], sregs: &mut [StrBuf], ib: usize, sb: usize, f: &FuncInfo) -> Option<()> {
    let (ci, cs) = (f.clear_int, f.clear_str);
    if ci.lo < ci.hi {
        let lo = ib.wrapping_add(ci.lo.into());
        regs.get_mut(lo..ib.wrapping_add(ci.hi.into()))?.fill(0);
    }
    if cs.lo < cs.hi {
        let lo = sb.wrapping_add(cs.lo.into());
        sregs.get_mut(lo..sb.wrapping_add(cs.hi.into()))?.iter_mut().for_each(StrBuf::clear);
    }
    Some(())
}

/// A function's result on its way back to the caller.
enum Ret {
    Void,
    Int(i64),
    /// The string register (absolute index) holding it.
    Str(usize),
}

/// Copy string register `from` into `to` (absolute indices), only the bytes in use; `None` if
/// either is out of range.
fn copy_sreg(sregs: &mut [StrBuf], from: usize, to: usize) -> Option<()> {
    if from == to {
        return sregs.get(from).map(|_| ());
    }
    let (lo, hi) = sregs.split_at_mut_checked(from.max(to))?;
    let (src, dst) =
        if from < to { (lo.get(from)?, hi.first_mut()?) } else { (hi.first()?, lo.get_mut(to)?) };
    dst.set(src.as_bytes());
    Some(())
}

impl Program {
    pub(crate) fn exec(&mut self, func: u16, env: &mut impl Env) -> Result<(), RunError> {
        let Program { v, m, frames, exited, .. } = self;
        let mut cur: FuncInfo = *v.funcs.get(usize::from(func)).ok_or(RunError::NoSuchFunc)?;
        let mut cur_index = func;
        // only what the verifier could not prove written before read (`clears.rs`)
        let fault = RunError::Fault { pc: cur.start };
        clear_frame(&mut m.regs, &mut m.sregs, 0, 0, &cur).ok_or(fault)?;
        (m.ib, m.sb, m.pc, m.budget) = (0, 0, cur.start, v.budget);
        let mut depth = 0usize;
        let mut pc = cur.start;
        loop {
            m.pc = pc;
            // by reference: an `Op` is 20 bytes, copying it per dispatch showed in the profiles
            let op = v.ops.get(pc as usize).ok_or(m.fault())?;
            let next = pc.wrapping_add(1);
            let ret = match *op {
                Op::Ret => Ret::Void,
                Op::Retv { s } => Ret::Int(m.r(s)?),
                Op::Rets { s } => {
                    m.s(s)?;
                    Ret::Str(m.sb.wrapping_add(s.into()))
                }
                Op::Exit => {
                    *exited = true;
                    m.emit(env, RecordKind::Exit, 0, |_| {});
                    return Ok(());
                }
                Op::Call { d, f, ref args, str_result } => {
                    m.charge(cost::CALL)?;
                    let callee = *v.funcs.get(usize::from(f)).ok_or(m.fault())?;
                    let slot = frames.get_mut(depth).ok_or(RunError::Fault { pc })?;
                    *slot = CallFrame {
                        func: cur_index,
                        ret_pc: next,
                        ib: m.ib as u32,
                        sb: m.sb as u32,
                        dest: d,
                        str_result,
                    };
                    let (nib, nsb) =
                        (m.ib.wrapping_add(cur.n_int.into()), m.sb.wrapping_add(cur.n_str.into()));
                    let fault = m.fault();
                    clear_frame(&mut m.regs, &mut m.sregs, nib, nsb, &callee).ok_or(fault)?;
                    let (mut ni, mut ns) = (nib, nsb);
                    for b in args.bytes.iter().take(args.n.into()) {
                        match Arg::from_byte(*b) {
                            Arg::Int(r) => {
                                let x = m.r(r)?;
                                *m.regs.get_mut(ni).ok_or(fault)? = x;
                                ni = ni.wrapping_add(1);
                            }
                            Arg::Str(r) => {
                                copy_sreg(&mut m.sregs, m.sb.wrapping_add(r.into()), ns).ok_or(fault)?;
                                ns = ns.wrapping_add(1);
                            }
                        }
                    }
                    depth = depth.wrapping_add(1);
                    (m.ib, m.sb, cur, cur_index) = (nib, nsb, callee, f);
                    pc = cur.start;
                    continue;
                }
                Op::Jmp { to } => {
                    pc = branch(pc, to, &mut m.budget)?;
                    continue;
                }
                Op::Br { cond: c, a, b, to } => {
                    pc = if cond(c, m.r(a)?, m.r(b)?) { branch(pc, to, &mut m.budget)? } else { next };
                    continue;
                }
                Op::StrBr { eq, a, b, to } => {
                    pc = if (m.s(a)?.as_bytes() == m.s(b)?.as_bytes()) == eq {
                        branch(pc, to, &mut m.budget)?
                    } else {
                        next
                    };
                    continue;
                }
                Op::Movi { d, imm } => {
                    m.set(d, imm.into())?;
                    pc = next;
                    continue;
                }
                Op::Ldc { d, c } => {
                    let x = *v.consts.get(usize::from(c)).ok_or(m.fault())?;
                    m.set(d, x)?;
                    pc = next;
                    continue;
                }
                Op::Mov { d, s } => {
                    m.set(d, m.r(s)?)?;
                    pc = next;
                    continue;
                }
                Op::Alu { op, d, a, b } => {
                    m.set(d, alu(op, m.r(a)?, m.r(b)?))?;
                    pc = next;
                    continue;
                }
                Op::Neg { d, s } => {
                    m.set(d, m.r(s)?.wrapping_neg())?;
                    pc = next;
                    continue;
                }
                Op::Not { d, s } => {
                    m.set(d, i64::from(m.r(s)? == 0))?;
                    pc = next;
                    continue;
                }
                Op::Addi { d, s, imm } => {
                    m.set(d, m.r(s)?.wrapping_add(imm.into()))?;
                    pc = next;
                    continue;
                }
                Op::Ldg { d, g } => {
                    let x = *m.global(g)?;
                    m.set(d, x)?;
                    pc = next;
                    continue;
                }
                Op::Stg { g, s } => {
                    *m.global(g)? = m.r(s)?;
                    pc = next;
                    continue;
                }
                Op::Addg { g, s } => {
                    let x = m.r(s)?;
                    let slot = m.global(g)?;
                    *slot = slot.wrapping_add(x);
                    pc = next;
                    continue;
                }
                Op::Ctx { d, field } => {
                    m.set(d, env.ctx(field))?;
                    pc = next;
                    continue;
                }
                Op::Comm { d } => {
                    // straight into the register: no intermediate buffer to clear or copy
                    let s = m.s_mut(d)?;
                    let n = env.comm(s.buf_mut());
                    s.set_len(n);
                    pc = next;
                    continue;
                }
                Op::Tld { d, t, ref keys } => {
                    let x = m.lookup(t, keys, |v| v.first().copied().unwrap_or(0))?.unwrap_or(0);
                    m.set(d, x)?;
                    pc = next;
                    continue;
                }
                Op::Tst { t, ref keys, v: r } => {
                    let x = m.r(r)?;
                    m.update(t, keys, |v| v.iter_mut().for_each(|s| *s = x))?;
                    pc = next;
                    continue;
                }
                Op::Tadd { t, ref keys, v: r } => {
                    let x = m.r(r)?;
                    m.update(t, keys, |v| v.iter_mut().for_each(|s| *s = s.wrapping_add(x)))?;
                    pc = next;
                    continue;
                }
                Op::Taddi { t, ref keys, imm } => {
                    let x = i64::from(imm);
                    m.update(t, keys, |v| v.iter_mut().for_each(|s| *s = s.wrapping_add(x)))?;
                    pc = next;
                    continue;
                }
                Op::Tagg { t, ref keys, v: r } => {
                    let x = m.r(r)?;
                    let kind = m.table(t)?.spec.value;
                    m.update(t, keys, |v| Table::record(&kind, v, x))?;
                    pc = next;
                    continue;
                }
                _ => {
                    pc = step_cold(m, op, pc, next, v, env)?;
                    continue;
                }
            };
            // a return
            let Some(d) = depth.checked_sub(1) else { return Ok(()) };
            depth = d;
            let fr = *frames.get(d).ok_or(m.fault())?;
            m.ib = fr.ib as usize;
            m.sb = fr.sb as usize;
            cur_index = fr.func;
            cur = *v.funcs.get(usize::from(fr.func)).ok_or(m.fault())?;
            match (ret, fr.str_result) {
                (Ret::Str(s), true) => {
                    let fault = m.fault();
                    copy_sreg(&mut m.sregs, s, m.sb.wrapping_add(fr.dest.into())).ok_or(fault)?
                }
                (Ret::Int(x), false) => m.set(fr.dest, x)?,
                (Ret::Void, false) => m.set(fr.dest, 0)?,
                _ => return Err(m.fault()),
            }
            pc = fr.ret_pc;
        }
    }
}

/// Every instruction the dispatch loop in [`Program::exec`] does not handle itself: the common
/// cheap ones are there, in one `match` (one jump table per instruction); these are out of line so
/// their large locals (printf's argument arrays, string and stack buffers) do not cost the loop
/// register spills on every hit.
#[inline(never)]
fn step_cold(
    m: &mut Machine,
    op: &Op,
    pc: u32,
    next: u32,
    v: &crate::verified::Verified,
    env: &mut impl Env,
) -> Result<u32, RunError> {
    Ok(match *op {
        Op::Lds { d, s } => {
            let f = m.fault();
            m.set_s(d, v.string(s).ok_or(f)?)?;
            next
        }
        Op::Movs { d, s } => {
            let f = m.fault();
            copy_sreg(&mut m.sregs, m.sb.wrapping_add(s.into()), m.sb.wrapping_add(d.into())).ok_or(f)?;
            next
        }
        Op::Tstat { d, t, ref keys, stat: s } => {
            let x = m.lookup(t, keys, |v| stat(v, s))?.unwrap_or(0);
            m.set(d, x)?;
            next
        }
        Op::Tdel { t, ref keys } => {
            m.charge(cost::TABLE)?;
            let (table, key) = m.key(t, keys)?;
            table.remove(&key);
            next
        }
        Op::Tclr { t } => {
            let n = u32::try_from(m.table(t)?.len()).unwrap_or(u32::MAX);
            m.charge(n.saturating_add(1))?;
            m.table(t)?.clear();
            next
        }
        Op::Tlen { d, t } => {
            let n = m.table(t)?.len() as i64;
            m.set(d, n)?;
            next
        }
        Op::Tnext { c, t, ref keys, v: r, to } => {
            if m.tnext(c, t, keys, r)? {
                next
            } else {
                branch(pc, to, &mut m.budget)?
            }
        }
        Op::Printf { f, ref args } => {
            m.printf(env, f, args)?;
            next
        }
        Op::Ptable { t } => {
            let cost = u32::try_from(m.table(t)?.len()).unwrap_or(u32::MAX);
            m.charge(cost)?;
            m.ptable(env, t)?;
            next
        }
        Op::Ldk { d, a, off, w } => {
            m.charge(cost::MEM)?;
            let addr = m.r(a)?.wrapping_add(off.into()) as u64;
            let mut buf = [0u8; 8];
            let n = usize::from(w.bytes).min(8);
            let ok = buf.get_mut(..n).is_some_and(|dst| env.read_kernel(addr, dst));
            let x = match ok {
                true => load(&buf, n, w.signed),
                false => {
                    m.counters.mem_faults = m.counters.mem_faults.wrapping_add(1);
                    0
                }
            };
            m.set(d, x)?;
            next
        }
        Op::Kstr { d, a, m: max, user } => {
            m.charge(cost::MEM)?;
            let addr = m.r(a)? as u64;
            let max = usize::try_from(m.r(max)?).unwrap_or(0).min(MAX_STR);
            // read straight into the destination register
            let s = m.s_mut(d)?;
            let got = match s.buf_mut().get_mut(..max) {
                Some(dst) if !dst.is_empty() => env.read_str(user, addr, dst),
                _ => Some(0),
            };
            let n = match got {
                Some(n) => n.min(max),
                None => 0,
            };
            s.set_len(n);
            if got.is_none() {
                m.counters.mem_faults = m.counters.mem_faults.wrapping_add(1);
            }
            next
        }
        Op::Slen { d, s } => {
            let n = m.s(s)?.as_bytes().len() as i64;
            m.set(d, n)?;
            next
        }
        Op::Scat { d, a, b } => {
            let mut buf = [0u8; MAX_STR];
            let (x, y) = (m.s(a)?, m.s(b)?);
            let mut n = 0usize;
            for (dst, src) in buf.iter_mut().zip(x.as_bytes().iter().chain(y.as_bytes())) {
                *dst = *src;
                n = n.wrapping_add(1);
            }
            m.set_s(d, buf.get(..n).unwrap_or(&[]))?;
            next
        }
        Op::Kstack { d, depth } => {
            let depth = usize::from(depth).min(MAX_STACK);
            m.charge(cost::STACK.saturating_add(depth as u32))?;
            let mut frames = [0u64; MAX_STACK];
            let n = frames.get_mut(..depth).map_or(0, |f| env.kstack(f)).min(depth);
            let mut buf = [0u8; MAX_STR];
            for (chunk, a) in buf.chunks_exact_mut(8).zip(frames.iter().take(n)) {
                chunk.copy_from_slice(&a.to_le_bytes());
            }
            m.set_s(d, buf.get(..n.saturating_mul(8)).unwrap_or(&[]))?;
            next
        }
        Op::Ret
        | Op::Retv { .. }
        | Op::Rets { .. }
        | Op::Call { .. }
        | Op::Exit
        | Op::Jmp { .. }
        | Op::Br { .. }
        | Op::StrBr { .. }
        | Op::Movi { .. }
        | Op::Ldc { .. }
        | Op::Mov { .. }
        | Op::Alu { .. }
        | Op::Neg { .. }
        | Op::Not { .. }
        | Op::Addi { .. }
        | Op::Ldg { .. }
        | Op::Stg { .. }
        | Op::Addg { .. }
        | Op::Ctx { .. }
        | Op::Comm { .. }
        | Op::Tld { .. }
        | Op::Tst { .. }
        | Op::Tadd { .. }
        | Op::Taddi { .. }
        | Op::Tagg { .. } => return Err(m.fault()),
    })
}

/// A native-endian load of `n` bytes from `buf`, zero- or sign-extended.
fn load(buf: &[u8; 8], n: usize, signed: bool) -> i64 {
    let b = |i: usize| buf.get(i).copied().unwrap_or(0);
    match (n, signed) {
        (1, false) => i64::from(b(0)),
        (1, true) => i64::from(b(0) as i8),
        (2, false) => i64::from(u16::from_ne_bytes([b(0), b(1)])),
        (2, true) => i64::from(i16::from_ne_bytes([b(0), b(1)])),
        (4, false) => i64::from(u32::from_ne_bytes([b(0), b(1), b(2), b(3)])),
        (4, true) => i64::from(i32::from_ne_bytes([b(0), b(1), b(2), b(3)])),
        _ => i64::from_ne_bytes(*buf),
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
