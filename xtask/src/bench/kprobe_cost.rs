//! Cost per hit in the guest: the same workload (`dd bs=1`, one `vfs_read` per byte) timed in the
//! guest with no probe; with a bare kprobe on `vfs_read` (`ktap_bare.ko`: a module of its own whose
//! pre_handler is empty, the kernel's kprobe path alone); with a ktap kprobe whose handler is empty
//! (the trap plus the C shim's guard and lock and entering the VM for a `ret`); and with the ktap
//! kprobe running `t[execname] += 1`. Rounds interleave the four on one booted guest. Everything
//! ktap adds over the bare kprobe (`t[execname] += 1` minus bare) is set against the bare kprobe's
//! own cost (bare minus no probe). Goal: that ratio <= 1.
//!
//! The guest runs with QEMU's `-icount shift=0` on one vCPU: its clock advances exactly one
//! nanosecond per guest instruction, so costs come out in guest instructions, and the figures
//! do not depend on how busy the host is (wall-clock timing under TCG on a shared two-core machine
//! varied by more than the kprobe cost itself). Time is read from `/proc/timer_list` (ns; the
//! 10 ms steps of `/proc/uptime` are too coarse). Each kprobe is timed once the kernel has optimized
//! it (`CONFIG_OPTPROBES`: a jump to a detour instead of the breakpoint trap, a few ms after
//! registration) or after two seconds if it never is, and its state is printed: timing one variant
//! trapped and another jumping would compare different kprobe paths.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ktap_host::qemu::Guest;

use crate::build::Built;

/// Boot the board for this measurement: one vCPU, instruction-counted time.
pub fn boot(built: &Built) -> Result<Guest> {
    let mut board = built.board.clone();
    let q = board.qemu.as_mut().context("the board has no [qemu] section")?;
    q.smp = 1;
    q.args.extend(["-icount".to_owned(), "shift=0,sleep=on".to_owned()]);
    Ok(Guest::boot(&board, &built.artifacts)?)
}

const T: Duration = Duration::from_secs(300);
/// Bytes `dd` copies one at a time: that many `vfs_read` hits per timed run.
const HITS: u64 = 50_000;
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    None,
    Bare,
    Empty,
    Count,
}

impl Variant {
    const ALL: [Variant; 4] = [Variant::None, Variant::Bare, Variant::Empty, Variant::Count];

    fn script(self) -> Option<&'static str> {
        match self {
            Variant::None | Variant::Bare => None,
            Variant::Empty => Some("kprobe:vfs_read { }\n"),
            Variant::Count => {
                Some("var t = {}\nkprobe:vfs_read { t[execname] += 1 }\ntrace_end { print(t) }\n")
            }
        }
    }
}

/// A `ktap-host push` running in the background; stderr lines arrive on `err`.
struct Push {
    child: Child,
    err: mpsc::Receiver<String>,
}

impl Push {
    fn start(built: &Built, port: &Path, script: &Path) -> Result<Push> {
        let mut child = Command::new(&built.host_bin)
            .args(["push", "--board", &built.board.name, "--port"])
            .arg(port)
            .arg("--vmlinux")
            .arg(&built.artifacts.vmlinux)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ktap-host push")?;
        let (tx, err) = mpsc::channel();
        let stderr = child.stderr.take().context("no stderr pipe")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Push { child, err };
        // push's armed line (a hazard warning before the upload also says "tracing")
        p.wait_for("ktap: tracing ")?;
        Ok(p)
    }

