//! The host session against a scripted agent over a real pty pair (see `common`): handshake, version
//! and build-id errors, upload and rejections, records, heartbeat, stop and drain.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Got, KERNEL_ID, Peer, pty_peer};
use ktap_host::format::Renderer;
use ktap_host::link::SerialLink;
use ktap_host::session::{Output, RunOptions, Session, SessionError, StopFlag, StopReason, Timeouts};
use ktap_host::sidecar::{FuncInfo, ProbeInfo, Sidecar, Span, TableInfo};
use ktap_protocol::image::build::{ImageBuilder, OwnedProbe};
use ktap_protocol::image::{FuncSpec, Image, ProbeKind};
use ktap_protocol::record::{RecordKind, RecordWriter};
use ktap_protocol::wire::{AgentMsg, PROTOCOL_VERSION, Stats, codes};

const SECS5: Duration = Duration::from_secs(5);

fn fast() -> Timeouts {
    Timeouts {
        hello: Duration::from_secs(2),
        reply: Duration::from_secs(3),
        stop: Duration::from_secs(1),
        silence: Duration::from_secs(1),
    }
}

fn connect(path: &str) -> Result<Session<SerialLink>, SessionError> {
    Session::connect(SerialLink::open(path, 115_200).unwrap(), fast())
}

/// Run `script` as the agent in a thread; returns its join handle.
fn agent(mut peer: Peer, script: impl FnOnce(&mut Peer) + Send + 'static) -> thread::JoinHandle<Peer> {
    thread::spawn(move || {
        script(&mut peer);
        peer
    })
}

fn span() -> Span {
    Span { start: 0, end: 0 }
}

/// An image with two functions and 1.3 KB of code (three upload chunks) and its sidecar.
fn program() -> (Vec<u8>, Sidecar) {
    let b = ImageBuilder {
        code: vec![0u8; 1300],
        funcs: vec![
            FuncSpec { code_off: 0, code_len: 1000, n_int: 1, ..FuncSpec::default() },
            FuncSpec { code_off: 1000, code_len: 300, n_int: 1, ..FuncSpec::default() },
        ],
        probes: vec![
            OwnedProbe {
                kind: ProbeKind::Kprobe,
                func: 0,
                addr: 0xc030_1000,
                flags: 0,
                name: b"vfs_read".to_vec(),
            },
            OwnedProbe {
                kind: ProbeKind::Kprobe,
                func: 1,
                addr: 0xc030_2000,
                flags: 0,
                name: b"do_sys_openat2".to_vec(),
            },
        ],
        build_id: KERNEL_ID.to_vec(),
        ..ImageBuilder::default()
    };
    let sidecar = Sidecar {
        source_file: "demo.kp".into(),
        formats: vec!["%-8s pid %-5d opens a file\n".into()],
        tables: vec![TableInfo { name: "reads".into(), span: span() }],
        probes: vec![
            ProbeInfo { spec: "kprobe:vfs_read".into(), span: span(), syscalls: None },
            ProbeInfo { spec: "kprobe:do_sys_openat2".into(), span: span(), syscalls: None },
        ],
        globals: vec![],
        funcs: vec![
            FuncInfo { name: "kprobe:vfs_read".into(), span: span() },
            FuncInfo { name: "kprobe:do_sys_openat2".into(), span: span() },
        ],
        ..Sidecar::default()
    };
    (b.build(), sidecar)
}

fn rec(kind: RecordKind, id: u16, s: Option<&[u8]>, ints: &[i64]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = RecordWriter::new(&mut buf, kind, id);
    if let Some(s) = s {
        w.str(s);
    }
    for i in ints {
        w.int(*i);
    }
    w.finish().unwrap().to_vec()
}

struct Collect<'s> {
    renderer: Renderer<'s>,
    text: String,
    notices: Vec<String>,
}

impl<'s> Collect<'s> {
    fn new(sc: &'s Sidecar) -> Self {
        Collect { renderer: Renderer::new(sc), text: String::new(), notices: Vec::new() }
    }
}

impl Output for Collect<'_> {
    fn records(&mut self, data: &[u8]) -> std::io::Result<()> {
        let t = self.renderer.feed(data);
        self.text.push_str(&t);
        Ok(())
    }
    fn notice(&mut self, line: &str) {
        self.notices.push(line.to_owned());
    }
}

