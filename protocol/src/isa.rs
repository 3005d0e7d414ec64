//! The instruction set, defined once as data.
//!
//! The table in [`isa!`] is the single definition: the encoder, the decoder, the disassembler (via
//! `Display`), the text assembler and the verifier all read [`Opcode::operands`]. An instruction is one
//! opcode byte followed by its operands in table order, little-endian.
//!
//! The machine has two register files per function frame: integer registers `rN` (i64) and string
//! registers `sN` (at most [`crate::limits::MAX_STR`] bytes). Jumps are relative to the start of the
//! jumping instruction. Every backward jump costs budget in the VM, so loops always terminate.
//!
//! Calls: `call`/`calls` pass an argument list; the callee's integer arguments land in its r0.. and its
//! string arguments in its s0.., each in call order; its other registers start at 0 / "". The callee
//! returns with `ret` (void), `retv` (int) or `rets` (string), matching its declared return kind. The
//! VM keeps frames in preallocated memory with an explicit frame stack (never the kernel stack); the
//! verifier refuses call cycles, nesting deeper than `MAX_CALL_DEPTH` and frames over the image's
//! frame budget.
//!
//! Tables take their key as an argument list whose kinds must match the table's key shape. Kernel
//! and user memory is read only through the no-fault helpers of the VM's environment (`ldk`, `kstr`,
//! `ustr`); no instruction writes kernel memory.
//!
//! Budget ([`cost`]): a taken backward jump costs the length of the loop it closes; calls, table
//! operations, memory reads and stack captures cost the fixed amounts below; `ptable` and `tclr` cost
//! one unit per entry. Everything else is free: between two charged instructions the program counter
//! only grows within a function, so a hit executes a bounded number of instructions.
use core::fmt;

use crate::bytes::Reader;
use crate::limits::MAX_ARGS;

/// What an operand is and how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperandKind {
    /// Integer register index, 1 byte.
    Reg,
    /// String register index, 1 byte.
    SReg,
    /// Signed 32-bit immediate, 4 bytes.
    Imm,
    /// Index into the 64-bit constant pool, 2 bytes.
    Const,
    /// Index into the string constant pool, 2 bytes.
    Str,
    /// Table index, 1 byte.
    Table,
    /// Integer global index, 2 bytes.
    Global,
    /// Format (printf) index, 2 bytes.
    Format,
    /// Jump displacement relative to the instruction start, signed, 2 bytes.
    Jump,
    /// Function index, 2 bytes.
    Func,
    /// Context field ([`CtxField`]), 1 byte.
    Ctx,
    /// Argument list: a count byte, then one byte per argument; bit 7 set means a string register.
    Args,
    /// Aggregate statistic selector ([`Stat`]), 1 byte.
    Stat,
    /// Memory load width ([`Width`]): size 1, 2, 4 or 8 in the low bits, bit 7 = sign-extend, 1 byte.
    Width,
    /// Small unsigned count (stack depth), 1 byte.
    Count,
}

impl OperandKind {
    /// Encoded size in bytes ([`OperandKind::Args`]: the count byte only).
    pub const fn size(self) -> usize {
        match self {
            OperandKind::Reg
            | OperandKind::SReg
            | OperandKind::Table
            | OperandKind::Ctx
            | OperandKind::Args
            | OperandKind::Stat
            | OperandKind::Width
            | OperandKind::Count => 1,
            OperandKind::Const
            | OperandKind::Str
            | OperandKind::Global
            | OperandKind::Format
            | OperandKind::Jump
            | OperandKind::Func => 2,
            OperandKind::Imm => 4,
        }
    }
}

macro_rules! isa {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $mn:literal, [$($k:ident),*]; )*) => {
        /// An opcode. See the module docs for the encoding.
        #[repr(u8)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name),*];

            /// The opcode encoded by `byte`, if any.
            pub const fn from_byte(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $code => Some(Opcode::$name), )*
                    _ => None,
                }
            }

            /// The assembler mnemonic.
            pub const fn mnemonic(self) -> &'static str {
                match self {
                    $( Opcode::$name => $mn, )*
                }
            }

            /// The operands, in encoding order.
            pub const fn operands(self) -> &'static [OperandKind] {
                match self {
                    $( Opcode::$name => &[$(OperandKind::$k),*], )*
                }
            }
        }
    };
}

