//! The `ktap-host` binary end to end against the scripted agent on a pty: exit codes, stdout
//! (program output only) and stderr (status, errors).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Got, KERNEL_ID, pty_peer};
use ktap_host::board::Arch;
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;
use ktap_host::vmlinux::Vmlinux;
use ktap_protocol::image::{Image, ProbeKind};
use ktap_protocol::record::{RecordKind, RecordWriter};
use ktap_protocol::wire::{AgentMsg, Stats};

const BIN: &str = env!("CARGO_BIN_EXE_ktap-host");
const SECS5: Duration = Duration::from_secs(5);

fn tmp() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ktap-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A boards dir with a real-hardware x86_64 board (so the host's cc can make its "vmlinux").
fn boards_dir() -> PathBuf {
    let d = tmp();
    let armv7 =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../boards/qemu-armv7.toml")).unwrap();
    let body = armv7.split("\n[qemu]").next().unwrap();
    let body = body
        .replace("name = \"qemu-armv7\"", "name = \"test-x86\"")
        .replace("arch = \"arm\"", "arch = \"x86_64\"")
        .replace("word_bits = 32", "word_bits = 64");
    std::fs::write(d.join("test-x86.toml"), body).unwrap();
    d
}

/// An ELF with `_text`, a function and the given build-id, from the host C compiler.
fn vmlinux(build_id: &[u8]) -> PathBuf {
    vmlinux_with(build_id, "")
}

/// [`vmlinux`] with more C source, e.g. an `_stext`.
fn vmlinux_with(build_id: &[u8], extra: &str) -> PathBuf {
    let d = tmp();
    std::fs::write(
        d.join("k.c"),
        format!("int _text;\n{extra}int vfs_read(void) {{ return _text; }}\nint main(void) {{ return vfs_read(); }}\n"),
    )
    .unwrap();
    let id: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let st = Command::new("cc")
        .current_dir(&d)
        .args(["-no-pie", &format!("-Wl,--build-id=0x{id}"), "k.c", "-o", "vmlinux"])
        .status()
        .unwrap();
    assert!(st.success());
    d.join("vmlinux")
}

/// A compiled image + sidecar on disk (a script without kprobes, so no vmlinux is needed).
fn image(build_id: &[u8], corrupt: bool) -> PathBuf {
    let src = "trace_end { printf(\"%s read %d bytes\\n\", \"dd\", 1000) }\n";
    let opts = lang::CompileOptions { arch: Arch::X86_64, build_id: build_id.to_vec() };
    let c = lang::compile(src, "prog.kp", &opts, &lang::NoKernel).unwrap_or_else(|d| panic!("{d:?}"));
    let mut bytes = c.image;
    if corrupt {
        bytes[0] = b'X';
    }
    let path = tmp().join("prog.kimg");
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(Sidecar::path_for(&path), serde_json::to_string(&c.sidecar).unwrap()).unwrap();
    path
}

fn push(port: &str, vmlinux: &Path, image: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["push", "--board", "test-x86", "--port", port, "--duration", "0.8"])
        .arg("--boards-dir")
        .arg(boards_dir())
        .arg("--vmlinux")
        .arg(vmlinux)
        .arg("--image")
        .arg(image)
        .args(extra)
        .env_remove("KTAP_BOARD")
        .env_remove("KTAP_VMLINUX");
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn push_an_image_and_print_its_records() {
    let (mut peer, port) = pty_peer();
    let (vml, img) = (vmlinux(&KERNEL_ID), image(&KERNEL_ID, false));
    let want_image = std::fs::read(&img).unwrap();
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        assert_eq!(peer.upload(), want_image);
        peer.send(&AgentMsg::Loaded { probes: 1 });
        assert_eq!(peer.recv(SECS5), Some(Got::Start));
        peer.send(&AgentMsg::Started);
        let mut buf = [0u8; 64];
        let mut w = RecordWriter::new(&mut buf, RecordKind::Printf, 0);
        w.str(b"dd");
        w.int(1000);
        let r = w.finish().unwrap().to_vec();
        peer.records(&r);
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Stop));
        peer.stopped(Stats { hits: 1, budget_exhausted: 2, ..Stats::default() });
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Bye));
    });
    let o = push(&port, &vml, &img, &[]).output().unwrap();
    agent.join().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "dd read 1000 bytes\n");
    assert!(
        stderr.contains(&format!(
            "ktap: connected to ktap-agent test on {port} (armv7l, Linux 6.1.0-50-armmp)"
        ))
    );
    assert!(stderr.contains("prog.kimg (1 probes); Ctrl-C to stop"), "{stderr}");
    assert!(
        stderr.contains("ktap: 1 hits; 2 hits aborted: instruction budget exhausted (budget_exhausted)"),
        "{stderr}"
    );
}

