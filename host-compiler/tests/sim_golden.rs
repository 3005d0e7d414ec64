//! `ktap-host sim` golden outputs: every script in `samples/` and `tests/scripts/` with a
//! `<name>.events.jsonl` beside it must print exactly `<name>.sim.out`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p ktap-host --test sim_golden` rewrites the expected files; review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ktap-host");

fn scripts_with_events() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in ["samples", "tests/scripts"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "kp") && p.with_extension("events.jsonl").exists() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_sample_with_events_prints_its_golden_output() {
    let scripts = scripts_with_events();
    let names: Vec<String> =
        scripts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
    for want in ["demo.kp", "count_reads.kp"] {
        assert!(names.iter().any(|n| n == want), "{want} has no events file: {names:?}");
    }
    let samples = scripts.iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("samples"))).count();
    assert!(samples >= 25, "only {samples} samples have events and a golden output");
    let mut failures = Vec::new();
    for script in &scripts {
        let o = Command::new(BIN)
            .arg("sim")
            .arg(script)
            .arg("--events")
            .arg(script.with_extension("events.jsonl"))
            .env_remove("KTAP_VMLINUX")
            .env_remove("KTAP_BOARD")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{}: {stderr}", script.display());
        let expected = script.with_extension("sim.out");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected, &stdout).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_default();
        if want != stdout {
            failures.push(format!(
                "{} differs (UPDATE_GOLDEN=1 to accept):\n--- expected\n{want}\n+++ actual\n{stdout}",
                expected.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_thousand_reads_by_dd_count_a_thousand() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts");
    let out = std::fs::read_to_string(root.join("count_reads.sim.out")).unwrap();
    let dd = out.lines().find(|l| l.starts_with("dd ")).unwrap_or_default();
    assert_eq!(dd.split_whitespace().collect::<Vec<_>>(), ["dd", "1000"], "{out}");
}
