//! Building `ktap.ko` for a board: the Rust VM object, the panic gate, then Kbuild.
//!
//! 1. `ktap-module/glue` (a `no_std` staticlib) with Debian's cargo and `-Zbuild-std=core,alloc`;
//! 2. one relocatable object: `ld -r --gc-sections -u <each export>`, minus `.llvmbc`/`.llvmcmd`;
//! 3. the panic gate: the object must neither define nor reach the panic machinery (`nm`), which
//!    is how "the VM is panic-free" is enforced rather than hoped for;
//! 4. Kbuild in a copy of `ktap-module/kmod` under `target/kmod/<board>/` (never in the source tree),
//!    with the object as `rust_vm.o.prebuilt`;
//! 5. `ktap.ko` with debug info stripped into `out_dir`, after checking its vermagic.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ktap_host::board::{Arch, Board, Endian};

use crate::tools::{debian_path, ensure_debian_rust, on_path};
use crate::{paths, setup};

/// The functions the glue exports to the C shim (`ktap-module/kmod/ktap_vm.h`): the GC roots.
pub const EXPORTS: &[&str] = &[
    "ktap_vm_load",
    "ktap_vm_probe_count",
    "ktap_vm_probe_get",
    "ktap_vm_run",
    "ktap_vm_counters",
    "ktap_vm_free",
];

/// Options of `cargo xtask build-module`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to build for (a file in `boards/`).
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// Where to put ktap.ko (default: target/ktap/<board>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The empty-kprobe baseline module, built beside `ktap.ko` (`kmod/ktap_bare.c`).
pub const BARE_MODULE: &str = "ktap_bare.ko";

/// `cargo xtask build-module`: set up (idempotent), then [`build`].
pub fn run(args: &Args) -> Result<PathBuf> {
    let board = Board::load(&paths::boards(), &args.board)?;
    let setup = setup::ensure(&board, false)?;
    let out = args.out.clone().unwrap_or_else(|| paths::board_out(&board.name));
    let tc = &setup.toolchain;
    build(&board, &setup.kernel.headers, &tc.debian_cargo, &tc.debian_rustc, &out)
}

