//! The rustix (`linux_raw`, no libc) backend of [`super`].

use core::ffi::{CStr, c_void};

use rustix::event::{PollFd, PollFlags};
use rustix::fd::{BorrowedFd, IntoRawFd};
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use rustix::runtime_448b8ad740e2a26f as rt;
use rustix::termios::{self, ControlModes, InputModes, OptionalActions, SpecialCodeIndex, Termios};

use super::{Access, Fd, PollReq, ready};

/// A positive errno.
pub type Errno = i32;

fn fd(raw: Fd) -> BorrowedFd<'static> {
    // SAFETY: the agent only passes descriptors it opened (or 0/1/2) and closes each exactly once,
    // after its last use; no borrow outlives the call it is made for.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

fn err(e: rustix::io::Errno) -> Errno {
    e.raw_os_error()
}

/// `open(2)`.
pub fn open(path: &CStr, access: Access) -> Result<Fd, Errno> {
    let flags = match access {
        Access::Read => OFlags::RDONLY | OFlags::CLOEXEC,
        Access::Device => OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Access::Tty => OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
    };
    rustix::fs::open(path, flags, Mode::empty()).map(IntoRawFd::into_raw_fd).map_err(err)
}

/// `close(2)`.
pub fn close(raw: Fd) {
    // SAFETY: callers close each descriptor they opened once, and never use it afterwards.
    unsafe { rustix::io::close(raw) }
}

/// `read(2)`.
pub fn read(raw: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    rustix::io::read(fd(raw), buf).map_err(err)
}

/// `write(2)`.
pub fn write(raw: Fd, buf: &[u8]) -> Result<usize, Errno> {
    rustix::io::write(fd(raw), buf).map_err(err)
}

/// `poll(2)` on up to four descriptors; returns how many are ready.
pub fn poll(reqs: &mut [PollReq], timeout_ms: u32) -> Result<usize, Errno> {
    let to_flags = |ev: u8| {
        let mut f = PollFlags::empty();
        if ev & ready::IN != 0 {
            f |= PollFlags::IN;
        }
        if ev & ready::OUT != 0 {
            f |= PollFlags::OUT;
        }
        f
    };
    // unused slots (never passed to the kernel) borrow stdin: a BorrowedFd may not hold -1
    let mut fds: [PollFd<'static>; 4] =
        core::array::from_fn(|_| PollFd::from_borrowed_fd(fd(super::STDIN), PollFlags::empty()));
    let n = reqs.len().min(fds.len());
    for (slot, r) in fds.iter_mut().zip(reqs.iter()) {
        *slot = PollFd::from_borrowed_fd(fd(r.fd), to_flags(r.events));
    }
    let timeout = rustix::time::Timespec {
        tv_sec: i64::from(timeout_ms / 1000),
        tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
    };
    let ready_count =
        rustix::event::poll(fds.get_mut(..n).unwrap_or(&mut []), Some(&timeout)).map_err(err)?;
    for (r, f) in reqs.iter_mut().zip(fds.iter()) {
        let got = f.revents();
        r.revents = 0;
        if got.intersects(PollFlags::IN | PollFlags::PRI) {
            r.revents |= ready::IN;
        }
        if got.contains(PollFlags::OUT) {
            r.revents |= ready::OUT;
        }
        if got.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
            r.revents |= ready::HUP;
        }
    }
    Ok(ready_count)
}

/// A monotonic clock in milliseconds.
pub fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1000).wrapping_add(t.tv_nsec as u64 / 1_000_000)
}

struct RawIoctl {
    op: u32,
    arg: *mut c_void,
}

// SAFETY: `op` and `arg` come from `ioctl()` below, whose callers promise they match.
unsafe impl Ioctl for RawIoctl {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;
    fn opcode(&self) -> Opcode {
        self.op as Opcode
    }
    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }
    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// `ioctl(fd, op, arg)`.
