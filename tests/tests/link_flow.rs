//! The link's bookkeeping against the real agent on the QEMU board: a line far slower than the
//! events (credit flow control holds the agent back, the overflow is dropped on the board and
//! counted, live and at the end, so that every hit is either printed or counted); a host killed
//! mid-stream and a new one connecting at once (the board is clean for it); and the version
//! handshake spoken by hand to the agent (a mismatch is refused and leaves the agent usable).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use ktap_e2e::{HostRun, TestEnv, kprobes, relay, scratch_dir, write_script};
use ktap_host::link::{Link, SerialLink};
use ktap_protocol::frame::{self, Deframer};
use ktap_protocol::wire::{self, AgentMsg, HostMsg, PROTOCOL_VERSION, codes};

const T: Duration = Duration::from_secs(180);

/// One line per `vfs_read`: every hit is one record, so printed lines + counted losses = hits.
const PRINTF_READS: &str =
    "kprobe:vfs_read {\n    printf(\"%s pid %d read %d\\n\", execname, pid, arg2)\n}\n";

/// The counter named `(name)` in the final `ktap: N hits; ...` line, 0 when not listed.
fn counter(err: &str, name: &str) -> u64 {
    let Some(summary) = err.lines().rfind(|l| l.starts_with("ktap: ") && l.contains(" hits")) else {
        return 0;
    };
    summary
        .split([';', ','])
        .find(|p| p.contains(&format!("({name})")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every hit the final summary counts as lost on the way (never printed).
fn losses(err: &str) -> u64 {
    ["ring_dropped", "link_dropped", "kernel_missed", "recursion_skipped", "budget_exhausted"]
        .iter()
        .map(|c| counter(err, c))
        .sum()
}

/// Hits in the final summary line (`ktap: N hits; ...`), or from `--stats`-less clean runs: none.
fn hits(err: &str) -> Option<u64> {
    err.lines()
        .rfind(|l| l.starts_with("ktap: ") && l.contains(" hits"))
        .and_then(|l| l.strip_prefix("ktap: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn a_line_slower_than_the_events_drops_on_the_board_and_counts_every_loss_live_and_at_the_end() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let log = scratch_dir("slow-line").join("relay.log");
    // 1000 bytes/s (10 kbaud) carrying the plain record stream (~29 B per event here): ~35 events/s,
    // while `dd` reading byte by byte makes hundreds per second even on a loaded TCG guest, so the
    // board's ring overflows whatever the machine's load. The packed stream is not used: it carries
    // this repetitive workload at ~0.4 B per event, so whether such a line overflows at all depends
    // on the machine's load (a CI run lost nothing).
    let bin = Path::new(env!("CARGO_BIN_EXE_link_relay"));
    let mut relay = relay::spawn(bin, guest.agent_port(), &["--bps", "1000"], &log);
    let mut push = env.push(Path::new(&relay.port));
    push.arg("--no-pack").arg(write_script("printf_reads", PRINTF_READS));
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    guest.console.run_ok("dd if=/dev/zero of=/dev/null bs=1 count=20000", T).unwrap();
    // Then the line gets fast, as if its baud rate were raised: the backlog a full ring leaves on
    // the board (256 KiB: minutes at the slow pace, more when a loaded machine slows the guest) is
    // delivered in seconds, so the rest of the test does not depend on the pace or the load.
    relay.pace(None);
    // the losses are shown while the trace runs, not only at the end
    run.wait_stderr("live: ", T);
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    let last = relay.stop();
    assert!(status.success(), "push over the slow line failed: {status}\n{err}\nrelay: {last}");
    let live = err.lines().find(|l| l.contains("live: ")).unwrap();
    assert!(live.contains("dropped"), "the live notice names no drop: {live}");

    let hits = hits(&err).unwrap_or_else(|| panic!("no summary line:\n{err}"));
    let lost = losses(&err);
    let printed = out.lines().filter(|l| l.contains(" read ")).count() as u64;
    assert!(lost > 0, "a 1000 B/s line carried every event: nothing tested\n{err}");
    assert!(hits >= 20_000, "dd's reads were not all hits: {hits}");
    // never silent: each hit was printed whole or counted as lost, and nothing was mangled on the way
    assert_eq!(printed + lost, hits, "printed {printed}, lost {lost}\nstderr:\n{err}\nrelay: {last}");
    assert!(out.lines().all(|l| l.split_whitespace().count() == 5), "a broken line in the output");
    assert!(!err.contains("corrupted") && !err.contains("incomplete"), "{err}");
    assert!(!kprobes(&mut guest).contains("vfs_read"), "probe left armed");
    eprintln!("{live}\n{}\nrelay: {last}", err.lines().rfind(|l| l.contains(" hits")).unwrap_or(""));
    guest.shutdown();
}

/// One long line per `vfs_read`: the host writes ~120 bytes for every few bytes on the link, so one
/// `dd` fills any pipe many times over.
const LONG_LINES: &str = "kprobe:vfs_read {\n    printf(\"%s pid %d read %d bytes, one line per call, long enough to fill a pipe that nobody reads\\n\", execname, pid, arg2)\n}\n";

#[test]
fn a_host_whose_stdout_nobody_reads_keeps_the_program_armed_and_counts_every_hit() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    let env = TestEnv::get();
    let mut guest = env.boot();
    let mut push = env.push(guest.agent_port());
    push.arg(write_script("long_reads", LONG_LINES));
    let mut child = push
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {push:?}: {e}"));
    // stdout is a pipe nobody reads until the workload is over (a pager the user paused)
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err = Arc::new(Mutex::new(String::new()));
    let err_pump = {
        let err = Arc::clone(&err);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut e = err.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        })
    };
    let started = Instant::now();
    while !err.lock().unwrap().lines().any(|l| l.starts_with(ktap_e2e::ARMED_LINE)) {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < T,
            "not armed ({exited:?}):\n{}",
            err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ~1.2 MB of text against a 64 KiB pipe, and then a while more: far past the agent's 1.2 s
    // heartbeat, which a host blocked in a write would let expire
    guest.console.run_ok("dd if=/dev/zero of=/dev/null bs=1 count=10000", T).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(kill.is_ok_and(|s| s.success()), "kill -INT failed");
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("ktap-host did not exit after Ctrl-C:\n{}", err.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap().unwrap();
    err_pump.join().unwrap();
    let err = err.lock().unwrap().clone();
    assert!(status.success(), "push with an unread stdout failed: {status}\n{err}");
    // it really was held back: the output fell behind and the board kept the backlog
    assert!(err.contains("output fell behind for "), "stdout never filled up:\n{err}");
    let hits = hits(&err).unwrap_or_else(|| panic!("no summary line:\n{err}"));
    let lost = losses(&err);
    let printed = out.lines().filter(|l| l.contains(" read ")).count() as u64;
    assert!(hits >= 10_000, "dd's reads were not all hits: {hits}");
    assert_eq!(printed + lost, hits, "printed {printed}, lost {lost}\nstderr:\n{err}");
    assert!(out.lines().all(|l| l.split_whitespace().count() == 19), "a broken line in the output");
    assert!(!kprobes(&mut guest).contains("vfs_read"), "probe left armed");
    eprintln!("{}", err.lines().rfind(|l| l.contains(" hits")).unwrap_or(""));
    guest.shutdown();
}

#[test]
fn a_host_killed_mid_stream_leaves_a_board_the_next_push_finds_clean() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let port = guest.agent_port().to_owned();
    // a first host, killed while the board streams to it
    let mut push = env.push(&port);
    push.arg(write_script("printf_reads", PRINTF_READS));
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    guest.console.run_ok("dd if=/dev/zero of=/dev/null bs=1 count=3000", T).unwrap();
    run.signal("KILL");
    let _ = run.finish(T);

    // a second one at once, inside the agent's heartbeat window: its Hello resets the board
    let case = env.kprobe_case(500);
    let mut push = env.push(&port);
    push.arg(&case.script);
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    let list = kprobes(&mut guest);
    let armed = list.lines().filter(|l| l.contains(case.function)).count();
    assert_eq!(armed, 1, "the first program's probe is still there:\n{list}");
    guest.console.run_ok(&case.workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "the second push failed: {status}\n{out}\n{err}");
    // the old program's records and counts did not leak into the new one
    assert_eq!(case.counted(&out), Some(case.count), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.contains(" read "), "records of the killed host's program arrived:\n{out}");
    assert!(!kprobes(&mut guest).contains(case.function), "probe left armed");
    guest.shutdown();
}

/// The agent's end of the line spoken by hand: frames out, the agent's messages decoded into
/// summaries and kept in arrival order (a read may carry several).
struct ByHand {
    link: SerialLink,
    deframer: Deframer,
    got: VecDeque<String>,
}

impl ByHand {
    fn send(&mut self, msg: &HostMsg<'_>) {
        let mut buf = [0u8; 512];
        let payload = wire::encode(msg, &mut buf).unwrap().to_vec();
        self.link.write_all(&frame::encode_vec(&payload).unwrap()).unwrap();
    }

    /// Read what the line has for at most `wait`; true if something arrived.
    fn read(&mut self, wait: Duration) -> bool {
        let mut rx = [0u8; 512];
        let n = self.link.read(&mut rx, wait).unwrap();
        let got = &mut self.got;
        self.deframer.feed(&rx[..n], |f| {
            if let Ok(p) = f {
                got.push_back(match wire::decode::<AgentMsg<'_>>(p) {
                    Ok(AgentMsg::Hello { version, .. }) => format!("Hello {version}"),
                    Ok(AgentMsg::Error { code, detail }) => format!("Error {code:#x} {detail}"),
                    Ok(m) => format!("{m:?}"),
                    Err(e) => format!("undecodable: {e}"),
                })
            }
        });
        n > 0
    }

    /// The agent's next message, however long a loaded board takes to send it (up to `T`).
    fn next(&mut self) -> String {
        let deadline = Instant::now() + T;
        while self.got.is_empty() {
            assert!(Instant::now() < deadline, "the agent sent nothing within {T:?}");
            self.read(Duration::from_millis(100));
        }
        self.got.pop_front().unwrap()
    }

    /// Everything the agent sends until the line has been quiet for `quiet`.
    fn until_quiet(&mut self, quiet: Duration) -> Vec<String> {
        while self.read(quiet) {}
        self.got.drain(..).collect()
    }
}

#[test]
fn the_agent_refuses_another_protocol_version_and_still_serves_the_right_one() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let port = guest.agent_port().to_string_lossy().into_owned();
    {
        let link = SerialLink::open(&port, env.board.agent.baud).unwrap();
        let mut agent = ByHand { link, deframer: Deframer::new(), got: VecDeque::new() };
        let other = PROTOCOL_VERSION + 1;
        // resent every second until answered, as a real host does (the agent may start late on a
        // loaded machine), then whatever the resent Hellos still draw
        let hello = HostMsg::Hello { version: other, host: "a newer host" };
        let started = Instant::now();
        while agent.got.is_empty() {
            assert!(started.elapsed() < T, "the agent never answered a Hello");
            agent.send(&hello);
            let second = Instant::now() + Duration::from_secs(1);
            while agent.got.is_empty() && Instant::now() < second {
                agent.read(Duration::from_millis(100));
            }
        }
        let got = agent.until_quiet(Duration::from_secs(2));
        // it says which version it speaks, and refuses
        assert!(got.contains(&format!("Hello {PROTOCOL_VERSION}")), "{got:?}");
        let mismatch = format!("Error {:#x} {PROTOCOL_VERSION}", codes::VERSION_MISMATCH);
        assert!(got.contains(&mismatch), "{got:?}");
        // Nothing else is served under the wrong version: a request draws the refusal again.
        // Answers are awaited however late they come, and told apart by order, not by a quiet
        // window (a loaded board may answer after any fixed wait).
        agent.send(&HostMsg::LoadBegin { len: 64 });
        assert_eq!(agent.next(), mismatch, "a request after the mismatch");
        // `Bye` ends the refused session without an answer: the request after it is the first
        // thing answered, and it finds no session
        agent.send(&HostMsg::Bye);
        agent.send(&HostMsg::LoadBegin { len: 64 });
        let no_session = format!("Error {:#x} 0", codes::NO_SESSION);
        assert_eq!(agent.next(), no_session, "Bye was answered, or the session outlived it");
        let rest = agent.until_quiet(Duration::from_millis(500));
        assert!(rest.is_empty(), "more than one answer to one request: {rest:?}");
    }
    // the right version afterwards: a whole trace, exact
    let push = env.push(guest.agent_port());
    env.count_exactly(&mut guest, push, 200);
    guest.shutdown();
}
