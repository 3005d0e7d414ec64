//! 100 load/run/unload cycles of a program probing a hot function (`vfs_read`) while a workload runs
//! in the guest: every cycle must see hits, and afterwards the kernel must not have complained, the
//! VM's outstanding allocations (`/sys/module/ktap/parameters/outstanding_allocs`, counted by the
//! module's allocator) must be back at 0 after every cycle, slab and available memory must be back at
//! their baseline within a tolerance, and the module must unload.
//!
//! A cycle is one `ktap-host push --duration` through the real agent: upload, kernel verify, arm the
//! kprobe, run on hits, stop, unload. To keep cycles cheap the test holds the agent's pty open for the
//! whole run, so QEMU sees a connected client and forwards each push at once (otherwise it notices a
//! new client only at its next once-a-second poll). `KTAP_CYCLES` overrides the count.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ktap_e2e::{HostRun, TestEnv, kernel_complaints};
use ktap_host::qemu::Guest;

const T: Duration = Duration::from_secs(90);
const SCRIPT: &str = "var t = {}\nkprobe:vfs_read { t[execname] += 1 }\ntrace_end { print(t) }\n";
/// On a board whose kernel crashes under kprobes while tasks exit (the background load forks), the
/// hot probe is a tracepoint the load hits as often.
const SCRIPT_NO_KPROBES: &str =
    "var t = {}\ntrace sched:sched_switch { t[execname] += 1 }\ntrace_end { print(t) }\n";
/// The allowed drift of `Slab` and `MemAvailable` after all cycles (in KiB): far below what leaking
/// one record ring (64 KiB) or one table per cycle would add up to over 100 cycles.
const SLAB_TOLERANCE_KB: i64 = 1024;
const AVAILABLE_TOLERANCE_KB: i64 = 4096;

fn outstanding(guest: &mut Guest) -> i64 {
    let out = guest.console.run_ok("cat /sys/module/ktap/parameters/outstanding_allocs", T).unwrap();
    // the last line that is a number: the console may echo parts of the typed line first
    out.lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("outstanding_allocs: `{out}`"))
}

/// `Slab` and `MemAvailable` in KiB, after dropping reclaimable caches so only held memory counts.
fn meminfo(guest: &mut Guest) -> (i64, i64) {
    let out = guest
        .console
        .run_ok("sync; echo 3 > /proc/sys/vm/drop_caches; grep -E '^(Slab|MemAvailable):' /proc/meminfo", T)
        .unwrap();
    let field = |name: &str| -> i64 {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {out}"));
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    (field("Slab:"), field("MemAvailable:"))
}

/// One push; returns its stdout and its `--timings` line.
fn cycle(env: &TestEnv, port: &Path, script: &Path) -> (String, String) {
    let mut cmd = env.push(port);
    cmd.args(["--timings", "--duration", "0.1"]).arg(script);
    let (status, out, err) = HostRun::spawn(cmd).finish(T);
    assert!(status.success(), "push failed: {status}\n{out}\n{err}");
    let timings = err.lines().find(|l| l.contains("timings:")).unwrap_or_default().to_owned();
    (out, timings)
}

#[test]
fn hundred_load_run_unload_cycles_leave_no_leak_and_no_complaint() {
    let env = TestEnv::get();
    let cycles: usize = std::env::var("KTAP_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    let script = std::env::temp_dir().join(format!("ktap-cycles-{}.kp", std::process::id()));
    let src = if env.board.kernel.kprobe_hazard.is_some() { SCRIPT_NO_KPROBES } else { SCRIPT };
    std::fs::write(&script, src).unwrap();
    let mut guest = env.boot();
    // hold the agent pty open (raw, no echo) so every push is forwarded at once
    let _hold = File::options().read(true).write(true).open(guest.agent_port()).unwrap();
    let stty =
        Command::new("stty").arg("-F").arg(guest.agent_port()).args(["raw", "-echo"]).status().unwrap();
    assert!(stty.success(), "stty failed");

    assert_eq!(outstanding(&mut guest), 0, "allocations held before any program was loaded");
    guest
        .console
        .run_ok(
            "{ (while :; do dd if=/dev/zero of=/dev/null bs=16 count=200 2>/dev/null; sleep 0.05; done) & }",
            T,
        )
        .unwrap();
    // one warm-up cycle: the first kprobe registration allocates kernel caches that stay
    cycle(&env, guest.agent_port(), &script);
    let base = meminfo(&mut guest);
    let start = Instant::now();
    let mut pushing = Duration::ZERO;
    for i in 0..cycles {
        let t = Instant::now();
        let (out, timings) = cycle(&env, guest.agent_port(), &script);
        pushing += t.elapsed();
        if i == 0 {
            println!("vm_cycles: first cycle {timings}");
        }
        let hits: u64 = out.lines().filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok()).sum();
        assert!(hits > 0, "cycle {i}: the probe saw no hit:\n{out}");
        assert_eq!(outstanding(&mut guest), 0, "cycle {i}: the VM's allocations were not all freed");
    }
    let per_cycle = start.elapsed().as_secs_f64() / cycles as f64;
    println!(
        "vm_cycles: {cycles} cycles, {per_cycle:.2} s each ({:.2} s of it in ktap-host push)",
        pushing.as_secs_f64() / cycles as f64
    );
    guest.console.run_ok("kill $!; wait", T).unwrap();
    let after = meminfo(&mut guest);
    println!("vm_cycles: Slab {} -> {} KiB, MemAvailable {} -> {} KiB", base.0, after.0, base.1, after.1);
    assert!(after.0 - base.0 <= SLAB_TOLERANCE_KB, "slab grew by {} KiB", after.0 - base.0);
    assert!(base.1 - after.1 <= AVAILABLE_TOLERANCE_KB, "available memory fell by {} KiB", base.1 - after.1);
    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    guest.console.run_ok("rmmod ktap", T).unwrap();
    guest.shutdown();
    let _ = std::fs::remove_file(&script);
}
