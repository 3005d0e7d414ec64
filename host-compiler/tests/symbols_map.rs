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