#[test]
fn no_answer_names_the_port_and_resends_hello() {
    let (peer, path) = pty_peer();
    let a = agent(peer, |p| {
        let mut hellos = 0;
        while let Some(m) = p.recv(Duration::from_millis(2500)) {
            assert_eq!(m, Got::Hello { version: PROTOCOL_VERSION });
            hellos += 1;
        }
        assert!(hellos >= 2, "Hello is resent for an agent that starts late ({hellos})");
    });
    let t = Instant::now();
    let e = connect(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("no answer from the agent on {path} within 2 s: is ktap-agent running on the board?")
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    a.join().unwrap();
}

#[test]
fn newer_agent_says_upgrade_ktap_host() {
    let (peer, path) = pty_peer();
    let a = agent(peer, |p| {
        assert!(matches!(p.recv(SECS5), Some(Got::Hello { .. })));
        // a future agent's Hello: variant 0, its version, then a layout this host cannot decode
        p.send_payload(&[0, (PROTOCOL_VERSION + 1) as u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    });
    let e = connect(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "protocol version mismatch on {path}: ktap-host speaks version {}, the agent speaks version {}: \
             ktap-host is older than the agent on the board: upgrade ktap-host",
            PROTOCOL_VERSION,
            PROTOCOL_VERSION + 1
        )
    );
    a.join().unwrap();
}

#[test]
fn older_agent_says_upgrade_the_agent() {
    let (peer, path) = pty_peer();
    let a = agent(peer, |p| {
        assert!(matches!(p.recv(SECS5), Some(Got::Hello { .. })));
        p.send(&AgentMsg::Hello {
            version: PROTOCOL_VERSION - 1,
            agent: "old",
            machine: "armv7l",
            release: "6.1",
            build_id: &KERNEL_ID,
            base_symbol: "",
            base_addr: 0,
        });
        p.send(&AgentMsg::Error { code: codes::VERSION_MISMATCH, detail: i32::from(PROTOCOL_VERSION - 1) });
    });
    let e = connect(&path).unwrap_err().to_string();
    assert!(e.contains(&format!("the agent speaks version {}", PROTOCOL_VERSION - 1)), "{e}");
    assert!(e.ends_with("the agent on the board is older than ktap-host: upgrade the agent"), "{e}");
    a.join().unwrap();
}

#[test]
fn handshake_ignores_line_noise_and_reports_the_board() {
    let (peer, path) = pty_peer();
    let a = agent(peer, |p| {
        assert!(matches!(p.recv(SECS5), Some(Got::Hello { .. })));
        p.send_raw(b"[    1.234] random console output\r\n\x00\x07garbage\x00");
        p.send(&AgentMsg::Pong { seq: 99 }); // a leftover of an earlier session
        p.send(&AgentMsg::Hello {
            version: PROTOCOL_VERSION,
            agent: "ktap-agent 0.1.0",
            machine: "armv7l",
            release: "6.1.0-50-armmp",
            build_id: &KERNEL_ID,
            base_symbol: "_stext",
            base_addr: 0xffff_a0e1_c7e1_0000,
        });
        assert_eq!(p.recv(SECS5), Some(Got::Bye), "a dropped session says goodbye");
    });
    let s = connect(&path).unwrap();
    let info = s.agent();
    assert_eq!((info.machine.as_str(), info.release.as_str()), ("armv7l", "6.1.0-50-armmp"));
    assert_eq!(info.build_id.as_slice(), &KERNEL_ID[..]);
    assert_eq!((info.base_symbol.as_str(), info.base_addr), ("_stext", 0xffff_a0e1_c7e1_0000));
    assert_eq!(s.bad_frames(), 0, "noise before the agent answered is not a link problem");
    s.check_build_id(Path::new("/k/vmlinux"), &KERNEL_ID).unwrap();
    let e = s.check_build_id(Path::new("/k/vmlinux-other"), &[0x01, 0x23, 0xef]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "vmlinux /k/vmlinux-other has build-id 0123ef but the running kernel (6.1.0-50-armmp) has {}: \
             pass the vmlinux of the kernel the board runs",
            "ab".repeat(20)
        )
    );
    drop(s);
    a.join().unwrap();
}

#[test]
fn an_agent_without_build_id_is_refused() {
    let (peer, path) = pty_peer();
    let a = agent(peer, |p| p.handshake(&[], "", 0));
    let s = connect(&path).unwrap();
    let e = s.check_build_id(Path::new("/k/vmlinux"), &KERNEL_ID).unwrap_err().to_string();
    assert!(e.contains("did not report the running kernel's build-id") && e.contains("/k/vmlinux"), "{e}");
    drop(s);
    a.join().unwrap();
}

/// Upload, get `answer` back, return the session error text (the peer checks the image arrived whole).
fn rejected_with(answer: AgentMsg<'static>) -> String {
    let (image, sidecar) = program();
    let (peer, path) = pty_peer();
    let want = image.clone();
    let a = agent(peer, move |p| {
        p.handshake(&KERNEL_ID, "", 0);
        assert_eq!(p.upload(), want);
        p.send(&answer);
        assert_eq!(p.recv(SECS5), Some(Got::Bye), "dropping the session after an error says Bye");
    });
    let mut s = connect(&path).unwrap();
    let e = s.upload(&image, Some(&sidecar)).unwrap_err();
    assert!(matches!(e, SessionError::Rejected { .. }));
    drop(s);
    a.join().unwrap();
    e.to_string()
}

#[test]
fn rejections_name_the_offset_and_the_function() {
    let (image, _) = program();
    let img = Image::parse(&image).unwrap();
    let e = rejected_with(AgentMsg::Rejected { code: 0x10c, offset: 40, detail: 0 });
    assert_eq!(e, "the board refused the image: malformed section at byte offset 40");

    // a verifier code pointing into the second function's code
    let off = (img.code_offset + 1100) as u32;
    let e = rejected_with(AgentMsg::Rejected { code: 0x203, offset: off, detail: 0 });
    assert!(e.contains(&format!("at byte offset {off} (in `kprobe:do_sys_openat2`)")), "{e}");
    let what = ktap_vm::describe_code(0x203).expect("a verifier code");
    assert!(e.starts_with(&format!("the board refused the image: {what} at byte offset")), "{e}");

    let e = rejected_with(AgentMsg::Rejected { code: codes::BUILD_ID_MISMATCH, offset: 300, detail: 0 });
    assert_eq!(
        e,
        "the board refused the image: the image was compiled for another kernel build at byte offset 300"
    );
}

#[test]
fn attach_failures_name_the_probe_and_errno() {
    let e = rejected_with(AgentMsg::Rejected { code: codes::ATTACH_FAILED, offset: 1, detail: -22 });
    assert_eq!(
        e,
        "the board refused the image: a probe could not be attached: probe 1 `kprobe:do_sys_openat2`: EINVAL (errno 22)"
    );
    let e = rejected_with(AgentMsg::Rejected { code: codes::NO_TRACEPOINT, offset: 0, detail: -2 });
    assert!(
        e.contains("no such tracepoint in this kernel: probe 0 `kprobe:vfs_read`: ENOENT (errno 2)"),
        "{e}"
    );
}

#[test]
fn full_run_records_heartbeat_stop_and_drain() {
    let (image, sidecar) = program();
    let (peer, path) = pty_peer();
    let a = agent(peer, move |p| {
        p.handshake(&KERNEL_ID, "", 0);
        p.upload();
        p.send(&AgentMsg::Loaded { probes: 2 });
        assert_eq!(p.recv(SECS5), Some(Got::Start));
        p.send(&AgentMsg::Started);
        // no record before the host's first credit
        assert_eq!(p.recv(SECS5), Some(Got::Ack { next: 0, window: ktap_host::session::stream::WINDOW }));
        let early = rec(RecordKind::Printf, 0, Some(b"init"), &[1]);
        p.records(&early);
        let batch = [
            rec(RecordKind::Printf, 0, Some(b"cat"), &[42]),
            rec(RecordKind::TableEntry, 0, Some(b"sh"), &[3]),
        ]
        .concat();
        // a record may be cut anywhere between pieces
        p.records(&batch[..5]);
        p.records(&batch[5..]);
        p.send(&AgentMsg::Stats(Stats { hits: 5, ..Stats::default() })); // nothing lost: no notice
        p.send(&AgentMsg::Stats(Stats { hits: 9, ring_dropped: 1, ..Stats::default() }));
        // a corrupted frame: counted, never fatal
        let mut bad = ktap_protocol::frame::encode_vec(&[5, 1, 2, 3]).unwrap();
        bad[2] ^= 0x10;
        p.send_raw(&bad);
        // answer pings until the host stops
        let mut pings = 0;
        loop {
            match p.recv(SECS5) {
                Some(Got::Ping { seq }) => {
                    pings += 1;
                    p.send(&AgentMsg::Pong { seq });
                }
                Some(Got::Ack { .. }) => {}
                Some(Got::Stop) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 4, "pings every 250 ms: {pings} in ~1.2 s");
        // the drain: the table's last entry and end, then Stopped
        let rest = [
            rec(RecordKind::TableEntry, 0, Some(b"dd"), &[1000]),
            rec(RecordKind::TableEnd, 0, None, &[2, 0]),
        ]
        .concat();
        p.records(&rest);
        p.stopped(Stats { hits: 10, ring_dropped: 2, ..Stats::default() });
        assert_eq!(p.recv_no_ping(SECS5), Some(Got::Bye));
    });
    let mut s = connect(&path).unwrap();
    assert_eq!(s.upload(&image, Some(&sidecar)).unwrap(), 2);
    s.start().unwrap();
    let mut out = Collect::new(&sidecar);
    let t = Instant::now();
    let opts = RunOptions { duration: Some(Duration::from_millis(1200)), ..RunOptions::default() };
    let sum = s.run(&mut out, opts).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1200));
    a.join().unwrap();

    let want = format!(
        "init     pid 1     opens a file\ncat      pid 42    opens a file\n{:<32} {:>12}\n{:<32} {:>12}\n",
        "dd", 1000, "sh", 3
    );
    assert_eq!(out.text, want);
    assert_eq!(sum.reason, StopReason::Duration);
    assert_eq!(sum.stats.hits, 10);
    assert_eq!(sum.bad_frames, 1);
    assert!(sum.pings >= 2 && sum.pongs >= 2, "{sum:?}");
    let notices = out.notices.join("\n");
    assert!(
        notices.contains("live: 9 hits; 1 records dropped: kernel ring buffer full (ring_dropped)"),
        "{notices}"
    );
    assert!(
        notices.contains(&format!("1 corrupted frames dropped so far on {path} (lost records are resent)")),
        "{notices}"
    );
    assert_eq!(out.notices.iter().filter(|n| n.starts_with("live")).count(), 1, "{notices}");
    assert_eq!(
        sum.problems().unwrap(),
        "10 hits; 2 records dropped: kernel ring buffer full (ring_dropped), 1 corrupted frames dropped on the link"
    );
}

