//! Kernel types, arguments and tracepoints from the real Debian armmp `-dbg` vmlinux, checked
//! against `pahole` (dwarves) run on the same file, and against the ARM calling convention.

mod symbols;

use std::sync::OnceLock;

use ktap_host::ktypes::{ParamLoc, ParamsOf, Shape, TypeRef};
use ktap_host::lang::Resolver;
use ktap_host::vmlinux::{Layout, Vmlinux};
use symbols::{armmp_vmlinux, have, missing, pahole};

/// The vmlinux, opened once per test process (the DWARF index is built or loaded once).
fn kernel() -> Option<&'static Vmlinux> {
    static V: OnceLock<Option<Vmlinux>> = OnceLock::new();
    V.get_or_init(|| {
        let Some(path) = armmp_vmlinux() else {
            missing("no armmp -dbg vmlinux in ~/.cache/ktap-rs/kernels (or KTAP_VMLINUX)");
            return None;
        };
        let v = Vmlinux::open(&path).unwrap_or_else(|e| panic!("{e}"));
        v.prepare_types().unwrap_or_else(|e| panic!("{e}"));
        Some(v)
    })
    .as_ref()
}

fn with_pahole() -> Option<&'static Vmlinux> {
    if !have("pahole") {
        missing("pahole is not installed (Debian package dwarves)");
        return None;
    }
    kernel()
}

/// A member flattened out of a layout: name, offset, size, bitfield (shift, width).
type Flat = (String, u64, u64, Option<(u8, u8)>);

/// Every named member of a layout at any depth.
fn flatten(l: &Layout, out: &mut Vec<Flat>) {
    for m in &l.members {
        match &m.nested {
            Some(n) => flatten(n, out),
            None => out.push((m.name.clone(), m.offset, m.size, m.bits)),
        }
    }
}

fn compare_with_pahole(v: &Vmlinux, name: &str) {
    let p = pahole(v.path(), name);
    let ty = v.type_named(&format!("struct {name}")).unwrap();
    let layout = v.layout(ty).unwrap();
    assert_eq!(layout.size, p.size, "size of struct {name}");
    let mut ours = Vec::new();
    flatten(&layout, &mut ours);
    let mut checked = 0;
    for (m, off, size, bits) in &ours {
        let Some(pm) = p.members.get(m) else { panic!("pahole has no member `{m}` of struct {name}") };
        match (bits, pm.bit) {
            (None, None) => {
                assert_eq!(
                    (*off, *size),
                    (pm.offset, pm.size),
                    "struct {name}.{m}: (offset, size) vs pahole"
                );
            }
            (Some((shift, width)), Some(bit)) => {
                // pahole: byte offset of the field's unit and its bit offset (little-endian: from
                // the low bit); ours: the unit's offset and the shift after loading it
                assert_eq!(
                    off * 8 + u64::from(*shift),
                    pm.offset * 8 + bit,
                    "struct {name}.{m}: bit position"
                );
                assert!(*width > 0);
            }
            _ => panic!("struct {name}.{m}: bitfield in one layout only ({bits:?} vs {pm:?})"),
        }
        checked += 1;
    }
    // pahole also expands members whose struct is defined in place (`} headers;`), so it may list more
    assert!(
        checked > 0 && checked <= p.members.len(),
        "struct {name}: {checked} members vs pahole's {}",
        p.members.len()
    );
    eprintln!("struct {name}: {checked} members and size {} agree with pahole", p.size);
}

#[test]
fn struct_layouts_match_pahole() {
    let Some(v) = with_pahole() else { return };
    for s in ["sk_buff", "task_struct", "file", "path", "dentry", "qstr", "trace_event_raw_sched_switch"] {
        compare_with_pahole(v, s);
    }
}

