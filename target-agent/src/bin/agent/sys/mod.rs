//! Every syscall the agent makes, behind one small interface.
//!
//! Backends: `linux_raw` (rustix's libc-free backend) on arm, aarch64, powerpc, powerpc64 and
//! x86_64, and `mips_o32` (hand-written o32 `syscall`s) on MIPS of either byte order: rustix has no
//! big-endian MIPS backend, and its little-endian one does not keep `$at` across a `syscall` (see
//! `mips_o32`). Both provide the same functions; nothing outside this module makes a syscall.
//!
//! File descriptors are plain `i32`s: the agent owns few of them and closes them explicitly.

#[cfg(not(target_arch = "mips"))]
mod linux_raw;
#[cfg(not(target_arch = "mips"))]
pub use linux_raw::*;

#[cfg(target_arch = "mips")]
mod mips_o32;

pub mod files;
#[cfg(target_arch = "mips")]
pub use mips_o32::*;

/// A raw file descriptor.
pub type Fd = i32;

/// Standard input (the SSH transport's receive side).
pub const STDIN: Fd = 0;
/// Standard output (the SSH transport's send side).
pub const STDOUT: Fd = 1;
/// Standard error (diagnostics; over SSH it reaches the host's stderr).
pub const STDERR: Fd = 2;

/// errno values the agent tells apart (identical on every Linux arch the agent supports).
pub mod errno {
    /// Interrupted system call.
    pub const EINTR: i32 = 4;
    /// Try again (non-blocking fd has nothing to do).
    pub const EAGAIN: i32 = 11;
    /// Not a typewriter (termios on something that is not a tty).
    pub const ENOTTY: i32 = 25;
    /// No such device (device operation without an open `/dev/ktap`).
    pub const ENODEV: i32 = 19;
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only (`/sys`, `/proc`).
    Read,
    /// Read-write, non-blocking (`/dev/ktap`).
    Device,
    /// Read-write, non-blocking, not our controlling tty (the serial link).
    Tty,
}

/// Readiness bits for [`poll`] (our own values, mapped by the backend).
pub mod ready {
    /// Readable.
    pub const IN: u8 = 1;
    /// Writable.
    pub const OUT: u8 = 2;
    /// Error or hang-up.
    pub const HUP: u8 = 4;
}

/// One descriptor to wait on.
#[derive(Debug, Clone, Copy)]
pub struct PollReq {
    /// The descriptor.
    pub fd: Fd,
    /// Wanted [`ready`] bits.
    pub events: u8,
    /// Reported [`ready`] bits.
    pub revents: u8,
}

impl PollReq {
    /// Wait for `events` on `fd`.
    pub fn new(fd: Fd, events: u8) -> Self {
        PollReq { fd, events, revents: 0 }
    }
}

/// Write all of `buf` to a blocking descriptor, ignoring errors (diagnostics only).
pub fn write_all(fd: Fd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Read a file from the start in 4 KiB chunks, handing each to `feed` until it returns true or the
/// file ends (`/proc/kallsyms`: megabytes, never held whole).
pub fn read_chunks(path: &core::ffi::CStr, feed: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), i32> {
    let fd = open(path, Access::Read)?;
    let mut buf = [0u8; 4096];
    let r = loop {
        match read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if feed(buf.get(..n).unwrap_or(&[])) {
                    break Ok(());
                }
            }
            Err(errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    close(fd);
    r
}

/// Read a whole (small) file into `buf`; returns the bytes read (truncated to `buf`).
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, i32> {
    let fd = open(path, Access::Read)?;
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match read(fd, rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(errno::EINTR) => {}
            Err(e) => {
                close(fd);
                return Err(e);
            }
        }
    }
    close(fd);
    Ok(n)
}
