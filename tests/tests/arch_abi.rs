//! What differs per arch, checked on the board's real kernel: kprobe arguments come from the calling
//! convention's registers, tracepoint arguments from the probe function's, both with exact counts.

use std::path::PathBuf;
use std::time::Duration;

use ktap_e2e::{HostRun, TestEnv, kernel_complaints, workspace};
use ktap_host::board::Arch;

const ARMED: &str = "tracing";
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

/// The count a `print(table)` line reports for `key`.
fn count_for(out: &str, key: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}

/// Push `script` to a fresh guest, run `workload` on its console, stop, return stdout.
fn trace(env: &TestEnv, script_name: &str, workload: &str) -> String {
    let mut guest = env.boot();
    let mut c = env.host();
    c.arg("push")
        .arg("--port")
        .arg(guest.agent_port())
        .arg("--vmlinux")
        .arg(&env.artifacts.vmlinux)
        .arg(script(script_name));
    let mut run = HostRun::spawn(c);
    run.wait_stderr(ARMED, T);
    guest.console.run_ok(workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "push failed: {status}\n{out}\n{err}");
    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    guest.shutdown();
    format!("{out}\n--- stderr ---\n{err}")
}

#[test]
fn kprobe_arguments_come_from_the_calling_convention_registers() {
    let env = TestEnv::get();
    let out = trace(&env, "read_sizes.kp", "dd if=/dev/zero of=/dev/null bs=7 count=1000");
    assert_eq!(count_for(&out, "7"), Some(1000), "{}: {out}", env.board.name);
}

#[test]
fn tracepoint_counts_and_arguments_are_exact() {
    let env = TestEnv::get();
    let out =
        trace(&env, "count_signals.kp", "i=0; while [ $i -lt 100 ]; do kill -CONT $$; i=$((i+1)); done");
    assert_eq!(count_for(&out, "sh"), Some(100), "{}: {out}", env.board.name);
    assert_eq!(count_for(&out, &sigcont(env.board.arch).to_string()), Some(100), "{}: {out}", env.board.name);
}
