//! Function and tracepoint parameters: names and types from DWARF, and where each one is when the
//! probe fires.
//!
//! For a kprobe at a function's first instruction the parameter's DWARF location covering that
//! address decides: a register is mapped to the probe's `argN` by the calling convention
//! ([`crate::vmlinux::abi`]), a frame-base or stack-pointer offset becomes a stack slot. Without a
//! location (older compilers, parameters never used), the convention itself places the leading
//! word-sized parameters; gcc clones (`.isra`, `.constprop`) change the convention, so they get no
//! such guess.

use gimli::constants::*;

use super::{Debug, Die, VOID, bad};
use crate::ktypes::{Param, ParamLoc, Shape, TypeRef};

/// DWARF expression opcodes used here.
const OP_REG0: u8 = 0x50;
const OP_REG31: u8 = 0x6f;
const OP_BREG0: u8 = 0x70;
const OP_BREG31: u8 = 0x8f;
const OP_REGX: u8 = 0x90;
const OP_FBREG: u8 = 0x91;
const OP_PIECE: u8 = 0x93;
const OP_CALL_FRAME_CFA: u8 = 0x9c;

/// Where the convention puts a parameter: one integer word, or two (a 64-bit integer on a 32-bit
/// board), counted from the first argument word.
#[derive(Debug, Clone, Copy)]
enum Slot {
    One(u64),
    Two(u64),
}

/// How many tracepoint arguments the C shim's probe passes on (`a0`..`a5`).
pub const TP_ARGS: u64 = 6;

impl<'a> Debug<'a> {
    /// Parameters of the subprogram DIE at `off` whose body starts at `entry`. `own_abi`: the
    /// function has its declared signature (not a gcc clone), so the convention may place
    /// parameters DWARF gives no location for.
    pub fn function_params(&self, off: u64, entry: u64, own_abi: bool) -> Result<Vec<Param>, String> {
        let (unit, die) = self.die(off)?;
        let frame_cfa = match die.attr_value(DW_AT_frame_base) {
            Some(gimli::AttributeValue::Exprloc(e)) => e.0.slice() == [OP_CALL_FRAME_CFA],
            _ => false,
        };
        let formal = self.formal_params(off)?;
        let mut out = Vec::with_capacity(formal.len());
        let mut slot = Some(0u64);
        let regs = u64::from(self.abi.reg_args());
        for (name, ty, kid) in formal {
            let abi_loc = self.next_slot(ty, &mut slot)?;
            // every word of it (one, or a 64-bit pair on a 32-bit board) is in a register
            let in_reg = slot.is_some_and(|next| next <= regs);
            // A single expression holds for the whole body, so at -O0 a stack location is the home
            // slot the prologue stores a register argument into (below the CFA, or the o32 and
            // ELFv2 save areas above it), not where the value is at entry: only a register, or a
            // stack slot for an argument the convention passes on the stack, holds at entry.
            let dwarf_loc = match kid.attr_value(DW_AT_location) {
                None => None,
                Some(gimli::AttributeValue::Exprloc(e)) => self
                    .decode(e.0.slice(), frame_cfa)
                    .filter(|l| !matches!(l, ParamLoc::Stack(o) if *o < 0 || (in_reg && own_abi))),
                Some(v) => {
                    let mut found = None;
                    if let Some(mut it) = self.dwarf.attr_locations(&unit, v).map_err(bad)? {
                        while let Some(l) = it.next().map_err(bad)? {
                            if l.range.begin <= entry && entry < l.range.end {
                                found = self.decode(l.data.0.slice(), frame_cfa);
                                break;
                            }
                        }
                    }
                    found
                }
            };
            // a struct or union by value: even where DWARF names its register (AArch64 passes a
            // small one in x0), `arg.NAME.member` would need its bytes, which a register is not
            let by_value = matches!(self.shape(ty)?, Shape::Struct { .. } | Shape::Union { .. });
            let loc = match (dwarf_loc, abi_loc) {
                _ if by_value => ParamLoc::Unavailable,
                (Some(l), _) => l,
                (None, Some(Slot::One(s))) if own_abi && s < regs => ParamLoc::Arg(s as u8),
                (None, Some(Slot::Two(s))) if own_abi && s + 1 < regs => self.pair(s as u8),
                _ => ParamLoc::Unavailable,
            };
            out.push(Param { name, ty, loc });
        }
        Ok(out)
    }

    /// The 64-bit value in argument registers `first` and `first + 1`: the first holds the low word
    /// on a little-endian board, the high word on a big-endian one.
    fn pair(&self, first: u8) -> ParamLoc {
        if self.abi.little_endian {
            ParamLoc::Pair { lo: first, hi: first + 1 }
        } else {
            ParamLoc::Pair { lo: first + 1, hi: first }
        }
    }

    /// The `TP_PROTO` arguments of a tracepoint from its `__traceiter_<event>` function (whose
    /// first parameter, `void *__data`, the shim's probe takes as its own first argument).
    pub fn tracepoint_params(&self, off: u64) -> Result<Vec<Param>, String> {
        let formal = self.formal_params(off)?;
        let mut slot = Some(0u64);
        let mut out = Vec::new();
        for (i, (name, ty, _)) in formal.into_iter().enumerate() {
            let s = self.next_slot(ty, &mut slot)?;
            if i == 0 {
                continue; // __data
            }
            // the shim's probe takes `__data` and then `a0`..`a5` as its own word arguments
            let loc = match s {
                Some(Slot::One(s)) if (1..=TP_ARGS).contains(&s) => ParamLoc::Arg((s - 1) as u8),
                Some(Slot::Two(s)) if (1..TP_ARGS).contains(&s) => self.pair((s - 1) as u8),
                _ => ParamLoc::Unavailable,
            };
            out.push(Param { name, ty, loc });
        }
        Ok(out)
    }

