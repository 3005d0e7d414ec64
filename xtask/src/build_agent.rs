//! Cross-building the static `ktap-agent` for a board with Debian's Rust (`cargo -Zbuild-std`), then
//! checking the result is what a board can run: a static, non-PIE ELF executable for the board's
//! machine, class and byte order.
//!
//! The link settings (ld.lld, static, no PIE, no crt objects) live in the root `.cargo/config.toml`
//! under `[target.<triple>]`, so a plain cargo invocation with the same flags builds the same binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ktap_host::board::{Board, Endian};

use crate::paths;
use crate::tools::{debian_path, ensure_debian_rust, on_path};

/// The linker `.cargo/config.toml` names for every agent target.
const LINKER: &str = "ld.lld-22";
/// Trims what lld keeps but a board never needs (MIPS `.pdr` alone is ~25 KB).
const OBJCOPY: &str = "llvm-objcopy-22";

/// Options of `cargo xtask build-agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to build for (a file in `boards/`).
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// Debian's cargo (cargo-web), as `cargo xtask setup` installs it.
    #[arg(long, default_value = "/usr/bin/cargo")]
    pub cargo: PathBuf,
    /// Debian's rustc (rustc-web).
    #[arg(long, default_value = "/usr/bin/rustc")]
    pub rustc: PathBuf,
    /// Where to put the binary (default: target/ktap/<board>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `cargo xtask build-agent`.
pub fn run(args: &Args) -> Result<PathBuf> {
    let board = Board::load(&paths::boards(), &args.board)?;
    let out = args.out.clone().unwrap_or_else(|| paths::board_out(&board.name));
    build(&board, &args.cargo, &args.rustc, &out)
}

/// Cross-build the agent for `board` with Debian's `cargo`/`rustc`, copy the trimmed binary to
/// `out_dir/ktap-agent`, check it and return its path.
pub fn build(board: &Board, debian_cargo: &Path, debian_rustc: &Path, out_dir: &Path) -> Result<PathBuf> {
    let target = &board.agent.rust_target;
    ensure_debian_rust(board, debian_cargo, debian_rustc)?;
    for tool in [LINKER, OBJCOPY] {
        ensure!(
            on_path(tool).is_some(),
            "{tool} not found on PATH: run `cargo xtask setup --board {}`",
            board.name
        );
    }
    let ws = paths::workspace();
    let target_dir = ws.join("target/cross");
    let mut cmd = Command::new(debian_cargo);
    cmd.current_dir(&ws)
        .args(["build", "--package", "ktap-agent", "--bin", "ktap-agent", "--features", "target"])
        .args(["--profile", "agent", "--target", target])
        .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"])
        .env("PATH", debian_path(debian_cargo))
        .env("RUSTC", debian_rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir);
    // Whatever the outer (rustup) cargo exported must not leak into the Debian build.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    eprintln!("build-agent: {} for {} ({target})", debian_cargo.display(), board.name);
    let status = cmd.status().with_context(|| format!("running {}", debian_cargo.display()))?;
    if !status.success() {
        bail!("cross-building ktap-agent for {target} failed ({status})");
    }

    let built = target_dir.join(target).join("agent/ktap-agent");
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let dest = out_dir.join("ktap-agent");
    let status = Command::new(OBJCOPY)
        .args(["--strip-all", "-R", ".comment", "-R", ".pdr", "-R", ".mdebug.abi32", "-R", ".gnu.attributes"])
        .arg(&built)
        .arg(&dest)
        .status()
        .with_context(|| format!("running {OBJCOPY}"))?;
    if !status.success() {
        bail!("{OBJCOPY} {} failed ({status})", built.display());
    }
    let bytes = std::fs::read(&dest).with_context(|| format!("reading {}", dest.display()))?;
    let elf = check_elf(&bytes, board).with_context(|| format!("checking {}", dest.display()))?;
    println!("build-agent: {} ({} bytes, {elf})", dest.display(), bytes.len());
    Ok(dest)
}

/// What [`check_elf`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct ElfSummary {
    /// 32 or 64.
    pub bits: u8,
    /// Byte order.
    pub big_endian: bool,
    /// `e_machine`.
    pub machine: u16,
}

impl std::fmt::Display for ElfSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = if self.big_endian { "MSB" } else { "LSB" };
        write!(f, "static ELF{} {end} executable, e_machine {}", self.bits, self.machine)
    }
}

const ET_EXEC: u16 = 2;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

