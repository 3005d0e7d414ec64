//! The verifier: a pure function from a parsed image to a [`Verified`] program or the first problem.
//!
//! Checks run in a fixed order (program-wide limits, tables, functions, probes, then each function's
//! code), so the same image always gives the same error. Per function it works in two passes: find
//! the instruction starts, then check every operand (driven by `Opcode::operands`, the ISA table) and
//! resolve jumps to instruction indices.

use alloc::vec::Vec;

use ktap_protocol::image::{ArgKind, FuncSpec, Image, KeyKind, ProbeKind, SectionKind, TableSpec};
use ktap_protocol::isa::{self, Arg, CtxField, DecodeError, Insn, Opcode, OperandKind};
use ktap_protocol::limits::{
    DEFAULT_BUDGET, MAX_ARGS, MAX_BUDGET, MAX_CODE, MAX_FUNCS, MAX_GLOBALS, MAX_INT_REGS, MAX_PROBES,
    MAX_STR_REGS, MAX_TABLE_CAPACITY, MAX_TABLES,
};

use crate::error::VerifyError as E;
use crate::fixed::try_push;
use crate::verified::{AluOp, ArgList, Cond, FormatSpec, FuncInfo, Op, ProbeInfo, Verified};

/// A probe entry is 12 bytes of fixed fields followed by the name (see `ktap_protocol::image`).
const PROBE_ENTRY_FIXED: usize = 12;

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
    };
    check_limits(image)?;
    pools(image, &mut v)?;
    tables(image, &mut v)?;
    let specs = funcs(image)?;
    probes(image, &mut v, specs.len())?;
    for (i, spec) in specs.iter().enumerate() {
        code(image, &mut v, spec, i, specs.len())?;
    }
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
        if t.capacity == 0 || t.capacity > MAX_TABLE_CAPACITY {
            let offset = off32(image.table_entry_offset(i));
            return Err(E::BadTableCapacity { offset, capacity: t.capacity });
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

fn probes(image: &Image<'_>, v: &mut Verified, nfuncs: usize) -> Result<(), E> {
    let base = image.section_offset(SectionKind::Probes).wrapping_add(2);
    let mut at = base;
    let mut result = Ok(());
    let mut count = 0usize;
    let (mut begin, mut end) = (false, false);
    image.probes(|p| {
        let offset = off32(at);
        let probe = count as u16;
        at = at.wrapping_add(PROBE_ENTRY_FIXED).wrapping_add(p.name.len());
        count = count.wrapping_add(1);
        if result.is_err() {
            return;
        }
        let check = || -> Result<(), E> {
            if usize::from(p.func) >= nfuncs {
                return Err(E::ProbeFuncOutOfRange { offset, probe });
            }
            match p.kind {
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
            Ok(try_push(&mut v.probes, ProbeInfo::new(p.kind, p.func, p.addr, p.name))?)
        });
    });
    if count > MAX_PROBES as usize {
        let offset = off32(image.section_offset(SectionKind::Probes));
        return Err(E::TooManyProbes { offset, count: off32(count) });
    }
    result
}

/// Decode and check one function, appending its instructions to `v.ops`.
fn code(image: &Image<'_>, v: &mut Verified, spec: &FuncSpec, index: usize, nfuncs: usize) -> Result<(), E> {
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
    if !matches!(last.op, Opcode::Ret | Opcode::Jmp) {
        return Err(E::FallsThrough { offset: at(last.offset) });
    }
    let count = v.offsets.len().wrapping_sub(first);

    // pass 2: operands, jumps, conversion
    let ctx = Check { v: &*v, spec, first, count, base, nfuncs };
    let mut ops = Vec::new();
    for insn in isa::decode_all(body).flatten() {
        try_push(&mut ops, ctx.insn(&insn)?)?;
    }
    for op in ops {
        try_push(&mut v.ops, op)?;
    }
    try_push(
        &mut v.funcs,
        FuncInfo { start: off32(first), len: off32(count), n_int: spec.n_int, n_str: spec.n_str },
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
    /// Number of functions in the program.
    nfuncs: usize,
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
                OperandKind::Func if !idx(self.nfuncs) => {
                    return Err(E::FuncOutOfRange { offset, index: val as u16 });
                }
                OperandKind::Ctx if CtxField::from_byte(val as u8).is_none() => {
                    return Err(E::UnknownCtxField { offset, field: val as u8 });
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
        let key = match insn.op {
            O::Tld | O::Tlds => Some((insn.op(1), insn.op == O::Tld)),
            O::Tst | O::Tsts | O::Tadd | O::Tadds | O::Tdel | O::Tdels => {
                Some((insn.op(0), matches!(insn.op, O::Tst | O::Tadd | O::Tdel)))
            }
            _ => None,
        };
        if let Some((table, int_keyed)) = key {
            let want = if int_keyed { KeyKind::Int } else { KeyKind::Str };
            let spec: Option<&TableSpec> = self.v.tables.get(table as usize);
            if spec.map(|t| t.key) != Some(want) {
                return Err(E::TableKeyMismatch { offset, table: table as u8 });
            }
        }
        if insn.op == O::Printf {
            let format = insn.op(0) as u16;
            let spec = self.v.formats.get(format as usize).copied().unwrap_or(FormatSpec::new(&[]));
            if spec.nargs() != insn.nargs {
                return Err(E::PrintfArgCount { offset, format });
            }
            for (i, a) in insn.arg_list().enumerate() {
                let kind = match a {
                    Arg::Int(_) => ArgKind::Int,
                    Arg::Str(_) => ArgKind::Str,
                };
                if spec.arg(i as u8) != Some(kind) {
                    return Err(E::PrintfArgKind { offset, arg: i as u8 });
                }
            }
        }
        Ok(())
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
        O::Tld => Op::Tld { d: r(0), t: r(1), k: r(2) },
        O::Tlds => Op::Tlds { d: r(0), t: r(1), k: r(2) },
        O::Tst => Op::Tst { t: r(0), k: r(1), v: r(2) },
        O::Tsts => Op::Tsts { t: r(0), k: r(1), v: r(2) },
        O::Tadd => Op::Tadd { t: r(0), k: r(1), v: r(2) },
        O::Tadds => Op::Tadds { t: r(0), k: r(1), v: r(2) },
        O::Tdel => Op::Tdel { t: r(0), k: r(1) },
        O::Tdels => Op::Tdels { t: r(0), k: r(1) },
        O::Printf => {
            let mut bytes = [0u8; MAX_ARGS];
            for (d, s) in bytes.iter_mut().zip(insn.args.iter().take(insn.nargs.into())) {
                *d = *s;
            }
            Op::Printf { f: w(0), args: ArgList { n: insn.nargs, bytes } }
        }
        O::Ptable => Op::Ptable { t: r(0) },
    }
}
