//! `cargo xtask test`: the whole suite, what `.ci/run` calls. Static checks once, then every QEMU
//! board: its build (setup included) and its end-to-end tests, the host tests once with the primary
//! board's vmlinux.
//!
//! Boards run two at a time by default (`--jobs`): a TCG guest keeps about one host core busy and
//! most of a board's time is its guest, so two lanes fill two cores; each board runs in its own
//! `cargo xtask test --board B` process whose output is prefixed with the board's name. The
//! primary board runs every end-to-end test file; the others run the files that exercise per-arch
//! code ([`E2E_FILES`] says which and why; `--full` runs every file everywhere). A failing board does
//! not stop the others, and the summary names every failure with each board's time.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ktap_host::board::{self, Board};

use crate::{build, paths};

/// The boards the suite runs when none is named: what CI runs. After the primary, the longest
/// first, so the second lane's long boards overlap the primary's; `qemu-ppc` last (its kernel
/// and busybox are built from source: a one-time 10 min on a quiet cold machine, cached after;
/// `qemu-mips` builds its own the same way). With both MIPS boards selected, `endian_twins` runs
/// after the boards.
pub const DEFAULT_BOARDS: &str =
    "qemu-armv7,qemu-mipsel,qemu-mips,qemu-x86_64,qemu-aarch64,qemu-ppc64le,qemu-ppc";

/// The board that runs every end-to-end test file and the host tests: the reference board, whose
/// kernel and UART are the ones the README's examples use.
pub const PRIMARY: &str = "qemu-armv7";

/// Where an end-to-end test file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On every board: it exercises code or kernel behaviour that differs per arch.
    EveryBoard,
    /// On the primary board (and with `--full`): the code under test is the same on every arch.
    Primary,
    /// Once per selected pair of [`ENDIAN_TWINS`], after the boards: it compares two boards.
    Pair,
}

/// One file of `tests/tests/`, where it runs, and why there.
pub struct E2eFile {
    /// The test target name (file stem).
    pub name: &'static str,
    /// Where it runs.
    pub scope: Scope,
    /// Why.
    pub why: &'static str,
}

