//! Why a vmlinux could not be opened or a query against it failed. Every variant names the file.

use std::path::PathBuf;

use crate::board::Arch;

/// Errors opening a vmlinux or resolving a symbol in it. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    /// The file could not be opened or mapped.
    #[error("cannot read vmlinux {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed ELF file.
    #[error("vmlinux {path} is not a valid ELF file: {message}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What the ELF parser said.
        message: String,
    },
    /// The file has no symbol table (a stripped or compressed kernel image).
    #[error(
        "vmlinux {path} has no symbol table: pass the unstripped vmlinux (e.g. from Debian's linux-image-*-dbg), not vmlinuz or a stripped image"
    )]
    NoSymbols {
        /// The file.
        path: PathBuf,
    },
    /// The file has no GNU build-id note, so it cannot be matched against the running kernel.
    #[error("vmlinux {path} has no GNU build-id note (was the kernel linked without --build-id?)")]
    NoBuildId {
        /// The file.
        path: PathBuf,
    },
    /// The file has no `_text` symbol.
    #[error("vmlinux {path} has no `_text` symbol: is this a Linux kernel?")]
    NoText {
        /// The file.
        path: PathBuf,
    },
    /// The agent reported the kernel's run-time base as a symbol this vmlinux does not have.
    #[error(
        "vmlinux {path} has no `{name}` symbol, but the board reports its kernel's base as `{name}` at {addr:#x}: cannot rebase kprobe addresses (is this the board's vmlinux?)"
    )]
    NoBaseSymbol {
        /// The file.
        path: PathBuf,
        /// The symbol the agent named.
        name: String,
        /// Its run-time address on the board.
        addr: u64,
    },
    /// The vmlinux is built for another architecture than the board.
    #[error(
        "vmlinux {path} is for ELF machine {found} ({found_name}), but the board is {arch:?} (machine {expected})"
    )]
    WrongArch {
        /// The file.
        path: PathBuf,
        /// `e_machine` of the file.
        found: u16,
        /// A name for `found`.
        found_name: &'static str,
        /// `e_machine` the board's arch needs.
        expected: u16,
        /// The board's arch.
        arch: Arch,
    },
    /// No function of that name.
    #[error("no kernel function `{name}` in vmlinux {path}{suggest}")]
    NoFunction {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
    /// Several local functions share the name and none is global.
    #[error(
        "kernel function `{name}` is ambiguous in vmlinux {path}: {count} static functions of that name at {addrs}"
    )]
    Ambiguous {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// How many functions have it.
        count: usize,
        /// Their addresses, in hex.
        addrs: String,
    },
    /// No tracepoint of that name.
    #[error("no tracepoint `{subsys}:{event}` in vmlinux {path} (no symbol `__tracepoint_{event}`){suggest}")]
    NoTracepoint {
        /// The file.
        path: PathBuf,
        /// The subsystem asked for.
        subsys: String,
        /// The event asked for.
        event: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
    /// The event exists but the subsystem does not.
    #[error("no tracepoint subsystem `{subsys}` in vmlinux {path} (event `{event}` exists){suggest}")]
    NoTraceSystem {
        /// The file.
        path: PathBuf,
        /// The subsystem asked for.
        subsys: String,
        /// The event asked for.
        event: String,
        /// `: did you mean ...?` or empty.
        suggest: String,
    },
}
