//! `cargo xtask fuzz`: seed the corpora from the assembly the tests already hold (every compiler
//! listing in `host-compiler/tests/lang/ok/*.disasm`, every case of `ktap-module/vm/tests/reject/`;
//! the link's decoders get every kind of wire message, framed or not), then run each cargo-fuzz
//! target in `fuzz/` for the given time and print executions and findings.
//!
//! cargo-fuzz needs nightly flags (`-Zsanitizer=address`); the pinned stable toolchain is used with
//! `RUSTC_BOOTSTRAP=1`, so no second toolchain is needed. `cargo install cargo-fuzz` provides the
//! subcommand.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ktap_protocol::asm::assemble;

use crate::paths;

/// The targets, in the order the board meets untrusted bytes: link frames, messages, packed file
/// chunks (deploy), then images; then the script parser (the host's own untrusted input).
const TARGETS: [&str; 7] =
    ["frame_decode", "wire_decode", "unpack", "image_decode", "verify", "run", "parse"];

/// Run the fuzz targets.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (frame_decode, wire_decode, unpack, image_decode, verify, run, parse)
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
        if out.is_empty() {
            // the first also as an image compiled from a System.map: the optional SYMBOLS section
            let mut b = a.image.clone();
            b.symbols = Some(ktap_protocol::image::build::OwnedSymbols {
                base_name: b"_stext".to_vec(),
                base_addr: 0xc000_8240,
                entries: vec![(0xc000_8240, b"_stext".to_vec()), (0xc05c_b724, b"vfs_read".to_vec())],
            });
            out.push((format!("{name}-symbols"), b.build()));
        }
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

/// One of every wire message, as frame payloads or (`framed`) as a frame stream with a split byte
/// first (what `frame_decode` reads).
fn link_seeds(framed: bool) -> Vec<(String, Vec<u8>)> {
    use ktap_protocol::frame::{MAX_PAYLOAD, encode_vec};
    use ktap_protocol::wire::{self, examples};
    let mut payloads = Vec::new();
    let mut buf = [0u8; MAX_PAYLOAD];
    for m in examples::host() {
        payloads.push(wire::encode(&m, &mut buf).unwrap_or_default().to_vec());
    }
    for m in examples::agent() {
        payloads.push(wire::encode(&m, &mut buf).unwrap_or_default().to_vec());
    }
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let bytes = if framed {
                let mut s = vec![16u8];
                s.extend(encode_vec(&p).unwrap_or_default());
                s
            } else {
                p
            };
            (format!("msg-{i}"), bytes)
        })
        .collect()
}

/// Packed streams for `unpack` (split byte, limit byte, then the packed bytes): the test scripts and
/// a repetitive binary, packed as `deploy` packs files.
fn unpack_seeds(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut add = |name: String, data: &[u8]| {
        let mut s = vec![63u8, 255u8];
        s.extend(ktap_protocol::pack::pack(data));
        out.push((name, s));
    };
    add("zeros".into(), &[0u8; 40_000]);
    let ramp: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
    add("ramp".into(), &ramp);
    for (name, bytes) in script_seeds(root)?.into_iter().take(8) {
        add(name, &bytes);
    }
    Ok(out)
}

/// Seed scripts for the parser: every `.kp` of the samples and the compiler's tests.
fn script_seeds(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for dir in ["samples", "tests/scripts", "host-compiler/tests/lang/ok", "host-compiler/tests/lang/err"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .with_context(|| format!("reading {dir}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "kp"))
            .collect();
        files.sort();
        for f in files {
            let stem = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            out.push((format!("{}-{stem}", dir.replace('/', "_")), std::fs::read(&f)?));
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
    let needs_images = targets.iter().any(|t| matches!(*t, "image_decode" | "verify" | "run"));
    let image_seeds = if needs_images { seeds(&root)? } else { Vec::new() };
    let script_seeds = script_seeds(&root)?;
    let mut findings = Vec::new();
    for t in targets {
        let dir = root.join("fuzz/corpus").join(t);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let seeds = match t {
            "frame_decode" => link_seeds(true),
            "wire_decode" => link_seeds(false),
            "parse" => script_seeds.clone(),
            "unpack" => unpack_seeds(&root)?,
            _ => image_seeds.clone(),
        };
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
