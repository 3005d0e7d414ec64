//! `ktap-host verify`: exit status and what it prints for a good image, a verifier rejection (with the
//! byte offset and the function named from the sidecar) and a structural rejection.

use std::path::PathBuf;
use std::process::{Command, Output};

use ktap_host::board::Arch;
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;
use ktap_protocol::image::Image;

const BIN: &str = env!("CARGO_BIN_EXE_ktap-host");
const SRC: &str = "var n = 0\ntrace_begin { n += 1 }\ntrace_end { printf(\"%d\\n\", n) }\n";

/// Compile `SRC`, let `edit` change the image bytes, write image + sidecar into a fresh directory.
fn image(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let opts = lang::CompileOptions { arch: Arch::Arm, build_id: Vec::new() };
    let c = lang::compile(SRC, "v.kp", &opts, &lang::NoKernel).unwrap_or_else(|d| panic!("{d:?}"));
    let mut bytes = c.image;
    edit(&mut bytes);
    let dir = std::env::temp_dir().join(format!("ktap-verify-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v.kimg");
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(Sidecar::path_for(&path), serde_json::to_string(&c.sidecar).unwrap()).unwrap();
    path
}

fn verify(path: &PathBuf) -> (Output, String, String) {
    let o = Command::new(BIN).arg("verify").arg(path).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

#[test]
fn a_compiled_image_verifies() {
    let (o, out, err) = verify(&image("ok", |_| {}));
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("ok: 2 functions, 2 probes, 0 tables, 1 globals"), "{out}");
}

#[test]
fn a_verifier_rejection_names_offset_and_function() {
    let mut at = 0;
    let path = image("bad-op", |b| {
        at = Image::parse(b).unwrap().code_offset;
        b[at] = 0xee;
    });
    let (o, out, err) = verify(&path);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("unknown opcode 0xee at byte offset {at}")), "{err}");
    assert!(err.contains("code 0x201"), "{err}");
    assert!(err.contains("in fn0 `trace_begin`, code offset 0x0000"), "{err}");
}

#[test]
fn a_structural_rejection_is_reported_too() {
    let (o, _, err) = verify(&image("magic", |b| b[0] = b'X'));
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("rejected (code 0x102): bad magic at byte offset 0"), "{err}");
}