isa! {
    /// End the handler.
    Ret = 0x00, "ret", [];
    /// Jump unconditionally.
    Jmp = 0x01, "jmp", [Jump];
    /// Jump if the register is zero.
    Jz = 0x02, "jz", [Reg, Jump];
    /// Jump if the register is not zero.
    Jnz = 0x03, "jnz", [Reg, Jump];
    /// Jump if equal.
    Jeq = 0x04, "jeq", [Reg, Reg, Jump];
    /// Jump if not equal.
    Jne = 0x05, "jne", [Reg, Reg, Jump];
    /// Jump if less than (signed).
    Jlt = 0x06, "jlt", [Reg, Reg, Jump];
    /// Jump if less than or equal (signed).
    Jle = 0x07, "jle", [Reg, Reg, Jump];
    /// Jump if the two strings are equal.
    Jseq = 0x08, "jseq", [SReg, SReg, Jump];
    /// Jump if the two strings differ.
    Jsne = 0x09, "jsne", [SReg, SReg, Jump];
    /// Load a sign-extended 32-bit immediate.
    Movi = 0x10, "movi", [Reg, Imm];
    /// Load a 64-bit constant from the pool.
    Ldc = 0x11, "ldc", [Reg, Const];
    /// Copy an integer register.
    Mov = 0x12, "mov", [Reg, Reg];
    /// Wrapping add.
    Add = 0x13, "add", [Reg, Reg, Reg];
    /// Wrapping subtract.
    Sub = 0x14, "sub", [Reg, Reg, Reg];
    /// Wrapping multiply.
    Mul = 0x15, "mul", [Reg, Reg, Reg];
    /// Signed divide; divide by zero gives 0, `MIN / -1` wraps.
    Div = 0x16, "div", [Reg, Reg, Reg];
    /// Signed remainder; `x % 0` gives `x`.
    Mod = 0x17, "mod", [Reg, Reg, Reg];
    /// Bitwise and.
    And = 0x18, "and", [Reg, Reg, Reg];
    /// Bitwise or.
    Or = 0x19, "or", [Reg, Reg, Reg];
    /// Bitwise exclusive or.
    Xor = 0x1a, "xor", [Reg, Reg, Reg];
    /// Shift left by the low 6 bits of the count.
    Shl = 0x1b, "shl", [Reg, Reg, Reg];
    /// Arithmetic shift right by the low 6 bits of the count.
    Shr = 0x1c, "shr", [Reg, Reg, Reg];
    /// Wrapping negate.
    Neg = 0x1d, "neg", [Reg, Reg];
    /// Logical not: 1 if zero, else 0.
    Not = 0x1e, "not", [Reg, Reg];
    /// Wrapping add of an immediate.
    Addi = 0x1f, "addi", [Reg, Reg, Imm];
    /// Load an integer global.
    Ldg = 0x20, "ldg", [Reg, Global];
    /// Store an integer global.
    Stg = 0x21, "stg", [Global, Reg];
    /// Add to an integer global (wrapping).
    Addg = 0x22, "addg", [Global, Reg];
    /// Load a context field (pid, cpu, argN, ...).
    Ctx = 0x28, "ctx", [Reg, Ctx];
    /// Load the current task's command name.
    Comm = 0x29, "comm", [SReg];
    /// Load a string constant.
    Lds = 0x2a, "lds", [SReg, Str];
    /// Copy a string register.
    Movs = 0x2b, "movs", [SReg, SReg];
    /// `rD = table[keys]`; a missing key reads 0. The key list's kinds must match the table's key shape.
    Tld = 0x30, "tld", [Reg, Table, Args];
    /// `table[keys] = rV` (int-valued tables).
    Tst = 0x31, "tst", [Table, Args, Reg];
    /// `table[keys] += rV` (int-valued tables, wrapping).
    Tadd = 0x32, "tadd", [Table, Args, Reg];
    /// Delete `table[keys]` (any table).
    Tdel = 0x33, "tdel", [Table, Args];
    /// Empty the table.
    Tclr = 0x34, "tclr", [Table];
    /// `rD = number of entries`.
    Tlen = 0x35, "tlen", [Reg, Table];
    /// Record `rV` into the aggregate `table[keys]` (stats, log2 or linear tables only).
    Tagg = 0x36, "tagg", [Table, Args, Reg];
    /// `rD = stat(table[keys])` of an aggregate table; 0 when the key is absent.
    Tstat = 0x37, "tstat", [Reg, Table, Args, Stat];
    /// Emit a printf record: format id and its arguments (formatted on the host).
    Printf = 0x38, "printf", [Format, Args];
    /// Emit every entry of a table as records, then an end-of-table record.
    Ptable = 0x39, "ptable", [Table];
    /// Iterate: the first entry at index >= `rCursor` writes its keys into the listed registers and its
    /// value (the count, for aggregates) into `rV`, and sets `rCursor` to its index + 1; when there is
    /// none, jump. Entries are dense, so a cursor starting at 0 visits each live entry once (unless
    /// the loop deletes). Costs budget like a back edge.
    Tnext = 0x3a, "tnext", [Reg, Table, Args, Reg, Jump];
    /// `table[keys] += imm` (int-valued tables, wrapping): the compiler's `t[k] += C`, one
    /// instruction instead of a `movi` and a `tadd`. Costs budget as the `tadd` it replaces.
    Taddi = 0x3b, "taddi", [Table, Args, Imm];
    /// Call function `F` with the listed arguments (they become its r0.., s0.. in order of kind);
    /// `rD` = its int result (0 for a void function). Costs budget.
    Call = 0x40, "call", [Reg, Func, Args];
    /// Call a string-returning function; `sD` = its result.
    Calls = 0x41, "calls", [SReg, Func, Args];
    /// Return an int.
    Retv = 0x42, "retv", [Reg];
    /// Return a string.
    Rets = 0x43, "rets", [SReg];
    /// `rD` = the kernel memory at `rAddr + off`, `width` bytes, through the no-fault copy; a fault
    /// reads 0 and is counted.
    Ldk = 0x48, "ldk", [Reg, Reg, Imm, Width];
    /// `sD` = the NUL-terminated kernel string at `rAddr`, at most min(rMax, MAX_STR) bytes; a fault
    /// reads "" and is counted.
    Kstr = 0x49, "kstr", [SReg, Reg, Reg];
    /// As `kstr`, for a user-space address of the current task.
    Ustr = 0x4a, "ustr", [SReg, Reg, Reg];
    /// `rD` = length of `sS`.
    Slen = 0x4b, "slen", [Reg, SReg];
    /// `sD` = `sA` followed by `sB`, cut at MAX_STR.
    Scat = 0x4c, "scat", [SReg, SReg, SReg];
    /// `sD` = up to `depth` kernel return addresses of this hit (u64 little-endian each, innermost
    /// first; at most MAX_STACK). The host symbolizes them.
    Kstack = 0x4d, "kstack", [SReg, Count];
    /// Emit an Exit record (the host then stops tracing normally) and end this hit.
    Exit = 0x4e, "exit", [];
}

