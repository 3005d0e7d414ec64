//! `cargo xtask test`: the whole suite, what `.ci/run` calls. Static checks, then the board build
//! (setup included), then every host test and the QEMU end-to-end tests with the build's outputs.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build, paths};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board whose QEMU guest the end-to-end tests boot.
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// Skip formatting and lint checks.
    #[arg(long)]
    pub no_lint: bool,
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(paths::workspace());
    c
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    println!("test: {name}");
    let start = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("cannot run {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    println!("test: {name} passed in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Run the suite.
pub fn run(args: &Args) -> Result<()> {
    if !args.no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check"]);
        step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"]);
        step("cargo clippy", clippy)?;
    }
    let built = build::run(&build::Args { board: args.board.clone() })?;
    let env = [
        ("KTAP_BOARD", built.board.name.clone().into()),
        ("KTAP_ARTIFACTS", built.dir.clone().into_os_string()),
        ("KTAP_HOST_BIN", built.host_bin.clone().into_os_string()),
        ("KTAP_VMLINUX", built.artifacts.vmlinux.clone().into_os_string()),
    ];
    let mut unit = cargo();
    unit.args(["test", "--workspace", "--exclude", "ktap-e2e"]).envs(env.clone());
    step("host tests", unit)?;
    let mut e2e = cargo();
    // one guest at a time: two TCG guests on two cores only slow each other down
    e2e.args(["test", "-p", "ktap-e2e", "--", "--test-threads=1"]).envs(env);
    step(&format!("end-to-end tests on {}", built.board.name), e2e)?;
    Ok(())
}