/// Check an ELF header and program headers: the board's class, byte order and machine, an `ET_EXEC`
/// (not PIE), and no interpreter or dynamic section (static).
pub fn check_elf(b: &[u8], board: &Board) -> Result<ElfSummary> {
    ensure!(b.len() >= 52 && b[..4] == *b"\x7fELF", "not an ELF file");
    let bits = match b[4] {
        1 => 32,
        2 => 64,
        c => bail!("bad ELF class {c}"),
    };
    let big_endian = match b[5] {
        1 => false,
        2 => true,
        d => bail!("bad ELF data encoding {d}"),
    };
    let field = |off: usize, len: usize| -> Result<u64> {
        let s = b.get(off..off + len).context("ELF file truncated")?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if big_endian { s[i] } else { s[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let e_type = field(16, 2)? as u16;
    let machine = field(18, 2)? as u16;
    let entry = field(24, usize::from(bits / 8))?;
    let (phoff, phentsize, phnum) = if bits == 32 {
        (field(28, 4)?, field(42, 2)?, field(44, 2)?)
    } else {
        (field(32, 8)?, field(54, 2)?, field(56, 2)?)
    };
    let summary = ElfSummary { bits, big_endian, machine };

    ensure!(bits == board.word_bits, "{bits}-bit ELF, but {} is a {}-bit board", board.name, board.word_bits);
    ensure!(
        big_endian == (board.endian == Endian::Big),
        "{} ELF, but {} is {:?}-endian",
        if big_endian { "big-endian" } else { "little-endian" },
        board.name,
        board.endian
    );
    ensure!(
        machine == board.arch.elf_machine(),
        "e_machine {machine}, but {} ({:?}) needs {}",
        board.name,
        board.arch,
        board.arch.elf_machine()
    );
    ensure!(e_type == ET_EXEC, "ELF type {e_type}: not a static non-PIE executable (ET_EXEC)");
    // lld links an empty program with entry 0 when it cannot find the entry symbol (`__start` on MIPS)
    ensure!(entry != 0, "entry point is 0: the linker did not find `_start`/`__start`");
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        match field(at, 4)? as u32 {
            PT_INTERP => bail!("has a program interpreter (dynamically linked)"),
            PT_DYNAMIC => bail!("has a dynamic section (not static)"),
            _ => {}
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board::load(&paths::boards(), "qemu-armv7").unwrap()
    }

    /// A minimal ELF32 header with `phnum` program headers of type `ptypes`.
    fn elf32(big: bool, e_type: u16, machine: u16, ptypes: &[u32]) -> Vec<u8> {
        let h16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let h32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut b = vec![0u8; 52];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = if big { 2 } else { 1 };
        b[16..18].copy_from_slice(&h16(e_type));
        b[18..20].copy_from_slice(&h16(machine));
        b[24..28].copy_from_slice(&h32(0x10000));
        b[28..32].copy_from_slice(&h32(52));
        b[42..44].copy_from_slice(&h16(32));
        b[44..46].copy_from_slice(&h16(ptypes.len() as u16));
        for t in ptypes {
            let mut ph = vec![0u8; 32];
            ph[..4].copy_from_slice(&h32(*t));
            b.extend(ph);
        }
        b
    }

    #[test]
    fn accepts_a_static_arm_executable() {
        let s = check_elf(&elf32(false, ET_EXEC, 40, &[1, 1, 0x6474e551]), &board()).unwrap();
        assert_eq!(s, ElfSummary { bits: 32, big_endian: false, machine: 40 });
    }

    #[test]
    fn refuses_wrong_machine_pie_dynamic_and_endianness() {
        let b = board();
        let err = |bytes: Vec<u8>| format!("{:#}", check_elf(&bytes, &b).unwrap_err());
        assert!(err(elf32(false, ET_EXEC, 8, &[1])).contains("e_machine 8"));
        assert!(err(elf32(false, 3, 40, &[1])).contains("not a static non-PIE"));
        assert!(err(elf32(false, ET_EXEC, 40, &[1, PT_INTERP])).contains("interpreter"));
        assert!(err(elf32(false, ET_EXEC, 40, &[PT_DYNAMIC])).contains("dynamic"));
        assert!(err(elf32(true, ET_EXEC, 40, &[1])).contains("big-endian"));
        assert!(err(b"#!/bin/sh\n".to_vec()).contains("not an ELF"));
        let mut no_entry = elf32(false, ET_EXEC, 40, &[1]);
        no_entry[24..28].fill(0);
        assert!(err(no_entry).contains("entry point is 0"));
        let mut cut = elf32(false, ET_EXEC, 40, &[1, 1]);
        cut.truncate(60);
        assert!(err(cut).contains("truncated"));
    }
}