/// Budget costs of the instructions that are not plain straight-line code.
pub mod cost {
    /// A `call`/`calls`: the frame setup and argument copies.
    pub const CALL: u32 = 2;
    /// A table operation (`tld`, `tst`, `tadd`, `taddi`, `tdel`, `tagg`, `tstat`, `tnext`): it hashes up to
    /// 516 key bytes and probes a run of the index, which at a load factor of at most one half is
    /// about the work of four plain instructions.
    pub const TABLE: u32 = 4;
    /// A kernel or user memory read (`ldk`, `kstr`, `ustr`): a no-fault copy of up to MAX_STR bytes.
    pub const MEM: u32 = 4;
    /// A `kstack`, plus one unit per frame asked for.
    pub const STACK: u32 = 4;
}

/// What [`Opcode::Tstat`] reads from an aggregate entry.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Number of values recorded.
    Count = 0,
    /// Their sum (wrapping).
    Sum = 1,
    /// The smallest.
    Min = 2,
    /// The largest.
    Max = 3,
    /// sum / count (0 when empty).
    Avg = 4,
}

impl Stat {
    /// Every selector with its assembler name.
    pub const ALL: &'static [(Stat, &'static str)] = &[
        (Stat::Count, "count"),
        (Stat::Sum, "sum"),
        (Stat::Min, "min"),
        (Stat::Max, "max"),
        (Stat::Avg, "avg"),
    ];

    /// Decode.
    pub fn from_byte(b: u8) -> Option<Stat> {
        Stat::ALL.iter().find(|(s, _)| *s as u8 == b).map(|(s, _)| *s)
    }

    /// The assembler name.
    pub fn name(self) -> &'static str {
        Stat::ALL.iter().find(|(s, _)| *s == self).map_or("?", |(_, n)| *n)
    }
}

