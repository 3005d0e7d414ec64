//! The verifier: a pure function from a parsed image to a [`Verified`] program or the first problem.
//!
//! Checks run in a fixed order (program-wide limits, tables, functions, probes, each function's code,
//! then the call graph), so the same image always gives the same error. Per function it works in two
//! passes: find the instruction starts, then check every operand (driven by `Opcode::operands`, the
//! ISA table) and resolve jumps to instruction indices. The call graph pass is iterative (Kahn's
//! topological sort), never recursive: the verifier runs on a kernel stack too.

use alloc::vec::Vec;

use ktap_protocol::image::{
    ArgKind, FuncSpec, Image, KeyKind, PROBE_EVERY_CPU, ProbeKind, RetKind, SectionKind, TableSpec,
    ValueKind, frame_bytes,
};
use ktap_protocol::isa::{self, Arg, CtxField, DecodeError, Insn, Opcode, OperandKind, Stat, Width};
use ktap_protocol::limits::{
    DEFAULT_BUDGET, MAX_ARGS, MAX_BUDGET, MAX_CALL_DEPTH, MAX_CODE, MAX_FRAME_BUDGET, MAX_FUNCS, MAX_GLOBALS,
    MAX_INT_REGS, MAX_LINEAR_BUCKETS, MAX_PROBES, MAX_STACK, MAX_STR_REGS, MAX_TABLE_BYTES,
    MAX_TABLE_CAPACITY, MAX_TABLES, MAX_TIMER_PERIOD_NS, MIN_TIMER_PERIOD_NS,
};

use crate::clears::entry_clears;
use crate::error::VerifyError as E;
use crate::fixed::try_push;
use crate::table::entry_bytes;
use crate::verified::{AluOp, ArgList, Cond, FormatSpec, FuncInfo, Op, ProbeInfo, Verified};

/// A call found in the code: caller, callee, image offset of the call.
#[derive(Clone, Copy)]
struct Edge {
    from: u16,
    to: u16,
    offset: u32,
}

fn off32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Verify `image`: decode every function and check everything the VM relies on.
///
/// Pure: the result depends only on the image. Allocates the decoded program (fallibly).
pub fn verify(image: &Image<'_>) -> Result<Verified, E> {
    let mut v = Verified {
        ops: Vec::new(),
        offsets: Vec::new(),
        funcs: Vec::new(),
        consts: Vec::new(),
        str_data: Vec::new(),
        str_spans: Vec::new(),
        tables: Vec::new(),
        probes: Vec::new(),
        formats: Vec::new(),
        globals: image.globals,
        budget: if image.budget == 0 { DEFAULT_BUDGET } else { image.budget },
        stack_int: 0,
        stack_str: 0,
    };
    check_limits(image)?;
    pools(image, &mut v)?;
    tables(image, &mut v)?;
    let specs = funcs(image)?;
    probes(image, &mut v, &specs)?;
    let mut edges = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        code(image, &mut v, spec, i, &specs, &mut edges)?;
    }
    call_graph(image, &mut v, &specs, &edges)?;
    Ok(v)
}

fn check_limits(image: &Image<'_>) -> Result<(), E> {
    if image.code.len() > MAX_CODE {
        return Err(E::CodeTooLarge { offset: off32(image.code_offset), len: off32(image.code.len()) });
    }
    if image.globals > MAX_GLOBALS {
        let offset = off32(image.section_offset(SectionKind::Globals));
        return Err(E::TooManyGlobals { offset, count: image.globals });
    }
    if image.budget > MAX_BUDGET {
        let offset = off32(image.section_offset(SectionKind::Meta));
        return Err(E::BudgetTooLarge { offset, budget: image.budget });
    }
    if image.frame_budget > MAX_FRAME_BUDGET {
        let offset = off32(image.section_offset(SectionKind::Meta).wrapping_add(4));
        return Err(E::FrameBudgetTooLarge { offset, budget: image.frame_budget });
    }
    Ok(())
}

