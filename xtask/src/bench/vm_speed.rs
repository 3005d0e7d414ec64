//! ns per probe hit on the host: runs the criterion benchmark of `ktap-vm-bench` (our VM, rbpf and
//! Lua 5.4 on the five canonical programs) and prints the medians and our ratios to each peer.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

/// Workloads and engines as the benchmark names them (`<workload>/<engine>`).
const WORKLOADS: [&str; 5] = ["count", "execname_count", "log2_hist", "loop10", "printf3"];
const ENGINES: [&str; 3] = ["ktap", "rbpf", "lua"];

fn criterion_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| paths::workspace().join("target"), PathBuf::from);
    target.join("criterion")
}

/// The median of one benchmark's last run, in ns; `None` if it did not run (e.g. a workload our VM
/// cannot express yet).
fn median_ns(workload: &str, engine: &str) -> Result<Option<f64>> {
    let path = criterion_dir().join(workload).join(engine).join("new/estimates.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let ns =
        v["median"]["point_estimate"].as_f64().with_context(|| format!("no median in {}", path.display()))?;
    Ok(Some(ns))
}

/// Run the benchmark and print a Markdown table.
pub fn run() -> Result<()> {
    // stale results of a workload that no longer runs must not be reported
    let _ = std::fs::remove_dir_all(criterion_dir());
    println!("bench: cargo bench -p ktap-vm-bench (criterion, about a minute)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(paths::workspace())
        .args(["bench", "-p", "ktap-vm-bench", "--bench", "hits", "--quiet"])
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench -p ktap-vm-bench failed ({status})");
    }
    println!("\n| program | ktap ns/hit | rbpf ns/hit | Lua 5.4 ns/hit | ktap / rbpf | ktap / Lua |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for w in WORKLOADS {
        let [ours, rbpf, lua] = ENGINES.map(|e| median_ns(w, e));
        let (ours, rbpf, lua) = (ours?, rbpf?, lua?);
        let cell = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:.1}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "n/a".to_owned(),
        };
        println!(
            "| {w} | {} | {} | {} | {} | {} |",
            cell(ours),
            cell(rbpf),
            cell(lua),
            ratio(ours, rbpf),
            ratio(ours, lua)
        );
    }
    Ok(())
}
