//! `ktap-host disasm IMAGE | ktap-host asm - -o IMAGE2` gives the same bytes; assembly errors name
//! the file and line and exit 1.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ktap_host::board::Arch;
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;

const BIN: &str = env!("CARGO_BIN_EXE_ktap-host");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ktap-asm-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn disasm_then_asm_gives_the_same_image() {
    let src = "var t = 0\ntrace_begin { t = 3 }\n\
               trace_end { printf(\"%s %d\\n\", \"a;b\", t) }\n";
    let opts = lang::CompileOptions { arch: Arch::Arm, build_id: vec![1, 2, 3] };
    let c = lang::compile(src, "rt.kp", &opts, &lang::NoKernel).unwrap_or_else(|d| panic!("{d:?}"));
    let d = dir("rt");
    let img = d.join("rt.kimg");
    std::fs::write(&img, &c.image).unwrap();
    std::fs::write(Sidecar::path_for(&img), serde_json::to_string(&c.sidecar).unwrap()).unwrap();
    let listing = Command::new(BIN).arg("disasm").arg(&img).output().unwrap();
    assert!(listing.status.success());
    let back = d.join("back.kimg");
    let mut asm = Command::new(BIN)
        .args(["asm", "-", "-o"])
        .arg(&back)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    asm.stdin.take().unwrap().write_all(&listing.stdout).unwrap();
    let o = asm.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), c.image);
}

#[test]
fn an_assembly_error_names_the_line() {
    let d = dir("err");
    let src = d.join("bad.kasm");
    std::fs::write(&src, ".func main int=1\n  movi r0, 1\n  jmp nowhere\n").unwrap();
    let o = Command::new(BIN).arg("asm").arg(&src).arg("-o").arg(d.join("x")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.kasm:3: no label `nowhere`"), "{err}");
    assert!(!d.join("x").exists());
}

/// A reader that closed its end (`ktap-host disasm IMAGE | head`) ends the listing quietly with
/// exit 0, like any filter: no panic message about stdout.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let src = "trace_begin { printf(\"%d\\n\", 1) }\n";
    let opts = lang::CompileOptions { arch: Arch::Arm, build_id: vec![1, 2, 3] };
    let c = lang::compile(src, "pipe.kp", &opts, &lang::NoKernel).unwrap_or_else(|d| panic!("{d:?}"));
    let d = dir("pipe");
    let img = d.join("pipe.kimg");
    std::fs::write(&img, &c.image).unwrap();
    // the read end is closed before the child starts, so its first write fails with EPIPE
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(BIN).arg("disasm").arg(&img).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