/// Connect, upload and start (a packed record stream) against a peer that then runs `then`.
fn running(
    then: impl FnOnce(&mut Peer) + Send + 'static,
) -> (Session<SerialLink>, thread::JoinHandle<Peer>, Sidecar) {
    running_with(true, then)
}

/// [`running`], with the record stream packed or not.
fn running_with(
    packed: bool,
    then: impl FnOnce(&mut Peer) + Send + 'static,
) -> (Session<SerialLink>, thread::JoinHandle<Peer>, Sidecar) {
    let (image, sidecar) = program();
    let (peer, path) = pty_peer();
    let a = agent(peer, move |p| {
        p.handshake(&KERNEL_ID, "", 0);
        p.upload();
        p.send(&AgentMsg::Loaded { probes: 2 });
        assert_eq!(p.recv(SECS5), Some(Got::Start));
        p.send(&AgentMsg::Started);
        assert!(matches!(p.recv(SECS5), Some(Got::Ack { next: 0, .. })));
        then(p);
    });
    let mut s = connect(&path).unwrap();
    s.upload(&image, Some(&sidecar)).unwrap();
    s.set_record_packing(packed);
    s.start().unwrap();
    (s, a, sidecar)
}

fn stop_and_bye(p: &mut Peer) {
    assert_eq!(p.recv_no_ping(SECS5), Some(Got::Stop));
    p.stopped(Stats::default());
    assert_eq!(p.recv_no_ping(SECS5), Some(Got::Bye));
}

