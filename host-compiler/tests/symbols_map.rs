//! `System.map` / `/proc/kallsyms` text: parsing, lookups and refusals.

use std::path::Path;

use ktap_host::lang::Resolver;
use ktap_host::vmlinux::symmap::SymbolMap;

const KALLSYMS: &str = "\
c0008000 T _text
c0301a80 t do_thing
c05cb724 T vfs_read
c1200000 D __tracepoint_sched_switch
bf000000 t ktap_open\t[ktap]
";

#[test]
fn kallsyms_text_resolves_functions_and_tracepoints() {
    let m = SymbolMap::parse(Path::new("kallsyms"), KALLSYMS).unwrap();
    assert_eq!(m.kprobe_addr("vfs_read").unwrap(), 0xc05c_b724);
    let e = m.kprobe_addr("vfs_reed").unwrap_err();
    assert!(e.contains("did you mean `vfs_read`"), "{e}");
    // module symbols are not kernel functions to kprobe by name here
    assert!(m.kprobe_addr("ktap_open").is_err());
    assert_eq!(m.named("ktap_open")[0].module.as_deref(), Some("ktap"));
    m.tracepoint("sched", "sched_switch").unwrap();
    assert!(m.tracepoint("sched", "sched_swtch").unwrap_err().contains("did you mean `sched_switch`"));
    let (s, off) = m.at(0xc05c_b730).unwrap();
    assert_eq!((s.name.as_str(), off), ("vfs_read", 0xc));
    let e = m.shape(&ktap_host::ktypes::TypeRef(0)).unwrap_err();
    assert!(e.contains("needs a vmlinux with DWARF"), "{e}");
}

#[test]
fn bad_maps_are_refused_with_the_line() {
    let e = SymbolMap::parse(Path::new("m"), "c0008000 T _text\nnot-hex T x\n").unwrap_err();
    assert!(e.starts_with("m:2:") && e.contains("`not-hex` is not a hex address"), "{e}");
    let e = SymbolMap::parse(Path::new("m"), "c0008000 _text\n").unwrap_err();
    assert!(e.contains("m:1") && e.contains("expected `ADDRESS TYPE NAME`"), "{e}");
    let e = SymbolMap::parse(Path::new("k"), "00000000 T _text\n00000000 T vfs_read\n").unwrap_err();
    assert!(e.contains("only zero addresses"), "{e}");
    assert!(SymbolMap::parse(Path::new("e"), "").unwrap_err().contains("is empty"));
}

/// `check` and `compile` with only a System.map: kprobes and tracepoints resolve from it; reading
/// an argument by name is an error at the script location that says a vmlinux with DWARF is needed.
#[test]
fn check_and_compile_work_from_a_system_map() {
    let bin = env!("CARGO_BIN_EXE_ktap-host");
    let boards = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards");
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("System.map");
    std::fs::write(&map, KALLSYMS).unwrap();
    let run = |script: &str, cmd: &[&str]| {
        let path = dir.path().join("s.kp");
        std::fs::write(&path, script).unwrap();
        std::process::Command::new(bin)
            // an exported vmlinux (as `cargo xtask test` sets) does not get in the way of the map
            .env("KTAP_VMLINUX", "/nonexistent/vmlinux")
            .args(cmd)
            .args(["--board", "qemu-armv7", "--boards-dir", boards, "--system-map"])
            .arg(&map)
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = "var n = 0\nvar s = 0\nkprobe:vfs_read { n += 1 }\ntrace sched:sched_switch { s += 1 }\ntrace_end { print(n)\n print(s) }\n";
    let o = run(ok, &["check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = dir.path().join("s.img");
    let o = run(ok, &["compile", "-o", image.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&image).unwrap().len() > 0);

    let o = run("kprobe:vfs_read {\n    print(arg.count)\n}\n", &["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("needs a vmlinux with DWARF"), "{err}");
    assert!(err.contains("s.kp:2:"), "the script location: {err}");
    let o = run("var n = 0\nkprobe:vfs_reed { n += 1 }\n", &["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did you mean `vfs_read`") && err.contains("s.kp:2:"), "{err}");
}
