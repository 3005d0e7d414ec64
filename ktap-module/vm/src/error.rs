//! Errors: why the verifier refuses an image, why one run stopped early, and allocation failure.
//!
//! Every [`VerifyError`] names something a correct compiler cannot produce and carries the byte offset
//! within the image it refers to (an instruction, or a section entry). The kernel reports a refusal as
//! `code()` + `offset()` only; the host turns the pair back into text with [`describe_code`] and its
//! sidecar.

use core::fmt;

/// Why [`crate::verify`] refused an image. `offset` is always a byte offset within the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The byte at `offset` is not an opcode.
    UnknownOpcode {
        /// Image offset of the byte.
        offset: u32,
        /// The byte found.
        byte: u8,
    },
    /// The instruction at `offset` runs past the end of its function.
    TruncatedInsn {
        /// Image offset of the instruction.
        offset: u32,
    },
    /// The argument list of the instruction at `offset` is longer than `MAX_ARGS`.
    TooManyArgs {
        /// Image offset of the instruction.
        offset: u32,
    },
    /// The code section is larger than `MAX_CODE`.
    CodeTooLarge {
        /// Image offset of the code section.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// More functions than `MAX_FUNCS`.
    TooManyFuncs {
        /// Image offset of the function table.
        offset: u32,
        /// Functions in the image.
        count: u32,
    },
    /// A function's code range lies outside the code section.
    FuncOutOfBounds {
        /// Image offset of the function's table entry.
        offset: u32,
        /// The function.
        func: u16,
    },
    /// A function has no code.
    EmptyFunc {
        /// Image offset of the function's table entry.
        offset: u32,
        /// The function.
        func: u16,
    },
    /// Two functions share bytes of code.
    FuncsOverlap {
        /// Image offset of the later function's table entry.
        offset: u32,
        /// The later function.
        func: u16,
    },
    /// A function declares more registers than `MAX_INT_REGS` / `MAX_STR_REGS`.
    FrameTooLarge {
        /// Image offset of the function's table entry.
        offset: u32,
        /// The function.
        func: u16,
    },
    /// A jump lands inside another instruction.
    JumpIntoInsn {
        /// Image offset of the jump.
        offset: u32,
    },
    /// A jump leaves its function (before its start, or at or past its end).
    JumpOutOfFunc {
        /// Image offset of the jump.
        offset: u32,
    },
    /// The last instruction of a function can fall through its end (it must return, jump or exit).
    FallsThrough {
        /// Image offset of the last instruction.
        offset: u32,
    },
    /// An integer register at or above the function's `n_int`.
    IntRegOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The register.
        reg: u8,
    },
    /// A string register at or above the function's `n_str`.
    StrRegOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The register.
        reg: u8,
    },
    /// A constant-pool index past the pool.
    ConstOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u16,
    },
    /// A string-constant index past the pool.
    StringOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u16,
    },
    /// A global index at or above the image's global count.
    GlobalOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u16,
    },
    /// A table index past the table specs.
    TableOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u8,
    },
    /// A format index past the format specs.
    FormatOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u16,
    },
    /// A function index past the function table.
    FuncOutOfRange {
        /// Image offset of the instruction.
        offset: u32,
        /// The index.
        index: u16,
    },
    /// A table op whose key list differs from the table's key shape (count or kinds).
    TableKeyMismatch {
        /// Image offset of the instruction.
        offset: u32,
        /// The table.
        table: u8,
    },
    /// A printf with a different number of arguments than its format.
    PrintfArgCount {
        /// Image offset of the instruction.
        offset: u32,
        /// The format.
        format: u16,
    },
    /// A printf argument whose kind (int/string) differs from its format's.
    PrintfArgKind {
        /// Image offset of the instruction.
        offset: u32,
        /// Position of the argument.
        arg: u8,
    },
    /// A `ctx` instruction naming no known context field.
    UnknownCtxField {
        /// Image offset of the instruction.
        offset: u32,
        /// The field byte.
        field: u8,
    },
    /// More probes than `MAX_PROBES`.
    TooManyProbes {
        /// Image offset of the probe section.
        offset: u32,
        /// Probes in the image.
        count: u32,
    },
    /// A probe whose handler function does not exist.
    ProbeFuncOutOfRange {
        /// Image offset of the probe's entry.
        offset: u32,
        /// The probe.
        probe: u16,
    },
    /// A second `BEGIN` probe.
    DuplicateBegin {
        /// Image offset of the second entry.
        offset: u32,
    },
    /// A second `END` probe.
    DuplicateEnd {
        /// Image offset of the second entry.
        offset: u32,
    },
    /// A kprobe or kretprobe without an address.
    ProbeAddrZero {
        /// Image offset of the probe's entry.
        offset: u32,
        /// The probe.
        probe: u16,
    },
    /// A tracepoint probe without a name.
    TracepointNameEmpty {
        /// Image offset of the probe's entry.
        offset: u32,
        /// The probe.
        probe: u16,
    },
    /// More tables than `MAX_TABLES`.
    TooManyTables {
        /// Image offset of the table section.
        offset: u32,
        /// Tables in the image.
        count: u32,
    },
    /// A table capacity of 0 or above `MAX_TABLE_CAPACITY`.
    BadTableCapacity {
        /// Image offset of the table's entry.
        offset: u32,
        /// The capacity asked for.
        capacity: u32,
    },
    /// More globals than `MAX_GLOBALS`.
    TooManyGlobals {
        /// Image offset of the globals section.
        offset: u32,
        /// Globals in the image.
        count: u16,
    },
    /// An instruction budget above `MAX_BUDGET`.
    BudgetTooLarge {
        /// Image offset of the meta section.
        offset: u32,
        /// The budget asked for.
        budget: u32,
    },
    /// A table op that does not fit the table's value kind (`tst`/`tadd` on an aggregate, `tagg`/`tstat` on an int table).
    TableValueMismatch {
        /// Image offset the error refers to.
        offset: u32,
        /// The table.
        table: u8,
    },
    /// A table key shape with no components, more than `MAX_KEYS`, or string bits past its components.
    BadKeyShape {
        /// Image offset the error refers to.
        offset: u32,
        /// The table.
        table: u8,
    },
    /// A linear aggregate with a step <= 0 or a bucket count of 0 or above `MAX_LINEAR_BUCKETS`.
    BadAggSpec {
        /// Image offset the error refers to.
        offset: u32,
        /// The table.
        table: u8,
    },
    /// A table whose entries would take more than `MAX_TABLE_BYTES`.
    TableTooLarge {
        /// Image offset the error refers to.
        offset: u32,
        /// The table.
        table: u8,
    },
    /// A `tstat` selector, `ldk` width or `kstack` depth that does not exist (depth 0 or above `MAX_STACK`).
    BadSelector {
        /// Image offset the error refers to.
        offset: u32,
    },
    /// A call whose argument kinds or counts differ from the callee's parameters.
    CallArgMismatch {
        /// Image offset the error refers to.
        offset: u32,
        /// The callee.
        func: u16,
    },
    /// `calls` of a function that does not return a string, or `call` of one that does.
    CallResultMismatch {
        /// Image offset the error refers to.
        offset: u32,
        /// The callee.
        func: u16,
    },
    /// A `ret`/`retv`/`rets` that differs from the function's declared return kind.
    ReturnKindMismatch {
        /// Image offset the error refers to.
        offset: u32,
    },
    /// A call that closes a cycle in the call graph (recursion).
    Recursion {
        /// Image offset the error refers to.
        offset: u32,
        /// The function making the call.
        func: u16,
    },
    /// A call path from a function nests deeper than `MAX_CALL_DEPTH`.
    CallTooDeep {
        /// Image offset the error refers to.
        offset: u32,
        /// Nested calls on the deepest path.
        depth: u32,
    },
    /// The frames along the deepest call path need more memory than the image's frame budget.
    FrameBudgetExceeded {
        /// Image offset the error refers to.
        offset: u32,
        /// Bytes needed.
        need: u32,
        /// Bytes declared.
        budget: u32,
    },
    /// A declared frame budget above `MAX_FRAME_BUDGET` (the 8 KiB ARM32 kernel stack).
    FrameBudgetTooLarge {
        /// Image offset the error refers to.
        offset: u32,
        /// Bytes declared.
        budget: u32,
    },
    /// A function declaring more parameters than registers of that kind.
    BadParams {
        /// Image offset the error refers to.
        offset: u32,
        /// The function.
        func: u16,
    },
    /// A timer period outside `MIN_TIMER_PERIOD_NS..=MAX_TIMER_PERIOD_NS`.
    TimerPeriodOutOfRange {
        /// Image offset the error refers to.
        offset: u32,
        /// The probe.
        probe: u16,
        /// The period in ns.
        period: u64,
    },
    /// A probe handler function with parameters or a return value (handlers are void, no parameters).
    BadHandler {
        /// Image offset the error refers to.
        offset: u32,
        /// The probe.
        probe: u16,
    },
    /// Probe flags other than `PROBE_EVERY_CPU` on a timer.
    BadProbeFlags {
        /// Image offset the error refers to.
        offset: u32,
        /// The probe.
        probe: u16,
    },
    /// The verifier could not allocate the decoded program.
    OutOfMemory,
}