///
/// # Safety
/// `arg` must be null for commands without an argument, or point to the type the command expects,
/// valid for reads and writes for the duration of the call.
pub unsafe fn ioctl(raw: Fd, op: u32, arg: *mut c_void) -> Result<i32, Errno> {
    // SAFETY: forwarded from the caller.
    unsafe { rustix::ioctl::ioctl(fd(raw), RawIoctl { op, arg }) }.map_err(err)
}

/// A tty's settings as found, to put back on exit.
pub struct TtySaved(Termios);

/// Raw mode at `baud`: no echo, no line editing, no signals, no flow control, 8N1, reads return what
/// is there (VMIN=0, VTIME=0; the event loop polls). Returns the previous settings.
pub fn tty_raw(raw: Fd, baud: u32) -> Result<TtySaved, Errno> {
    let saved = termios::tcgetattr(fd(raw)).map_err(err)?;
    let mut t = saved.clone();
    t.make_raw();
    t.input_modes.remove(InputModes::IXOFF | InputModes::IXANY | InputModes::IXON);
    t.control_modes.remove(ControlModes::CRTSCTS | ControlModes::CSTOPB | ControlModes::PARENB);
    t.control_modes.insert(ControlModes::CLOCAL | ControlModes::CREAD);
    t.special_codes[SpecialCodeIndex::VMIN] = 0;
    t.special_codes[SpecialCodeIndex::VTIME] = 0;
    t.set_speed(baud).map_err(err)?;
    termios::tcsetattr(fd(raw), OptionalActions::Now, &t).map_err(err)?;
    Ok(TtySaved(saved))
}

/// Put a tty's settings back (after letting queued output drain).
pub fn tty_restore(raw: Fd, saved: &TtySaved) {
    let _ = termios::tcsetattr(fd(raw), OptionalActions::Drain, &saved.0);
}

/// `uname -m` and `uname -r`, copied out.
pub struct Names {
    machine: [u8; 65],
    release: [u8; 65],
}

fn copy_cstr(dst: &mut [u8; 65], s: &CStr) {
    let b = s.to_bytes();
    let n = b.len().min(dst.len() - 1);
    if let (Some(d), Some(s)) = (dst.get_mut(..n), b.get(..n)) {
        d.copy_from_slice(s);
    }
}

fn as_str(b: &[u8; 65]) -> &str {
    let n = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    core::str::from_utf8(b.get(..n).unwrap_or(&[])).unwrap_or("?")
}

impl Names {
    /// `uname(2)`.
    pub fn get() -> Names {
        let u = rustix::system::uname();
        let mut n = Names { machine: [0; 65], release: [0; 65] };
        copy_cstr(&mut n.machine, u.machine());
        copy_cstr(&mut n.release, u.release());
        n
    }
    /// The machine (`armv7l`).
    pub fn machine(&self) -> &str {
        as_str(&self.machine)
    }
    /// The kernel release.
    pub fn release(&self) -> &str {
        as_str(&self.release)
    }
}

const EXIT_SIGNALS: [rt::Signal; 3] = [rt::Signal::INT, rt::Signal::TERM, rt::Signal::HUP];

/// Block SIGINT, SIGTERM, SIGHUP (polled with [`pending_exit_signal`] on every loop turn, so no
/// handler and no restorer trampoline are needed) and SIGPIPE (writes to a vanished SSH peer then
/// fail with EPIPE instead of killing the agent before it restored the tty).
pub fn block_signals() {
    let mut set = rt::KernelSigSet::empty();
    for s in EXIT_SIGNALS {
        set.insert(s);
    }
    set.insert(rt::Signal::PIPE);
    // SAFETY: the agent has no libc and no other threads; nothing else relies on these signals.
    let _ = unsafe { rt::kernel_sigprocmask(rt::How::BLOCK, Some(&set)) };
}

/// A pending SIGINT/SIGTERM/SIGHUP, by number.
pub fn pending_exit_signal() -> Option<i32> {
    let pending = rt::kernel_sigpending();
    EXIT_SIGNALS.into_iter().find(|s| pending.contains(*s)).map(rt::Signal::as_raw)
}

/// `exit_group(2)`.
pub fn exit(code: i32) -> ! {
    rt::exit_group(code)
}