/// The width operand of [`Opcode::Ldk`]: bytes 1, 2, 4 or 8, optionally sign-extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Width {
    /// 1, 2, 4 or 8.
    pub bytes: u8,
    /// Sign-extend to 64 bits.
    pub signed: bool,
}

impl Width {
    /// Decode; `None` for a size other than 1, 2, 4, 8 or stray bits.
    pub fn from_byte(b: u8) -> Option<Width> {
        let bytes = b & 0x7f;
        matches!(bytes, 1 | 2 | 4 | 8).then_some(Width { bytes, signed: b & 0x80 != 0 })
    }

    /// Encode.
    pub fn to_byte(self) -> u8 {
        self.bytes | if self.signed { 0x80 } else { 0 }
    }

    /// Parse `u8`, `s16`, ... (the assembler's names).
    pub fn from_name(s: &str) -> Option<Width> {
        let (signed, n) = match s.split_at_checked(1)? {
            ("u", n) => (false, n),
            ("s", n) => (true, n),
            _ => return None,
        };
        let bits: u8 = n.parse().ok()?;
        Width::from_byte((bits / 8) | if signed { 0x80 } else { 0 }).filter(|w| w.bytes * 8 == bits)
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { 's' } else { 'u' }, u32::from(self.bytes) * 8)
    }
}

/// A context field readable with [`Opcode::Ctx`].
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtxField {
    /// Thread group id of the current task (what userspace calls the pid).
    Pid = 0,
    /// Thread id of the current task.
    Tid = 1,
    /// CPU the probe fired on.
    Cpu = 2,
    /// Real uid of the current task.
    Uid = 3,
    /// Monotonic time in nanoseconds.
    TimeNs = 4,
    /// Return value (kretprobes only; 0 elsewhere).
    Retval = 5,
    /// Wall-clock time in nanoseconds since the epoch.
    WallNs = 6,
    /// Number of online CPUs.
    NumCpus = 7,
    /// 1 if the probe fired in interrupt context (hardirq, softirq or NMI), else 0.
    InInterrupt = 8,
    /// Function argument 0 (by the board's calling convention); `Arg0 + n` is argument n.
    Arg0 = 16,
    /// Argument 1.
    Arg1 = 17,
    /// Argument 2.
    Arg2 = 18,
    /// Argument 3.
    Arg3 = 19,
    /// Argument 4.
    Arg4 = 20,
    /// Argument 5.
    Arg5 = 21,
    /// Argument 6.
    Arg6 = 22,
    /// Argument 7.
    Arg7 = 23,
    /// Argument 8.
    Arg8 = 24,
    /// Argument 9.
    Arg9 = 25,
}

