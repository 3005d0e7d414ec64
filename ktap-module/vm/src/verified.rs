//! The decoded, checked program: what [`crate::verify`] produces and [`crate::Program`] runs.
//!
//! Architecture invariant: a [`Verified`] exists only if every check of the verifier passed, so every
//! register, pool, table, global and format index in its [`Op`]s is in range and every jump target is an
//! instruction index inside the same function. The interpreter still reads through `get()`, but a miss
//! is a VM bug (reported as `RunError::Fault`), never a script error.

use alloc::vec::Vec;

use ktap_protocol::image::{ArgKind, ProbeKind, RetKind, TableSpec};
use ktap_protocol::isa::{CtxField, Stat, Width};
use ktap_protocol::limits::{MAX_ARGS, MAX_PROBE_NAME, MAX_STR};

/// A string value of at most `MAX_STR` bytes, stored inline (string registers, string table keys).
///
/// Only the first `len` bytes are the value; the rest is stale and never read (`as_bytes`, equality
/// and every copy stop at `len`). So clearing is a length store and copies move only the used bytes:
/// on the probe path a 129-byte register is never cleared or copied whole.
#[derive(Clone, Copy)]
pub struct StrBuf {
    len: u8,
    bytes: [u8; MAX_STR],
}

impl StrBuf {
    /// The empty string.
    pub const EMPTY: StrBuf = StrBuf { len: 0, bytes: [0; MAX_STR] };

    /// A string holding the first `MAX_STR` bytes of `s`.
    pub fn new(s: &[u8]) -> StrBuf {
        let mut b = StrBuf::EMPTY;
        b.set(s);
        b
    }

    /// Replace the contents with the first `MAX_STR` bytes of `s`.
    pub fn set(&mut self, s: &[u8]) {
        let n = s.len().min(MAX_STR);
        if let (Some(d), Some(src)) = (self.bytes.get_mut(..n), s.get(..n)) {
            d.copy_from_slice(src);
        }
        self.len = n as u8;
    }

    /// Make it the empty string (a length store).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The whole buffer, for filling in place; then [`StrBuf::set_len`].
    pub(crate) fn buf_mut(&mut self) -> &mut [u8; MAX_STR] {
        &mut self.bytes
    }

    /// Keep the first `n` bytes of the buffer (at most `MAX_STR`) as the value.
    pub(crate) fn set_len(&mut self, n: usize) {
        self.len = n.min(MAX_STR) as u8;
    }

    /// The whole buffer and the length in use: word-at-a-time readers may load bytes past the
    /// length (inside the buffer) and mask them off.
    pub(crate) fn padded(&self) -> (&[u8; MAX_STR], usize) {
        (&self.bytes, usize::from(self.len).min(MAX_STR))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }
}

impl PartialEq for StrBuf {
    fn eq(&self, other: &StrBuf) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for StrBuf {}

impl core::fmt::Debug for StrBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii())
    }
}

/// Condition of an integer branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `a == 0` (`jz`; `b` unused).
    Zero,
    /// `a != 0` (`jnz`; `b` unused).
    NonZero,
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`, signed.
    Lt,
    /// `a <= b`, signed.
    Le,
}

/// A binary integer operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluOp {
    /// Wrapping add.
    Add,
    /// Wrapping subtract.
    Sub,
    /// Wrapping multiply.
    Mul,
    /// Signed divide; by zero gives 0, `MIN / -1` wraps.
    Div,
    /// Signed remainder; `x % 0` gives `x`.
    Mod,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise exclusive or.
    Xor,
    /// Shift left by the low 6 bits.
    Shl,
    /// Arithmetic shift right by the low 6 bits.
    Shr,
}

/// A register list (printf arguments, call arguments, table keys): `n` argument bytes (see
/// `ktap_protocol::isa::Arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgList {
    /// Number of arguments in use.
    pub n: u8,
    /// Argument bytes.
    pub bytes: [u8; MAX_ARGS],
}

