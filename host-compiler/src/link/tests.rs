//! Links against a real pty pair (the same kind of device QEMU hands out) and real child processes.

use std::fs::File;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

/// A pty pair: the master as a file, and the slave's path (kept open so the master never sees EIO).
fn pty() -> (File, String, std::os::fd::OwnedFd) {
    let p = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&p.slave).unwrap().to_string_lossy().into_owned();
    (File::from(p.master), path, p.slave)
}

#[test]
fn serial_over_a_pty_is_raw_and_times_out() {
    let (mut master, path, _slave) = pty();
    let mut link = SerialLink::open(&path, 115_200).unwrap();
    assert_eq!(link.name(), path);

    // every byte value passes unchanged in both directions (no echo, no CR/LF mapping, no ^C)
    let all: Vec<u8> = (0..=255u8).collect();
    link.write_all(&all).unwrap();
    let mut got = vec![0u8; 256];
    master.read_exact(&mut got).unwrap();
    assert_eq!(got, all);
    master.write_all(&all).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 256 {
        let n = link.read(&mut buf, Duration::from_secs(2)).unwrap();
        assert!(n > 0, "timed out after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, all);

    let t = Instant::now();
    assert_eq!(link.read(&mut buf, Duration::from_millis(150)).unwrap(), 0);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(140) && waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn serial_reports_a_hang_up() {
    let (master, path, slave) = pty();
    let mut link = SerialLink::open(&path, 115_200).unwrap();
    drop(slave);
    drop(master);
    let mut buf = [0u8; 8];
    let e = link.read(&mut buf, Duration::from_secs(2)).unwrap_err();
    assert!(e.to_string().contains(&path), "{e}");
}

#[test]
fn serial_open_failure_names_the_port() {
    let e = SerialLink::open("/dev/ktap-no-such-port", 115_200).unwrap_err().to_string();
    assert!(e.contains("cannot open /dev/ktap-no-such-port"), "{e}");
}

#[test]
fn child_process_stdio() {
    let mut link = ChildLink::spawn(Command::new("cat")).unwrap();
    assert_eq!(link.name(), "cat");
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    link.write_all(&data).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 700];
    while got.len() < data.len() {
        let n = link.read(&mut buf, Duration::from_secs(5)).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
    assert_eq!(link.read(&mut buf, Duration::from_millis(50)).unwrap(), 0);
}

#[test]
fn child_exit_is_an_error_with_its_status() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "printf hi; exit 3"]);
    let mut link = ChildLink::spawn(cmd).unwrap();
    let mut buf = [0u8; 8];
    let mut got = Vec::new();
    let err = loop {
        match link.read(&mut buf, Duration::from_secs(5)) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"hi");
    let e = err.to_string();
    assert!(e.contains("`sh -c printf hi; exit 3` closed its output"), "{e}");

    // writing to a child that already exited names the same cause as reading from it
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec 0<&-; exit 4"]);
    let mut link = ChildLink::spawn(cmd).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let e = link.write_all(&[0u8; 70_000]).unwrap_err().to_string();
    assert!(e.contains("closed its output (exit status: 4)"), "{e}");

    let e = ChildLink::spawn(Command::new("/nonexistent/ktap-agent")).unwrap_err().to_string();
    assert!(e.contains("cannot start `/nonexistent/ktap-agent`"), "{e}");
}
