//! `cargo xtask fuzz`: seed the corpora from the assembly the tests already hold (every compiler
//! listing in `host-compiler/tests/lang/ok/*.disasm`, every case of `ktap-module/vm/tests/reject/`),
//! then run each cargo-fuzz target in `fuzz/` for the given time and print executions and findings.
//!
//! cargo-fuzz needs nightly flags (`-Zsanitizer=address`); the pinned stable toolchain is used with
//! `RUSTC_BOOTSTRAP=1`, so no second toolchain is needed. `cargo install cargo-fuzz` provides the
//! subcommand.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ktap_protocol::asm::assemble;

use crate::paths;

/// The targets, in the order the kernel meets untrusted bytes.
const TARGETS: [&str; 3] = ["image_decode", "verify", "run"];

/// Run the fuzz targets.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (image_decode, verify, run)
    #[arg(long)]
    target: Option<String>,
}

/// One target's result.
struct Outcome {
    runs: u64,
    per_sec: u64,
    corpus_added: u64,
    finding: Option<String>,
}

/// Seed images: `(name, bytes)`.
fn seeds(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut add = |name: String, src: &str| -> anyhow::Result<()> {
        let a = assemble(src).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        out.push((name, a.image.build()));
        Ok(())
    };
    let dirs = [("host-compiler/tests/lang/ok", "disasm"), ("ktap-module/vm/tests/reject", "kasm")];
    for (dir, ext) in dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .with_context(|| format!("reading {dir}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            let stem = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            // reject files hold several cases, each starting at `# expect:`
            let parts: Vec<&str> = text.split("\n# expect:").collect();
            for (i, part) in parts.iter().enumerate() {
                add(format!("{stem}-{i}"), &format!("#{part}"))?;
            }
        }
    }
    Ok(out)
}

fn stat(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0)
}

fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let out = Command::new("cargo")
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target, "-O", "--"])
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .output()
        .context("running cargo fuzz")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let finding =
        err.lines().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_string()));
    if !out.status.success() && finding.is_none() {
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("cargo fuzz run {target} failed:\n{}", tail.join("\n"));
    }
    Ok(Outcome {
        runs: stat(&err, "stat::number_of_executed_units:"),
        per_sec: stat(&err, "stat::average_exec_per_sec:"),
        corpus_added: stat(&err, "stat::new_units_added:"),
        finding,
    })
}

/// Seed, run every target, summarise; fails if any target found a crash.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = paths::workspace();
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !have.is_ok_and(|s| s.success()) {
        bail!("cargo-fuzz is not installed: run `cargo install cargo-fuzz`");
    }
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target `{t}`; the targets are {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let seeds = seeds(&root)?;
    let mut findings = Vec::new();
    for t in targets {
        let dir = root.join("fuzz/corpus").join(t);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        eprintln!("fuzz: {t} for {} s ({} seeds)", args.seconds, seeds.len());
        let o = run_target(&root, t, args.seconds)?;
        let found = o.finding.clone().unwrap_or_else(|| "none".into());
        println!(
            "{t}: {} executions ({}/s), {} new corpus units, findings: {found}",
            o.runs, o.per_sec, o.corpus_added
        );
        if let Some(f) = o.finding {
            findings.push(format!("{t}: {f}"));
        }
    }
    if !findings.is_empty() {
        bail!("the fuzzers found crashes:\n{}", findings.join("\n"));
    }
    Ok(())
}