/// A decoded instruction. Register operands are `r`/`d`/`a`/`b`/`k`/`v`/`s` (integer or string per the
/// opcode), jump targets are instruction indices into [`Verified::ops`].
#[allow(missing_docs)] // operand fields are described by the variant docs
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// End the handler.
    Ret,
    /// Jump to instruction `to`.
    Jmp { to: u32 },
    /// Jump to `to` if `cond(ra, rb)`.
    Br { cond: Cond, a: u8, b: u8, to: u32 },
    /// Jump to `to` if `sa == sb` (`eq`) or `sa != sb` (`!eq`).
    StrBr { eq: bool, a: u8, b: u8, to: u32 },
    /// `rd = imm`.
    Movi { d: u8, imm: i32 },
    /// `rd = consts[c]`.
    Ldc { d: u8, c: u16 },
    /// `rd = rs`.
    Mov { d: u8, s: u8 },
    /// `rd = ra op rb`.
    Alu { op: AluOp, d: u8, a: u8, b: u8 },
    /// `rd = -rs` (wrapping).
    Neg { d: u8, s: u8 },
    /// `rd = (rs == 0)`.
    Not { d: u8, s: u8 },
    /// `rd = rs + imm` (wrapping).
    Addi { d: u8, s: u8, imm: i32 },
    /// `rd = globals[g]`.
    Ldg { d: u8, g: u16 },
    /// `globals[g] = rs`.
    Stg { g: u16, s: u8 },
    /// `globals[g] += rs`.
    Addg { g: u16, s: u8 },
    /// `rd = ctx(field)`.
    Ctx { d: u8, field: CtxField },
    /// `sd = comm`.
    Comm { d: u8 },
    /// `sd = strings[s]`.
    Lds { d: u8, s: u16 },
    /// `sd = ss`.
    Movs { d: u8, s: u8 },
    /// `rd = tables[t][keys]` (0 when absent).
    Tld { d: u8, t: u8, keys: ArgList },
    /// `tables[t][keys] = rv`.
    Tst { t: u8, keys: ArgList, v: u8 },
    /// `tables[t][keys] += rv`.
    Tadd { t: u8, keys: ArgList, v: u8 },
    /// `tables[t][keys] += imm`.
    Taddi { t: u8, keys: ArgList, imm: i32 },
    /// Delete `tables[t][keys]`.
    Tdel { t: u8, keys: ArgList },
    /// Empty table `t`.
    Tclr { t: u8 },
    /// `rd = len(tables[t])`.
    Tlen { d: u8, t: u8 },
    /// Record `rv` into the aggregate `tables[t][keys]`.
    Tagg { t: u8, keys: ArgList, v: u8 },
    /// `rd = stat(tables[t][keys])`.
    Tstat { d: u8, t: u8, keys: ArgList, stat: Stat },
    /// Next entry at index >= `rc` into `keys`/`rv`, `rc` = index + 1; else jump to `to`.
    Tnext { c: u8, t: u8, keys: ArgList, v: u8, to: u32 },
    /// Emit a printf record for format `f`.
    Printf { f: u16, args: ArgList },
    /// Emit every entry of table `t`, then an end-of-table record.
    Ptable { t: u8 },
    /// Call function `f` with `args`; its result goes to `rd` (or `sd` when `str_result`).
    Call { d: u8, f: u16, args: ArgList, str_result: bool },
    /// Return `rs` (int functions).
    Retv { s: u8 },
    /// Return `ss` (string functions).
    Rets { s: u8 },
    /// `rd = *(width *)(ra + off)` through the no-fault copy (0 on a fault).
    Ldk { d: u8, a: u8, off: i32, w: Width },
    /// `sd = string at ra`, at most `rm` bytes, kernel or `user` memory ("" on a fault).
    Kstr { d: u8, a: u8, m: u8, user: bool },
    /// `rd = len(ss)`.
    Slen { d: u8, s: u8 },
    /// `sd = sa . sb`, cut at `MAX_STR`.
    Scat { d: u8, a: u8, b: u8 },
    /// `sd = up to depth kernel return addresses`.
    Kstack { d: u8, depth: u8 },
    /// Emit an Exit record and end the hit.
    Exit,
}

/// A function after verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncInfo {
    /// Index of its first instruction in [`Verified::ops`].
    pub start: u32,
    /// Number of instructions.
    pub len: u32,
    /// Integer registers in its frame.
    pub n_int: u8,
    /// String registers in its frame.
    pub n_str: u8,
    /// Integer parameters (r0..).
    pub params_int: u8,
    /// String parameters (s0..).
    pub params_str: u8,
    /// What it returns.
    pub ret: RetKind,
    /// The integer registers its entry zeroes (the others are arguments or written before read).
    pub clear_int: RegRange,
    /// The string registers its entry empties.
    pub clear_str: RegRange,
}

/// Registers `lo..hi` of one register file (empty when `lo >= hi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegRange {
    /// First register.
    pub lo: u8,
    /// One past the last.
    pub hi: u8,
}

/// A probe spec, owned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProbeInfo {
    /// What to attach.
    pub kind: ProbeKind,
    /// Function run on each hit.
    pub func: u16,
    /// Kernel address (kprobes, kretprobes), period in ns (timers), 0 otherwise.
    pub addr: u64,
    /// `PROBE_EVERY_CPU` for a timer on every CPU, else 0.
    pub flags: u8,
    name_len: u8,
    name: [u8; MAX_PROBE_NAME],
}

