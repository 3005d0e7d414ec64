//! Kernel types as the compiler sees them: plain data, no DWARF.
//!
//! This is the contract between the symbol layer (`crate::vmlinux`, which reads DWARF) and the
//! script compiler (`crate::lang`, which lowers `arg.NAME` and `a->b.c` chains to loads). The
//! compiler only ever holds [`TypeRef`]s and asks its [`crate::lang::Resolver`] what they are, so it
//! never depends on how types are stored, and tests can hand it types of their own.

use serde::Serialize;

/// An opaque handle to a type (for a vmlinux: a DWARF DIE offset). Only meaningful to the resolver
/// that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TypeRef(pub u64);

/// Where a parameter is when the probe fires (at the function's entry, or in the tracepoint probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParamLoc {
    /// The probe's `argN`: the N-th argument register of the board's calling convention (for a
    /// tracepoint: the N-th `TP_PROTO` argument).
    Arg(u8),
    /// A 64-bit integer on a 32-bit board, in two argument registers (AAPCS, MIPS o32 and PowerPC
    /// SysV put it in an even/odd pair): `argLO` holds its low word, `argHI` its high word (on a
    /// big-endian board the first register of the pair holds the high word).
    Pair {
        /// The `argN` with bits 0-31.
        lo: u8,
        /// The `argN` with bits 32-63.
        hi: u8,
    },
    /// On the stack at this offset from the stack pointer at entry (arguments past the registers,
    /// or aggregates passed in memory).
    Stack(i64),
    /// Neither: optimised out, split over registers, or passed in a way the probe cannot read.
    Unavailable,
}

/// One function or tracepoint parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// The name in the source (`filename`, `skb`).
    pub name: String,
    /// Its type.
    pub ty: TypeRef,
    /// Where the probe finds it.
    pub loc: ParamLoc,
}

/// What a type is, with typedefs and `const`/`volatile` already peeled off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Shape {
    /// `void`.
    Void,
    /// An integer (also `char`) of `size` bytes.
    Int {
        /// Bytes: 1, 2, 4 or 8 (16 for `__int128`).
        size: u8,
        /// Signed?
        signed: bool,
    },
    /// `_Bool`.
    Bool,
    /// An enum; the resolver names its values ([`crate::lang::Resolver::enum_name`]).
    Enum {
        /// The tag (`""` if anonymous).
        name: String,
        /// Bytes.
        size: u8,
    },
    /// A pointer.
    Ptr {
        /// The pointee.
        to: TypeRef,
    },
    /// An array.
    Array {
        /// The element type.
        elem: TypeRef,
        /// Number of elements; `None` for a flexible array member (`[]`).
        len: Option<u64>,
        /// Bytes per element.
        elem_size: u64,
    },
    /// A struct.
    Struct {
        /// The tag (`""` if anonymous).
        name: String,
        /// Bytes (0 for a declaration without a definition).
        size: u64,
    },
    /// A union.
    Union {
        /// The tag (`""` if anonymous).
        name: String,
        /// Bytes.
        size: u64,
    },
    /// A function type (the target of a function pointer).
    Func,
    /// Anything else (floating point, vector types); the text says what.
    Other(String),
}

/// A struct or union member, found by name (also through anonymous structs and unions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The name asked for.
    pub name: String,
    /// Byte offset from the start of the outer struct (anonymous members already added in).
    pub offset: u64,
    /// For a bitfield: (shift, bit size). Load the storage unit of `ty`'s size at `offset` in the
    /// kernel's byte order, shift it right by `shift` and keep `bit size` bits (sign-extend if `ty`
    /// is signed). The resolver has already accounted for the kernel's endianness.
    pub bits: Option<(u8, u8)>,
    /// Its type.
    pub ty: TypeRef,
}

/// Whose parameters to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsOf<'a> {
    /// A kernel function (kprobe at entry).
    Function(&'a str),
    /// A tracepoint: its `TP_PROTO` arguments, in order.
    Tracepoint {
        /// `sched` in `sched:sched_switch`.
        subsys: &'a str,
        /// `sched_switch`.
        event: &'a str,
    },
}

/// The error of every type query against a kernel without DWARF (or without a vmlinux at all).
pub const NEEDS_DWARF: &str = "needs a vmlinux with DWARF debug info (e.g. linux-image-*-dbg)";