/// One row per variant: code and short description. [`describe_code`] and the tests read it.
const CODES: &[(u16, &str)] = &[
    (0x201, "unknown opcode"),
    (0x202, "truncated instruction"),
    (0x203, "too many printf arguments"),
    (0x204, "code section too large"),
    (0x205, "too many functions"),
    (0x206, "function outside the code section"),
    (0x207, "empty function"),
    (0x208, "functions overlap"),
    (0x209, "function frame too large"),
    (0x20a, "jump into the middle of an instruction"),
    (0x20b, "jump out of its function"),
    (0x20c, "function can fall through its end"),
    (0x20d, "integer register out of range"),
    (0x20e, "string register out of range"),
    (0x20f, "constant index out of range"),
    (0x210, "string constant index out of range"),
    (0x211, "global index out of range"),
    (0x212, "table index out of range"),
    (0x213, "format index out of range"),
    (0x214, "function index out of range"),
    (0x215, "table key shape mismatch"),
    (0x216, "printf argument count differs from its format"),
    (0x217, "printf argument kind differs from its format"),
    (0x218, "unknown context field"),
    (0x219, "too many probes"),
    (0x21a, "probe handler function out of range"),
    (0x21b, "more than one BEGIN probe"),
    (0x21c, "more than one END probe"),
    (0x21d, "kprobe without an address"),
    (0x21e, "tracepoint without a name"),
    (0x21f, "too many tables"),
    (0x220, "bad table capacity"),
    (0x221, "too many globals"),
    (0x222, "instruction budget too large"),
    (0x223, "table op does not fit the table's value kind"),
    (0x224, "bad table key shape"),
    (0x225, "bad aggregate or linear histogram spec"),
    (0x226, "table memory over the limit"),
    (0x227, "bad stat, width or stack depth operand"),
    (0x228, "call arguments differ from the callee's parameters"),
    (0x229, "call result kind differs from the callee's return kind"),
    (0x22a, "return kind differs from the function's"),
    (0x22b, "recursion (a call cycle)"),
    (0x22c, "call depth over the limit"),
    (0x22d, "frames exceed the declared frame budget"),
    (0x22e, "declared frame budget over the limit"),
    (0x22f, "more parameters than registers"),
    (0x230, "timer period out of range"),
    (0x231, "probe handler takes parameters or returns a value"),
    (0x232, "probe flags that do not apply"),
    (0x2ff, "verifier out of memory"),
];

