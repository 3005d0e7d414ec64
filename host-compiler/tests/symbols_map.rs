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

/// A System.map as `nm -n` writes it: ARM lists `_stext` in kallsyms but not `_text`.
const MAP: &str = "\
c0008000 T _text
c0008240 T _stext
c0301a80 t do_thing
c05cb724 T vfs_read
c0800000 T _etext
c1200000 D __tracepoint_sched_switch
";

fn compile_with(map: &SymbolMap, src: &str) -> Vec<u8> {
    let opts = ktap_host::lang::CompileOptions { arch: ktap_host::board::Arch::Arm, build_id: Vec::new() };
    match ktap_host::lang::compile(src, "s.kp", &opts, map) {
        Ok(c) => c.image,
        Err(d) => panic!("{d:?}"),
    }
}

fn symbols_of(image: &[u8]) -> (String, u64, Vec<(String, u64)>) {
    let img = ktap_protocol::image::Image::parse(image).unwrap();
    assert!(img.build_id.is_empty(), "a map has no build-id");
    let syms = img.symbols.expect("a SYMBOLS section");
    let entries = syms.iter().map(|s| (String::from_utf8_lossy(s.name).into_owned(), s.addr)).collect();
    (String::from_utf8_lossy(syms.base_name).into_owned(), syms.base_addr, entries)
}

/// An image compiled from a map lists the base symbol first, then each probed function once, with
/// the addresses the probes use: the map's own, or moved by the rebase to the board's base.
#[test]
fn images_from_a_map_list_the_base_and_every_probed_symbol() {
    let mut m = SymbolMap::parse(Path::new("System.map"), MAP).unwrap();
    let src = "var n = 0\nkprobe:vfs_read { n += 1 }\nkretprobe:vfs_read { n += 1 }\nkprobe:do_thing+0x8 { n += 1 }\n\
               trace sched:sched_switch { n += 1 }\ntrace_end { print(n) }\n";
    let (base, at, entries) = symbols_of(&compile_with(&m, src));
    assert_eq!(
        (base.as_str(), at),
        ("_stext", 0xc000_8240),
        "unrebased: `_stext`, in kallsyms on every arch"
    );
    let want = |d: u64| {
        vec![
            ("_stext".to_owned(), 0xc000_8240 + d),
            ("vfs_read".into(), 0xc05c_b724 + d),
            ("do_thing".into(), 0xc030_1a80 + d),
        ]
    };
    assert_eq!(entries, want(0));

    // the board says `_text` is 1 MiB higher (KASLR): every address moves, the base is named as reported
    m.rebase("_text", 0xc010_8000).unwrap();
    assert_eq!(m.kprobe_addr("vfs_read").unwrap(), 0xc06c_b724);
    let (base, at, entries) = symbols_of(&compile_with(&m, src));
    assert_eq!((base.as_str(), at), ("_text", 0xc010_8000));
    let mut moved = want(0x10_0000);
    moved[0] = ("_text".into(), 0xc010_8000);
    assert_eq!(entries, moved);

    // tracepoints only: still checked, by the base alone
    let (_, _, entries) = symbols_of(&compile_with(&m, "var n = 0\ntrace sched:sched_switch { n += 1 }\n"));
    assert_eq!(entries, vec![("_text".to_owned(), 0xc010_8000)]);

    let e = m.rebase("_sinittext", 0xc000_0000).unwrap_err();
    assert!(e.contains("`_sinittext`") && e.contains("System.map"), "{e}");
}

#[test]
fn powerpc64_kprobes_need_the_vmlinux() {
    let mut m = SymbolMap::parse(Path::new("System.map"), MAP).unwrap();
    m.set_arch(ktap_host::board::Arch::Powerpc64);
    let e = m.kprobe_addr("vfs_read").unwrap_err();
    assert!(e.contains("local entry point") && e.contains("--vmlinux"), "{e}");
    m.tracepoint("sched", "sched_switch").unwrap();
}

#[test]
fn stacks_symbolize_from_the_map_below_etext_only() {
    let mut m = SymbolMap::parse(Path::new("System.map"), MAP).unwrap();
    m.rebase("_stext", 0xc000_8240 + 0x1000).unwrap();
    let sym = m.symbolizer();
    assert_eq!(sym(0xc05c_b724 + 0x1000 + 0x10).as_deref(), Some("vfs_read+0x10"));
    assert_eq!(sym(0xc030_1a80 + 0x1000).as_deref(), Some("do_thing+0x0"));
    assert_eq!(sym(0xc080_0000 + 0x1000), None, "past _etext");
    assert_eq!(sym(0x1000), None, "below every function");
}

/// The agent's refusals of a map image, rendered with the image's own symbol list.
#[test]
fn refusals_name_the_symbol_and_both_offsets() {
    use ktap_host::session::{ImageContext, rejection};
    use ktap_protocol::wire::codes;
    let m = SymbolMap::parse(Path::new("System.map"), MAP).unwrap();
    let image = compile_with(&m, "var n = 0\nkprobe:vfs_read { n += 1 }\n");
    let img = ktap_protocol::image::Image::parse(&image).unwrap();
    let entries: Vec<_> = img.symbols.unwrap().iter().collect();
    let ctx = ImageContext { image: Some(&image), sidecar: None };
    let r = |code, entry: usize, detail| rejection(code, entries[entry].offset as u32, detail, "armv7l", ctx);
    assert_eq!(
        r(codes::SYMBOL_MISMATCH, 1, 0x5c_3400),
        "System.map does not match the running kernel: `vfs_read` at _stext+0x5c34e4 in the map, _stext+0x5c3400 on the board"
    );
    let absent = r(codes::SYMBOL_MISMATCH, 1, codes::SYMBOL_ABSENT);
    assert!(
        absent.ends_with(
            "`vfs_read` at _stext+0x5c34e4 in the map is not in the running kernel's /proc/kallsyms"
        ),
        "{absent}"
    );
    let base = r(codes::SYMBOL_MISMATCH, 0, 0x20_0000);
    assert!(base.contains("`_stext` is 0xc0008240 in the map, the board's is 0xc0208240"), "{base}");
    assert!(base.contains("KASLR"), "{base}");
    let hidden = rejection(codes::NO_KALLSYMS, 0, 0, "armv7l", ctx);
    assert!(hidden.contains("/proc/kallsyms") && hidden.contains("kptr_restrict"), "{hidden}");
    let denied = rejection(codes::NO_KALLSYMS, 0, 13, "armv7l", ctx);
    assert!(denied.contains("EACCES"), "{denied}");
}