#[test]
fn stop_flag_and_trigger() {
    let (mut s, a, sc) = running(stop_and_bye);
    let stop = StopFlag::new();
    let remote = stop.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        remote.trigger();
    });
    let sum = s.run(&mut Collect::new(&sc), RunOptions { stop, ..RunOptions::default() }).unwrap();
    assert_eq!(sum.reason, StopReason::Interrupted);
    assert_eq!(sum.problems(), None, "a clean run prints no summary");
    a.join().unwrap();

    // an external trigger, e.g. "the guest command finished"
    let (mut s, a, sc) = running(|p| {
        let r = rec(RecordKind::Printf, 0, Some(b"done"), &[0]);
        p.records(&r);
        stop_and_bye(p);
    });
    let done = Arc::new(AtomicBool::new(false));
    let mut out = Collect::new(&sc);
    let seen = done.clone();
    let until = Box::new(move || seen.load(Ordering::SeqCst));
    let flag = done.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(400));
        flag.store(true, Ordering::SeqCst);
    });
    let sum = s.run(&mut out, RunOptions { until: Some(until), ..RunOptions::default() }).unwrap();
    assert_eq!(sum.reason, StopReason::Trigger);
    assert!(out.text.starts_with("done "), "{}", out.text);
    a.join().unwrap();
}