/// Every end-to-end test file with its scope. A unit test checks this list against `tests/tests/`,
/// so a new file has to choose.
pub const E2E_FILES: &[E2eFile] = &[
    E2eFile {
        name: "walking_skeleton",
        scope: Scope::EveryBoard,
        why: "boot, module load, an exact kprobe count, corrupted-image rejection by the board's kernel, \
              the build-id refusal and disarm on host death: what every board must do",
    },
    E2eFile {
        name: "arch_abi",
        scope: Scope::EveryBoard,
        why: "argument and return registers, tracepoint arguments and KASLR rebasing differ per arch",
    },
    E2eFile {
        name: "dwarf_args",
        scope: Scope::EveryBoard,
        why: "parameter locations and struct layouts come from each arch's DWARF and calling convention",
    },
    E2eFile {
        name: "vm_ops",
        scope: Scope::EveryBoard,
        why: "no-fault kernel reads, kernel stack capture and timers run per-arch kernel code",
    },
    E2eFile {
        name: "system_map",
        scope: Scope::Primary,
        why: "push from a System.map: the agent's kallsyms check is arch-independent parsing; the \
              base symbol and KASLR rebasing it relies on are covered per arch by arch_abi",
    },
    E2eFile {
        name: "samples",
        scope: Scope::Primary,
        why: "the sample scripts check the language and the formatter, the same host code for every arch",
    },
    E2eFile {
        name: "samples_syscalls",
        scope: Scope::Primary,
        why: "syscalls:* by name: the table and pt_regs offsets are read per arch from the vmlinux by \
              host code; checked on the reference board (not yet run on the other boards)",
    },
    E2eFile {
        name: "vm_cycles",
        scope: Scope::Primary,
        why: "100 load/run/unload cycles check for leaks in the module's arch-independent C and Rust",
    },
    E2eFile {
        name: "verifier_stress",
        scope: Scope::Primary,
        why: "mutated images against the verifier: one Rust crate, the same decisions on every arch",
    },
    E2eFile {
        name: "link_console",
        scope: Scope::Primary,
        why: "transport: the same host and agent code over any UART",
    },
    E2eFile {
        name: "link_deploy",
        scope: Scope::EveryBoard,
        why: "deploy writes files and loads the module through the agent's own syscalls, which differ per \
              arch (rustix backends, hand-written o32 on MIPS), and reports a refused module's errno",
    },
    E2eFile {
        name: "link_flow",
        scope: Scope::Primary,
        why: "flow control, drop accounting, reconnect and the version handshake: the same agent code on \
              every arch",
    },
    E2eFile { name: "link_noise", scope: Scope::Primary, why: "transport: framing and retransmission" },
    E2eFile { name: "link_ssh", scope: Scope::Primary, why: "transport: ssh runs the agent over its stdio" },
    E2eFile {
        name: "endian_twins",
        scope: Scope::Pair,
        why: "the same script on a little- and a big-endian board of one arch must print the same",
    },
];

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The boards whose QEMU guests the end-to-end tests boot: names separated by commas, or `all`
    /// (every board with a `[qemu]` section)
    #[arg(long, default_value = DEFAULT_BOARDS, env = "KTAP_BOARD")]
    pub board: String,
    /// Skip formatting and lint checks
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the host (non-QEMU) tests
    #[arg(long)]
    pub no_host_tests: bool,
    /// Run every end-to-end test file on every board, not only the per-arch ones
    #[arg(long)]
    pub full: bool,
    /// How many boards build and test at once
    #[arg(long, default_value_t = 2, env = "KTAP_TEST_JOBS")]
    pub jobs: usize,
    /// Run the host tests in this board's process (internal: set for the primary board's lane)
    #[arg(long, hide = true)]
    pub host_tests_here: bool,
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(paths::workspace());
    c
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    println!("test: {name}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot run {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    println!("test: {name} passed in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The board names `spec` selects (`all`, or a comma-separated list), each checked to exist and to
/// have a `[qemu]` section. `all` puts the primary board first.
pub fn select_boards(spec: &str) -> Result<Vec<String>> {
    let dir = paths::boards();
    let names: Vec<String> = if spec.trim() == "all" {
        let mut emulated = Vec::new();
        for name in board::list(&dir).with_context(|| format!("listing {}", dir.display()))? {
            if Board::load(&dir, &name)?.qemu.is_some() {
                emulated.push(name);
            }
        }
        emulated.sort_by_key(|n| n != PRIMARY);
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

/// The end-to-end test files a board runs.
pub fn e2e_files(board: &str, full: bool) -> Vec<&'static str> {
    E2E_FILES
        .iter()
        .filter(|f| f.scope != Scope::Pair)
        .filter(|f| full || board == PRIMARY || f.scope == Scope::EveryBoard)
        .map(|f| f.name)
        .collect()
}

/// Run the suite.
pub fn run(args: &Args) -> Result<()> {
    let boards = select_boards(&args.board)?;
    let start = Instant::now();
    if !args.no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check"]);
        step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"]);
        step("cargo clippy", clippy)?;
    }
    if boards.len() == 1 {
        // one board: in this process, its output as it is
        let host_tests = !args.no_host_tests || args.host_tests_here;
        let name = &boards[0];
        let t = Instant::now();
        let result = board_suite(name, host_tests, args.full);
        match &result {
            Ok(()) => println!("test: board {name} passed in {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => println!("test: board {name} FAILED after {:.0} s: {e:#}", t.elapsed().as_secs_f64()),
        }
        return result;
    }
    let results = lanes(&boards, args)?;
    println!("test: summary ({} board(s), {} at a time):", boards.len(), args.jobs.max(1));
    for (name, secs, ok) in &results {
        println!("test:   {name:<14} {} in {secs:.0} s", if *ok { "passed" } else { "FAILED" });
    }
    let mut failed: Vec<String> = results.iter().filter(|r| !r.2).map(|r| r.0.clone()).collect();
    for (a, b) in ENDIAN_TWINS {
        if boards.iter().any(|n| n == a) && boards.iter().any(|n| n == b) {
            // runs even when a board's own suite failed: it needs only both builds
            let t = Instant::now();
            let name = format!("endian twins {a},{b}");
            match twin_suite(a, b) {
                Ok(()) => println!("test:   {name} passed in {:.0} s", t.elapsed().as_secs_f64()),
                Err(e) => {
                    println!("test:   {name} FAILED: {e:#}");
                    failed.push(name);
                }
            }
        }
    }
    println!("test: {} board(s) in {:.0} s in all", boards.len(), start.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("failed on board(s): {}", failed.join(", "));
    }
    Ok(())
}

/// Board pairs that differ only in byte order: when a run selects both, the same script must print
/// the same on each (`tests/tests/endian_twins.rs`, scope [`Scope::Pair`]).
pub const ENDIAN_TWINS: [(&str, &str); 1] = [("qemu-mipsel", "qemu-mips")];

/// The cross-board test of a twin pair, after both boards' suites (and so their builds) ran.
fn twin_suite(a: &str, b: &str) -> Result<()> {
    let host_bin = build::build_host()?;
    let mut e2e = cargo();
    e2e.args(["test", "-p", "ktap-e2e", "--test", "endian_twins", "--", "--test-threads=1"])
        .env("KTAP_TWIN_BOARDS", format!("{a},{b}"))
        .env("KTAP_HOST_BIN", host_bin);
    step(&format!("endian twins {a},{b}"), e2e)
}

/// How one board's suite ended: seconds taken and whether it passed (`None`: it never ran).
type Outcome = Option<(f64, bool)>;

/// Run the boards `args.jobs` at a time, each in its own `cargo xtask test --board B` process (the
/// host tests in the first board's); returns (board, seconds, passed) in the order given.
fn lanes(boards: &[String], args: &Args) -> Result<Vec<(String, f64, bool)>> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let queue: Mutex<VecDeque<(usize, &String)>> = Mutex::new(boards.iter().enumerate().collect());
    let results: Mutex<Vec<Outcome>> = Mutex::new(vec![None; boards.len()]);
    let width = boards.iter().map(String::len).max().unwrap_or(0);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.clamp(1, boards.len()) {
            scope.spawn(|| {
                loop {
                    let Some((i, name)) = queue.lock().unwrap().pop_front() else { break };
                    let mut cmd = Command::new(&exe);
                    cmd.current_dir(paths::workspace()).args([
                        "test",
                        "--no-lint",
                        "--no-host-tests",
                        "--board",
                        name,
                        "--jobs",
                        "1",
                    ]);
                    if i == 0 && !args.no_host_tests {
                        cmd.arg("--host-tests-here");
                    }
                    if args.full {
                        cmd.arg("--full");
                    }
                    let t = Instant::now();
                    let ok = prefixed(cmd, &format!("{name:<width$} | ")).unwrap_or_else(|e| {
                        println!("{name:<width$} | cannot run its suite: {e:#}");
                        false
                    });
                    results.lock().unwrap()[i] = Some((t.elapsed().as_secs_f64(), ok));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    Ok(boards
        .iter()
        .zip(results)
        .map(|(b, r)| (b.clone(), r.map_or(0.0, |r| r.0), r.is_some_and(|r| r.1)))
        .collect())
}

/// Run `cmd` with its stdout and stderr printed line by line behind `prefix`; whether it succeeded.
fn prefixed(mut cmd: Command, prefix: &str) -> Result<bool> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pumps = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ];
    std::thread::scope(|scope| {
        for stream in pumps {
            scope.spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    println!("{prefix}{line}");
                }
            });
        }
    });
    Ok(child.wait()?.success())
}

/// Build one board and run its end-to-end tests (each file even when an earlier one fails, so a
/// board's failures are reported together); with `host_tests`, the host tests too (with this
/// board's vmlinux for the tests that read a real one).
fn board_suite(name: &str, host_tests: bool, full: bool) -> Result<()> {
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
    let files = e2e_files(name, full);
    // a pair file is not skipped here: it runs after the boards, when both of a pair were selected
    for f in E2E_FILES.iter().filter(|f| !files.contains(&f.name) && f.scope != Scope::Pair) {
        println!("test: {name}: {} runs on {PRIMARY} only ({}; --full runs it here)", f.name, f.why);
    }
    let mut e2e = cargo();
    e2e.args(["test", "-p", "ktap-e2e", "--no-fail-fast"]);
    for f in &files {
        e2e.args(["--test", f]);
    }
    e2e.args(["--", "--test-threads=1"]).envs(env);
    step(&format!("end-to-end tests on {} ({})", built.board.name, files.join(", ")), e2e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_selection() {
        assert_eq!(select_boards("qemu-armv7").unwrap(), ["qemu-armv7"]);
        assert_eq!(select_boards(" qemu-armv7 , qemu-aarch64 ").unwrap(), ["qemu-armv7", "qemu-aarch64"]);
        let all = select_boards("all").unwrap();
        assert_eq!(all[0], PRIMARY, "the primary board runs first (it runs the most)");
        assert!(all.contains(&"qemu-aarch64".to_owned()) && !all.contains(&"armv7".to_owned()));
        assert!(select_boards(",").is_err());
        assert!(select_boards("nope").unwrap_err().to_string().contains("qemu-armv7"));
        assert!(select_boards("armv7").unwrap_err().to_string().contains("real hardware"));
        let default = select_boards(DEFAULT_BOARDS).unwrap();
        assert_eq!(default[0], PRIMARY, "the primary board runs first (it runs the most)");
    }

    #[test]
    fn every_e2e_file_has_a_scope() {
        let dir = paths::workspace().join("tests/tests");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = E2E_FILES.iter().map(|f| f.name.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "tests/tests/ and E2E_FILES differ: give each file a scope");
        let per_board = E2E_FILES.iter().filter(|f| f.scope != Scope::Pair).count();
        assert_eq!(e2e_files(PRIMARY, false).len(), per_board);
        let core = e2e_files("qemu-mipsel", false);
        assert!(core.contains(&"walking_skeleton") && !core.contains(&"link_ssh"));
        assert_eq!(e2e_files("qemu-mipsel", true).len(), per_board);
        assert!(!e2e_files(PRIMARY, true).contains(&"endian_twins"), "a pair test needs two boards");
    }
}
