//! Process entry without a libc: `_start` per architecture hands the initial stack pointer to
//! [`entry`], which reads `argc`/`argv` and exits with `run`'s status. Also the panic handler.
//!
//! At `_start` the kernel leaves `sp -> argc, argv[0..argc], NULL, envp..., NULL, auxv...`. Each stub
//! clears the frame/link registers (a clean end for backtraces), passes `sp` as the first argument,
//! keeps the ABI's stack alignment and traps if `entry` ever returns.

use core::ffi::c_char;

use crate::cli::Args;
use crate::sys;

#[cfg(target_arch = "arm")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, %function",
    "_start:",
    "mov fp, #0",
    "mov lr, #0",
    "mov r0, sp",
    "bic sp, sp, #7", // AAPCS: 8-byte aligned
    "bl {entry}",
    "udf #0",
    entry = sym entry,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, %function",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {entry}",
    "brk #0",
    entry = sym entry,
);

// o32: the callee may store its four register arguments in 16 bytes above its sp; $t9 holds the
// callee's address (PIC convention), 8-byte stack alignment. lld's default entry on MIPS is `__start`.
#[cfg(target_arch = "mips")]
core::arch::global_asm!(
    ".set push",
    ".set noreorder",
    ".globl _start",
    ".globl __start",
    ".type _start, @function",
    "_start:",
    "__start:",
    "move $a0, $sp",
    "li $t0, -8",
    "and $sp, $sp, $t0",
    "addiu $sp, $sp, -16",
    "lui $t9, %hi({entry})",
    "addiu $t9, $t9, %lo({entry})",
    "jalr $t9",
    "nop",
    "break",
    ".set pop",
    entry = sym entry,
);

// SysV PowerPC: 16-byte aligned stack with a zero back chain; LR cleared.
#[cfg(target_arch = "powerpc")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "mr 3, 1",
    "clrrwi 1, 1, 4",
    "li 0, 0",
    "stwu 1, -16(1)",
    "stw 0, 0(1)",
    "mtlr 0",
    "bl {entry}",
    "trap",
    entry = sym entry,
);

// 64-bit PowerPC, ELFv2: r2 must hold the TOC pointer before any Rust code runs (callees reached
// through their local entry points assume it); 16-byte aligned stack with a 32-byte minimal frame
// whose back chain is zero; LR cleared.
#[cfg(target_arch = "powerpc64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "lis 2, .TOC.@highest",
    "ori 2, 2, .TOC.@higher",
    "rldicr 2, 2, 32, 31",
    "oris 2, 2, .TOC.@h",
    "ori 2, 2, .TOC.@l",
    "mr 3, 1",
    "clrrdi 1, 1, 4",
    "li 0, 0",
    "stdu 1, -32(1)",
    "std 0, 0(1)",
    "mtlr 0",
    "bl {entry}",
    "nop",
    "trap",
    entry = sym entry,
);

// Host smoke tests only: the same binary on the build machine.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// Called by `_start` with the initial stack pointer.
///
/// # Safety
/// `sp` must be the process's initial stack pointer as the kernel set it up.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argv pointers, alive for the whole run.
    let args = unsafe {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const c_char>();
        Args::new(argc, argv)
    };
    sys::exit(crate::run(&args))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    crate::on_panic();
    sys::write_all(sys::STDERR, b"ktap-agent: internal error (panic)\n");
    sys::exit(crate::EXIT_PANIC)
}