#[test]
fn task_struct_comm_is_where_pahole_says() {
    let Some(v) = with_pahole() else { return };
    let p = pahole(v.path(), "task_struct");
    let task = v.type_named("struct task_struct").unwrap();
    let comm = v.member(&task, "comm").unwrap();
    assert_eq!(comm.offset, p.members["comm"].offset);
    match v.shape(&comm.ty).unwrap() {
        Shape::Array { len: Some(16), elem_size: 1, .. } => {}
        s => panic!("comm is {s:?}"),
    }
    assert_eq!(v.type_name(&comm.ty), "char[16]");
    let e = v.member(&task, "comn").unwrap_err();
    assert!(e.contains("no member `comn`") && e.contains("did you mean `comm`"), "{e}");
}

/// `file->f_path.dentry->d_name.name`, each step against pahole's layout of that step's struct.
#[test]
fn struct_file_chain_matches_pahole() {
    let Some(v) = with_pahole() else { return };
    let mut ty = v.type_named("struct file").unwrap();
    for (s, m, through_ptr) in [
        ("file", "f_path", false),
        ("path", "dentry", true),
        ("dentry", "d_name", false),
        ("qstr", "name", true),
    ] {
        let got = v.member(&ty, m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.offset, pahole(v.path(), s).members[m].offset, "struct {s}.{m}");
        ty = got.ty;
        if through_ptr {
            match v.shape(&ty).unwrap() {
                Shape::Ptr { to } => ty = to,
                other => panic!("{s}.{m} is {other:?}, not a pointer"),
            }
        }
    }
    // `name` is `const unsigned char *`: the chain ends at a 1-byte integer
    assert_eq!(v.shape(&ty).unwrap(), Shape::Int { size: 1, signed: false });
    // a member through a pointer without `->` is explained
    let file = v.type_named("struct file").unwrap();
    let inode_ptr = v.member(&file, "f_inode").unwrap().ty;
    let e = v.member(&inode_ptr, "i_mode").unwrap_err();
    assert!(e.contains("is a pointer"), "{e}");
}

/// Each parameter of these functions is a pointer or an integer no wider than a register, and
/// there are at most four: AAPCS passes parameter i in r_i, the probe's `arg{i}`.
#[test]
fn argument_locations_follow_aapcs() {
    let Some(v) = kernel() else { return };
    for (f, names) in [
        ("do_sys_openat2", &["dfd", "filename", "how"][..]),
        ("vfs_read", &["file", "buf", "count", "pos"][..]),
        ("tcp_sendmsg", &["sk", "msg", "size"][..]),
    ] {
        let params = v.params(ParamsOf::Function(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let got: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, names, "{f} parameter names");
        for (i, p) in params.iter().enumerate() {
            let word = matches!(v.shape(&p.ty).unwrap(), Shape::Ptr { .. } | Shape::Int { size: 1..=4, .. });
            assert!(word, "{f}.{}: {}", p.name, v.type_name(&p.ty));
            assert_eq!(p.loc, ParamLoc::Arg(i as u8), "{f}.{} ({})", p.name, v.type_name(&p.ty));
        }
    }
    let open = v.params(ParamsOf::Function("do_sys_openat2")).unwrap();
    assert_eq!(v.type_name(&open[1].ty), "const char *");
    assert_eq!(v.type_name(&open[2].ty), "struct open_how *");
}

#[test]
fn tracepoint_arguments_come_from_traceiter() {
    let Some(v) = kernel() else { return };
    let p = v.params(ParamsOf::Tracepoint { subsys: "sched", event: "sched_switch" }).unwrap();
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["preempt", "prev", "next", "prev_state"]);
    let locs: Vec<ParamLoc> = p.iter().map(|p| p.loc).collect();
    assert_eq!(locs, [ParamLoc::Arg(0), ParamLoc::Arg(1), ParamLoc::Arg(2), ParamLoc::Arg(3)]);
    assert_eq!(v.type_name(&p[1].ty), "struct task_struct *");
    let t = v.tracepoint_info("sched", "sched_switch").unwrap();
    let rec = t.record.expect("trace_event_raw_sched_switch");
    assert!(rec.members.iter().any(|m| m.name == "prev_comm"));
}

