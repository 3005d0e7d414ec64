//! The MIPS o32 backend of [`super`], for both byte orders. rustix has no big-endian MIPS backend, and
//! its little-endian one lets the compiler keep a value in `$at` across a `syscall`, which the
//! kernel does not preserve (below): `deploy`'s module load on mipsel read back a result that a
//! later `close` had overwritten.
//!
//! o32 calls: number in `$v0` (4000 + n), arguments in `$a0..$a3`, result in `$v0`, and `$a3` non-zero
//! when `$v0` is a (positive) errno. The kernel's syscall entry saves only part of the registers:
//! `$at`, `$v1`, `$t0..$t9`, `hi` and `lo` come back with whatever kernel code left there (glibc and
//! musl list the same clobbers).
//! MIPS differs from the generic Linux ABI in what this file touches: `TCGETS`/`TCSETS` numbers, the
//! `termios` layout (23 control characters, `VMIN` = 4, `VTIME` = 5), `IEXTEN`, `O_NONBLOCK`/`O_NOCTTY`,
//! `SIG_BLOCK` = 1 and a 128-signal (16-byte) sigset.

use core::arch::asm;
use core::ffi::{CStr, c_void};

use super::{Access, Fd, PollReq, ready};

/// A positive errno.
pub type Errno = i32;

/// o32 numbers (checked against linux-raw-sys's mips tables).
mod nr {
    pub const READ: u32 = 4003;
    pub const WRITE: u32 = 4004;
    pub const CLOSE: u32 = 4006;
    pub const IOCTL: u32 = 4054;
    pub const UNAME: u32 = 4122;
    pub const POLL: u32 = 4188;
    pub const RT_SIGPENDING: u32 = 4196;
    pub const RT_SIGPROCMASK: u32 = 4195;
    pub const EXIT_GROUP: u32 = 4246;
    pub const CLOCK_GETTIME: u32 = 4263;
    pub const CLOCK_GETTIME64: u32 = 4403;
    pub const OPENAT: u32 = 4288;
}

/// One o32 system call with up to four arguments.
///
/// # Safety
/// The arguments must be valid for the call `n` (pointers to live memory of the right size).
pub(super) unsafe fn syscall(n: u32, a: usize, b: usize, c: usize, d: usize) -> Result<usize, Errno> {
    let v0: usize;
    let a3: usize;
    // SAFETY: the caller's contract. Rust's `asm!` cannot name `$at`, `hi` or `lo` as clobbered and
    // assumes every register it is not told about survives, while LLVM does keep values in `$at`:
    // so they are parked in `$s0..$s2` (which the kernel preserves) and put back after the call.
    unsafe {
        asm!(
            ".set push",
            ".set noat",
            "move $16, $1",
            "mfhi $17",
            "mflo $18",
            "syscall",
            "move $1, $16",
            "mthi $17",
            "mtlo $18",
            ".set pop",
            inlateout("$2") n as usize => v0,
            in("$4") a,
            in("$5") b,
            in("$6") c,
            inlateout("$7") d => a3,
            out("$16") _, out("$17") _, out("$18") _,
            lateout("$3") _,
            lateout("$8") _, lateout("$9") _, lateout("$10") _, lateout("$11") _,
            lateout("$12") _, lateout("$13") _, lateout("$14") _, lateout("$15") _,
            lateout("$24") _, lateout("$25") _,
            options(nostack),
        );
    }
    if a3 != 0 { Err(v0 as Errno) } else { Ok(v0) }
}

/// `open(2)` (as `openat(AT_FDCWD, ...)`).
pub fn open(path: &CStr, access: Access) -> Result<Fd, Errno> {
    const O_RDWR: usize = 2;
    const O_NONBLOCK: usize = 0x80;
    const O_NOCTTY: usize = 0x800;
    const O_CLOEXEC: usize = 0x8_0000;
    const AT_FDCWD: isize = -100;
    let flags = match access {
        Access::Read => O_CLOEXEC,
        Access::Device => O_RDWR | O_NONBLOCK | O_CLOEXEC,
        Access::Tty => O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
    };
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { syscall(nr::OPENAT, AT_FDCWD as usize, path.as_ptr() as usize, flags, 0) }.map(|fd| fd as Fd)
}

/// `close(2)`.
pub fn close(fd: Fd) {
    // SAFETY: no memory is passed.
    let _ = unsafe { syscall(nr::CLOSE, fd as usize, 0, 0, 0) };
}

/// `read(2)`.
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { syscall(nr::READ, fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0) }
}