/// Build `ktap.ko` for `board` against `kernel_headers` and copy it (debug info stripped) into
/// `out_dir`. Fails if the Rust object references the panic machinery.
pub fn build(
    board: &Board,
    kernel_headers: &Path,
    debian_cargo: &Path,
    debian_rustc: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    let k = &board.kernel;
    let cross = |tool: &str| format!("{}{tool}", k.cross_compile);
    let gcc = cross(&gcc_name(&k.cross_gcc_package));
    ensure_debian_rust(board, debian_cargo, debian_rustc)?;
    for tool in [cross("ld"), cross("objcopy"), cross("nm"), cross("strip"), gcc.clone(), "make".into()] {
        ensure!(
            on_path(&tool).is_some(),
            "{tool} not found on PATH: run `cargo xtask setup --board {}`",
            board.name
        );
    }
    ensure!(
        kernel_headers.join("Makefile").exists(),
        "{} is not a kernel headers directory: run `cargo xtask setup --board {}`",
        kernel_headers.display(),
        board.name
    );

    let ws = paths::workspace();
    let staticlib = build_glue(board, debian_cargo, debian_rustc, &ws)?;

    // One object, only what the exports reach.
    let build_dir = ws.join("target/kmod").join(&board.name);
    if build_dir.exists() {
        std::fs::remove_dir_all(&build_dir)
            .with_context(|| format!("cannot clear {}", build_dir.display()))?;
    }
    std::fs::create_dir_all(&build_dir).with_context(|| format!("cannot create {}", build_dir.display()))?;
    let linked = build_dir.join("rust_vm.linked.o");
    let mut ld = Command::new(cross("ld"));
    ld.args(ld_emulation(board)).args(["-r", "--gc-sections"]);
    for sym in EXPORTS {
        ld.args(["-u", sym]);
    }
    run_tool(ld.arg("-o").arg(&linked).arg(&staticlib))?;
    let rust_obj = build_dir.join("rust_vm.o.prebuilt");
    run_tool(
        Command::new(cross("objcopy")).args(["-R", ".llvmbc", "-R", ".llvmcmd"]).arg(&linked).arg(&rust_obj),
    )?;

    // The panic gate.
    let nm = capture(Command::new(cross("nm")).arg(&rust_obj))?;
    let nm_demangled = capture(Command::new(cross("nm")).arg("-C").arg(&rust_obj))?;
    panic_gate(&nm, &nm_demangled).with_context(|| {
        format!(
            "{}: the VM object reaches the panic machinery; something on its path can panic",
            rust_obj.display()
        )
    })?;
    println!("build-module: panic gate passed ({} undefined symbols, all C/kernel)", undefined(&nm).len());

    // Kbuild in a copy of the C sources.
    copy_sources(&ws.join("ktap-module/kmod"), &build_dir)?;
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(kernel_headers)
        .arg(format!("M={}", build_dir.display()))
        .arg(format!("ARCH={}", k.kbuild_arch))
        .arg(format!("CROSS_COMPILE={}", k.cross_compile))
        .arg(format!("CC={gcc}"))
        .arg("modules");
    // a jobserver or flags of an outer make would change how Kbuild runs
    for var in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"] {
        make.env_remove(var);
    }
    eprintln!("build-module: Kbuild against {}", kernel_headers.display());
    run_tool(&mut make)?;

    let ko = build_dir.join("ktap.ko");
    // Debian's include/config/kernel.release holds the upstream version (6.1.176); the release the
    // module loader compares against is UTS_RELEASE (6.1.0-50-armmp).
    let release = uts_release(kernel_headers)?;
    check_vermagic(&std::fs::read(&ko).with_context(|| format!("reading {}", ko.display()))?, &release)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let dest = out_dir.join("ktap.ko");
    run_tool(Command::new(cross("strip")).arg("--strip-debug").arg(&ko).arg("-o").arg(&dest))?;
    // the kprobe benchmark's baseline module goes beside it (see kmod/ktap_bare.c)
    let bare = build_dir.join(BARE_MODULE);
    check_vermagic(&std::fs::read(&bare).with_context(|| format!("reading {}", bare.display()))?, &release)?;
    run_tool(
        Command::new(cross("strip")).arg("--strip-debug").arg(&bare).arg("-o").arg(out_dir.join(BARE_MODULE)),
    )?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "build-module: rust_vm.o {} bytes, ktap.ko {} bytes ({} with debug info in {}), vermagic {}",
        size(&rust_obj),
        size(&dest),
        size(&ko),
        build_dir.display(),
        release
    );
    Ok(dest)
}

/// `cargo build` of the glue staticlib with Debian's toolchain; returns the `.a`.
fn build_glue(board: &Board, cargo: &Path, rustc: &Path, ws: &Path) -> Result<PathBuf> {
    let target = &board.kernel.rust_target;
    let target_dir = ws.join("target/cross");
    let mut flags = board.kernel.rustflags.clone();
    flags.extend(["-C".into(), "panic=abort".into()]);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ws.join("ktap-module/glue"))
        .args(["build", "--release", "--locked"])
        .args(target_args(ws, target))
        .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"])
        .env("PATH", debian_path(cargo))
        .env("RUSTC", rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    for var in
        ["RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "RUSTUP_TOOLCHAIN", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    eprintln!("build-module: {} for {} ({target})", cargo.display(), board.name);
    run_tool(&mut cmd)?;
    let lib = target_dir.join(target).join("release/libktap_kmod.a");
    ensure!(lib.exists(), "cargo succeeded but {} is missing", lib.display());
    Ok(lib)
}

/// Where the board's kernel Rust target comes from: a spec file of ours in `ktap-module/targets/`
/// (a built-in target with different codegen features, see `boards/qemu-armv7.toml`) if one has
/// that name, else rustc's built-in target of that name. Cargo names the output directory after
/// the spec file's stem, so the `.a` is found under the target's name either way.
fn target_args(ws: &Path, target: &str) -> Vec<std::ffi::OsString> {
    let spec = ws.join("ktap-module/targets").join(format!("{target}.json"));
    if spec.is_file() {
        vec!["--target".into(), spec.into_os_string(), "-Zjson-target-spec".into()]
    } else {
        vec!["--target".into(), target.into()]
    }
}

/// `gcc-12-arm-linux-gnueabihf` -> `gcc-12`; a package without a version -> `gcc`.
pub fn gcc_name(package: &str) -> String {
    let version =
        package.strip_prefix("gcc-").and_then(|r| r.split('-').next()).filter(|v| v.parse::<u32>().is_ok());
    match version {
        Some(v) => format!("gcc-{v}"),
        None => "gcc".into(),
    }
}

/// `ld -m` for arches whose linker cannot infer the emulation from an archive.
fn ld_emulation(board: &Board) -> Vec<&'static str> {
    match (board.arch, board.endian) {
        (Arch::Mips, Endian::Little) => vec!["-m", "elf32ltsmip"],
        (Arch::Mips, Endian::Big) => vec!["-m", "elf32btsmip"],
        _ => vec![],
    }
}