impl ProbeInfo {
    pub(crate) fn new(kind: ProbeKind, func: u16, addr: u64, flags: u8, name: &[u8]) -> ProbeInfo {
        let mut p = ProbeInfo { kind, func, addr, flags, name_len: 0, name: [0; MAX_PROBE_NAME] };
        for (d, c) in p.name.iter_mut().zip(name) {
            *d = *c;
            p.name_len = p.name_len.wrapping_add(1);
        }
        p
    }

    /// Symbol (kprobes) or tracepoint name (tracepoints); printable ASCII, no NUL.
    pub fn name(&self) -> &[u8] {
        self.name.get(..self.name_len as usize).unwrap_or(&[])
    }
}

impl core::fmt::Debug for ProbeInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProbeInfo")
            .field("kind", &self.kind)
            .field("func", &self.func)
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("name", &self.name().escape_ascii())
            .finish()
    }
}

/// Argument kinds of one printf format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatSpec {
    nargs: u8,
    str_mask: u8,
}

impl FormatSpec {
    pub(crate) fn new(kinds: &[u8]) -> FormatSpec {
        let mut f = FormatSpec { nargs: 0, str_mask: 0 };
        for (i, k) in kinds.iter().take(MAX_ARGS).enumerate() {
            if ArgKind::from_u8(*k) == Some(ArgKind::Str) {
                f.str_mask |= 1u8.wrapping_shl(i as u32);
            }
            f.nargs = f.nargs.wrapping_add(1);
        }
        f
    }

    /// Number of arguments.
    pub fn nargs(&self) -> u8 {
        self.nargs
    }

    /// Kind of argument `i` (`None` past the end).
    pub fn arg(&self, i: u8) -> Option<ArgKind> {
        (i < self.nargs).then(|| {
            if self.str_mask & 1u8.wrapping_shl(u32::from(i)) != 0 { ArgKind::Str } else { ArgKind::Int }
        })
    }
}

/// A program that passed verification. Only [`crate::verify`] makes one.
#[derive(Debug, Clone)]
pub struct Verified {
    pub(crate) ops: Vec<Op>,
    pub(crate) offsets: Vec<u32>,
    pub(crate) funcs: Vec<FuncInfo>,
    pub(crate) consts: Vec<i64>,
    pub(crate) str_data: Vec<u8>,
    pub(crate) str_spans: Vec<(u32, u8)>,
    pub(crate) tables: Vec<TableSpec>,
    pub(crate) probes: Vec<ProbeInfo>,
    pub(crate) formats: Vec<FormatSpec>,
    pub(crate) globals: u16,
    pub(crate) budget: u32,
    /// Integer registers of the deepest call path (what the interpreter preallocates).
    pub(crate) stack_int: usize,
    /// String registers of the deepest call path.
    pub(crate) stack_str: usize,
}

impl Verified {
    /// Every function's instructions, concatenated; jump targets index into this.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Image offset of instruction `pc` (for error reports).
    pub fn insn_offset(&self, pc: u32) -> Option<u32> {
        self.offsets.get(pc as usize).copied()
    }

    /// Functions, in index order.
    pub fn funcs(&self) -> &[FuncInfo] {
        &self.funcs
    }

    /// The 64-bit constant pool.
    pub fn consts(&self) -> &[i64] {
        &self.consts
    }

    /// Number of string constants.
    pub fn string_count(&self) -> usize {
        self.str_spans.len()
    }

    /// String constant `i`.
    pub fn string(&self, i: u16) -> Option<&[u8]> {
        let (off, len) = *self.str_spans.get(i as usize)?;
        let start = off as usize;
        self.str_data.get(start..start.checked_add(len as usize)?)
    }

    /// Table specs.
    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    /// Probe specs.
    pub fn probes(&self) -> &[ProbeInfo] {
        &self.probes
    }

    /// Format specs (argument kinds).
    pub fn formats(&self) -> &[FormatSpec] {
        &self.formats
    }

    /// Number of integer globals.
    pub fn globals(&self) -> u16 {
        self.globals
    }

    /// Integer and string registers the deepest call path needs (all frames together).
    pub fn stack_regs(&self) -> (usize, usize) {
        (self.stack_int, self.stack_str)
    }

    /// Budget per hit (the image's, or `DEFAULT_BUDGET` when it asked for 0).
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// The function of the `BEGIN` probe, if any.
    pub fn begin_func(&self) -> Option<u16> {
        self.probes.iter().find(|p| p.kind == ProbeKind::Begin).map(|p| p.func)
    }

    /// The function of the `END` probe, if any.
    pub fn end_func(&self) -> Option<u16> {
        self.probes.iter().find(|p| p.kind == ProbeKind::End).map(|p| p.func)
    }
}
