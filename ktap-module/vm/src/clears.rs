//! Which registers a function's entry must zero.
//!
//! The ISA promises that a function's registers other than its arguments start at 0 / "". Zeroing
//! the whole frame on every hit showed in the in-guest profile (a `memclr` call and a loop over the
//! string registers before the first instruction), yet most handlers write every register before
//! they read it (`comm s0; movi r0, 1; tadd ...`). The verifier proves that for the function's
//! entry run, the instructions from its start up to the first jump target after it or the first
//! instruction that transfers control: nothing can reach the middle of that run except by falling
//! through from its start, so a register written there before any read there is written before
//! any read on every path, and its stale value (left by an earlier hit of the same program) can
//! never be seen. Every other register of the frame stays in the range the entry zeroes. A
//! linear scan, no allocation: the verifier runs on a kernel stack and stays a pure function.

use ktap_protocol::isa::Arg;
use ktap_protocol::limits::{MAX_INT_REGS, MAX_STR_REGS};

use crate::verified::{ArgList, Op, RegRange};

// one bit per register in the sets below
const _: () = assert!(MAX_INT_REGS <= 64 && MAX_STR_REGS <= 64);

/// A register an instruction touches.
#[derive(Clone, Copy)]
enum Touch {
    ReadInt(u8),
    ReadStr(u8),
    WriteInt(u8),
    WriteStr(u8),
}

/// Every register `op` reads, then every register it writes (reads come first: `add r0, r0, r1`
/// reads r0 before it writes it). Conditional writes (`tnext`) are left out: the scan stops there.
fn touches(op: &Op, f: &mut impl FnMut(Touch)) {
    use Touch::{ReadInt as Ri, ReadStr as Rs, WriteInt as Wi, WriteStr as Ws};
    let list = |l: &ArgList, f: &mut dyn FnMut(Touch)| {
        for b in l.bytes.iter().take(l.n.into()) {
            f(match Arg::from_byte(*b) {
                Arg::Int(r) => Ri(r),
                Arg::Str(r) => Rs(r),
            });
        }
    };
    match *op {
        Op::Ret | Op::Exit | Op::Jmp { .. } | Op::Tclr { .. } | Op::Ptable { .. } => {}
        Op::Br { a, b, .. } => {
            f(Ri(a));
            f(Ri(b));
        }
        Op::StrBr { a, b, .. } => {
            f(Rs(a));
            f(Rs(b));
        }
        Op::Movi { d, .. }
        | Op::Ldc { d, .. }
        | Op::Ldg { d, .. }
        | Op::Ctx { d, .. }
        | Op::Tlen { d, .. } => f(Wi(d)),
        Op::Mov { d, s } | Op::Neg { d, s } | Op::Not { d, s } | Op::Addi { d, s, .. } => {
            f(Ri(s));
            f(Wi(d));
        }
        Op::Alu { d, a, b, .. } => {
            f(Ri(a));
            f(Ri(b));
            f(Wi(d));
        }
        Op::Stg { s, .. } | Op::Addg { s, .. } | Op::Retv { s } => f(Ri(s)),
        Op::Rets { s } => f(Rs(s)),
        Op::Comm { d } | Op::Lds { d, .. } | Op::Kstack { d, .. } => f(Ws(d)),
        Op::Movs { d, s } => {
            f(Rs(s));
            f(Ws(d));
        }
        Op::Tld { d, ref keys, .. } | Op::Tstat { d, ref keys, .. } => {
            list(keys, f);
            f(Wi(d));
        }
        Op::Tst { ref keys, v, .. } | Op::Tadd { ref keys, v, .. } | Op::Tagg { ref keys, v, .. } => {
            list(keys, f);
            f(Ri(v));
        }
        Op::Taddi { ref keys, .. } | Op::Tdel { ref keys, .. } => list(keys, f),
        Op::Tnext { c, ref keys, .. } => {
            f(Ri(c));
            list(keys, f);
        }
        Op::Printf { ref args, .. } => list(args, f),
        Op::Call { d, ref args, str_result, .. } => {
            list(args, f);
            f(if str_result { Ws(d) } else { Wi(d) });
        }
        Op::Ldk { d, a, .. } => {
            f(Ri(a));
            f(Wi(d));
        }
        Op::Kstr { d, a, m, .. } => {
            f(Ri(a));
            f(Ri(m));
            f(Ws(d));
        }
        Op::Slen { d, s } => {
            f(Rs(s));
            f(Wi(d));
        }
        Op::Scat { d, a, b } => {
            f(Rs(a));
            f(Rs(b));
            f(Ws(d));
        }
    }
}

/// Whether control can leave `op` other than to the next instruction (the scan ends there).
fn transfers(op: &Op) -> bool {
    matches!(
        op,
        Op::Ret
            | Op::Retv { .. }
            | Op::Rets { .. }
            | Op::Exit
            | Op::Jmp { .. }
            | Op::Br { .. }
            | Op::StrBr { .. }
            | Op::Tnext { .. }
    )
}

