//! Every sample compiles against the board's real vmlinux (Debian armmp `-dbg`): its kprobe
//! symbols and tracepoints exist on that kernel, tracepoint patterns expand against the kernel's
//! own event table, and `arg.NAME` chains resolve through its DWARF.

mod symbols;

use std::path::Path;

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, Resolver};
use ktap_host::vmlinux::Vmlinux;
use ktap_protocol::image::Image;
use symbols::{armmp_vmlinux, missing};

fn kernel() -> Option<Vmlinux> {
    let Some(path) = armmp_vmlinux() else {
        missing("no armmp -dbg vmlinux in ~/.cache/ktap-rs/kernels (or KTAP_VMLINUX)");
        return None;
    };
    Some(Vmlinux::open_for(&path, Arch::Arm).unwrap_or_else(|e| panic!("{e}")))
}

fn compile(v: &Vmlinux, name: &str, src: &str) -> Vec<u8> {
    let opts = CompileOptions { arch: Arch::Arm, build_id: v.build_id().to_vec() };
    match lang::compile(src, name, &opts, v) {
        Ok(c) => c.image,
        Err(d) => {
            panic!("{name} does not compile against the armmp vmlinux:\n{}", lang::render(&d, name, src))
        }
    }
}

#[test]
fn every_sample_compiles_against_the_armmp_vmlinux() {
    let Some(v) = kernel() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "kp") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            compile(&v, &name, &std::fs::read_to_string(&p).unwrap());
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} samples");
}

#[test]
fn tracepoint_patterns_expand_against_the_kernels_event_table() {
    let Some(v) = kernel() else { return };
    let img = compile(&v, "p.kp", "trace sched:sched_process_* { }\ntrace irq:*irq_entry { }\n");
    let mut names = Vec::new();
    Image::parse(&img).unwrap().probes(|p| names.push(String::from_utf8_lossy(p.name).into_owned()));
    for want in ["sched_process_exec", "sched_process_exit", "sched_process_fork", "softirq_entry"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // only events of the subsystem: `irq:*` does not match `sched_*` or `raw_syscalls:*`
    let all = v.tracepoints_matching("irq", "*").unwrap();
    assert!(all.iter().all(|(s, _)| s == "irq") && all.len() >= 4, "{all:?}");
    // ftrace-only events have no tracepoint a probe could attach to
    assert!(v.tracepoints_matching("syscalls", "*").unwrap().is_empty());
    let e = lang::check(
        "trace sched:no_such_* { }",
        "e.kp",
        &CompileOptions { arch: Arch::Arm, build_id: vec![] },
        &v,
    );
    assert_eq!(e[0].message, "no tracepoint matches `sched:no_such_*`");
}

#[test]
fn member_chains_and_kernel_release_resolve_through_the_real_kernel() {
    let Some(v) = kernel() else { return };
    let src = r#"
kprobe:vfs_read {
    printf("%s %s %d %d\n", kernel_v, arg.file->f_path.dentry->d_name.name, arg.count, arg.file->f_flags)
}
trace sched:sched_switch {
    printf("%s -> %s %d\n", arg.prev->comm, arg.next->comm, arg.next->pid)
}
"#;
    let img = compile(&v, "m.kp", src);
    let text = lang::disasm::disassemble(&img, None).unwrap();
    assert!(text.contains("kstr") && text.contains("ldk"), "{text}");
    let release = v.kernel_release().unwrap();
    assert!(release.starts_with("6.1.") && release.ends_with("armmp"), "{release}");
    let opts = CompileOptions { arch: Arch::Arm, build_id: vec![] };
    let e = lang::check("kprobe:vfs_read { print(arg.file->f_pth) }", "e.kp", &opts, &v);
    assert!(e[0].message.contains("has no member `f_pth`"), "{e:?}");
    assert!(e[0].notes.iter().any(|n| n.contains("f_path")), "{e:?}");
}

#[test]
fn sim_with_a_vmlinux_symbolizes_stacks_like_push() {
    let Some(v) = kernel() else { return };
    let read = v.kprobe_addr("vfs_read").unwrap();
    let sys = v.kprobe_addr("ksys_read").unwrap();
    let events = format!(
        "{{\"probe\": \"profile-10ms\", \"stack\": [{}, {}], \"repeat\": 2}}\n",
        read + 0x10,
        sys + 4
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/stack_profile.kp");
    let out = sim_armmp("stack", &std::fs::read_to_string(script).unwrap(), &events);
    assert!(out.contains("    vfs_read+0x10\n    ksys_read+0x4"), "{out}");
    assert!(out.lines().last().is_some_and(|l| l.trim() == "2"), "{out}");
}

#[test]
fn the_syscall_table_numbers_the_calls_like_the_arm_eabi() {
    let Some(v) = kernel() else { return };
    let s = v.syscalls().unwrap();
    let nr = |name: &str| s.table.iter().find(|(_, n)| n == name).map(|(nr, _)| *nr);
    // arch/arm/tools/syscall.tbl
    assert_eq!(nr("read"), Some(3));
    assert_eq!(nr("write"), Some(4));
    assert_eq!(nr("openat"), Some(322));
    assert_eq!(nr("exit_group"), Some(248));
    assert!(s.table.len() > 350, "{} calls", s.table.len());
    // r0-r5 of `struct pt_regs { unsigned long uregs[18]; }`, the number in r7
    assert_eq!(s.args, [(0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 4)]);
    assert_eq!(s.exit_nr, Some((28, 4)));
}

/// `sim` against the armmp vmlinux shows an enum argument by its enumerator's name (the DWARF's,
/// through the sidecar), `%d` keeps the number, and a table keyed by it prints names; a value
/// without an enumerator prints as its number.
#[test]
fn sim_with_a_vmlinux_prints_enum_values_by_name() {
    let Some(v) = kernel() else { return };
    let ty = v.type_named("enum pid_type").unwrap();
    let names: Vec<(String, i64)> = v.enumerators(&ty).unwrap();
    let name = |n: i64| names.iter().find(|e| e.1 == n).map(|e| e.0.clone()).unwrap();
    let ev = |ty: i64, repeat: u32| {
        format!("{{\"probe\": \"kprobe:__task_pid_nr_ns\", \"args\": [0, {ty}, 0], \"repeat\": {repeat}}}\n")
    };
    let script = "var t = {}\nkprobe:__task_pid_nr_ns {\n    printf(\"%s %d\\n\", arg.type, arg.type)\n    t[arg.type] += 1\n}\ntrace_end {\n    print(t)\n}\n";
    let out = sim_armmp("enum", script, &[ev(1, 1), ev(3, 2), ev(77, 1)].concat());
    let (tgid, sid) = (name(1), name(3));
    let want = [
        format!("{tgid} 1"),
        format!("{sid} 3"),
        format!("{sid} 3"),
        "77 77".to_string(),
        format!("{:<32} {:>12}", sid, 2),
        format!("{:<32} {:>12}", "77", 1),
        format!("{:<32} {:>12}", tgid, 1),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");
}

/// `ktap-host sim` of the script `src` on `events` against the armmp vmlinux: its stdout.
fn sim_armmp(tag: &str, src: &str, events: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ktap-sim{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (script, ev) = (dir.join("s.kp"), dir.join("e.jsonl"));
    std::fs::write(&script, src).unwrap();
    std::fs::write(&ev, events).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ktap-host"))
        .arg("sim")
        .arg(&script)
        .arg("--events")
        .arg(&ev)
        .arg("--vmlinux")
        .arg(armmp_vmlinux().unwrap())
        .args(["--board", "qemu-armv7"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