fn pools(image: &Image<'_>, v: &mut Verified) -> Result<(), E> {
    for c in image.consts() {
        try_push(&mut v.consts, c)?;
    }
    let mut failed = false;
    image.strings(|s| {
        let start = off32(v.str_data.len());
        for b in s {
            failed |= try_push(&mut v.str_data, *b).is_err();
        }
        failed |= try_push(&mut v.str_spans, (start, s.len() as u8)).is_err();
    });
    image.formats(|kinds| failed |= try_push(&mut v.formats, FormatSpec::new(kinds)).is_err());
    if failed { Err(E::OutOfMemory) } else { Ok(()) }
}

fn tables(image: &Image<'_>, v: &mut Verified) -> Result<(), E> {
    let count = image.tables().count();
    if count > MAX_TABLES as usize {
        let offset = off32(image.section_offset(SectionKind::Tables));
        return Err(E::TooManyTables { offset, count: off32(count) });
    }
    for (i, t) in image.tables().enumerate() {
        let offset = off32(image.table_entry_offset(i));
        let table = i as u8;
        if !t.keys.is_valid() {
            return Err(E::BadKeyShape { offset, table });
        }
        if let ValueKind::Linear { step, nbuckets, .. } = t.value {
            if step <= 0 || nbuckets == 0 || nbuckets > MAX_LINEAR_BUCKETS {
                return Err(E::BadAggSpec { offset, table });
            }
        }
        if t.capacity == 0 || t.capacity > MAX_TABLE_CAPACITY {
            return Err(E::BadTableCapacity { offset, capacity: t.capacity });
        }
        if entry_bytes(&t).saturating_mul(t.capacity as usize) > MAX_TABLE_BYTES {
            return Err(E::TableTooLarge { offset, table });
        }
        try_push(&mut v.tables, t)?;
    }
    Ok(())
}

/// Function table checks: count, bounds, frame, overlap. Returns the specs for the code pass.
fn funcs(image: &Image<'_>) -> Result<Vec<FuncSpec>, E> {
    let count = image.func_count();
    if count > MAX_FUNCS as usize {
        let offset = off32(image.section_offset(SectionKind::Funcs));
        return Err(E::TooManyFuncs { offset, count: off32(count) });
    }
    let mut specs: Vec<FuncSpec> = Vec::new();
    for (i, f) in image.funcs().enumerate() {
        let offset = off32(image.func_entry_offset(i));
        let func = i as u16;
        let end = u64::from(f.code_off).wrapping_add(u64::from(f.code_len));
        if end > image.code.len() as u64 {
            return Err(E::FuncOutOfBounds { offset, func });
        }
        if f.code_len == 0 {
            return Err(E::EmptyFunc { offset, func });
        }
        if f.n_int > MAX_INT_REGS || f.n_str > MAX_STR_REGS {
            return Err(E::FrameTooLarge { offset, func });
        }
        if f.params_int > f.n_int || f.params_str > f.n_str {
            return Err(E::BadParams { offset, func });
        }
        let overlaps = specs.iter().any(|g| {
            let g_end = u64::from(g.code_off).wrapping_add(u64::from(g.code_len));
            u64::from(f.code_off) < g_end && u64::from(g.code_off) < end
        });
        if overlaps {
            return Err(E::FuncsOverlap { offset, func });
        }
        try_push(&mut specs, f)?;
    }
    Ok(specs)
}

