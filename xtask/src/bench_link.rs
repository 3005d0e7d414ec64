//! The link's figures for `cargo xtask bench`, measured on a booted QEMU guest through the link
//! relay of the e2e tests (`link_relay pty`), which counts the bytes it forwards and can hold the line
//! to a UART's pace:
//! - bytes on the wire per printf event and per stack event against the same events as text (what
//!   ktap sent), the marginal cost of `dd`'s events between two runs with different counts;
//! - sustained events per second at an emulated 115200 baud, and what was dropped above that rate;
//! - push to first event at 115200 baud;
//! - `deploy` of the agent and the module over the same line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ktap_host::qemu::Guest;

use crate::build::Built;
use crate::paths;

/// A 115200-baud UART moves 11520 bytes per second (8N1: ten bits a byte).
const BPS_115200: u32 = 11_520;
/// One printf per `vfs_read` of `dd`: the common shape of a ktap trace line. Only `dd`'s reads: the
/// agent's own reads of `/dev/ktap` and of its line are `vfs_read`s too, and each would make a record
/// that makes the agent read again, a feedback loop whose size depends on timing, not on the link.
const PRINTF_SCRIPT: &str = "kprobe:vfs_read /execname == \"dd\"/ {\n    printf(\"%s pid %d read %d bytes\\n\", execname, pid, arg2)\n}\n";
/// A kernel stack per `vfs_read` of `dd`, eight frames (rendered one per line, symbolized, on the host).
const STACK_SCRIPT: &str =
    "kprobe:vfs_read /execname == \"dd\"/ {\n    printf(\"%s stack\\n%s\\n\", execname, stack(8))\n}\n";
/// `samples/first_event.kp` with a kprobe besides (on a function nothing in the guest calls while it
/// runs): loading checks the kprobe, arming registers it.
const FIRST_EVENT_KPROBE: &str = "trace_begin {\n    printf(\"armed on cpu %d\\n\", cpu)\n}\nkprobe:vfs_fsync {\n    printf(\"fsync\\n\")\n}\n";
const T: Duration = Duration::from_secs(120);

/// The relay, its pty, and the file its byte counts go to.
struct Relay {
    child: Child,
    port: String,
    log: PathBuf,
}