/// `write(2)`.
pub fn write(fd: Fd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { syscall(nr::WRITE, fd as usize, buf.as_ptr() as usize, buf.len(), 0) }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// `poll(2)` on up to four descriptors; returns how many are ready.
pub fn poll(reqs: &mut [PollReq], timeout_ms: u32) -> Result<usize, Errno> {
    const POLLIN: i16 = 1;
    const POLLPRI: i16 = 2;
    const POLLOUT: i16 = 4;
    const POLLERR: i16 = 8;
    const POLLHUP: i16 = 16;
    const POLLNVAL: i16 = 32;
    let mut fds = [PollFd { fd: -1, events: 0, revents: 0 }; 4];
    let n = reqs.len().min(fds.len());
    for (f, r) in fds.iter_mut().zip(reqs.iter()) {
        f.fd = r.fd;
        f.events = if r.events & ready::IN != 0 { POLLIN } else { 0 }
            | if r.events & ready::OUT != 0 { POLLOUT } else { 0 };
    }
    // SAFETY: `fds` holds at least `n` entries and outlives the call.
    let count = unsafe { syscall(nr::POLL, fds.as_mut_ptr() as usize, n, timeout_ms as usize, 0) }?;
    for (r, f) in reqs.iter_mut().zip(fds.iter()) {
        r.revents = 0;
        if f.revents & (POLLIN | POLLPRI) != 0 {
            r.revents |= ready::IN;
        }
        if f.revents & POLLOUT != 0 {
            r.revents |= ready::OUT;
        }
        if f.revents & (POLLERR | POLLHUP | POLLNVAL) != 0 {
            r.revents |= ready::HUP;
        }
    }
    Ok(count)
}

/// A monotonic clock in milliseconds: `clock_gettime64` (Linux 5.1+; a kernel built without the
/// 32-bit time_t calls, `COMPAT_32BIT_TIME` off, has only this one), else the time32 call of older
/// kernels. Neither failing would freeze the heartbeat and stats timers, so that is a fatal error.
pub fn now_ms() -> u64 {
    const CLOCK_MONOTONIC: usize = 1;
    let mut ts64 = [0i64; 2]; // struct __kernel_timespec: s64 seconds, s64 nanoseconds
    // SAFETY: `ts64` is a __kernel_timespec, valid for writes.
    if unsafe { syscall(nr::CLOCK_GETTIME64, CLOCK_MONOTONIC, ts64.as_mut_ptr() as usize, 0, 0) }.is_ok() {
        return (ts64[0] as u64) * 1000 + (ts64[1] as u64) / 1_000_000;
    }
    let mut ts = [0i32; 2]; // time32 timespec: the monotonic clock fits for 68 years of uptime
    // SAFETY: `ts` is a timespec, valid for writes.
    if unsafe { syscall(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, ts.as_mut_ptr() as usize, 0, 0) }.is_err() {
        let msg = b"ktap-agent: the kernel has neither clock_gettime64 nor clock_gettime\n";
        // SAFETY: `msg` is valid for reads of its length.
        let _ = unsafe { syscall(nr::WRITE, 2, msg.as_ptr() as usize, msg.len(), 0) };
        exit(70);
    }
    (ts[0] as u32 as u64) * 1000 + (ts[1] as u32 as u64) / 1_000_000
}

/// `ioctl(fd, op, arg)`.
///
/// # Safety
/// `arg` must be null for commands without an argument, or point to the type the command expects,
/// valid for reads and writes for the duration of the call.
pub unsafe fn ioctl(fd: Fd, op: u32, arg: *mut c_void) -> Result<i32, Errno> {
    // SAFETY: forwarded from the caller.
    unsafe { syscall(nr::IOCTL, fd as usize, op as usize, arg as usize, 0) }.map(|v| v as i32)
}

/// The kernel's MIPS `struct termios` (`TCGETS`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Termios {
    iflag: u32,
    oflag: u32,
    cflag: u32,
    lflag: u32,
    line: u8,
    cc: [u8; 23],
}

/// A tty's settings as found, to put back on exit.
pub struct TtySaved(Termios);

const TCGETS: u32 = 0x540d;
const TCSETS: u32 = 0x540e;
const TCSETSW: u32 = 0x540f;

/// The `B*` code of a standard speed (`termios2` arbitrary speeds are not supported here).
fn baud_code(baud: u32) -> Option<u32> {
    Some(match baud {
        1200 => 0o11,
        2400 => 0o13,
        4800 => 0o14,
        9600 => 0o15,
        19200 => 0o16,
        38400 => 0o17,
        57600 => 0o10001,
        115200 => 0o10002,
        230400 => 0o10003,
        460800 => 0o10004,
        500000 => 0o10005,
        576000 => 0o10006,
        921600 => 0o10007,
        1000000 => 0o10010,
        1152000 => 0o10011,
        1500000 => 0o10012,
        2000000 => 0o10013,
        2500000 => 0o10014,
        3000000 => 0o10015,
        3500000 => 0o10016,
        4000000 => 0o10017,
        _ => return None,
    })
}