fn probes(image: &Image<'_>, v: &mut Verified, specs: &[FuncSpec]) -> Result<(), E> {
    let mut result = Ok(());
    let mut count = 0usize;
    let (mut begin, mut end) = (false, false);
    image.probes_at(|at, p| {
        let offset = off32(at);
        let probe = count as u16;
        count = count.wrapping_add(1);
        if result.is_err() {
            return;
        }
        let check = || -> Result<(), E> {
            let Some(f) = specs.get(usize::from(p.func)) else {
                return Err(E::ProbeFuncOutOfRange { offset, probe });
            };
            if f.params_int != 0 || f.params_str != 0 || f.ret != RetKind::Void {
                return Err(E::BadHandler { offset, probe });
            }
            let flags_ok = match p.kind {
                ProbeKind::Timer => p.flags & !PROBE_EVERY_CPU == 0,
                _ => p.flags == 0,
            };
            if !flags_ok {
                return Err(E::BadProbeFlags { offset, probe });
            }
            match p.kind {
                ProbeKind::Timer if !(MIN_TIMER_PERIOD_NS..=MAX_TIMER_PERIOD_NS).contains(&p.addr) => {
                    return Err(E::TimerPeriodOutOfRange { offset, probe, period: p.addr });
                }
                ProbeKind::Begin if begin => return Err(E::DuplicateBegin { offset }),
                ProbeKind::End if end => return Err(E::DuplicateEnd { offset }),
                ProbeKind::Kprobe | ProbeKind::Kretprobe if p.addr == 0 => {
                    return Err(E::ProbeAddrZero { offset, probe });
                }
                ProbeKind::Tracepoint if p.name.is_empty() => {
                    return Err(E::TracepointNameEmpty { offset, probe });
                }
                _ => {}
            }
            Ok(())
        };
        result = check().and_then(|()| {
            begin |= p.kind == ProbeKind::Begin;
            end |= p.kind == ProbeKind::End;
            Ok(try_push(&mut v.probes, ProbeInfo::new(p.kind, p.func, p.addr, p.flags, p.name))?)
        });
    });
    if count > MAX_PROBES as usize {
        let offset = off32(image.section_offset(SectionKind::Probes));
        return Err(E::TooManyProbes { offset, count: off32(count) });
    }
    result
}

/// Decode and check one function, appending its instructions to `v.ops`.
fn code(
    image: &Image<'_>,
    v: &mut Verified,
    spec: &FuncSpec,
    index: usize,
    specs: &[FuncSpec],
    edges: &mut Vec<Edge>,
) -> Result<(), E> {
    let start = spec.code_off as usize;
    let body = image.code.get(start..start.wrapping_add(spec.code_len as usize)).unwrap_or(&[]);
    // image offset of byte `o` of this function
    let base = off32(image.code_offset.wrapping_add(start));
    let at = |o: u32| base.wrapping_add(o);
    let first = v.ops.len();

    // pass 1: instruction starts
    let mut last: Option<Insn> = None;
    for insn in isa::decode_all(body) {
        let insn = insn.map_err(|e| match e {
            DecodeError::UnknownOpcode { offset, byte } => {
                E::UnknownOpcode { offset: at(off32(offset)), byte }
            }
            DecodeError::Truncated { offset } => E::TruncatedInsn { offset: at(off32(offset)) },
            DecodeError::TooManyArgs { offset } => E::TooManyArgs { offset: at(off32(offset)) },
        })?;
        try_push(&mut v.offsets, at(insn.offset))?;
        last = Some(insn);
    }
    let Some(last) = last else {
        return Err(E::EmptyFunc { offset: off32(image.func_entry_offset(index)), func: index as u16 });
    };
    if !matches!(last.op, Opcode::Ret | Opcode::Retv | Opcode::Rets | Opcode::Jmp | Opcode::Exit) {
        return Err(E::FallsThrough { offset: at(last.offset) });
    }
    let count = v.offsets.len().wrapping_sub(first);

    // pass 2: operands, jumps, conversion
    let ctx = Check { v: &*v, spec, first, count, base, specs };
    let mut ops = Vec::new();
    for insn in isa::decode_all(body).flatten() {
        try_push(&mut ops, ctx.insn(&insn)?)?;
        if matches!(insn.op, Opcode::Call | Opcode::Calls) {
            let edge =
                Edge { from: index as u16, to: insn.op(1) as u16, offset: base.wrapping_add(insn.offset) };
            try_push(edges, edge)?;
        }
    }
    let (clear_int, clear_str) =
        entry_clears(&ops, off32(first), (spec.params_int, spec.n_int), (spec.params_str, spec.n_str));
    for op in ops {
        try_push(&mut v.ops, op)?;
    }
    try_push(
        &mut v.funcs,
        FuncInfo {
            start: off32(first),
            len: off32(count),
            n_int: spec.n_int,
            n_str: spec.n_str,
            params_int: spec.params_int,
            params_str: spec.params_str,
            ret: spec.ret,
            clear_int,
            clear_str,
        },
    )?;
    Ok(())
}

