//! `cargo xtask bench`: size, latency and speed figures for `docs/benchmarks.md`.
//! Sizes of the static agent, the Rust VM object and the module; the time from an open link to the
//! first event (median over several pushes to one booted QEMU guest); on that same guest, the cost
//! per kprobe hit of a bare kprobe against ktap running `t[execname] += 1` ([`kprobe_cost`]); on the host, ns
//! per hit of our VM against rbpf and Lua ([`vm_speed`]); the link's bytes per event and its
//! rate at 115200 baud (`crate::bench_link`). Speed goals are checked here, never by timed tests.

mod kprobe_cost;
mod vm_speed;

use std::process::Command;

use anyhow::{Context, Result, bail};
use ktap_host::qemu::Guest;

use crate::{build, paths};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to measure.
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// How many pushes to time.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// What to measure: `sizes`, `push` (first event), `kprobe` (in-guest cost per hit), `vm` (host
    /// ns per hit against rbpf and Lua), `link` (wire bytes per event, 115200 baud), separated by
    /// commas.
    #[arg(long, value_delimiter = ',', default_value = "sizes,push,kprobe,vm,link")]
    pub parts: Vec<Part>,
}

/// One part of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Sizes of the agent, the VM object and the module.
    Sizes,
    /// Push to first event, on a booted guest.
    Push,
    /// In-guest cost per kprobe hit: a bare kprobe against ktap running `t[execname] += 1`.
    Kprobe,
    /// Host: ns per hit of our VM, rbpf and Lua 5.4 (criterion).
    Vm,
    /// The link: wire bytes per printf event against text, events/s and push to first event at 115200.
    Link,
}

fn size(path: &std::path::Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len())
}

/// Run the benchmarks and print a Markdown table.
pub fn run(args: &Args) -> Result<()> {
    let want = |p: Part| args.parts.contains(&p);
    if want(Part::Vm) {
        vm_speed::run()?;
    }
    if !(want(Part::Sizes) || want(Part::Push) || want(Part::Kprobe) || want(Part::Link)) {
        return Ok(());
    }
    let built = build::run(&build::Args { board: args.board.clone() })?;
    if want(Part::Sizes) {
        sizes(&built)?;
    }
    if want(Part::Push) {
        push_latency(&built, args.runs)?;
    }
    if want(Part::Kprobe) {
        let mut guest = kprobe_cost::boot(&built)?;
        let r = kprobe_cost::run(&built, &mut guest);
        guest.shutdown();
        r?;
    }
    if want(Part::Link) {
        let mut guest = Guest::boot(&built.board, &built.artifacts)?;
        let r = crate::bench_link::run(&built, &mut guest);
        guest.shutdown();
        r?;
    }
    Ok(())
}

fn sizes(built: &build::Built) -> Result<()> {
    let a = &built.artifacts;
    let rust_vm = paths::workspace().join("target/kmod").join(&built.board.name).join("rust_vm.o");
    println!("| artifact ({}) | bytes |", built.board.name);
    println!("| --- | ---: |");
    println!("| ktap-agent (static, stripped) | {} |", size(&a.agent)?);
    println!("| rust_vm.o (VM object linked into the module) | {} |", size(&rust_vm)?);
    println!("| ktap.ko (debug info stripped) | {} |", size(&a.module)?);
    Ok(())
}

/// Median time from an open link to the first event over `runs` pushes to one booted guest.
fn push_latency(built: &build::Built, runs: usize) -> Result<()> {
    let a = &built.artifacts;
    let guest = Guest::boot(&built.board, a)?;
    let script = paths::workspace().join("samples/first_event.kp");
    let mut firsts = Vec::new();
    for _ in 0..runs {
        let out = Command::new(&built.host_bin)
            .args(["push", "--board", &built.board.name, "--timings", "--duration", "1", "--port"])
            .arg(guest.agent_port())
            .arg("--vmlinux")
            .arg(&a.vmlinux)
            .arg(&script)
            .output()
            .context("running ktap-host push")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("push failed:\n{err}");
        }
        let line = err.lines().find(|l| l.contains("timings:")).context("no timings line")?;
        let first =
            line.rsplit("first event ").next().and_then(|t| t.trim_end_matches(" ms").parse::<f64>().ok());
        firsts.push(first.with_context(|| format!("cannot read the first-event time in `{line}`"))?);
        println!("bench: {line}");
    }
    guest.shutdown();
    firsts.sort_by(f64::total_cmp);
    let median = firsts[firsts.len() / 2];
    println!(
        "\n| push -> first event ({} runs, link at {} baud) | min {:.0} ms | median {:.0} ms | max {:.0} ms |",
        firsts.len(),
        built.board.agent.baud,
        firsts[0],
        median,
        firsts[firsts.len() - 1]
    );
    Ok(())
}
