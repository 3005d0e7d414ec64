//! `ktap-host sim` from the command line: the error paths (a malformed events line names
//! `file:line`, an unknown probe is counted, not fatal), image input, determinism and the VM's
//! loss counters reported as `push` reports them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ktap_host::board::Arch;
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;
use ktap_host::sim::AnyKernel;

const BIN: &str = env!("CARGO_BIN_EXE_ktap-host");
const COUNT: &str = "var reads = {}\nkprobe:vfs_read { reads[execname] += 1 }\ntrace_end { print(reads) }\n";

/// A fresh directory holding `files`.
fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ktap-sim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

fn sim(args: &[&Path]) -> (Output, String, String) {
    let mut c = Command::new(BIN);
    c.arg("sim").env_remove("KTAP_VMLINUX").env_remove("KTAP_BOARD");
    for a in args {
        c.arg(a);
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

#[test]
fn a_malformed_line_is_an_error_naming_file_and_line() {
    let ev = "{\"probe\": \"kprobe:vfs_read\"}\n\n{\"probe\": \"kprobe:vfs_read\", \"pid\": \"x\"}\n";
    let d = dir("malformed", &[("c.kp", COUNT), ("e.jsonl", ev)]);
    let events = d.join("e.jsonl");
    let (o, out, err) = sim(&[&d.join("c.kp"), Path::new("--events"), &events]);
    assert!(!o.status.success());
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("{}:3:", events.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn events_for_probes_the_program_lacks_are_counted_not_fatal() {
    let ev = "{\"probe\": \"kprobe:vfs_read\", \"comm\": \"dd\", \"repeat\": 5}\n\
              {\"probe\": \"kprobe:vfs_write\", \"repeat\": 2}\n{\"probe\": \"sched:sched_switch\"}\n";
    let d = dir("unknown", &[("c.kp", COUNT), ("e.jsonl", ev)]);
    let (o, out, err) = sim(&[&d.join("c.kp"), Path::new("--events"), &d.join("e.jsonl")]);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["dd", "5"]);
    assert!(
        err.contains(
            "ktap: 3 events for probes the program does not have: kprobe:vfs_write (2), trace sched:sched_switch (1)"
        ),
        "{err}"
    );
}

#[test]
fn a_compiled_image_runs_like_its_script_and_output_is_deterministic() {
    let opts = lang::CompileOptions { arch: Arch::Arm, build_id: Vec::new() };
    let c = lang::compile(COUNT, "c.kp", &opts, &AnyKernel).unwrap_or_else(|d| panic!("{d:?}"));
    let ev = "{\"probe\": \"kprobe:vfs_read\", \"comm\": \"cat\", \"repeat\": 2}\n{\"probe\": \"kprobe:vfs_read\", \"comm\": \"sh\"}\n";
    let d = dir("image", &[("c.kp", COUNT), ("e.jsonl", ev)]);
    let img = d.join("c.kimg");
    std::fs::write(&img, &c.image).unwrap();
    std::fs::write(Sidecar::path_for(&img), serde_json::to_string(&c.sidecar).unwrap()).unwrap();
    let events = d.join("e.jsonl");
    let (o, from_image, err) = sim(&[Path::new("--image"), &img, Path::new("--events"), &events]);
    assert!(o.status.success(), "{err}");
    let (_, from_script, _) = sim(&[&d.join("c.kp"), Path::new("--events"), &events]);
    let (_, again, _) = sim(&[&d.join("c.kp"), Path::new("--events"), &events]);
    assert_eq!(from_image, from_script);
    assert_eq!(from_script, again);
    assert_eq!(from_image.split_whitespace().collect::<Vec<_>>(), ["cat", "2", "sh", "1"]);

    std::fs::remove_file(Sidecar::path_for(&img)).unwrap();
    let (o, _, err) = sim(&[Path::new("--image"), &img, Path::new("--events"), &events]);
    assert!(!o.status.success());
    assert!(err.contains("no sidecar"), "{err}");
}

#[test]
fn a_full_table_is_reported_like_push_reports_it() {
    let src = "var t = {}\nkprobe:vfs_read { t[arg0] += 1 }\n";
    let ev: String =
        (0..300).map(|i| format!("{{\"probe\": \"kprobe:vfs_read\", \"args\": [{i}]}}\n")).collect();
    let d = dir("full", &[("t.kp", src), ("e.jsonl", &ev)]);
    let (o, _, err) = sim(&[&d.join("t.kp"), Path::new("--events"), &d.join("e.jsonl")]);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("ktap: 300 hits; 44 table inserts refused: table full (table_full)"), "{err}");
}

#[test]
fn a_script_error_is_reported_with_its_position() {
    let d = dir("bad", &[("b.kp", "kprobe:vfs_read { x += 1 }\n"), ("e.jsonl", "")]);
    let (o, _, err) = sim(&[&d.join("b.kp"), Path::new("--events"), &d.join("e.jsonl")]);
    assert!(!o.status.success());
    assert!(err.contains("b.kp:1:"), "{err}");
}