/// The jump target of `op`, if it has one.
fn target(op: &Op) -> Option<u32> {
    match *op {
        Op::Jmp { to } | Op::Br { to, .. } | Op::StrBr { to, .. } | Op::Tnext { to, .. } => Some(to),
        _ => None,
    }
}

/// Registers written before they are read in the entry run, one bit each.
#[derive(Default)]
struct Sets {
    read: u64,
    written: u64,
}

impl Sets {
    fn touch(&mut self, r: u8, write: bool) {
        let bit = 1u64.checked_shl(r.into()).unwrap_or(0);
        if !write {
            self.read |= bit;
        } else if self.read & bit == 0 {
            self.written |= bit;
        }
    }

    /// The smallest range of `first..n` holding every register not proven written.
    fn clear(&self, first: u8, n: u8) -> RegRange {
        let needs = |r: &u8| self.written & 1u64.checked_shl((*r).into()).unwrap_or(0) == 0;
        let lo = (first..n).find(needs);
        let hi = (first..n).rev().find(needs);
        match (lo, hi) {
            (Some(lo), Some(hi)) => RegRange { lo, hi: hi.wrapping_add(1) },
            _ => RegRange { lo: n, hi: n },
        }
    }
}

/// The integer and string registers the entry of a function must zero. `ops` are its decoded
/// instructions, whose jump targets are indices into the whole program starting at `first` for
/// this function; registers below `params_*` are its arguments (the caller writes them).
pub(crate) fn entry_clears(
    ops: &[Op],
    first: u32,
    (params_int, n_int): (u8, u8),
    (params_str, n_str): (u8, u8),
) -> (RegRange, RegRange) {
    // the entry run ends before the first instruction after the start that a jump can reach
    let end = ops
        .iter()
        .filter_map(target)
        .map(|to| to.wrapping_sub(first) as usize)
        .filter(|&i| i > 0)
        .min()
        .unwrap_or(ops.len());
    let (mut ints, mut strs) = (Sets::default(), Sets::default());
    for op in ops.iter().take(end) {
        let stop = transfers(op);
        touches(op, &mut |t| match t {
            Touch::ReadInt(r) => ints.touch(r, false),
            Touch::ReadStr(r) => strs.touch(r, false),
            // the writes of a transferring instruction may not happen (tnext) or are never read
            Touch::WriteInt(r) if !stop => ints.touch(r, true),
            Touch::WriteStr(r) if !stop => strs.touch(r, true),
            _ => {}
        });
        if stop {
            break;
        }
    }
    (ints.clear(params_int, n_int), strs.clear(params_str, n_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: &[u8]) -> ArgList {
        let mut bytes = [0u8; ktap_protocol::limits::MAX_ARGS];
        bytes[..b.len()].copy_from_slice(b);
        ArgList { n: b.len() as u8, bytes }
    }

    fn clears(ops: &[Op], n_int: u8, n_str: u8) -> ((u8, u8), (u8, u8)) {
        let (i, s) = entry_clears(ops, 10, (0, n_int), (0, n_str));
        ((i.lo, i.hi), (s.lo, s.hi))
    }

    #[test]
    fn the_canonical_count_clears_nothing() {
        let ops = [Op::Comm { d: 0 }, Op::Taddi { t: 0, keys: keys(&[0x80]), imm: 1 }, Op::Ret];
        assert_eq!(clears(&ops, 0, 1), ((0, 0), (1, 1)));
        let ops = [
            Op::Comm { d: 0 },
            Op::Movi { d: 0, imm: 1 },
            Op::Tadd { t: 0, keys: keys(&[0x80]), v: 0 },
            Op::Ret,
        ];
        assert_eq!(clears(&ops, 1, 1), ((1, 1), (1, 1)));
    }

    #[test]
    fn a_read_first_or_a_conditional_write_keeps_the_register_zeroed() {
        // r0 read by the add before its write; tnext writes r1 and r2 only when it does not jump
        let ops = [
            Op::Alu { op: crate::verified::AluOp::Add, d: 0, a: 0, b: 3 },
            Op::Tnext { c: 3, t: 0, keys: keys(&[1]), v: 2, to: 13 },
            Op::Movi { d: 1, imm: 0 },
            Op::Ret,
        ];
        assert_eq!(clears(&ops, 4, 0), ((0, 4), (0, 0)));
    }

    #[test]
    fn the_run_ends_at_the_first_jump_target() {
        // the jump back to instruction 1 (index 11) ends the entry run before the write of r1
        let ops = [Op::Movi { d: 0, imm: 0 }, Op::Movi { d: 1, imm: 0 }, Op::Jmp { to: 11 }];
        assert_eq!(clears(&ops, 2, 0), ((1, 2), (0, 0)));
        // a loop back to the start cuts nothing
        let ops = [Op::Movi { d: 0, imm: 0 }, Op::Movi { d: 1, imm: 0 }, Op::Jmp { to: 10 }];
        assert_eq!(clears(&ops, 2, 0), ((2, 2), (0, 0)));
    }
}