#[test]
fn the_agent_may_stop_by_itself() {
    let (mut s, a, sc) = running(|p| {
        p.stopped(Stats { hits: 3, table_full: 4, ..Stats::default() });
        assert_eq!(p.recv_no_ping(SECS5), Some(Got::Bye), "no Stop after the agent stopped");
    });
    let sum = s.run(&mut Collect::new(&sc), RunOptions::default()).unwrap();
    assert_eq!(sum.reason, StopReason::Agent);
    assert_eq!(sum.problems().unwrap(), "3 hits; 4 table inserts refused: table full (table_full)");
    a.join().unwrap();
}

#[test]
fn a_silent_agent_is_an_error() {
    let (mut s, a, sc) = running(|p| {
        // swallow pings without answering
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            p.recv(Duration::from_millis(100));
        }
    });
    let port = s.port().to_owned();
    let e = s.run(&mut Collect::new(&sc), RunOptions::default()).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("the agent on {port} stopped answering: nothing received for 1 s (pings unanswered)")
    );
    a.join().unwrap();
}

#[test]
fn stopped_must_come() {
    let (mut s, a, sc) = running(|p| {
        assert_eq!(p.recv_no_ping(SECS5), Some(Got::Stop));
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            p.recv_no_ping(Duration::from_millis(100)); // pongs, but never Stopped
        }
    });
    let port = s.port().to_owned();
    let opts = RunOptions { duration: Some(Duration::from_millis(100)), ..RunOptions::default() };
    let e = s.run(&mut Collect::new(&sc), opts).unwrap_err().to_string();
    assert_eq!(e, format!("no Stopped after Stop from the agent on {port} within 1 s"));
    a.join().unwrap();
}

#[test]
fn agent_errors_while_running() {
    // a kernel error is shown and the run goes on; losing the session ends it
    let (mut s, a, sc) = running(|p| {
        p.send(&AgentMsg::Error { code: codes::KERNEL, detail: -5 });
        p.send(&AgentMsg::Error { code: codes::NO_SESSION, detail: 0 });
        let _ = p.recv_no_ping(Duration::from_millis(500));
    });
    let mut out = Collect::new(&sc);
    let e = s.run(&mut out, RunOptions::default()).unwrap_err().to_string();
    assert!(e.contains("reported: no session on the agent"), "{e}");
    // with what the host saw before it, to tell a stalled line from a host that did not ping
    assert!(
        e.contains("ms into the run; the agent was last heard ") && e.contains("one every 250 ms"),
        "{e}"
    );
    assert_eq!(out.notices, ["agent: kernel error: EIO (errno 5)"]);
    a.join().unwrap();
}

