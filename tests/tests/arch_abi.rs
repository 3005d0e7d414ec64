//! What differs per arch, checked on the board's real kernel: kprobe arguments come from the calling
//! convention's registers, tracepoint arguments from the probe function's, both with exact counts; and
//! kprobes land where a KASLR kernel really runs (the agent reports `_text` or `_stext`).

use std::path::PathBuf;
use std::time::Duration;

use ktap_e2e::{HostRun, TestEnv, count_for, workspace, write_script};
use ktap_host::board::Arch;
use ktap_host::vmlinux::Vmlinux;

const T: Duration = Duration::from_secs(90);
/// SIGCONT's number on the board's arch.
fn sigcont(arch: Arch) -> u64 {
    match arch {
        Arch::Mips => 25,
        Arch::Arm | Arch::Aarch64 | Arch::Powerpc | Arch::Powerpc64 | Arch::X86_64 => 18,
    }
}

fn script(name: &str) -> PathBuf {
    workspace().join("tests/scripts").join(name)
}

/// `vfs_read`'s third argument (the size) is 7 for each of `dd bs=7`'s 1000 reads. On a board with a
/// kprobe hazard (no forking workload allowed), `do_filp_open`'s first argument is AT_FDCWD (-100)
/// for each of 1000 builtin opens by the shell.
#[test]
fn kprobe_arguments_come_from_the_calling_convention_registers() {
    let env = TestEnv::get();
    let (out, key) = if env.board.kernel.kprobe_hazard.is_some() {
        let src = "var dirfds = {}\nkprobe:do_filp_open { dirfds[arg0] += 1 }\ntrace_end { print(dirfds) }\n";
        let workload = env.kprobe_case(1000).workload;
        (env.trace(&write_script("open_dirfds", src), &workload, T), "-100")
    } else {
        (env.trace(&script("read_sizes.kp"), "dd if=/dev/zero of=/dev/null bs=7 count=1000", T), "7")
    };
    assert_eq!(count_for(&out, key), Some(1000), "{}: {out}", env.board.name);
}

#[test]
fn tracepoint_counts_and_arguments_are_exact() {
    let env = TestEnv::get();
    let out = env.trace(
        &script("count_signals.kp"),
        "i=0; while [ $i -lt 100 ]; do kill -CONT $$; i=$((i+1)); done",
        T,
    );
    assert_eq!(count_for(&out, "sh"), Some(100), "{}: {out}", env.board.name);
    assert_eq!(count_for(&out, &sigcont(env.board.arch).to_string()), Some(100), "{}: {out}", env.board.name);
}

/// The running kernel's base from `/proc/kallsyms` lines: `_text` if listed, else `_stext`.
fn kallsyms_base(lines: &str) -> Option<(&str, u64)> {
    let find = |name: &str| {
        lines.lines().find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [addr, _, n] if n == name => u64::from_str_radix(addr, 16).ok(),
            _ => None,
        })
    };
    find("_text").map(|a| ("_text", a)).or_else(|| find("_stext").map(|a| ("_stext", a)))
}

#[test]
fn kprobes_land_where_a_randomized_kernel_runs() {
    let env = TestEnv::get();
    let vmlinux = Vmlinux::open(&env.artifacts.vmlinux).unwrap();
    let mut guest = env.boot();
    let lines = guest.console.run_ok("grep -w -e _text -e _stext /proc/kallsyms", T).unwrap();
    env.settle();
    let (name, runtime) = kallsyms_base(&lines).unwrap_or_else(|| panic!("no _text or _stext in:\n{lines}"));
    let link = vmlinux.base_symbol(name).unwrap_or_else(|| panic!("vmlinux has no {name}"));
    let slide = runtime.wrapping_sub(link);
    eprintln!("{}: {name} runs at {runtime:#x}, vmlinux has {link:#x}: slide {slide:#x}", env.board.name);
    // the kernel's own config says whether it randomizes; a board's `nokaslr` would turn that off
    let config = env.artifacts.kernel.with_file_name(format!("config-{}", env.artifacts.kernel_release));
    let kaslr =
        std::fs::read_to_string(&config).is_ok_and(|c| c.lines().any(|l| l == "CONFIG_RANDOMIZE_BASE=y"));
    let nokaslr = env.board.qemu.as_ref().is_some_and(|q| q.kernel_cmdline.iter().any(|w| w == "nokaslr"));
    if kaslr && !nokaslr {
        assert_ne!(slide, 0, "{}: KASLR kernel ({}) not randomized", env.board.name, config.display());
    }
    let case = env.kprobe_case(1000);
    let mut c = env.push(guest.agent_port());
    c.arg(&case.script);
    let mut run = HostRun::spawn(c);
    run.wait_armed(T);
    guest.console.run_ok(&case.workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "push failed: {status}\n{out}\n{err}");
    assert_eq!(case.counted(&out), Some(case.count), "{}: {out}\n{err}", env.board.name);

    // The same script compiled offline (link-time addresses): it runs on a kernel that is not slid,
    // and is refused before anything is armed on one that is.
    let image = workspace().join("target/e2e-tmp").join(format!("{}-offline.kimg", std::process::id()));
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let st = env
        .host()
        .arg("compile")
        .arg("--vmlinux")
        .arg(&env.artifacts.vmlinux)
        .arg(&case.script)
        .arg("-o")
        .arg(&image)
        .status()
        .unwrap();
    assert!(st.success(), "offline compile failed");
    let mut c = env.push(guest.agent_port());
    c.arg("--image").arg(&image);
    let mut run = HostRun::spawn(c);
    if slide == 0 {
        run.wait_armed(T);
        guest.console.run_ok(&case.workload, T).unwrap();
        run.signal("INT");
        let (status, out, err) = run.finish(T);
        assert!(status.success(), "push --image failed: {status}\n{out}\n{err}");
        assert_eq!(case.counted(&out), Some(case.count), "{}: {out}\n{err}", env.board.name);
    } else {
        let (status, out, err) = run.finish(T);
        assert!(!status.success(), "an image for the link-time addresses ran on a slid kernel: {out}\n{err}");
        assert!(err.contains(&format!("runs slid by {slide:#x} (KASLR)")), "{err}");
        let list = guest.console.run_ok("cat /sys/kernel/debug/kprobes/list", T).unwrap();
        assert!(!list.contains(case.function), "probe armed after the refusal:\n{list}");
    }
    guest.shutdown();
}