    fn wait_for(&mut self, needle: &str) -> Result<()> {
        loop {
            match self.err.recv_timeout(T) {
                Ok(line) if line.starts_with(needle) => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    bail!("ktap-host push did not print a line starting `{needle}`");
                }
            }
        }
    }

    /// Ctrl-C, then its stdout.
    fn stop(self) -> Result<String> {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -INT failed");
        }
        let out = self.child.wait_with_output().context("waiting for ktap-host push")?;
        if !out.status.success() {
            bail!("ktap-host push failed ({})", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Seconds the workload takes in the guest, by the guest's monotonic clock.
fn timed_workload(guest: &mut Guest) -> Result<f64> {
    let now = "grep -m1 'now at' /proc/timer_list";
    let out = guest
        .console
        .run_ok(&format!("{now}; dd if=/dev/zero of=/dev/null bs=1 count={HITS} 2>/dev/null; {now}"), T)?;
    // "now at 123456 nsecs"; the last two: the console may echo parts of the typed line first
    let ns: Vec<f64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("now at ")?.split_whitespace().next()?.parse().ok())
        .collect();
    match ns[..] {
        [.., a, b] => Ok((b - a) / 1e9),
        _ => bail!("cannot read the workload's time from `{out}`"),
    }
}

/// Wait until the kprobe on `vfs_read` is optimized (a jump instead of the breakpoint trap, which
/// the kernel does a little after registering it when it can, `CONFIG_OPTPROBES`), for at most
/// about two seconds, so every variant is timed in the same settled state; its kprobes list line.
fn settled_kprobe(guest: &mut Guest) -> Result<String> {
    let list = "grep vfs_read /sys/kernel/debug/kprobes/list";
    let out = guest.console.run_ok(
        &format!(
            "for i in 1 2 3 4 5 6 7 8 9 10; do {list} | grep -q OPTIMIZED && break; sleep 0.2; done; {list}"
        ),
        T,
    )?;
    match out.lines().rev().find(|l| l.contains("vfs_read") && !l.contains("grep")) {
        Some(l) => Ok(l.trim().to_owned()),
        None => bail!("no kprobe on vfs_read is listed:\n{out}"),
    }
}

/// The workload's time with `ktap_bare.ko` loaded (checked to be on `vfs_read`), unloaded after.
fn timed_bare(guest: &mut Guest) -> Result<(f64, String)> {
    let c = &mut guest.console;
    c.run_ok(&format!("insmod /lib/modules/{} symbol=vfs_read", crate::build_module::BARE_MODULE), T)?;
    let state = settled_kprobe(guest)?;
    let secs = timed_workload(guest)?;
    guest.console.run_ok("rmmod ktap_bare", T)?;
    Ok((secs, state))
}

/// Measure on `guest` and print the figures.
pub fn run(built: &Built, guest: &mut Guest) -> Result<()> {
    let dir = std::env::temp_dir();
    let mut rounds: Vec<[f64; 4]> = Vec::new();
    for round in 0..ROUNDS {
        let mut secs = [0.0f64; 4];
        for (i, v) in Variant::ALL.into_iter().enumerate() {
            let Some(src) = v.script() else {
                secs[i] = match v {
                    Variant::Bare => {
                        let (t, state) = timed_bare(guest)?;
                        println!("bench: kprobe round {round}: bare kprobe `{state}`");
                        t
                    }
                    _ => timed_workload(guest)?,
                };
                continue;
            };
            let script = dir.join(format!("ktap-bench-kprobe-{}-{i}.kp", std::process::id()));
            std::fs::write(&script, src)?;
            let push = Push::start(built, guest.agent_port(), &script)?;
            let state = settled_kprobe(guest)?;
            println!("bench: kprobe round {round}: ktap kprobe `{state}`");
            secs[i] = timed_workload(guest)?;
            let out = push.stop()?;
            let _ = std::fs::remove_file(&script);
            if v == Variant::Count {
                let dd = out.lines().find(|l| l.split_whitespace().next() == Some("dd"));
                let n: Option<u64> = dd.and_then(|l| l.split_whitespace().last()?.parse().ok());
                if n != Some(HITS) {
                    bail!("the counting program saw {n:?} vfs_read hits by dd, not {HITS}:\n{out}");
                }
            }
        }
        println!(
            "bench: kprobe round {round}: no probe {:.4} s, bare kprobe {:.4} s, ktap empty handler {:.4} s, \
             t[execname] += 1 {:.4} s",
            secs[0], secs[1], secs[2], secs[3]
        );
        rounds.push(secs);
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [none, bare, empty, count] = [median(0), median(1), median(2), median(3)];
    // one ns of guest time is one guest instruction
    let per_hit = |t: f64| t * 1e9 / HITS as f64;
    let kprobe = per_hit(bare - none);
    let added = per_hit(count - bare);
    if kprobe <= 0.0 {
        bail!("the bare kprobe cost nothing measurable ({kprobe:.0} per hit): is it attached?");
    }
    println!(
        "\n| in-guest cost per vfs_read hit ({}, {HITS} hits, median of {ROUNDS} rounds) | guest instructions |",
        built.board.name
    );
    println!("| --- | ---: |");
    println!("| workload alone (a 1-byte `dd` read + write) | {:.0} |", per_hit(none));
    println!("| bare kprobe (`ktap_bare.ko`, empty pre_handler), over no probe | {kprobe:.0} |");
    println!(
        "| ktap kprobe with an empty handler, over the bare kprobe (shim + VM entry) | {:.0} |",
        per_hit(empty - bare)
    );
    println!(
        "| `t[execname] += 1`, over the ktap empty handler (the program's work) | {:.0} |",
        per_hit(count - empty)
    );
    println!("| ktap's whole cost with `t[execname] += 1`, over the bare kprobe | {added:.0} |");
    println!("| **ktap added / bare kprobe** | **{:.2}** |", added / kprobe);
    Ok(())
}