#[test]
fn push_a_script_compiled_against_the_vmlinux() {
    let (mut peer, port) = pty_peer();
    let vml = vmlinux(&KERNEL_ID);
    let vfs_read = Vmlinux::open(&vml).unwrap().function("vfs_read").unwrap();
    let script = tmp().join("reads.kp");
    std::fs::write(&script, "kprobe:vfs_read {\n    printf(\"%s pid %d\\n\", execname, pid)\n}\n").unwrap();
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        let image = peer.upload();
        let img = Image::parse(&image).unwrap();
        assert_eq!(img.build_id, KERNEL_ID);
        let mut probes = Vec::new();
        img.probes(|p| probes.push((p.kind, p.addr, p.name.to_vec())));
        assert_eq!(probes, [(ProbeKind::Kprobe, vfs_read, b"vfs_read".to_vec())]);
        peer.send(&AgentMsg::Loaded { probes: 1 });
        assert_eq!(peer.recv(SECS5), Some(Got::Start));
        peer.send(&AgentMsg::Started);
        let mut buf = [0u8; 64];
        let mut w = RecordWriter::new(&mut buf, RecordKind::Printf, 0);
        w.str(b"cat");
        w.int(42);
        let r = w.finish().unwrap().to_vec();
        peer.records(&r);
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Stop));
        peer.stopped(Stats { hits: 1, ..Stats::default() });
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Bye));
    });
    let mut c = Command::new(BIN);
    c.args(["push", "--board", "test-x86", "--port", &port, "--duration", "0.5", "--boards-dir"])
        .arg(boards_dir())
        .arg("--vmlinux")
        .arg(&vml)
        .arg(&script);
    let o = c.output().unwrap();
    agent.join().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "cat pid 42\n");
    assert!(!stderr.contains("hits;"), "a clean run prints no loss summary: {stderr}");
}

#[test]
fn kprobes_are_rebased_by_the_base_symbol_the_agent_reports() {
    // as on arm64 under KASLR: the agent found only `_stext`, 0x1000_0000 above the vmlinux's
    let (mut peer, port) = pty_peer();
    let vml = vmlinux_with(&KERNEL_ID, "int _stext;\n");
    let v = Vmlinux::open(&vml).unwrap();
    let (vfs_read, stext) = (v.function("vfs_read").unwrap(), v.base_symbol("_stext").unwrap());
    let script = tmp().join("reads.kp");
    std::fs::write(&script, "kprobe:vfs_read {\n    printf(\"%d\\n\", pid)\n}\n").unwrap();
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "_stext", stext + 0x1000_0000);
        let image = peer.upload();
        let mut probes = Vec::new();
        Image::parse(&image).unwrap().probes(|p| probes.push(p.addr));
        assert_eq!(probes, [vfs_read + 0x1000_0000]);
        peer.send(&AgentMsg::Loaded { probes: 1 });
        assert_eq!(peer.recv(SECS5), Some(Got::Start));
        peer.send(&AgentMsg::Started);
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Stop));
        peer.stopped(Stats::default());
        assert_eq!(peer.recv_no_ping(SECS5), Some(Got::Bye));
    });
    let run = |script: &Path, vml: &Path, port: &str| {
        Command::new(BIN)
            .args(["push", "--board", "test-x86", "--port", port, "--duration", "0.3", "--boards-dir"])
            .arg(boards_dir())
            .arg("--vmlinux")
            .arg(vml)
            .arg(script)
            .output()
            .unwrap()
    };
    let o = run(&script, &vml, &port);
    agent.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);

    // a vmlinux without the symbol the board names cannot be rebased: a clear error, nothing uploaded
    let (mut peer, port) = pty_peer();
    let plain = vmlinux(&KERNEL_ID);
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "_stext", 0xffff_a0e1_c7e1_0000);
        assert_eq!(peer.recv(SECS5), Some(Got::Bye), "nothing is uploaded");
    });
    let o = run(&script, &plain, &port);
    agent.join().unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "vmlinux {} has no `_stext` symbol, but the board reports its kernel's base as `_stext` at 0xffffa0e1c7e10000",
        plain.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn script_errors_are_rendered_against_the_source() {
    let (mut peer, port) = pty_peer();
    let vml = vmlinux(&KERNEL_ID);
    let script = tmp().join("bad.kp");
    std::fs::write(&script, "kprobe:vfs_reed {\n    printf(\"%d\\n\", pid)\n}\n").unwrap();
    let o = Command::new(BIN)
        .args(["push", "--board", "test-x86", "--port", &port, "--boards-dir"])
        .arg(boards_dir())
        .arg("--vmlinux")
        .arg(&vml)
        .arg(&script)
        .output()
        .unwrap();
    // the script is compiled before the board is contacted: the agent never hears a word
    assert_eq!(peer.recv(Duration::from_millis(300)), None, "a bad script reached the board");
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("no kernel function `vfs_reed`") && stderr.contains("did you mean `vfs_read`?"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("error: {}: 1 error in the script", script.display())), "{stderr}");
}