#[test]
fn lost_pieces_are_asked_for_again_and_the_output_is_complete() {
    let r1 = rec(RecordKind::Printf, 0, Some(b"one"), &[1]);
    let r2 = rec(RecordKind::Printf, 0, Some(b"two"), &[2]);
    let r3 = rec(RecordKind::Printf, 0, Some(b"three"), &[3]);
    let (l1, l2) = (r1.len() as u64, r2.len() as u64);
    // the offsets below are of records as they are: an unpacked stream
    let (mut s, a, sc) = running_with(false, move |p| {
        p.records(&r1);
        // r2 is "lost on the link": skip it in the stream
        p.stream_end += l2;
        p.records(&r3);
        // the host asks for everything from the gap
        match p.recv_no_ping(SECS5) {
            Some(Got::Nak { next, .. }) => assert_eq!(next, l1),
            other => panic!("expected a Nak, got {other:?}"),
        }
        p.send(&AgentMsg::Records { offset: l1, data: &[r2.clone(), r3.clone()].concat() });
        // the tail after Stopped is missing too: Stopped says how long the stream is
        assert_eq!(p.recv_no_ping(SECS5), Some(Got::Stop));
        let r4 = rec(RecordKind::Printf, 0, Some(b"four"), &[4]);
        let at = p.stream_end;
        p.stream_end += r4.len() as u64;
        p.stopped(Stats::default());
        loop {
            match p.recv_no_ping(SECS5) {
                Some(Got::Nak { next, .. }) if next == at => break,
                Some(Got::Nak { .. } | Got::Stop) => {}
                other => panic!("expected a Nak for the tail, got {other:?}"),
            }
        }
        p.send(&AgentMsg::Records { offset: at, data: &r4 });
        loop {
            match p.recv_no_ping(SECS5) {
                Some(Got::Bye) => break,
                Some(Got::Nak { .. } | Got::Stop) => {}
                other => panic!("expected Bye, got {other:?}"),
            }
        }
    });
    let mut out = Collect::new(&sc);
    let opts = RunOptions { duration: Some(Duration::from_millis(600)), ..RunOptions::default() };
    let sum = s.run(&mut out, opts).unwrap();
    a.join().unwrap();
    let pids: Vec<&str> = out.text.lines().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(pids, ["1", "2", "3", "4"], "{}", out.text);
    assert_eq!(sum.resend_requests, 2);
    assert!(sum.problems().unwrap().contains("2 resend requests (all lost records recovered)"), "{sum:?}");
}

/// An output that fills up after its first records (stdout piped into a pager that stopped
/// reading) until the test makes room again.
struct Filling<'s> {
    inner: Collect<'s>,
    room: Arc<AtomicBool>,
    batches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Output for Filling<'_> {
    fn records(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.batches.fetch_add(1, Ordering::SeqCst) == 0 {
            self.room.store(false, Ordering::SeqCst);
        }
        self.inner.records(data)
    }
    fn notice(&mut self, line: &str) {
        self.inner.notice(line);
    }
    fn has_room(&self) -> bool {
        self.room.load(Ordering::SeqCst)
    }
}