impl CtxField {
    /// Every field with its script name.
    pub const ALL: &'static [(CtxField, &'static str)] = &[
        (CtxField::Pid, "pid"),
        (CtxField::Tid, "tid"),
        (CtxField::Cpu, "cpu"),
        (CtxField::Uid, "uid"),
        (CtxField::TimeNs, "time"),
        (CtxField::Retval, "retval"),
        (CtxField::WallNs, "wall_ns"),
        (CtxField::NumCpus, "num_cpus"),
        (CtxField::InInterrupt, "in_interrupt"),
        (CtxField::Arg0, "arg0"),
        (CtxField::Arg1, "arg1"),
        (CtxField::Arg2, "arg2"),
        (CtxField::Arg3, "arg3"),
        (CtxField::Arg4, "arg4"),
        (CtxField::Arg5, "arg5"),
        (CtxField::Arg6, "arg6"),
        (CtxField::Arg7, "arg7"),
        (CtxField::Arg8, "arg8"),
        (CtxField::Arg9, "arg9"),
    ];

    /// The field encoded by `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<CtxField> {
        CtxField::ALL.iter().find(|(f, _)| *f as u8 == byte).map(|(f, _)| *f)
    }

    /// The field with script name `name`, if any.
    pub fn from_name(name: &str) -> Option<CtxField> {
        CtxField::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The script name.
    pub fn name(self) -> &'static str {
        CtxField::ALL.iter().find(|(f, _)| *f == self).map(|(_, n)| *n).unwrap_or("?")
    }

    /// The argument number, for `Arg0..Arg9`.
    pub fn arg_index(self) -> Option<u8> {
        let b = self as u8;
        b.checked_sub(CtxField::Arg0 as u8).filter(|n| *n < 10)
    }
}

/// One argument of an [`OperandKind::Args`] list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// An integer register.
    Int(u8),
    /// A string register.
    Str(u8),
}

impl Arg {
    /// Decode one argument byte.
    pub const fn from_byte(b: u8) -> Arg {
        if b & 0x80 != 0 { Arg::Str(b & 0x7f) } else { Arg::Int(b) }
    }

    /// Encode as one byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Arg::Int(r) => r & 0x7f,
            Arg::Str(r) => 0x80 | (r & 0x7f),
        }
    }
}

/// Why bytes could not be decoded as an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The byte at `offset` is not an opcode.
    UnknownOpcode {
        /// Byte offset of the bad opcode within the code.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// The instruction at `offset` runs past the end of the code.
    Truncated {
        /// Byte offset of the instruction.
        offset: usize,
    },
    /// The argument list of the instruction at `offset` is longer than [`MAX_ARGS`].
    TooManyArgs {
        /// Byte offset of the instruction.
        offset: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownOpcode { offset, byte } => {
                write!(f, "unknown opcode 0x{byte:02x} at code offset {offset}")
            }
            DecodeError::Truncated { offset } => {
                write!(f, "instruction at code offset {offset} is truncated")
            }
            DecodeError::TooManyArgs { offset } => {
                write!(f, "instruction at code offset {offset} has more than {MAX_ARGS} arguments")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// A decoded instruction: operand values in table order (argument lists separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// The opcode.
    pub op: Opcode,
    /// Byte offset of the instruction within the code section.
    pub offset: u32,
    /// Encoded length in bytes.
    pub len: u8,
    /// Operand values other than argument lists, in table order (unused slots are 0).
    pub ops: [i32; 4],
    /// Number of entries of `args` in use.
    pub nargs: u8,
    /// Argument bytes (see [`Arg`]).
    pub args: [u8; MAX_ARGS],
}

impl Insn {
    /// Operand `i` (0-based, argument lists skipped).
    pub fn op(&self, i: usize) -> i32 {
        self.ops.get(i).copied().unwrap_or(0)
    }

    /// The argument list.
    pub fn arg_list(&self) -> impl Iterator<Item = Arg> + '_ {
        self.args.iter().take(self.nargs as usize).map(|b| Arg::from_byte(*b))
    }

    /// The jump target as a byte offset, if this instruction jumps.
    pub fn jump_target(&self) -> Option<i64> {
        let kinds = self.op.operands();
        let mut slot = 0usize;
        for k in kinds {
            match k {
                OperandKind::Args => {}
                OperandKind::Jump => return Some(self.offset as i64 + self.op(slot) as i64),
                _ => slot += 1,
            }
        }
        None
    }
}

/// Decode the instruction starting at byte `offset` of `code`.
pub fn decode(code: &[u8], offset: usize) -> Result<Insn, DecodeError> {
    let mut r = Reader::at(code, offset);
    let byte = r.u8().ok_or(DecodeError::Truncated { offset })?;
    let op = Opcode::from_byte(byte).ok_or(DecodeError::UnknownOpcode { offset, byte })?;
    let truncated = DecodeError::Truncated { offset };
    let mut insn = Insn { op, offset: offset as u32, len: 0, ops: [0; 4], nargs: 0, args: [0; MAX_ARGS] };
    let mut slot = 0usize;
    for kind in op.operands() {
        let value: i32 = match kind {
            OperandKind::Reg
            | OperandKind::SReg
            | OperandKind::Table
            | OperandKind::Ctx
            | OperandKind::Stat
            | OperandKind::Width
            | OperandKind::Count => r.u8().ok_or(truncated)? as i32,
            OperandKind::Const
            | OperandKind::Str
            | OperandKind::Global
            | OperandKind::Format
            | OperandKind::Func => r.u16().ok_or(truncated)? as i32,
            OperandKind::Jump => r.i16().ok_or(truncated)? as i32,
            OperandKind::Imm => r.i32().ok_or(truncated)?,
            OperandKind::Args => {
                let n = r.u8().ok_or(truncated)? as usize;
                if n > MAX_ARGS {
                    return Err(DecodeError::TooManyArgs { offset });
                }
                let bytes = r.take(n).ok_or(truncated)?;
                for (dst, src) in insn.args.iter_mut().zip(bytes) {
                    *dst = *src;
                }
                insn.nargs = n as u8;
                continue;
            }
        };
        if let Some(s) = insn.ops.get_mut(slot) {
            *s = value;
        }
        slot += 1;
    }
    insn.len = (r.pos() - offset) as u8;
    Ok(insn)
}

/// Iterate over the instructions of a code slice, stopping at the first decode error.
pub fn decode_all(code: &[u8]) -> impl Iterator<Item = Result<Insn, DecodeError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || pos >= code.len() {
            return None;
        }
        let r = decode(code, pos);
        match &r {
            Ok(i) => pos += i.len as usize,
            Err(_) => failed = true,
        }
        Some(r)
    })
}