#[test]
fn build_id_mismatch_is_exit_1_and_names_both() {
    let (mut peer, port) = pty_peer();
    let other = [0x11u8; 20];
    let vml = vmlinux(&other);
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        assert_eq!(peer.recv(SECS5), Some(Got::Bye), "nothing is uploaded");
    });
    let o = push(&port, &vml, &image(&other, false), &[]).output().unwrap();
    agent.join().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout, "");
    let want = format!(
        "error: vmlinux {} has build-id {} but the running kernel (6.1.0-50-armmp) has {}",
        vml.display(),
        "11".repeat(20),
        "ab".repeat(20)
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn host_checks_the_image_unless_told_not_to() {
    // a corrupt image is refused on the host, and nothing is uploaded
    let (mut peer, port) = pty_peer();
    let (vml, img) = (vmlinux(&KERNEL_ID), image(&KERNEL_ID, true));
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        assert_eq!(peer.recv(SECS5), Some(Got::Bye));
    });
    let o = push(&port, &vml, &img, &[]).output().unwrap();
    agent.join().unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains(&format!("image {} is malformed: bad magic", img.display())), "{stderr}");

    // an image that parses but fails the VM's verifier: the offset and the function are named
    let bad_code = tmp().join("badcode.kimg");
    let mut bytes = std::fs::read(image(&KERNEL_ID, false)).unwrap();
    let at = Image::parse(&bytes).unwrap().code_offset;
    bytes[at] = 0xff;
    std::fs::write(&bad_code, &bytes).unwrap();
    std::fs::copy(Sidecar::path_for(&image(&KERNEL_ID, false)), Sidecar::path_for(&bad_code)).unwrap();
    let (mut peer, port) = pty_peer();
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        assert_eq!(peer.recv(SECS5), Some(Got::Bye));
    });
    let o = push(&port, &vml, &bad_code, &[]).output().unwrap();
    agent.join().unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let want = format!("image {} fails the host-side verifier: ", bad_code.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        stderr.contains(&format!("unknown opcode 0xff at byte offset {at} (in `trace_end`)")),
        "{stderr}"
    );

    // --no-host-verify: the board's verdict is shown with its offset
    let (mut peer, port) = pty_peer();
    let agent = std::thread::spawn(move || {
        peer.handshake(&KERNEL_ID, "", 0);
        peer.upload();
        peer.send(&AgentMsg::Rejected { code: 0x102, offset: 0, detail: 0 });
        assert_eq!(peer.recv(SECS5), Some(Got::Bye));
    });
    let o = push(&port, &vml, &img, &["--no-host-verify"]).output().unwrap();
    agent.join().unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("error: the board refused the image: bad magic (not a ktap image) at byte offset 0"),
        "{stderr}"
    );
}

#[test]
fn exit_codes_and_plain_errors() {
    let o = Command::new(BIN).args(["push", "--no-such-flag"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "usage error");

    let o = Command::new(BIN).arg("boards").env_remove("KTAP_BOARDS_DIR").output().unwrap();
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout.lines().any(|l| l.starts_with("qemu-armv7") && l.contains(" arm ") && l.contains("qemu")),
        "{stdout}"
    );

    let vml = vmlinux(&KERNEL_ID);
    let o = Command::new(BIN)
        .args(["push", "--board", "test-x86", "--vmlinux"])
        .arg(&vml)
        .arg("--boards-dir")
        .arg(boards_dir())
        .arg("--image")
        .arg(image(&KERNEL_ID, false))
        .env_remove("KTAP_PORT")
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("board `test-x86` is real hardware: give --port"), "{stderr}");

    // the default board is emulated; the vmlinux arch is checked first
    let o = Command::new(BIN)
        .args(["push", "--vmlinux"])
        .arg(&vml)
        .arg("x.kp")
        .env_remove("KTAP_BOARD")
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("is for ELF machine 62 (x86_64), but the board is Arm (machine 40)"), "{stderr}");

    let o = Command::new(BIN)
        .args(["push", "--port", "/dev/ktap-none", "--vmlinux"])
        .arg(&vml)
        .arg("--boards-dir")
        .arg(boards_dir())
        .args(["--board", "test-x86", "--image"])
        .arg(image(&KERNEL_ID, false))
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("cannot open /dev/ktap-none"), "{stderr}");
}

#[test]
fn kprobes_on_a_hazardous_board_are_refused_before_the_board_is_touched() {
    let dir = boards_dir();
    let board = std::fs::read_to_string(dir.join("test-x86.toml")).unwrap();
    std::fs::write(dir.join("test-x86.toml"), format!("{board}kprobe_hazard = \"a test race\"\n")).unwrap();
    let (mut peer, port) = pty_peer();
    let script = tmp().join("reads.kp");
    std::fs::write(&script, "kprobe:vfs_read { printf(\"read\\n\") }\n").unwrap();
    let o = Command::new(BIN)
        .args(["push", "--board", "test-x86", "--port", &port, "--vmlinux"])
        .arg(vmlinux(&KERNEL_ID))
        .arg("--boards-dir")
        .arg(&dir)
        .arg(&script)
        .env_remove("KTAP_BOARD")
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 kprobe(s), and kprobes can crash the kernel of board test-x86: a test race"),
        "{stderr}"
    );
    assert!(!stderr.contains("connected"), "{stderr}");
    // the agent never heard a word: no hello before the refusal
    assert_eq!(peer.recv(Duration::from_millis(300)), None);
}