#[test]
fn enum_values_have_names() {
    let Some(v) = kernel() else { return };
    let pid_type = v.type_named("enum pid_type").unwrap();
    assert_eq!(v.enum_name(&pid_type, 0).as_deref(), Some("PIDTYPE_PID"));
    assert!(matches!(v.shape(&pid_type).unwrap(), Shape::Enum { .. }));
    assert_eq!(v.enum_name(&pid_type, 999), None);
}

#[test]
fn missing_and_inlined_functions_name_alternatives() {
    let Some(v) = kernel() else { return };
    let e = v.params(ParamsOf::Function("vfs_reed")).unwrap_err();
    assert!(e.contains("did you mean `vfs_read`"), "{e}");
    // a gcc clone whose original has no symbol of its own: the error offers the clone
    let syms = v.all_symbols().unwrap();
    let clone = syms
        .iter()
        .filter(|s| {
            s.kind == "func" && [".isra.", ".constprop.", ".part."].iter().any(|c| s.name.contains(c))
        })
        .find(|s| {
            let base = s.name.split('.').next().unwrap();
            v.function(base).is_err()
        })
        .expect("some gcc clone without an original symbol");
    let base = clone.name.split('.').next().unwrap();
    let e = v.params(ParamsOf::Function(base)).unwrap_err();
    assert!(e.contains(&format!("`{base}.")), "{e}");
    // the clone itself has parameters (named from its abstract origin)
    let f = v.function_info(&clone.name).unwrap();
    assert_eq!(f.clone_of.as_deref(), Some(base));
    // kmalloc is `static __always_inline` in <linux/slab.h>: never out of line
    let e = v.params(ParamsOf::Function("kmalloc")).unwrap_err();
    assert!(e.contains("inlined into its callers"), "{e}");
    let e = v.member(&TypeRef(u64::MAX), "x").unwrap_err();
    assert!(e.contains("not a struct"), "{e}");
}