#[test]
fn an_output_that_falls_behind_withholds_credit_while_the_pings_go_on() {
    use ktap_host::session::stream::WINDOW;
    let room = Arc::new(AtomicBool::new(true));
    let agent_room = Arc::clone(&room);
    let r1 = rec(RecordKind::Printf, 0, Some(b"one"), &[1]);
    let r2 = rec(RecordKind::Printf, 0, Some(b"two"), &[2]);
    let (mut s, a, sc) = running(move |p| {
        p.records(&r1);
        // the output took it and is full now: the next acknowledgement grants nothing more
        loop {
            match p.recv(SECS5) {
                Some(Got::Ack { window: 0, .. }) => break,
                Some(Got::Ack { .. }) => {}
                Some(Got::Ping { seq }) => p.send(&AgentMsg::Pong { seq }),
                other => panic!("expected an Ack with no credit, got {other:?}"),
            }
        }
        // while it stays full the host keeps pinging (a silent host gets its program disarmed)
        // and every acknowledgement keeps the credit at 0
        let mut pings = 0;
        while pings < 6 {
            match p.recv(SECS5) {
                Some(Got::Ping { seq }) => {
                    pings += 1;
                    p.send(&AgentMsg::Pong { seq });
                }
                Some(Got::Ack { window, .. }) => assert_eq!(window, 0, "credit while the output is full"),
                other => panic!("expected pings, got {other:?}"),
            }
        }
        agent_room.store(true, Ordering::SeqCst);
        loop {
            match p.recv(SECS5) {
                Some(Got::Ack { window, .. }) if window == WINDOW => break,
                Some(Got::Ack { .. }) => {}
                Some(Got::Ping { seq }) => p.send(&AgentMsg::Pong { seq }),
                other => panic!("expected the credit back, got {other:?}"),
            }
        }
        p.records(&r2);
        stop_and_bye(p);
    });
    let batches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut out =
        Filling { inner: Collect::new(&sc), room: Arc::clone(&room), batches: Arc::clone(&batches) };
    let until = Box::new(move || batches.load(Ordering::SeqCst) >= 2);
    let opts = RunOptions { until: Some(until), ..RunOptions::default() };
    let sum = s.run(&mut out, opts).unwrap();
    a.join().unwrap();
    let pids: Vec<&str> = out.inner.text.lines().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(pids, ["1", "2"], "{}", out.inner.text);
    // six pings at least 250 ms apart were sent while it was held
    assert!(sum.output_held >= Duration::from_millis(1250), "{sum:?}");
    let problems = sum.problems().unwrap();
    assert!(problems.contains("output fell behind for "), "{problems}");
    assert!(problems.ends_with(" s (the board held records back meanwhile)"), "{problems}");
}

#[test]
fn install_file_resends_a_chunk_whose_answer_was_lost_and_checks_the_result() {
    use ktap_protocol::pack::{Unpacker, crc32};
    let content: Vec<u8> = (0..40_000u32).flat_map(|i| (i % 1000).to_le_bytes()).collect();
    let want = content.clone();
    let (peer, port) = pty_peer();
    let board = agent(peer, move |p| {
        p.handshake(&KERNEL_ID, "_stext", 0xc000_8000);
        let Some(Got::FileBegin { path, len, packed, crc, mode }) = p.recv_no_ping(SECS5) else { panic!() };
        assert_eq!(
            (path.as_str(), len as usize, crc, mode),
            ("/opt/ktap/ktap.ko", want.len(), crc32(&want), 0o644)
        );
        p.send(&AgentMsg::FileAck { next: 0 });
        let mut got = Vec::new();
        let mut u = Unpacker::new(u64::from(len));
        let mut next = 0u32;
        let mut dropped_one = false;
        loop {
            match p.recv_no_ping(SECS5) {
                Some(Got::FileChunk { offset, data }) if offset == next => {
                    if !dropped_one && offset > 0 {
                        // this chunk's acknowledgement is lost: the host must send it again
                        dropped_one = true;
                        continue;
                    }
                    next += data.len() as u32;
                    u.feed(&data, next < packed, |b| {
                        got.extend_from_slice(b);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                    p.send(&AgentMsg::FileAck { next });
                }
                Some(Got::FileChunk { .. }) => p.send(&AgentMsg::FileAck { next }),
                Some(Got::FileEnd) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(dropped_one && got == want);
        p.send(&AgentMsg::FileDone { len, crc });
        assert_eq!(p.recv_no_ping(SECS5), Some(Got::ModuleLoad { path: "/opt/ktap/ktap.ko".into() }));
        p.send(&AgentMsg::Error { code: codes::MODULE_LOAD, detail: -8 });
    });
    let mut s = connect(&port).unwrap();
    let mut seen = Vec::new();
    let r = s
        .install_file("/opt/ktap/ktap.ko", &content, 0o644, &mut |done, total| seen.push((done, total)))
        .unwrap();
    assert_eq!(r.len, content.len() as u64);
    assert!(r.packed < r.len / 2 && r.resent >= 1, "{r:?}");
    assert_eq!(seen.last().map(|(d, t)| d == t), Some(true));
    let err = s.load_module("/opt/ktap/ktap.ko").unwrap_err().to_string();
    assert!(err.contains("refused to load the module") && err.contains("ENOEXEC"), "{err}");
    board.join().unwrap();
    // a relative destination is refused before anything is sent
    let err = s.install_file("ktap.ko", b"x", 0o644, &mut |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("absolute"), "{err}");
}