/// Append one encoded instruction to `out`. `ops` holds the non-list operands in table order,
/// `args` the argument list (if the opcode has one). Values are truncated to their encoded size;
/// the caller (the compiler or the assembler) checks ranges first.
#[cfg(feature = "alloc")]
pub fn encode(out: &mut alloc::vec::Vec<u8>, op: Opcode, ops: &[i32], args: &[Arg]) {
    out.push(op as u8);
    let mut vals = ops.iter();
    for kind in op.operands() {
        if *kind == OperandKind::Args {
            out.push(args.len() as u8);
            out.extend(args.iter().map(|a| a.to_byte()));
            continue;
        }
        let v = vals.next().copied().unwrap_or(0);
        match kind.size() {
            1 => out.push(v as u8),
            2 => out.extend_from_slice(&(v as u16).to_le_bytes()),
            _ => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// Disassembly: `add r1, r2, r3`, `jnz r0, @16`, `printf f2, (r1, s0)`, `tstat r0, t1, (s0), avg`,
/// `ldk r1, r2, 8, u32`.
impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.mnemonic())?;
        let mut slot = 0usize;
        for (i, kind) in self.op.operands().iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            if *kind == OperandKind::Args {
                f.write_str("(")?;
                for (j, a) in self.arg_list().enumerate() {
                    if j > 0 {
                        f.write_str(", ")?;
                    }
                    match a {
                        Arg::Int(r) => write!(f, "r{r}")?,
                        Arg::Str(r) => write!(f, "s{r}")?,
                    }
                }
                f.write_str(")")?;
                continue;
            }
            let v = self.op(slot);
            slot += 1;
            match kind {
                OperandKind::Reg => write!(f, "r{v}")?,
                OperandKind::SReg => write!(f, "s{v}")?,
                OperandKind::Imm => write!(f, "{v}")?,
                OperandKind::Const => write!(f, "c{v}")?,
                OperandKind::Str => write!(f, "str{v}")?,
                OperandKind::Table => write!(f, "t{v}")?,
                OperandKind::Global => write!(f, "g{v}")?,
                OperandKind::Format => write!(f, "f{v}")?,
                OperandKind::Func => write!(f, "fn{v}")?,
                OperandKind::Jump => write!(f, "@{}", self.offset as i64 + v as i64)?,
                OperandKind::Ctx => match CtxField::from_byte(v as u8) {
                    Some(c) => f.write_str(c.name())?,
                    None => write!(f, "ctx{v}")?,
                },
                OperandKind::Stat => match Stat::from_byte(v as u8) {
                    Some(s) => f.write_str(s.name())?,
                    None => write!(f, "stat{v}")?,
                },
                OperandKind::Width => match Width::from_byte(v as u8) {
                    Some(w) => write!(f, "{w}")?,
                    None => write!(f, "width{v}")?,
                },
                OperandKind::Count => write!(f, "{v}")?,
                OperandKind::Args => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    #[test]
    fn opcode_bytes_are_unique_and_round_trip() {
        for (i, a) in Opcode::ALL.iter().enumerate() {
            assert_eq!(Opcode::from_byte(*a as u8), Some(*a));
            for b in &Opcode::ALL[i + 1..] {
                assert_ne!(*a as u8, *b as u8);
                assert_ne!(a.mnemonic(), b.mnemonic());
            }
            assert!(a.operands().len() <= 5);
            let lists = a.operands().iter().filter(|k| **k == OperandKind::Args).count();
            assert!(lists <= 1, "{a:?} has more than one argument list");
            assert!(a.operands().len() - lists <= 4, "{a:?} has more operand slots than Insn holds");
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn encode_decode_display() {
        let mut code = Vec::new();
        encode(&mut code, Opcode::Movi, &[1, -7], &[]);
        encode(&mut code, Opcode::Jnz, &[1, -6], &[]);
        encode(&mut code, Opcode::Printf, &[2], &[Arg::Int(1), Arg::Str(0)]);
        encode(&mut code, Opcode::Ctx, &[3, CtxField::Arg2 as i32], &[]);
        encode(&mut code, Opcode::Tnext, &[0, 1, 2, -10], &[Arg::Int(3), Arg::Str(1)]);
        encode(&mut code, Opcode::Ldk, &[1, 2, 8, Width { bytes: 4, signed: true }.to_byte().into()], &[]);
        encode(&mut code, Opcode::Tstat, &[0, 1, Stat::Avg as i32], &[Arg::Str(0)]);
        encode(&mut code, Opcode::Ret, &[], &[]);
        let text: Vec<_> = decode_all(&code).map(|i| i.unwrap().to_string()).collect();
        assert_eq!(
            text,
            [
                "movi r1, -7",
                "jnz r1, @0",
                "printf f2, (r1, s0)",
                "ctx r3, arg2",
                "tnext r0, t1, (r3, s1), r2, @9",
                "ldk r1, r2, 8, s32",
                "tstat r0, t1, (s0), avg",
                "ret"
            ]
        );
    }

    #[test]
    fn decode_errors_name_the_offset() {
        assert_eq!(decode(&[0x00, 0xee], 1), Err(DecodeError::UnknownOpcode { offset: 1, byte: 0xee }));
        assert_eq!(decode(&[0x10, 1, 2], 0), Err(DecodeError::Truncated { offset: 0 }));
        assert_eq!(decode(&[0x38, 0, 0, 9], 0), Err(DecodeError::TooManyArgs { offset: 0 }));
    }

    #[test]
    fn ctx_names_round_trip() {
        for (f, n) in CtxField::ALL {
            assert_eq!(CtxField::from_name(n), Some(*f));
            assert_eq!(CtxField::from_byte(*f as u8), Some(*f));
        }
        assert_eq!(CtxField::Arg3.arg_index(), Some(3));
        assert_eq!(CtxField::Pid.arg_index(), None);
    }

    #[test]
    fn widths_and_stats_round_trip() {
        for b in 0..=255u8 {
            if let Some(w) = Width::from_byte(b) {
                assert_eq!(w.to_byte(), b);
                assert_eq!(Width::from_name(&w.to_string()), Some(w));
            }
            if let Some(s) = Stat::from_byte(b) {
                assert_eq!(s as u8, b);
            }
        }
        assert_eq!(Width::from_name("u12"), None);
        assert_eq!(Width::from_byte(3), None);
    }
}