/// Undefined symbols in `nm` output.
fn undefined(nm: &str) -> Vec<&str> {
    nm.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("U")).then(|| w.next()).flatten()
        })
        .collect()
}

/// Fail if the object defines or references the panic machinery: the panic handler
/// (`rust_begin_unwind`), its C target (`ktap_rust_panic`), or anything from `core::panicking`
/// (every bounds check, unwrap, overflow and allocation-failure path ends there).
pub fn panic_gate(nm: &str, nm_demangled: &str) -> Result<()> {
    let mut bad: Vec<String> = Vec::new();
    for line in nm.lines().chain(nm_demangled.lines()) {
        let hit = [
            "rust_begin_unwind",
            "ktap_rust_panic",
            "panicking",
            "handle_alloc_error",
            "__rust_alloc_error_handler",
        ]
        .iter()
        .any(|s| line.contains(s));
        if hit && !bad.contains(&line.trim().to_string()) {
            bad.push(line.trim().to_string());
        }
    }
    if !bad.is_empty() {
        bail!("panic machinery linked in:\n  {}", bad.join("\n  "));
    }
    Ok(())
}

/// The release the headers build for (`UTS_RELEASE`; Debian's `kernel.release` holds the upstream version).
fn uts_release(headers: &Path) -> Result<String> {
    let path = headers.join("include/generated/utsrelease.h");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("#define UTS_RELEASE "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("{} defines no UTS_RELEASE", path.display()))
}

/// Check `vermagic=` in the module's `.modinfo` names `release`.
fn check_vermagic(ko: &[u8], release: &str) -> Result<()> {
    let key = b"vermagic=";
    let at = ko.windows(key.len()).position(|w| w == key).context("ktap.ko has no vermagic")?;
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let vermagic = String::from_utf8_lossy(&rest[..end]);
    ensure!(
        vermagic.split_whitespace().next() == Some(release),
        "ktap.ko vermagic `{vermagic}` does not match the kernel release `{release}`"
    );
    Ok(())
}

/// Copy the regular files of the C shim (sources, headers, Kbuild, Makefile), not build leftovers.
fn copy_sources(src: &Path, dst: &Path) -> Result<()> {
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = name.ends_with(".c") || name.ends_with(".h") || name == "Kbuild" || name == "Makefile";
        if path.is_file() && wanted {
            std::fs::copy(&path, dst.join(name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_passes_clean_objects_and_names_the_culprits() {
        let clean = "         U ktap_emit\n00000000 T ktap_vm_run\n00000000 W __aeabi_memcpy\n";
        panic_gate(clean, clean).unwrap();
        let dirty = "00000000 T rust_begin_unwind\n         U ktap_rust_panic\n";
        let err = format!("{:#}", panic_gate(dirty, "").unwrap_err());
        assert!(err.contains("rust_begin_unwind") && err.contains("ktap_rust_panic"), "{err}");
        let demangled = "00000000 t core::panicking::panic_bounds_check\n";
        assert!(panic_gate("00000000 t _RNvNtCs1_4core9panicking18panic_bounds_check\n", demangled).is_err());
        assert_eq!(undefined("         U a\n00000000 T b\n         U c\n"), ["a", "c"]);
    }

    #[test]
    fn gcc_and_vermagic() {
        assert_eq!(gcc_name("gcc-12-arm-linux-gnueabihf"), "gcc-12");
        assert_eq!(gcc_name("gcc-arm-linux-gnueabihf"), "gcc");
        let ko = b"\0license=GPL\0vermagic=6.1.0-50-armmp SMP mod_unload ARMv7 \0name=ktap\0";
        check_vermagic(ko, "6.1.0-50-armmp").unwrap();
        assert!(check_vermagic(ko, "6.1.0-49-armmp").is_err());
    }
}