/// A short description of a verifier code (`0x02xx`), as returned by [`VerifyError::code`].
pub fn describe_code(code: u16) -> Option<&'static str> {
    CODES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}

impl VerifyError {
    /// A stable numeric code in the `0x02xx` range (see `ktap_protocol::wire::codes`).
    pub fn code(&self) -> u16 {
        use VerifyError as E;
        match self {
            E::UnknownOpcode { .. } => 0x201,
            E::TruncatedInsn { .. } => 0x202,
            E::TooManyArgs { .. } => 0x203,
            E::CodeTooLarge { .. } => 0x204,
            E::TooManyFuncs { .. } => 0x205,
            E::FuncOutOfBounds { .. } => 0x206,
            E::EmptyFunc { .. } => 0x207,
            E::FuncsOverlap { .. } => 0x208,
            E::FrameTooLarge { .. } => 0x209,
            E::JumpIntoInsn { .. } => 0x20a,
            E::JumpOutOfFunc { .. } => 0x20b,
            E::FallsThrough { .. } => 0x20c,
            E::IntRegOutOfRange { .. } => 0x20d,
            E::StrRegOutOfRange { .. } => 0x20e,
            E::ConstOutOfRange { .. } => 0x20f,
            E::StringOutOfRange { .. } => 0x210,
            E::GlobalOutOfRange { .. } => 0x211,
            E::TableOutOfRange { .. } => 0x212,
            E::FormatOutOfRange { .. } => 0x213,
            E::FuncOutOfRange { .. } => 0x214,
            E::TableKeyMismatch { .. } => 0x215,
            E::PrintfArgCount { .. } => 0x216,
            E::PrintfArgKind { .. } => 0x217,
            E::UnknownCtxField { .. } => 0x218,
            E::TooManyProbes { .. } => 0x219,
            E::ProbeFuncOutOfRange { .. } => 0x21a,
            E::DuplicateBegin { .. } => 0x21b,
            E::DuplicateEnd { .. } => 0x21c,
            E::ProbeAddrZero { .. } => 0x21d,
            E::TracepointNameEmpty { .. } => 0x21e,
            E::TooManyTables { .. } => 0x21f,
            E::BadTableCapacity { .. } => 0x220,
            E::TooManyGlobals { .. } => 0x221,
            E::BudgetTooLarge { .. } => 0x222,
            E::TableValueMismatch { .. } => 0x223,
            E::BadKeyShape { .. } => 0x224,
            E::BadAggSpec { .. } => 0x225,
            E::TableTooLarge { .. } => 0x226,
            E::BadSelector { .. } => 0x227,
            E::CallArgMismatch { .. } => 0x228,
            E::CallResultMismatch { .. } => 0x229,
            E::ReturnKindMismatch { .. } => 0x22a,
            E::Recursion { .. } => 0x22b,
            E::CallTooDeep { .. } => 0x22c,
            E::FrameBudgetExceeded { .. } => 0x22d,
            E::FrameBudgetTooLarge { .. } => 0x22e,
            E::BadParams { .. } => 0x22f,
            E::TimerPeriodOutOfRange { .. } => 0x230,
            E::BadHandler { .. } => 0x231,
            E::BadProbeFlags { .. } => 0x232,
            E::OutOfMemory => 0x2ff,
        }
    }

