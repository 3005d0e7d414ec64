//! Tracing with only a System.map (docs/symbols.md): the image lists the kernel symbols it uses
//! instead of carrying a build-id, and the agent compares them with the running kernel's
//! `/proc/kallsyms` before anything is armed. The board kernel's own map traces exactly; the same
//! map with one address moved (another kernel's, as far as that symbol goes) is refused, naming the
//! symbol and both offsets, and nothing is armed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ktap_e2e::{HostRun, TestEnv, kernel_complaints, kprobes, scratch_dir};

const T: Duration = Duration::from_secs(90);

/// The System.map shipped with the board's kernel: beside its vmlinux, or in the `boot/` of the
/// unpacked package tree the vmlinux came from.
fn board_map(env: &TestEnv) -> PathBuf {
    let name = format!("System.map-{}", env.artifacts.kernel_release);
    let vmlinux = &env.artifacts.vmlinux;
    vmlinux
        .ancestors()
        .flat_map(|d| [d.join(&name), d.join("boot").join(&name), d.join("System.map")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name} near {}", vmlinux.display()))
}

/// `push` with only the map: no vmlinux anywhere (the one `cargo xtask test` exports is removed).
fn push_map(env: &TestEnv, port: &Path, map: &Path, script: &Path) -> Command {
    let mut c = env.host();
    c.env_remove("KTAP_VMLINUX").arg("push").arg("--port").arg(port).arg("--system-map").arg(map);
    c.args(env.kprobe_opt_in()).arg(script);
    c
}

/// Address of the kernel (non-module) symbol `name` in map text.
fn addr_in(map: &str, name: &str) -> Option<u64> {
    map.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 3 && f[2] == name).then(|| u64::from_str_radix(f[0], 16).ok()).flatten()
    })
}

#[test]
fn the_boards_map_traces_exactly_and_a_map_with_one_symbol_moved_is_refused_naming_it() {
    let env = TestEnv::get();
    let case = env.kprobe_case(200);
    let map = board_map(&env);
    let mut guest = env.boot();

    let mut run = HostRun::spawn(push_map(&env, guest.agent_port(), &map, &case.script));
    run.wait_armed(T);
    guest.console.run_ok(&case.workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "push from the System.map failed: {status}\n{out}\n{err}");
    assert_eq!(case.counted(&out), Some(case.count), "stdout:\n{out}\nstderr:\n{err}");

    // The same map with the probed function 0x40 bytes later.
    let text = std::fs::read_to_string(&map).unwrap();
    let real =
        addr_in(&text, case.function).unwrap_or_else(|| panic!("{} not in {}", case.function, map.display()));
    let moved = real + 0x40;
    let edited: String = text
        .lines()
        .map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            [_, _, name] if *name == case.function => {
                l.replacen(&format!("{real:x}"), &format!("{moved:x}"), 1)
            }
            _ => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect();
    let other = scratch_dir("system_map").join("System.map-other");
    std::fs::write(&other, edited).unwrap();
    let run = HostRun::spawn(push_map(&env, guest.agent_port(), &other, &case.script));
    let (status, out, err) = run.finish(T);
    assert!(!status.success(), "a map that does not match was accepted:\n{out}\n{err}");
    // the message names the symbol and both offsets from the base the board reported
    let named = ["_text", "_stext"].iter().any(|base| {
        addr_in(&text, base).is_some_and(|b| {
            err.contains(&format!(
                "System.map does not match the running kernel: `{}` at {base}+{:#x} in the map, {base}+{:#x} on the board",
                case.function,
                moved - b,
                real - b
            ))
        })
    });
    assert!(named, "the refusal must name `{}` with both offsets:\n{err}", case.function);
    assert!(!err.contains("tracing"), "{err}");
    let list = kprobes(&mut guest);
    assert!(!list.contains(case.function), "a probe is armed after the refusal:\n{list}");

    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    guest.shutdown();
}
