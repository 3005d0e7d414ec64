//! `cargo xtask build`: everything a board needs, from the cached kernel to a bootable initramfs.
//! setup -> static agent -> kernel module (Rust VM object + C shim) -> initramfs -> artifacts.toml,
//! plus the host binary, so `ktap-host push --board <qemu board>` and the tests find all of it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use ktap_host::board::Board;
use ktap_host::qemu::Artifacts;

use crate::{build_agent, build_module, initramfs, paths, setup};

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to build for (a file in `boards/`).
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
}

/// What a build produced.
pub struct Built {
    /// The board.
    pub board: Board,
    /// Its artifacts (also written to `artifacts.toml`).
    pub artifacts: Artifacts,
    /// Directory holding `artifacts.toml`.
    pub dir: PathBuf,
    /// The host binary.
    pub host_bin: PathBuf,
}

/// Build everything for `args.board`.
pub fn run(args: &Args) -> Result<Built> {
    let board = Board::load(&paths::boards(), &args.board)?;
    let setup = setup::ensure(&board, false)?;
    let dir = paths::board_out(&board.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tc = &setup.toolchain;
    let agent = build_agent::build(&board, &tc.debian_cargo, &tc.debian_rustc, &dir)
        .with_context(|| format!("building the agent for {}", board.name))?;
    let module = build_module::build(&board, &setup.kernel.headers, &tc.debian_cargo, &tc.debian_rustc, &dir)
        .with_context(|| format!("building the kernel module for {}", board.name))?;
    let initramfs = dir.join("initramfs.cpio");
    initramfs::write(&initramfs, &board, &setup.kernel.busybox, &module, &agent)?;
    let artifacts = Artifacts {
        board: board.name.clone(),
        kernel_release: setup.kernel.abi.clone(),
        kernel_package_version: setup.kernel.pkg_version.clone(),
        kernel: setup.kernel.vmlinuz.clone(),
        initramfs,
        vmlinux: setup.kernel.vmlinux.clone(),
        module,
        agent,
    };
    let toml = toml::to_string(&artifacts).context("serialising artifacts.toml")?;
    std::fs::write(dir.join("artifacts.toml"), toml).context("writing artifacts.toml")?;
    let host_bin = build_host()?;
    println!("build: {} ready in {}", board.name, dir.display());
    Ok(Built { board, artifacts, dir, host_bin })
}

/// Build `ktap-host` with the toolchain running xtask; returns the binary path.
pub fn build_host() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(paths::workspace())
        .args(["build", "--quiet", "-p", "ktap-host", "--bin", "ktap-host"])
        .status()
        .context("running cargo build -p ktap-host")?;
    if !status.success() {
        bail!("cargo build -p ktap-host failed");
    }
    Ok(paths::workspace().join("target/debug/ktap-host"))
}