impl Relay {
    fn start(bin: &Path, guest: &Guest, bps: Option<u32>, log: PathBuf) -> Result<Relay> {
        let mut c = Command::new(bin);
        c.arg("pty").arg(guest.agent_port());
        if let Some(b) = bps {
            c.args(["--bps", &b.to_string()]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("relay stdout")?).read_line(&mut line)?;
        let port =
            line.trim().strip_prefix("relay: ").with_context(|| format!("relay said `{line}`"))?.to_owned();
        Ok(Relay { child, port, log })
    }

    /// Bytes the board sent to the host so far (the relay logs its counts every second).
    fn board_to_host(&self) -> Result<u64> {
        let text = std::fs::read_to_string(&self.log)?;
        let last = text.lines().last().unwrap_or("");
        let n = last
            .split("board->host ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        n.with_context(|| format!("no byte count in the relay log line `{last}`"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one traced run printed.
struct Traced {
    stdout: String,
    stderr: String,
    wire: u64,
}

/// Push `script` through `relay` for `secs`, running `workload` on the guest console once armed.
fn traced(
    built: &Built,
    guest: &mut Guest,
    relay: &Relay,
    script: &Path,
    secs: u64,
    workload: &str,
    extra: &[&str],
) -> Result<Traced> {
    let mut push = Command::new(&built.host_bin)
        .args(["push", "--board", &built.board.name, "--duration", &secs.to_string(), "--port", &relay.port])
        .args(extra)
        .arg("--vmlinux")
        .arg(&built.artifacts.vmlinux)
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ktap-host push")?;
    let stderr = push.stderr.take().context("push stderr")?;
    // read stdout as it comes: a host blocked on a full pipe stops its heartbeat and the board ends
    // the session
    let mut stdout = push.stdout.take().context("push stdout")?;
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut err = String::new();
    let deadline = Instant::now() + T;
    // push's armed line (a hazard warning before the upload also says "tracing")
    while !err.lines().any(|l| l.starts_with("ktap: tracing ")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => err.push_str(&(l + "\n")),
            Err(_) => bail!("push did not arm:\n{err}"),
        }
    }
    if !workload.is_empty() {
        guest.console.run_ok(workload, T)?;
    }
    let status = push.wait()?;
    let stdout = stdout.join().map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?;
    err.extend(rx.try_iter().map(|l| l + "\n"));
    if !status.success() {
        bail!("push failed:\n{err}");
    }
    // let the relay log its final count
    std::thread::sleep(Duration::from_millis(1200));
    Ok(Traced { stdout, stderr: err, wire: relay.board_to_host()? })
}

/// `dd`'s events in a run's output: how many, and their text bytes (an event is a line that starts
/// with `dd `, plus, for stacks, the indented frame lines after it).
fn dd_events(stdout: &str) -> (u64, u64) {
    let (mut events, mut bytes, mut in_dd) = (0u64, 0u64, false);
    for line in stdout.lines() {
        if line.starts_with(' ') {
            if in_dd {
                bytes += line.len() as u64 + 1;
            }
            continue;
        }
        in_dd = line.starts_with("dd ");
        if in_dd {
            events += 1;
            bytes += line.len() as u64 + 1;
        }
    }
    (events, bytes)
}

/// The number after `what` in the loss summary line, 0 if absent.
fn summary_count(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.starts_with("ktap: ") && l.contains(" hits"))
        .flat_map(|l| l.split([';', ',']))
        .find(|p| p.contains(what))
        .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

/// Measure and print the link's rows.
pub fn run(built: &Built, guest: &mut Guest) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", "ktap-e2e", "--bin", "link_relay"])
        .status()?;
    if !status.success() {
        bail!("building link_relay failed");
    }
    let relay_bin = paths::workspace().join("target/debug/link_relay");
    let dir = paths::workspace().join("target/bench-link");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("printf_reads.kp");
    std::fs::write(&script, PRINTF_SCRIPT)?;

    // 1. bytes per event: two runs whose only difference is how many events `dd` makes; the
    // difference in wire bytes over the difference in events is what one event costs (the guest's
    // own background reads and the session's pings cancel out)
    let stack_script = dir.join("stack_reads.kp");
    std::fs::write(&stack_script, STACK_SCRIPT)?;
    let mut wire_per_printf = 0.0;
    for (what, script, counts, pack) in [
        ("printf", &script, [500u32, 2500], true),
        ("printf", &script, [500, 2500], false),
        ("stack", &stack_script, [100, 500], true),
    ] {
        let mut runs = Vec::new();
        let (extra, how): (&[&str], _) = if pack { (&[], "packed") } else { (&["--no-pack"], "unpacked") };
        for n in counts {
            let relay =
                Relay::start(&relay_bin, guest, None, dir.join(format!("relay-size-{what}-{how}-{n}.log")))?;
            let dd = format!("dd if=/dev/zero of=/dev/null bs=1 count={n}");
            let t = traced(built, guest, &relay, script, 8, &dd, extra)?;
            let (events, text) = dd_events(&t.stdout);
            println!(
                "bench: {what} ({how}) run with {n} dd reads: {events} dd events, {text} text bytes, {} wire bytes",
                t.wire
            );
            runs.push((events, text, t.wire));
        }
        let events = runs[1].0.saturating_sub(runs[0].0) as f64;
        if events < 1.0 {
            bail!("the {what} runs differ by no dd events: {runs:?}");
        }
        let wire = runs[1].2.saturating_sub(runs[0].2) as f64 / events;
        let text = runs[1].1.saturating_sub(runs[0].1) as f64 / events;
        if what == "printf" && pack {
            wire_per_printf = wire;
        }
        let shape = if what == "printf" { "`%s pid %d read %d bytes`" } else { "8 frames, `%s stack\\n%s`" };
        println!("\n| link: {what} event ({shape}), {how} record stream | bytes |");
        println!("| --- | ---: |");
        println!("| on the wire (framed, acknowledged, {how}), per event | {wire:.1} |");
        println!("| as ktap-style text, per event | {text:.1} |");
        println!("| wire / text | {:.3} |", wire / text);
    }
    let wire = wire_per_printf;

    // 2. floods of printf events through the relay at 115200 baud and at 19200 baud: what got through
    // and what was reported dropped. The guest makes only so many events per second (TCG), so at
    // 115200 the packed stream may carry them all; at 19200 it cannot.
    for (baud, bps) in [(115_200, BPS_115200), (19_200, 1_920)] {
        let relay = Relay::start(&relay_bin, guest, Some(bps), dir.join(format!("relay-flood-{baud}.log")))?;
        let secs = 10;
        let flood = "dd if=/dev/zero of=/dev/null bs=1 count=60000";
        let r = traced(built, guest, &relay, &script, secs, flood, &[])?;
        let (events, _) = dd_events(&r.stdout);
        let link_dropped = summary_count(&r.stderr, "link_dropped");
        let ring_dropped = summary_count(&r.stderr, "ring_dropped");
        let live = r.stderr.lines().filter(|l| l.contains("live: ")).count();
        let produced = events + link_dropped + ring_dropped;
        println!("\n| {secs} s flood of printf events at {baud} baud (relay --bps {bps}) | |");
        println!("| --- | ---: |");
        println!("| line capacity / wire bytes per event | {:.0} events/s |", f64::from(bps) / wire);
        println!(
            "| events made by `dd` (printed + reported dropped) | {:.0} events/s |",
            produced as f64 / secs as f64
        );
        println!("| printed, every one complete (with the ring's drain after the {secs} s) | {events} |");
        println!("| reported dropped: link too slow (link_dropped) | {link_dropped} |");
        println!("| reported dropped: kernel ring full (ring_dropped) | {ring_dropped} |");
        println!("| live loss notices during the run | {live} |");
    }

    // 3. push -> first event at 115200 baud, pushes back to back (each as soon as the last one
    // exited), with the script's only event from trace_begin and with a kprobe armed as well
    // (loading checks it, arming patches the kernel). On one relay that stays open, as a board's UART
    // does; then with a relay started for each push, which opens the guest's pty anew: QEMU's pty
    // backend polls once a second for a reopened pty before it reads what the host wrote, so that
    // case measures QEMU's reconnect, not the link
    let first = paths::workspace().join("samples/first_event.kp");
    let kprobe = dir.join("first_event_kprobe.kp");
    std::fs::write(&kprobe, FIRST_EVENT_KPROBE)?;
    println!("\n| push -> first event, 115200-baud relay, back to back | runs | min | median | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, script, reopen) in [
        ("trace_begin only, the line stays open", &first, false),
        ("with a kprobe, the line stays open", &kprobe, false),
        ("trace_begin only, QEMU's pty reopened for each push", &first, true),
    ] {
        let mut relay = None;
        let mut times = Vec::new();
        for _ in 0..5 {
            if reopen || relay.is_none() {
                // the last push's relay closes the guest's pty before the next one opens it
                drop(relay.take());
                relay = Some(Relay::start(&relay_bin, guest, Some(BPS_115200), dir.join("relay-first.log"))?);
            }
            let r = relay.as_ref().context("relay")?;
            times.push(first_event_ms(built, r, script)?);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {what} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }

    // 4. deploy over the line: the agent and the module, packed, then the module replaced
    let relay = Relay::start(&relay_bin, guest, Some(BPS_115200), dir.join("relay-deploy.log"))?;
    let started = Instant::now();
    let out = Command::new(&built.host_bin)
        .args(["deploy", "--board", &built.board.name, "--port", &relay.port, "--dest", "/tmp/bench-deploy"])
        .arg("--artifacts")
        .arg(&built.dir)
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("deploy through the relay failed:\n{err}");
    }
    for line in err.lines().filter(|l| l.contains("installed") || l.contains("module loaded")) {
        println!("bench: 115200: {line}");
    }
    println!(
        "\n| deploy (agent + module, packed) through a 115200-baud relay, module replaced | {secs:.1} s |"
    );

    // 5. what the packed stream costs the board: the agent's file, and its memory once it has
    // streamed (its compressor lives in a .bss arena, touched when the session is made)
    let agent = std::fs::metadata(&built.artifacts.agent)?.len();
    // smaps_rollup walks the page tables: status's VmRSS lags behind for small processes (per-task
    // counters synced in batches)
    let status = guest.console.run_ok(
        "for p in $(pidof ktap-agent); do grep -E '^(Rss|Anonymous):' /proc/$p/smaps_rollup; \
         grep VmData /proc/$p/status; done",
        T,
    )?;
    let kib = |what: &str| -> String {
        let v: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with(what))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        if v.is_empty() { "?".into() } else { v.join(", ") }
    };
    println!("\n| the agent on the board ({}) | |", built.board.name);
    println!("| --- | ---: |");
    println!("| file size | {agent} bytes |");
    println!("| resident after the runs above (smaps_rollup Rss) | {} KiB |", kib("Rss:"));
    println!("| of which anonymous (heap arena, stack, buffers) | {} KiB |", kib("Anonymous:"));
    println!("| data + bss (VmData) | {} KiB |", kib("VmData"));
    Ok(())
}

/// One `push --timings` of `script` through `relay` (its link opened for this push); the time from
/// the open link to the first event.
fn first_event_ms(built: &Built, relay: &Relay, script: &Path) -> Result<f64> {
    let out = Command::new(&built.host_bin)
        .args(["push", "--board", &built.board.name, "--timings", "--duration", "1", "--port", &relay.port])
        .arg("--vmlinux")
        .arg(&built.artifacts.vmlinux)
        .arg(script)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("timings:")).with_context(|| format!("no timings:\n{err}"))?;
    println!("bench: 115200: {line}");
    let ms = line.rsplit("first event ").next().and_then(|t| t.trim_end_matches(" ms").parse::<f64>().ok());
    ms.with_context(|| format!("cannot read `{line}`"))
}
