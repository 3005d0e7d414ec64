//! `cargo xtask test`: the whole suite, what `.ci/run` calls. Static checks and host tests once, then
//! for each board: its build (setup included) and the QEMU end-to-end tests with the build's outputs.
//! Boards run one after another (two TCG guests on two cores only slow each other down); a failing
//! board does not stop the others, and the summary names every failure.

use std::process::Command;

use anyhow::{Context, Result, bail};
use ktap_host::board::{self, Board};

use crate::{build, paths};

/// The boards the suite runs when none is named: what CI runs.
pub const DEFAULT_BOARDS: &str = "qemu-armv7,qemu-aarch64";

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The boards whose QEMU guests the end-to-end tests boot: names separated by commas, or `all`
    /// (every board with a `[qemu]` section).
    #[arg(long, default_value = DEFAULT_BOARDS, env = "KTAP_BOARD")]
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

/// The board names `spec` selects (`all`, or a comma-separated list), each checked to exist and to
/// have a `[qemu]` section.
pub fn select_boards(spec: &str) -> Result<Vec<String>> {
    let dir = paths::boards();
    let names: Vec<String> = if spec.trim() == "all" {
        let mut emulated = Vec::new();
        for name in board::list(&dir).with_context(|| format!("listing {}", dir.display()))? {
            if Board::load(&dir, &name)?.qemu.is_some() {
                emulated.push(name);
            }
        }
        emulated
    } else {
        spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    };
    if names.is_empty() {
        bail!("no boards selected by `{spec}`");
    }
    for name in &names {
        if Board::load(&dir, name)?.qemu.is_none() {
            bail!("board `{name}` is real hardware (no [qemu] section): the suite cannot boot it");
        }
    }
    Ok(names)
}

/// Run the suite.
pub fn run(args: &Args) -> Result<()> {
    let boards = select_boards(&args.board)?;
    let start = std::time::Instant::now();
    if !args.no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check"]);
        step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"]);
        step("cargo clippy", clippy)?;
    }
    let mut failed = Vec::new();
    for (i, name) in boards.iter().enumerate() {
        let t = std::time::Instant::now();
        match board_suite(name, i == 0) {
            Ok(()) => println!("test: board {name} passed in {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => {
                println!("test: board {name} FAILED after {:.0} s: {e:#}", t.elapsed().as_secs_f64());
                failed.push(name.clone());
            }
        }
    }
    println!("test: {} board(s) in {:.0} s", boards.len(), start.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("failed on board(s): {}", failed.join(", "));
    }
    Ok(())
}

/// Build one board and run its end-to-end tests; with `host_tests`, the host tests too (with this
/// board's vmlinux for the tests that read a real one).
fn board_suite(name: &str, host_tests: bool) -> Result<()> {
    let built = build::run(&build::Args { board: name.to_owned() })?;
    let env = [
        ("KTAP_BOARD", built.board.name.clone().into()),
        ("KTAP_ARTIFACTS", built.dir.clone().into_os_string()),
        ("KTAP_HOST_BIN", built.host_bin.clone().into_os_string()),
        ("KTAP_VMLINUX", built.artifacts.vmlinux.clone().into_os_string()),
    ];
    if host_tests {
        let mut unit = cargo();
        unit.args(["test", "--workspace", "--exclude", "ktap-e2e"]).envs(env.clone());
        step("host tests", unit)?;
    }
    let mut e2e = cargo();
    // every test file runs even when an earlier one fails: a board's failures are reported together
    e2e.args(["test", "-p", "ktap-e2e", "--no-fail-fast", "--", "--test-threads=1"]).envs(env);
    step(&format!("end-to-end tests on {}", built.board.name), e2e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_selection() {
        assert_eq!(select_boards("qemu-armv7").unwrap(), ["qemu-armv7"]);
        assert_eq!(select_boards(" qemu-armv7 , qemu-aarch64 ").unwrap(), ["qemu-armv7", "qemu-aarch64"]);
        let all = select_boards("all").unwrap();
        assert!(all.contains(&"qemu-armv7".to_owned()) && all.contains(&"qemu-aarch64".to_owned()));
        assert!(select_boards(",").is_err());
        assert!(select_boards("nope").unwrap_err().to_string().contains("qemu-armv7"));
        for name in DEFAULT_BOARDS.split(',') {
            assert!(all.contains(&name.to_owned()), "default board {name} is not a QEMU board");
        }
    }
}
