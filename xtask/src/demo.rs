//! `cargo xtask demo`: the main job. Build everything for the default QEMU board, boot it, push a sample
//! script, run a small workload in the guest while it traces, and print what the script printed.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build, paths};

/// What the guest runs while the demo traces: some file reads, some opens, a process or two.
const WORKLOAD: &str = "dd if=/dev/zero of=/dev/null bs=1 count=300 2>/dev/null; cat /proc/version /proc/uptime >/dev/null; ls / >/dev/null";

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to boot.
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// The script to push (default: samples/demo.kp).
    pub script: Option<std::path::PathBuf>,
}

/// Run the demo.
pub fn run(args: &Args) -> Result<()> {
    let built = build::run(&build::Args { board: args.board.clone() })?;
    let script = args.script.clone().unwrap_or_else(|| paths::workspace().join("samples/demo.kp"));
    println!("demo: pushing {} to {} while the guest runs: {WORKLOAD}", script.display(), built.board.name);
    let status = Command::new(&built.host_bin)
        .args(["push", "--board", &built.board.name, "--run", WORKLOAD])
        .arg(&script)
        .status()
        .with_context(|| format!("cannot run {}", built.host_bin.display()))?;
    if !status.success() {
        bail!("ktap-host push failed ({status})");
    }
    Ok(())
}