/// Raw mode at `baud` (as `cfmakeraw`, plus no flow control, CLOCAL|CREAD, VMIN=0, VTIME=0).
pub fn tty_raw(fd: Fd, baud: u32) -> Result<TtySaved, Errno> {
    const EINVAL: Errno = 22;
    let mut t = Termios { iflag: 0, oflag: 0, cflag: 0, lflag: 0, line: 0, cc: [0; 23] };
    // SAFETY: TCGETS fills a MIPS termios.
    unsafe { ioctl(fd, TCGETS, (&raw mut t).cast()) }?;
    let saved = TtySaved(t);
    let code = baud_code(baud).ok_or(EINVAL)?;
    // iflag: IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON IXANY IXOFF
    t.iflag &= !(0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x1000);
    t.oflag &= !0x1; // OPOST
    // lflag (MIPS values): ISIG ICANON ECHO ECHONL IEXTEN
    t.lflag &= !(0x1 | 0x2 | 0x8 | 0x40 | 0x100);
    // cflag: CBAUD CIBAUD CSIZE CSTOPB PARENB CRTSCTS off; CS8 CREAD CLOCAL + speed
    t.cflag &= !(0o10017 | 0o2003600000 | 0o60 | 0o100 | 0o400 | 0o20000000000);
    t.cflag |= 0o60 | 0o200 | 0o4000 | code;
    t.cc[4] = 0; // VMIN
    t.cc[5] = 0; // VTIME
    // SAFETY: TCSETS reads a MIPS termios.
    unsafe { ioctl(fd, TCSETS, (&raw mut t).cast()) }?;
    Ok(saved)
}

/// Put a tty's settings back (after letting queued output drain).
pub fn tty_restore(fd: Fd, saved: &TtySaved) {
    let mut t = saved.0;
    // SAFETY: TCSETSW reads a MIPS termios.
    let _ = unsafe { ioctl(fd, TCSETSW, (&raw mut t).cast()) };
}

/// `uname -m` and `uname -r`, copied out.
pub struct Names {
    uts: [u8; 6 * 65],
}

impl Names {
    /// `uname(2)`.
    pub fn get() -> Names {
        let mut n = Names { uts: [0; 6 * 65] };
        // SAFETY: `uts` is a `struct new_utsname` (six 65-byte fields).
        let _ = unsafe { syscall(nr::UNAME, n.uts.as_mut_ptr() as usize, 0, 0, 0) };
        n
    }
    fn field(&self, i: usize) -> &str {
        let f = self.uts.get(i * 65..(i + 1) * 65).unwrap_or(&[]);
        let len = f.iter().position(|c| *c == 0).unwrap_or(f.len());
        core::str::from_utf8(f.get(..len).unwrap_or(&[])).unwrap_or("?")
    }
    /// The machine (`mips`).
    pub fn machine(&self) -> &str {
        self.field(4)
    }
    /// The kernel release.
    pub fn release(&self) -> &str {
        self.field(2)
    }
}

const SIGHUP: u32 = 1;
const SIGINT: u32 = 2;
const SIGPIPE: u32 = 13;
const SIGTERM: u32 = 15;
const EXIT_SIGNALS: [u32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A MIPS kernel sigset: 128 signals.
type SigSet = [u32; 4];

fn add(set: &mut SigSet, sig: u32) {
    if let Some(w) = set.get_mut(((sig - 1) / 32) as usize) {
        *w |= 1 << ((sig - 1) % 32);
    }
}

/// Block SIGINT, SIGTERM, SIGHUP (polled with [`pending_exit_signal`]) and SIGPIPE (writes fail with
/// EPIPE instead).
pub fn block_signals() {
    const SIG_BLOCK: usize = 1;
    let mut set: SigSet = [0; 4];
    for s in EXIT_SIGNALS.into_iter().chain([SIGPIPE]) {
        add(&mut set, s);
    }
    // SAFETY: `set` is a 16-byte sigset; no old set is requested.
    let _ = unsafe { syscall(nr::RT_SIGPROCMASK, SIG_BLOCK, set.as_ptr() as usize, 0, 16) };
}

/// A pending SIGINT/SIGTERM/SIGHUP, by number.
pub fn pending_exit_signal() -> Option<i32> {
    let mut set: SigSet = [0; 4];
    // SAFETY: `set` is a 16-byte sigset, valid for writes.
    unsafe { syscall(nr::RT_SIGPENDING, set.as_mut_ptr() as usize, 16, 0, 0) }.ok()?;
    EXIT_SIGNALS
        .into_iter()
        .find(|s| {
            let mut one: SigSet = [0; 4];
            add(&mut one, *s);
            set.iter().zip(one).any(|(a, b)| a & b != 0)
        })
        .map(|s| s as i32)
}

/// `exit_group(2)`.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: no memory is passed; exit_group does not return.
        let _ = unsafe { syscall(nr::EXIT_GROUP, code as usize, 0, 0, 0) };
    }
}