    /// Names, types and DIEs of a subprogram's formal parameters, following abstract origins.
    fn formal_params(&self, off: u64) -> Result<Vec<(String, TypeRef, Die<'a>)>, String> {
        let (unit, kids) = self.children(off)?;
        let mut out = Vec::new();
        for (i, k) in kids.into_iter().filter(|k| k.tag() == DW_TAG_formal_parameter).enumerate() {
            let mut name = self.name(&unit, &k);
            let mut ty = Debug::reference(&unit, &k, DW_AT_type).map(TypeRef);
            let mut origin = Debug::reference(&unit, &k, DW_AT_abstract_origin);
            // an origin may itself have an origin (a clone of an inline instance)
            for _ in 0..4 {
                let Some(o) = origin.filter(|_| name.is_none() || ty.is_none()) else { break };
                let (ou, od) = self.die(o)?;
                name = name.or_else(|| self.name(&ou, &od));
                ty = ty.or_else(|| Debug::reference(&ou, &od, DW_AT_type).map(TypeRef));
                origin = Debug::reference(&ou, &od, DW_AT_abstract_origin);
            }
            out.push((name.unwrap_or_else(|| format!("arg{i}")), ty.unwrap_or(VOID), k));
        }
        Ok(out)
    }

    /// Where the calling convention puts the next parameter of type `ty`, counting integer words
    /// (`slot`): the word index of a word-sized scalar, or the first of the two words of a 64-bit
    /// integer on a 32-bit board; `None` (and stops counting) for anything the convention places in
    /// other ways (structs by value, floating point).
    fn next_slot(&self, ty: TypeRef, slot: &mut Option<u64>) -> Result<Option<Slot>, String> {
        let Some(s) = *slot else { return Ok(None) };
        let word = self.abi.word();
        let size = match self.shape(ty)? {
            Shape::Int { size, .. } | Shape::Enum { size, .. } => u64::from(size),
            Shape::Bool => 1,
            Shape::Ptr { .. } => word,
            _ => {
                *slot = None;
                return Ok(None);
            }
        };
        if size <= word {
            *slot = Some(s + 1);
            return Ok(Some(Slot::One(s)));
        }
        if size == 2 * word {
            // a 64-bit integer on a 32-bit board: a register pair, even-aligned on AAPCS, o32, SysV
            let start = if self.abi.pairs_aligned() { s.next_multiple_of(2) } else { s };
            *slot = Some(start + 2);
            return Ok(Some(Slot::Two(start)));
        }
        *slot = None;
        Ok(None)
    }

    /// A location expression at the function's entry: a register, a 64-bit value in two argument
    /// registers (two 4-byte pieces), or memory off the stack pointer; `None` for anything else
    /// (other pieces, computed values), which the caller may place by the ABI.
    fn decode(&self, expr: &[u8], frame_cfa: bool) -> Option<ParamLoc> {
        if let Some(pair) = self.decode_pair(expr) {
            return Some(pair);
        }
        let mut r = gimli::EndianSlice::new(expr, gimli::LittleEndian);
        let op = gimli::Reader::read_u8(&mut r).ok()?;
        let whole = |r: &gimli::EndianSlice<'_, gimli::LittleEndian>| r.is_empty();
        let loc = match op {
            OP_REG0..=OP_REG31 if whole(&r) => self.reg_loc(u16::from(op - OP_REG0)),
            OP_REGX => {
                let reg = gimli::Reader::read_uleb128(&mut r).ok()?;
                if !whole(&r) {
                    return None;
                }
                self.reg_loc(reg as u16)
            }
            OP_FBREG if frame_cfa => {
                let off = gimli::Reader::read_sleb128(&mut r).ok()?;
                if !whole(&r) {
                    return None;
                }
                ParamLoc::Stack(off + self.abi.cfa_at_entry())
            }
            OP_BREG0..=OP_BREG31 if Some(u16::from(op - OP_BREG0)) == self.abi.sp_reg() => {
                let off = gimli::Reader::read_sleb128(&mut r).ok()?;
                if !whole(&r) {
                    return None;
                }
                ParamLoc::Stack(off)
            }
            _ => return None,
        };
        Some(loc)
    }

    /// `DW_OP_regA DW_OP_piece 4 DW_OP_regB DW_OP_piece 4` with both registers argument registers.
    /// Pieces are listed from the lowest address: the low word first on a little-endian board.
    fn decode_pair(&self, expr: &[u8]) -> Option<ParamLoc> {
        let word = self.abi.word();
        let [a @ OP_REG0..=OP_REG31, OP_PIECE, n, b @ OP_REG0..=OP_REG31, OP_PIECE, m] = *expr else {
            return None;
        };
        if u64::from(n) != word || u64::from(m) != word || word != 4 {
            return None;
        }
        let first = self.abi.arg_of_reg(u16::from(a - OP_REG0))?;
        let second = self.abi.arg_of_reg(u16::from(b - OP_REG0))?;
        Some(if self.abi.little_endian {
            ParamLoc::Pair { lo: first, hi: second }
        } else {
            ParamLoc::Pair { lo: second, hi: first }
        })
    }

    fn reg_loc(&self, reg: u16) -> ParamLoc {
        self.abi.arg_of_reg(reg).map_or(ParamLoc::Unavailable, ParamLoc::Arg)
    }
}
