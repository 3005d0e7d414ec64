//! Calling conventions: where a function's arguments are when a kprobe fires at its entry.
//!
//! The kernel module's `argN` reads the N-th integer argument register of the board's convention
//! (`ktap_regs_arg` in `ktap-module/kmod/ktap_run.c`); DWARF names registers by its own per-arch
//! numbers. This file is the one place that maps between the two.

/// ELF machines we know the conventions of.
const EM_MIPS: u16 = 8;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// One kernel's calling convention, from its ELF header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abi {
    /// ELF `e_machine`.
    pub machine: u16,
    /// ELFCLASS64?
    pub is_64: bool,
    /// Little-endian?
    pub little_endian: bool,
}

impl Abi {
    /// Bytes in a register (and a pointer).
    pub fn word(self) -> u64 {
        if self.is_64 { 8 } else { 4 }
    }

    /// DWARF register numbers of the integer argument registers, in argument order.
    fn arg_regs(self) -> &'static [u16] {
        match (self.machine, self.is_64) {
            (EM_ARM, _) => &[0, 1, 2, 3],                         // r0-r3 (AAPCS)
            (EM_AARCH64, _) => &[0, 1, 2, 3, 4, 5, 6, 7],         // x0-x7
            (EM_MIPS, false) => &[4, 5, 6, 7],                    // $a0-$a3 (o32)
            (EM_MIPS, true) => &[4, 5, 6, 7, 8, 9, 10, 11],       // $a0-$a7 (n64)
            (EM_PPC | EM_PPC64, _) => &[3, 4, 5, 6, 7, 8, 9, 10], // r3-r10
            (EM_X86_64, _) => &[5, 4, 1, 2, 8, 9],                // rdi rsi rdx rcx r8 r9
            _ => &[],
        }
    }

    /// How many arguments travel in registers.
    pub fn reg_args(self) -> u8 {
        self.arg_regs().len() as u8
    }

    /// The `argN` that DWARF register `reg` is, if it is an argument register.
    pub fn arg_of_reg(self, reg: u16) -> Option<u8> {
        self.arg_regs().iter().position(|&r| r == reg).map(|i| i as u8)
    }

    /// The assembler name of the register holding `argN`.
    pub fn arg_reg_name(self, n: u8) -> Option<&'static str> {
        let names: &[&str] = match (self.machine, self.is_64) {
            (EM_ARM, _) => &["r0", "r1", "r2", "r3"],
            (EM_AARCH64, _) => &["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"],
            (EM_MIPS, false) => &["a0", "a1", "a2", "a3"],
            (EM_MIPS, true) => &["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"],
            (EM_PPC | EM_PPC64, _) => &["r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"],
            (EM_X86_64, _) => &["rdi", "rsi", "rdx", "rcx", "r8", "r9"],
            _ => &[],
        };
        names.get(usize::from(n)).copied()
    }

    /// DWARF number of the stack pointer.
    pub fn sp_reg(self) -> Option<u16> {
        match self.machine {
            EM_ARM => Some(13),
            EM_AARCH64 => Some(31),
            EM_MIPS => Some(29),
            EM_PPC | EM_PPC64 => Some(1),
            EM_X86_64 => Some(7),
            _ => None,
        }
    }

    /// The canonical frame address minus the stack pointer at a function's first instruction: the
    /// return address x86_64's `call` pushed; 0 where the return address is in a register.
    pub fn cfa_at_entry(self) -> i64 {
        if self.machine == EM_X86_64 { 8 } else { 0 }
    }

    /// 32-bit conventions that pass a 64-bit integer in an even/odd register pair (and an 8-byte
    /// aligned stack slot): AAPCS, MIPS o32, PowerPC SysV.
    pub fn pairs_aligned(self) -> bool {
        !self.is_64 && matches!(self.machine, EM_ARM | EM_MIPS | EM_PPC)
    }

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match (self.machine, self.is_64) {
            (EM_ARM, _) => "ARM (AAPCS)",
            (EM_AARCH64, _) => "AArch64",
            (EM_MIPS, false) => "MIPS o32",
            (EM_MIPS, true) => "MIPS n64",
            (EM_PPC, _) => "PowerPC",
            (EM_PPC64, _) => "PowerPC64",
            (EM_X86_64, _) => "x86_64",
            _ => "an unknown architecture",
        }
    }
}