#[test]
fn symbols_cli_prints_json() {
    let Some(v) = kernel() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktap-host"))
        .args(["symbols", "--vmlinux"])
        .arg(v.path())
        .args(["--json", "func", "vfs_read"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["params"][0]["name"], "file");
    assert_eq!(j["params"][0]["type"], "struct file *");
    assert_eq!(j["params"][0]["location"], "arg0");
    assert_eq!(j["params"][0]["register"], "r0");
    let addr = u64::from_str_radix(j["address"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(addr, v.function("vfs_read").unwrap());
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_ktap-host"))
        .args(["symbols", "--vmlinux"])
        .arg(v.path())
        .args(["type", "struct qstr"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("struct qstr {") && text.contains("/* size: 16 */"), "{text}");
    // every subcommand has --json
    let json = |query: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktap-host"))
            .args(["symbols", "--vmlinux"])
            .arg(v.path())
            .arg("--json")
            .args(query)
            .output()
            .unwrap();
        assert!(out.status.success(), "{query:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{query:?}: {e}"))
    };
    let t = json(&["type", "struct qstr"]);
    assert_eq!((t["name"].as_str(), t["size"].as_u64()), (Some("qstr"), Some(16)), "{t}");
    let s = json(&["sym", "vfs_read"]);
    assert!(s.to_string().contains("vfs_read"), "{s}");
    let tp = json(&["tracepoint", "sched:sched_switch"]);
    assert!(
        tp.to_string().contains("prev") && tp.to_string().contains("trace_event_raw_sched_switch"),
        "{tp}"
    );
}

/// The index cache only saves time: a cold build, a cache hit and a rebuild after the cache file
/// is corrupted all answer the same.
#[test]
fn cache_hits_and_misses_give_the_same_answers() {
    let Some(v) = kernel() else { return };
    let dir = tempfile::tempdir().unwrap();
    let answers = |v: &Vmlinux| {
        let skb = v.type_named("struct sk_buff").unwrap();
        (
            v.layout(skb).unwrap(),
            v.function_info("tcp_sendmsg").unwrap(),
            v.tracepoint_info("sched", "sched_switch").unwrap(),
        )
    };
    let open = || {
        let mut v = Vmlinux::open(v.path()).unwrap();
        v.set_cache_dir(Some(dir.path().to_owned()));
        v
    };
    let cold = open();
    assert!(!cold.prepare_types().unwrap(), "an empty cache dir cannot hit");
    let want = answers(&cold);
    let warm = open();
    assert!(warm.prepare_types().unwrap(), "the first run stored the index");
    assert_eq!(answers(&warm), want);
    assert_eq!(answers(v), want, "the user cache (or a fresh build) agrees too");
    // truncate every cache file: a miss, rebuilt, same answers
    for f in std::fs::read_dir(dir.path().join("symbols")).unwrap().flatten() {
        let len = std::fs::metadata(f.path()).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(f.path()).unwrap().set_len(len / 2).unwrap();
    }
    let again = open();
    assert!(!again.prepare_types().unwrap(), "a truncated cache file is a miss");
    assert_eq!(answers(&again), want);
}

/// `DEFINE_EVENT` events share their class's record: `sched_wakeup` is in class `sched_wakeup_template`.
#[test]
fn define_event_records_come_from_the_class() {
    let Some(v) = kernel() else { return };
    let t = v.tracepoint_info("sched", "sched_wakeup").unwrap();
    let names: Vec<&str> = t.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["p"]);
    let rec = t.record.expect("the class's record");
    assert_eq!(rec.name, "trace_event_raw_sched_wakeup_template");
}

/// The System.map shipped beside the vmlinux: symbols agree with the ELF symbol table, and type
/// queries get the needs-DWARF error.
#[test]
fn system_map_agrees_with_the_symbol_table() {
    let Some(v) = kernel() else { return };
    let name = v.path().file_name().unwrap().to_str().unwrap().replacen("vmlinux-", "System.map-", 1);
    let map = ktap_host::vmlinux::symmap::SymbolMap::open(&v.path().with_file_name(name)).unwrap();
    for f in ["vfs_read", "do_sys_openat2", "tcp_sendmsg"] {
        assert_eq!(map.kprobe_addr(f).unwrap(), v.function(f).unwrap(), "{f}");
    }
    map.tracepoint("sched", "sched_switch").unwrap();
    let e = map.params(ParamsOf::Function("vfs_read")).unwrap_err();
    assert!(e.contains("needs a vmlinux with DWARF"), "{e}");
    let (s, off) = map.at(v.function("vfs_read").unwrap() + 8).unwrap();
    assert_eq!((s.name.as_str(), off), ("vfs_read", 8));
}

/// Without a cached index, queries are answered lazily (the units holding the function, through
/// `.debug_aranges`; the first units defining the type): the same answers as the whole index,
/// without building it.
#[test]
fn lazy_queries_match_the_whole_index() {
    let Some(full) = kernel() else { return };
    let mut lazy = Vmlinux::open(full.path()).unwrap();
    lazy.set_cache_dir(None);
    for s in ["struct sk_buff", "struct task_struct", "struct file", "struct dentry", "u32"] {
        let (a, b) = (lazy.type_named(s).unwrap(), full.type_named(s).unwrap());
        assert_eq!(a, b, "{s}: the first definition either way");
        assert_eq!(lazy.layout(a).unwrap(), full.layout(b).unwrap(), "{s}");
    }
    // a sample of functions spread over the whole link order
    let funcs: Vec<String> = full
        .all_symbols()
        .unwrap()
        .into_iter()
        .filter(|s| s.kind == "func" && s.global)
        .map(|s| s.name)
        .step_by(997)
        .chain(["do_sys_openat2", "vfs_read", "tcp_sendmsg"].map(String::from))
        .collect();
    assert!(funcs.len() > 20, "{} functions", funcs.len());
    for f in &funcs {
        assert_eq!(lazy.function_info(f), full.function_info(f), "{f}");
    }
    assert_eq!(lazy.tracepoint_info("sched", "sched_switch"), full.tracepoint_info("sched", "sched_switch"));
    assert!(!lazy.has_full_index(), "these queries need no whole index");
    // a misspelt type needs every name for its suggestion: then the whole index is built
    let e = lazy.type_named("struct sk_bufff").unwrap_err();
    assert!(e.contains("struct sk_buff"), "{e}");
    assert!(lazy.has_full_index());
}