/// Operand checks for one function.
struct Check<'v> {
    v: &'v Verified,
    spec: &'v FuncSpec,
    /// Index of the function's first instruction.
    first: usize,
    /// Number of its instructions.
    count: usize,
    /// Image offset of the function's first byte.
    base: u32,
    /// Every function's spec.
    specs: &'v [FuncSpec],
}

impl Check<'_> {
    fn insn(&self, insn: &Insn) -> Result<Op, E> {
        let offset = self.base.wrapping_add(insn.offset);
        let mut slot = 0usize;
        let mut to = 0u32;
        for kind in insn.op.operands() {
            if *kind == OperandKind::Args {
                self.args(insn, offset)?;
                continue;
            }
            let val = insn.op(slot);
            slot = slot.wrapping_add(1);
            let idx = |n: usize| usize::try_from(val).is_ok_and(|x| x < n);
            match kind {
                OperandKind::Reg if !idx(self.spec.n_int.into()) => {
                    return Err(E::IntRegOutOfRange { offset, reg: val as u8 });
                }
                OperandKind::SReg if !idx(self.spec.n_str.into()) => {
                    return Err(E::StrRegOutOfRange { offset, reg: val as u8 });
                }
                OperandKind::Const if !idx(self.v.consts.len()) => {
                    return Err(E::ConstOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Str if !idx(self.v.str_spans.len()) => {
                    return Err(E::StringOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Global if !idx(self.v.globals.into()) => {
                    return Err(E::GlobalOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Table if !idx(self.v.tables.len()) => {
                    return Err(E::TableOutOfRange { offset, index: val as u8 });
                }
                OperandKind::Format if !idx(self.v.formats.len()) => {
                    return Err(E::FormatOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Func if !idx(self.specs.len()) => {
                    return Err(E::FuncOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Ctx if CtxField::from_byte(val as u8).is_none() => {
                    return Err(E::UnknownCtxField { offset, field: val as u8 });
                }
                OperandKind::Stat if Stat::from_byte(val as u8).is_none() => {
                    return Err(E::BadSelector { offset });
                }
                OperandKind::Width if Width::from_byte(val as u8).is_none() => {
                    return Err(E::BadSelector { offset });
                }
                OperandKind::Count if val == 0 || val as usize > MAX_STACK => {
                    return Err(E::BadSelector { offset });
                }
                OperandKind::Jump => to = self.jump(insn, offset)?,
                _ => {}
            }
        }
        self.semantics(insn, offset)?;
        Ok(convert(insn, to))
    }

    /// Resolve a jump to an instruction index inside this function.
    fn jump(&self, insn: &Insn, offset: u32) -> Result<u32, E> {
        let target = insn.jump_target().unwrap_or(-1);
        if target < 0 || target >= i64::from(self.spec.code_len) {
            return Err(E::JumpOutOfFunc { offset });
        }
        let want = self.base.wrapping_add(target as u32);
        let starts = self.v.offsets.get(self.first..self.first.wrapping_add(self.count)).unwrap_or(&[]);
        match starts.binary_search(&want) {
            Ok(i) => Ok(off32(self.first.wrapping_add(i))),
            Err(_) => Err(E::JumpIntoInsn { offset }),
        }
    }

    fn args(&self, insn: &Insn, offset: u32) -> Result<(), E> {
        for a in insn.arg_list() {
            match a {
                Arg::Int(r) if r >= self.spec.n_int => return Err(E::IntRegOutOfRange { offset, reg: r }),
                Arg::Str(r) if r >= self.spec.n_str => return Err(E::StrRegOutOfRange { offset, reg: r }),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks that depend on the opcode, not just the operand kinds.
    fn semantics(&self, insn: &Insn, offset: u32) -> Result<(), E> {
        use Opcode as O;
        // (table operand slot, whether the op reads/writes ints or aggregates, has a key list)
        let table_op = match insn.op {
            O::Tld | O::Tnext => Some((1, None)),
            O::Tst | O::Tadd | O::Taddi => Some((0, Some(false))),
            O::Tagg => Some((0, Some(true))),
            O::Tstat => Some((1, Some(true))),
            O::Tdel => Some((0, None)),
            _ => None,
        };
        if let Some((slot, aggregate)) = table_op {
            let table = insn.op(slot) as u8;
            let spec = self.v.tables.get(usize::from(table)).copied();
            let Some(spec) = spec else { return Err(E::TableOutOfRange { offset, index: table }) };
            if !keys_match(&spec, insn) {
                return Err(E::TableKeyMismatch { offset, table });
            }
            let plain_int = insn.op == O::Tld;
            if aggregate.is_some_and(|a| a != spec.value.is_aggregate())
                || plain_int && spec.value.is_aggregate()
            {
                return Err(E::TableValueMismatch { offset, table });
            }
        }
        match insn.op {
            O::Printf => {
                let format = insn.op(0) as u16;
                let spec = self.v.formats.get(format as usize).copied().unwrap_or(FormatSpec::new(&[]));
                if spec.nargs() != insn.nargs {
                    return Err(E::PrintfArgCount { offset, format });
                }
                for (i, a) in insn.arg_list().enumerate() {
                    if spec.arg(i as u8) != Some(arg_kind(a)) {
                        return Err(E::PrintfArgKind { offset, arg: i as u8 });
                    }
                }
            }
            O::Call | O::Calls => {
                let func = insn.op(1) as u16;
                let callee = self.specs.get(usize::from(func)).copied().unwrap_or_default();
                let ints = insn.arg_list().filter(|a| matches!(a, Arg::Int(_))).count();
                let strs = usize::from(insn.nargs).wrapping_sub(ints);
                if ints != usize::from(callee.params_int) || strs != usize::from(callee.params_str) {
                    return Err(E::CallArgMismatch { offset, func });
                }
                if (insn.op == O::Calls) != (callee.ret == RetKind::Str) {
                    return Err(E::CallResultMismatch { offset, func });
                }
            }
            O::Ret | O::Retv | O::Rets => {
                let want = match insn.op {
                    O::Ret => RetKind::Void,
                    O::Retv => RetKind::Int,
                    _ => RetKind::Str,
                };
                if want != self.spec.ret {
                    return Err(E::ReturnKindMismatch { offset });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn arg_kind(a: Arg) -> ArgKind {
    match a {
        Arg::Int(_) => ArgKind::Int,
        Arg::Str(_) => ArgKind::Str,
    }
}

/// Whether the instruction's key list has exactly the table's key shape.
fn keys_match(spec: &TableSpec, insn: &Insn) -> bool {
    insn.nargs == spec.keys.n
        && insn.arg_list().enumerate().all(|(i, a)| {
            let kind = match a {
                Arg::Int(_) => KeyKind::Int,
                Arg::Str(_) => KeyKind::Str,
            };
            spec.keys.kind(i) == Some(kind)
        })
}

/// Check the call graph: no cycle, depth within `MAX_CALL_DEPTH`, frames of the deepest path within
/// the declared frame budget; record the registers the deepest path needs.
fn call_graph(image: &Image<'_>, v: &mut Verified, specs: &[FuncSpec], edges: &[Edge]) -> Result<(), E> {
    let n = specs.len();
    // Kahn's algorithm on the reversed graph: a function is done once every callee is done.
    let mut pending: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    for e in edges {
        if let Some(p) = pending.get_mut(usize::from(e.from)) {
            *p = p.wrapping_add(1);
        }
    }
    let mut order: Vec<u16> = Vec::new();
    order.try_reserve_exact(n).map_err(|_| E::OutOfMemory)?;
    for (f, p) in pending.iter().enumerate() {
        if *p == 0 {
            try_push(&mut order, f as u16)?;
        }
    }
    // depth (nested calls), frame bytes, int and str registers of the deepest path from each function,
    // and the call that leads into it
    let mut depth: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    let mut bytes: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    let mut ints: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    let mut strs: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    let mut via: Vec<u32> = crate::fixed::try_filled(n, 0)?;
    let mut next = 0usize;
    while let Some(&f) = order.get(next) {
        next = next.wrapping_add(1);
        let fi = usize::from(f);
        let spec = specs.get(fi).copied().unwrap_or_default();
        let (mut d, mut b, mut ri, mut rs, mut at) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for e in edges.iter().filter(|e| e.from == f) {
            let t = usize::from(e.to);
            let cd = depth.get(t).copied().unwrap_or(0).saturating_add(1);
            let cb = bytes.get(t).copied().unwrap_or(0);
            if cd > d || (cd == d && cb > b) {
                at = e.offset;
            }
            d = d.max(cd);
            b = b.max(cb);
            ri = ri.max(ints.get(t).copied().unwrap_or(0));
            rs = rs.max(strs.get(t).copied().unwrap_or(0));
        }
        let own = frame_bytes(spec.n_int, spec.n_str);
        for (vec, val) in [
            (&mut depth, d),
            (&mut bytes, b.saturating_add(own)),
            (&mut ints, ri.saturating_add(spec.n_int.into())),
            (&mut strs, rs.saturating_add(spec.n_str.into())),
            (&mut via, at),
        ] {
            if let Some(x) = vec.get_mut(fi) {
                *x = val;
            }
        }
        // every caller of f has one callee fewer to wait for
        for e in edges.iter().filter(|e| e.to == f) {
            if let Some(p) = pending.get_mut(usize::from(e.from)) {
                *p = p.wrapping_sub(1);
                if *p == 0 {
                    try_push(&mut order, e.from)?;
                }
            }
        }
    }
    if order.len() < n {
        return Err(cycle(edges, &pending));
    }
    let budget = if image.frame_budget == 0 { MAX_FRAME_BUDGET } else { image.frame_budget };
    for f in 0..n {
        let d = depth.get(f).copied().unwrap_or(0);
        let at = via.get(f).copied().unwrap_or(0);
        let entry = off32(image.func_entry_offset(f));
        if d as usize > MAX_CALL_DEPTH {
            return Err(E::CallTooDeep { offset: at, depth: d });
        }
        let need = bytes.get(f).copied().unwrap_or(0);
        if need > budget {
            let offset = if d == 0 { entry } else { at };
            return Err(E::FrameBudgetExceeded { offset, need, budget });
        }
    }
    v.stack_int = ints.iter().copied().max().unwrap_or(0) as usize;
    v.stack_str = strs.iter().copied().max().unwrap_or(0) as usize;
    Ok(())
}

/// The error for a call graph with a cycle. `pending[f] != 0` for every function on a cycle or
/// calling into one. Walk callee edges among those, starting at the lowest such function, until a
/// function repeats: that one is on a cycle, and its call to the next function on the walk closes it.
fn cycle(edges: &[Edge], pending: &[u32]) -> E {
    let stuck = |f: u16| pending.get(usize::from(f)).is_some_and(|p| *p != 0);
    let Some(start) = (0..pending.len()).map(|f| f as u16).find(|f| stuck(*f)) else {
        return E::OutOfMemory;
    };
    // a stuck function always calls another stuck one; after pending.len() steps the walk is on a cycle
    let step = |f: u16| edges.iter().find(|e| e.from == f && stuck(e.to));
    let mut f = start;
    for _ in 0..pending.len() {
        match step(f) {
            Some(e) => f = e.to,
            None => break,
        }
    }
    match step(f) {
        Some(e) => E::Recursion { offset: e.offset, func: e.from },
        None => E::OutOfMemory,
    }
}

/// Turn a checked instruction into an [`Op`]; `to` is its resolved jump target, if it jumps.
fn convert(insn: &Insn, to: u32) -> Op {
    use Opcode as O;
    let r = |i: usize| insn.op(i) as u8;
    let w = |i: usize| insn.op(i) as u16;
    let br = |cond, a, b| Op::Br { cond, a, b, to };
    let alu = |op| Op::Alu { op, d: r(0), a: r(1), b: r(2) };
    match insn.op {
        O::Ret => Op::Ret,
        O::Jmp => Op::Jmp { to },
        O::Jz => br(Cond::Zero, r(0), 0),
        O::Jnz => br(Cond::NonZero, r(0), 0),
        O::Jeq => br(Cond::Eq, r(0), r(1)),
        O::Jne => br(Cond::Ne, r(0), r(1)),
        O::Jlt => br(Cond::Lt, r(0), r(1)),
        O::Jle => br(Cond::Le, r(0), r(1)),
        O::Jseq => Op::StrBr { eq: true, a: r(0), b: r(1), to },
        O::Jsne => Op::StrBr { eq: false, a: r(0), b: r(1), to },
        O::Movi => Op::Movi { d: r(0), imm: insn.op(1) },
        O::Ldc => Op::Ldc { d: r(0), c: w(1) },
        O::Mov => Op::Mov { d: r(0), s: r(1) },
        O::Add => alu(AluOp::Add),
        O::Sub => alu(AluOp::Sub),
        O::Mul => alu(AluOp::Mul),
        O::Div => alu(AluOp::Div),
        O::Mod => alu(AluOp::Mod),
        O::And => alu(AluOp::And),
        O::Or => alu(AluOp::Or),
        O::Xor => alu(AluOp::Xor),
        O::Shl => alu(AluOp::Shl),
        O::Shr => alu(AluOp::Shr),
        O::Neg => Op::Neg { d: r(0), s: r(1) },
        O::Not => Op::Not { d: r(0), s: r(1) },
        O::Addi => Op::Addi { d: r(0), s: r(1), imm: insn.op(2) },
        O::Ldg => Op::Ldg { d: r(0), g: w(1) },
        O::Stg => Op::Stg { g: w(0), s: r(1) },
        O::Addg => Op::Addg { g: w(0), s: r(1) },
        O::Ctx => Op::Ctx { d: r(0), field: CtxField::from_byte(r(1)).unwrap_or(CtxField::Pid) },
        O::Comm => Op::Comm { d: r(0) },
        O::Lds => Op::Lds { d: r(0), s: w(1) },
        O::Movs => Op::Movs { d: r(0), s: r(1) },
        O::Tld => Op::Tld { d: r(0), t: r(1), keys: list(insn) },
        O::Tst => Op::Tst { t: r(0), keys: list(insn), v: r(1) },
        O::Tadd => Op::Tadd { t: r(0), keys: list(insn), v: r(1) },
        O::Taddi => Op::Taddi { t: r(0), keys: list(insn), imm: insn.op(1) },
        O::Tdel => Op::Tdel { t: r(0), keys: list(insn) },
        O::Tclr => Op::Tclr { t: r(0) },
        O::Tlen => Op::Tlen { d: r(0), t: r(1) },
        O::Tagg => Op::Tagg { t: r(0), keys: list(insn), v: r(1) },
        O::Tstat => Op::Tstat {
            d: r(0),
            t: r(1),
            keys: list(insn),
            stat: Stat::from_byte(r(2)).unwrap_or(Stat::Count),
        },
        O::Tnext => Op::Tnext { c: r(0), t: r(1), keys: list(insn), v: r(2), to },
        O::Printf => Op::Printf { f: w(0), args: list(insn) },
        O::Call => Op::Call { d: r(0), f: w(1), args: list(insn), str_result: false },
        O::Calls => Op::Call { d: r(0), f: w(1), args: list(insn), str_result: true },
        O::Retv => Op::Retv { s: r(0) },
        O::Rets => Op::Rets { s: r(0) },
        O::Ldk => Op::Ldk {
            d: r(0),
            a: r(1),
            off: insn.op(2),
            w: Width::from_byte(r(3)).unwrap_or(Width { bytes: 1, signed: false }),
        },
        O::Kstr => Op::Kstr { d: r(0), a: r(1), m: r(2), user: false },
        O::Ustr => Op::Kstr { d: r(0), a: r(1), m: r(2), user: true },
        O::Slen => Op::Slen { d: r(0), s: r(1) },
        O::Scat => Op::Scat { d: r(0), a: r(1), b: r(2) },
        O::Kstack => Op::Kstack { d: r(0), depth: r(1) },
        O::Exit => Op::Exit,
        O::Ptable => Op::Ptable { t: r(0) },
    }
}

fn list(insn: &Insn) -> ArgList {
    let mut bytes = [0u8; MAX_ARGS];
    for (d, s) in bytes.iter_mut().zip(insn.args.iter().take(insn.nargs.into())) {
        *d = *s;
    }
    ArgList { n: insn.nargs, bytes }
}