    /// Byte offset within the image the error refers to (0 for [`VerifyError::OutOfMemory`]).
    pub fn offset(&self) -> u32 {
        use VerifyError as E;
        match *self {
            E::UnknownOpcode { offset, .. }
            | E::TruncatedInsn { offset }
            | E::TooManyArgs { offset }
            | E::CodeTooLarge { offset, .. }
            | E::TooManyFuncs { offset, .. }
            | E::FuncOutOfBounds { offset, .. }
            | E::EmptyFunc { offset, .. }
            | E::FuncsOverlap { offset, .. }
            | E::FrameTooLarge { offset, .. }
            | E::JumpIntoInsn { offset }
            | E::JumpOutOfFunc { offset }
            | E::FallsThrough { offset }
            | E::IntRegOutOfRange { offset, .. }
            | E::StrRegOutOfRange { offset, .. }
            | E::ConstOutOfRange { offset, .. }
            | E::StringOutOfRange { offset, .. }
            | E::GlobalOutOfRange { offset, .. }
            | E::TableOutOfRange { offset, .. }
            | E::FormatOutOfRange { offset, .. }
            | E::FuncOutOfRange { offset, .. }
            | E::TableKeyMismatch { offset, .. }
            | E::PrintfArgCount { offset, .. }
            | E::PrintfArgKind { offset, .. }
            | E::UnknownCtxField { offset, .. }
            | E::TooManyProbes { offset, .. }
            | E::ProbeFuncOutOfRange { offset, .. }
            | E::DuplicateBegin { offset }
            | E::DuplicateEnd { offset }
            | E::ProbeAddrZero { offset, .. }
            | E::TracepointNameEmpty { offset, .. }
            | E::TooManyTables { offset, .. }
            | E::BadTableCapacity { offset, .. }
            | E::TooManyGlobals { offset, .. }
            | E::BudgetTooLarge { offset, .. }
            | E::TableValueMismatch { offset, .. }
            | E::BadKeyShape { offset, .. }
            | E::BadAggSpec { offset, .. }
            | E::TableTooLarge { offset, .. }
            | E::BadSelector { offset, .. }
            | E::CallArgMismatch { offset, .. }
            | E::CallResultMismatch { offset, .. }
            | E::ReturnKindMismatch { offset, .. }
            | E::Recursion { offset, .. }
            | E::CallTooDeep { offset, .. }
            | E::FrameBudgetExceeded { offset, .. }
            | E::FrameBudgetTooLarge { offset, .. }
            | E::BadParams { offset, .. }
            | E::TimerPeriodOutOfRange { offset, .. }
            | E::BadHandler { offset, .. }
            | E::BadProbeFlags { offset, .. } => offset,
            E::OutOfMemory => 0,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VerifyError as E;
        let at = self.offset();
        match *self {
            E::UnknownOpcode { byte, .. } => write!(f, "unknown opcode 0x{byte:02x} at byte offset {at}"),
            E::TruncatedInsn { .. } => {
                write!(f, "instruction at byte offset {at} runs past the end of its function")
            }
            E::TooManyArgs { .. } => {
                write!(f, "instruction at byte offset {at} has more arguments than allowed")
            }
            E::CodeTooLarge { len, .. } => {
                write!(f, "code section at byte offset {at} is {len} bytes, over the limit")
            }
            E::TooManyFuncs { count, .. } => {
                write!(f, "{count} functions (table at byte offset {at}), over the limit")
            }
            E::FuncOutOfBounds { func, .. } => {
                write!(f, "function {func} (entry at byte offset {at}) lies outside the code section")
            }
            E::EmptyFunc { func, .. } => write!(f, "function {func} (entry at byte offset {at}) is empty"),
            E::FuncsOverlap { func, .. } => {
                write!(f, "function {func} (entry at byte offset {at}) overlaps an earlier function")
            }
            E::FrameTooLarge { func, .. } => {
                write!(f, "function {func} (entry at byte offset {at}) declares too many registers")
            }
            E::JumpIntoInsn { .. } => write!(f, "jump at byte offset {at} lands inside an instruction"),
            E::JumpOutOfFunc { .. } => write!(f, "jump at byte offset {at} leaves its function"),
            E::FallsThrough { .. } => {
                write!(
                    f,
                    "instruction at byte offset {at} ends its function but does not return, jump or exit"
                )
            }
            E::IntRegOutOfRange { reg, .. } => {
                write!(f, "register r{reg} at byte offset {at} is outside the frame")
            }
            E::StrRegOutOfRange { reg, .. } => {
                write!(f, "register s{reg} at byte offset {at} is outside the frame")
            }
            E::ConstOutOfRange { index, .. } => {
                write!(f, "constant c{index} at byte offset {at} does not exist")
            }
            E::StringOutOfRange { index, .. } => {
                write!(f, "string str{index} at byte offset {at} does not exist")
            }
            E::GlobalOutOfRange { index, .. } => {
                write!(f, "global g{index} at byte offset {at} does not exist")
            }
            E::TableOutOfRange { index, .. } => {
                write!(f, "table t{index} at byte offset {at} does not exist")
            }
            E::FormatOutOfRange { index, .. } => {
                write!(f, "format f{index} at byte offset {at} does not exist")
            }
            E::FuncOutOfRange { index, .. } => {
                write!(f, "function fn{index} at byte offset {at} does not exist")
            }
            E::TableKeyMismatch { table, .. } => {
                write!(
                    f,
                    "instruction at byte offset {at}: the keys do not match the key shape of table t{table}"
                )
            }
            E::PrintfArgCount { format, .. } => {
                write!(
                    f,
                    "printf at byte offset {at} passes a different number of arguments than format f{format}"
                )
            }
            E::PrintfArgKind { arg, .. } => {
                write!(f, "printf at byte offset {at}: argument {arg} has the wrong kind (int/string)")
            }
            E::UnknownCtxField { field, .. } => {
                write!(f, "unknown context field {field} at byte offset {at}")
            }
            E::TooManyProbes { count, .. } => {
                write!(f, "{count} probes (section at byte offset {at}), over the limit")
            }
            E::ProbeFuncOutOfRange { probe, .. } => {
                write!(f, "probe {probe} (entry at byte offset {at}) names a function that does not exist")
            }
            E::DuplicateBegin { .. } => write!(f, "second BEGIN probe at byte offset {at}"),
            E::DuplicateEnd { .. } => write!(f, "second END probe at byte offset {at}"),
            E::ProbeAddrZero { probe, .. } => {
                write!(f, "probe {probe} (entry at byte offset {at}) has address 0")
            }
            E::TracepointNameEmpty { probe, .. } => {
                write!(f, "tracepoint probe {probe} (entry at byte offset {at}) has no name")
            }
            E::TooManyTables { count, .. } => {
                write!(f, "{count} tables (section at byte offset {at}), over the limit")
            }
            E::BadTableCapacity { capacity, .. } => {
                write!(f, "table entry at byte offset {at} asks for capacity {capacity}")
            }
            E::TooManyGlobals { count, .. } => {
                write!(f, "{count} globals (section at byte offset {at}), over the limit")
            }
            E::BudgetTooLarge { budget, .. } => {
                write!(f, "instruction budget {budget} (byte {at}) is over the limit")
            }
            E::TableValueMismatch { table, .. } => {
                write!(f, "instruction at byte offset {at} does not fit the value kind of table t{table}")
            }
            E::BadKeyShape { table, .. } => {
                write!(f, "table t{table} (entry at byte offset {at}) has a bad key shape")
            }
            E::BadAggSpec { table, .. } => {
                write!(f, "table t{table} (entry at byte offset {at}) has a bad linear histogram spec")
            }
            E::TableTooLarge { table, .. } => write!(
                f,
                "table t{table} (entry at byte offset {at}) needs more memory than a table may take"
            ),
            E::BadSelector { .. } => {
                write!(f, "instruction at byte offset {at} has a bad stat, width or depth operand")
            }
            E::CallArgMismatch { func, .. } => {
                write!(f, "call at byte offset {at}: arguments do not match the parameters of fn{func}")
            }
            E::CallResultMismatch { func, .. } => {
                write!(f, "call at byte offset {at}: the result kind does not match what fn{func} returns")
            }
            E::ReturnKindMismatch { .. } => {
                write!(f, "return at byte offset {at} does not match its function's return kind")
            }
            E::Recursion { func, .. } => {
                write!(f, "call at byte offset {at} in fn{func} closes a call cycle (recursion)")
            }
            E::CallTooDeep { depth, .. } => {
                write!(f, "call at byte offset {at} starts a path of {depth} nested calls, over the limit")
            }
            E::FrameBudgetExceeded { need, budget, .. } => write!(
                f,
                "call path from byte offset {at} needs {need} bytes of frames, over the declared budget of {budget}"
            ),
            E::FrameBudgetTooLarge { budget, .. } => {
                write!(f, "frame budget {budget} (byte {at}) is over the 8 KiB limit")
            }
            E::BadParams { func, .. } => {
                write!(f, "function {func} (entry at byte offset {at}) has more parameters than registers")
            }
            E::TimerPeriodOutOfRange { probe, period, .. } => write!(
                f,
                "timer probe {probe} (entry at byte offset {at}) has period {period} ns, outside 1 ms..1 h"
            ),
            E::BadHandler { probe, .. } => write!(
                f,
                "probe {probe} (entry at byte offset {at}): its handler takes parameters or returns a value"
            ),
            E::BadProbeFlags { probe, .. } => {
                write!(f, "probe {probe} (entry at byte offset {at}) has flags that do not apply to it")
            }
            E::OutOfMemory => f.write_str("the verifier ran out of memory"),
        }
    }
}

impl core::error::Error for VerifyError {}

/// Why one run of a handler stopped early. The hit is abandoned; the program stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// The hit used up its instruction budget (an unbounded or too long loop).
    BudgetExhausted,
    /// The caller asked for a function the program does not have.
    NoSuchFunc,
    /// An invariant the verifier establishes did not hold at instruction index `pc` (a VM bug).
    Fault {
        /// Index of the instruction.
        pc: u32,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::BudgetExhausted => f.write_str("instruction budget exhausted"),
            RunError::NoSuchFunc => f.write_str("no such function"),
            RunError::Fault { pc } => write!(f, "internal fault at instruction {pc}"),
        }
    }
}

impl core::error::Error for RunError {}

/// An allocation failed (the program's fixed memory could not be reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocFailed;

impl fmt::Display for AllocFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("out of memory")
    }
}

impl core::error::Error for AllocFailed {}

impl From<AllocFailed> for VerifyError {
    fn from(_: AllocFailed) -> Self {
        VerifyError::OutOfMemory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_described() {
        for (i, (c, d)) in CODES.iter().enumerate() {
            assert_eq!(*c >> 8, 2, "{c:#x} outside 0x02xx");
            assert!(!d.is_empty());
            assert!(CODES.iter().skip(i + 1).all(|(c2, _)| c2 != c), "{c:#x} twice");
        }
        assert_eq!(describe_code(0x20a), Some("jump into the middle of an instruction"));
        assert_eq!(describe_code(0x101), None);
    }
}
