//! The QEMU board's initramfs: an uncompressed `newc` cpio (every kernel reads it, no compressor
//! needed) holding busybox, the ktap module (and `ktap_bare.ko`, the kprobe benchmark's baseline), the
//! agent and an init that starts them.
//! Written by hand because the format is twenty lines and this keeps the build free of `cpio`.

use std::path::Path;

use anyhow::{Context, Result};
use ktap_host::board::Board;
use ktap_host::qemu::{FAILED_MARKER, READY_MARKER};

/// One entry of the archive.
enum Entry<'a> {
    Dir(&'a str),
    File { path: &'a str, mode: u32, data: Vec<u8> },
    CharDev { path: &'a str, major: u32, minor: u32 },
}

/// The guest's `/init`: mount the pseudo file systems, load the module, start the agent on the board's
/// agent UART, say ready, then give the console a shell. Every failure is reported with a marker line
/// so the host never waits for a boot that cannot finish.
pub fn init_script(board: &Board) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
fail() {{ echo "{failed}: $*"; exec setsid cttyhack sh; }}
insmod /lib/modules/ktap.ko || fail "insmod ktap.ko failed"
[ -c /dev/ktap ] || fail "/dev/ktap missing after insmod"
[ -e {device} ] || fail "agent device {device} missing"
/bin/ktap-agent {device} --baud {baud} >/tmp/agent.log 2>&1 &
echo "{ready} kernel=$(uname -r)"
export PS1='ktap# '
exec setsid cttyhack sh
"#,
        failed = FAILED_MARKER,
        ready = READY_MARKER,
        device = board.agent.device,
        baud = board.agent.baud,
    )
}

/// Write the initramfs for `board` to `out`.
pub fn write(out: &Path, board: &Board, busybox: &Path, module: &Path, agent: &Path) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let entries = [
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::CharDev { path: "dev/console", major: 5, minor: 1 },
        Entry::Dir("lib"),
        Entry::Dir("lib/modules"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::File { path: "init", mode: 0o755, data: init_script(board).into_bytes() },
        Entry::File { path: "bin/busybox", mode: 0o755, data: read(busybox)? },
        Entry::File { path: "bin/ktap-agent", mode: 0o755, data: read(agent)? },
        Entry::File { path: "lib/modules/ktap.ko", mode: 0o644, data: read(module)? },
        Entry::File {
            path: "lib/modules/ktap_bare.ko",
            mode: 0o644,
            data: read(&module.with_file_name(crate::build_module::BARE_MODULE))?,
        },
    ];
    let bytes = newc(&entries);
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

fn newc(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 1u32;
    let mut push = |out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)| {
        let fields =
            [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        ino += 1;
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    };
    for e in entries {
        match e {
            Entry::Dir(p) => push(&mut out, p, 0o040755, &[], (0, 0)),
            Entry::File { path, mode, data } => push(&mut out, path, 0o100000 | mode, data, (0, 0)),
            Entry::CharDev { path, major, minor } => push(&mut out, path, 0o020600, &[], (*major, *minor)),
        }
    }
    push(&mut out, "TRAILER!!!", 0, &[], (0, 0));
    out
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = newc(&[Entry::File { path: "init", mode: 0o755, data: b"abc".to_vec() }]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(&a[6..14], b"00000001"); // inode
        assert_eq!(&a[14..22], b"000081ed"); // regular file 0755
        assert_eq!(&a[54..62], b"00000003"); // size
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(a.len() % 4, 0);
        let trailer = a.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert!(trailer > 110);
    }

    #[test]
    fn init_reports_failures_and_readiness_with_markers() {
        let board = Board::load(&crate::paths::boards(), "qemu-armv7").unwrap();
        let s = init_script(&board);
        assert!(s.contains("/bin/ktap-agent /dev/ttyAMA1 --baud 115200"));
        assert!(s.contains(READY_MARKER) && s.contains(FAILED_MARKER));
    }
}
