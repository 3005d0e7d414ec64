//! `ktap-agent`: the board side of ktap-rs. A static, libc-free binary that serves one host at a time
//! over a serial line (`ktap-agent /dev/ttyAMA1 --baud 115200`) or stdio (`ssh board ktap-agent -`),
//! loads the host's images into `/dev/ktap` and streams the records back. See `cli::USAGE` for the
//! command line and exit statuses; the session logic is the `ktap_agent` library.
//!
//! Console sharing (`ktap-agent --console`, typed by `ktap-host push --console` at the shell prompt of
//! a board whose only UART is its login console): the console goes to raw mode, the agent prints
//! [`CONSOLE_READY`] so the host knows its frames will no longer be echoed or cooked, serves one
//! session, and restores the console's settings when that session ends, so the shell is usable again.
//!
//! Event loop: `poll` on the link (and `/dev/ktap` while a program runs) with a 100 ms timeout; link
//! bytes go through the session's deframer; after every wake-up the session's timers run (heartbeat,
//! stats, record pump), and queued frames are written when the link is writable.
//!
//! Exiting (end of stdio input, SIGINT/SIGTERM/SIGHUP, link failure) disarms and unloads, closes
//! `/dev/ktap` (which disarms on its own too, e.g. after SIGKILL) and restores the tty's settings.
#![no_std]
#![no_main]
#![cfg_attr(any(target_arch = "mips", target_arch = "powerpc"), feature(asm_experimental_arch))]

extern crate alloc;

mod arena;
mod board;
mod cli;
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
mod hostmem;
mod ktap;
mod link;
mod start;
mod sys;

use core::cell::UnsafeCell;

use ktap_agent::clock::AwakeClock;
use ktap_agent::{AGENT_VERSION, BoardInfo, Session, State};
use ktap_protocol::limits::MAX_IMAGE;
use ktap_protocol::wire::PROTOCOL_VERSION;

use crate::cli::{Cmd, USAGE, decimal};
use crate::ktap::Ktap;
use crate::link::FdLink;
use crate::sys::{Access, Fd, PollReq, errno, ready};

/// Input ended (stdio mode), the console session ended (`--console`), or `--version`/`--help`.
pub const EXIT_OK: i32 = 0;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// The serial device could not be opened or configured.
pub const EXIT_DEVICE: i32 = 3;
/// Reading or writing the link failed.
pub const EXIT_LINK: i32 = 4;
/// An internal error (a bug).
pub const EXIT_PANIC: i32 = 101;

/// The event loop's poll timeout: the resolution of the heartbeat and stats timers.
const POLL_MS: u32 = 100;
/// Printed on the console once it is in raw mode (`--console`); the host waits for it before its
/// first frame. Its text never appears in the typed command line, so the echo cannot fake it.
pub const CONSOLE_READY: &[u8] = b"\r\nktap: console in raw mode, speaking frames\r\n";
/// `--console`: with no program running, this long without a message from the host gives the console
/// back to the shell (a host that died before its first `Hello`, or while compiling).
const CONSOLE_IDLE_MS: u64 = 60_000;

/// The image upload buffer (in `.bss`: costs no file size).
struct ImageBuf(UnsafeCell<[u8; MAX_IMAGE]>);
// SAFETY: the agent is single-threaded and `run` borrows the buffer once.
unsafe impl Sync for ImageBuf {}
static IMAGE: ImageBuf = ImageBuf(UnsafeCell::new([0; MAX_IMAGE]));

/// The serial line's original settings, for the exit paths and the panic handler.
struct TtyState(UnsafeCell<Option<(Fd, sys::TtySaved)>>);
// SAFETY: the agent is single-threaded and has no signal handlers.
unsafe impl Sync for TtyState {}
static TTY: TtyState = TtyState(UnsafeCell::new(None));

impl TtyState {
    fn set(&self, fd: Fd, saved: sys::TtySaved) {
        // SAFETY: single-threaded; no reference into the cell is held across calls.
        unsafe { *self.0.get() = Some((fd, saved)) }
    }
    fn restore(&self) {
        // SAFETY: as above.
        if let Some((fd, saved)) = unsafe { (*self.0.get()).take() } {
            sys::tty_restore(fd, &saved);
        }
    }
}

fn eprint(parts: &[&[u8]]) {
    for p in parts {
        sys::write_all(sys::STDERR, p);
    }
}

/// Put the tty back before dying of a panic (the kernel disarms when the process exits).
pub fn on_panic() {
    TTY.restore();
}

/// The program: returns the exit status.
pub fn run(args: &cli::Args) -> i32 {
    sys::block_signals();
    let (device, baud, console) = match cli::parse(args.iter()) {
        Ok(Cmd::Serve { device, baud, console }) => (device, baud, console),
        Ok(Cmd::Version) => {
            let mut n = [0u8; 20];
            sys::write_all(sys::STDOUT, b"ktap-agent ");
            sys::write_all(sys::STDOUT, AGENT_VERSION.as_bytes());
            sys::write_all(sys::STDOUT, b" protocol ");
            sys::write_all(sys::STDOUT, decimal(u64::from(PROTOCOL_VERSION), &mut n));
            sys::write_all(sys::STDOUT, b"\n");
            return EXIT_OK;
        }
        Ok(Cmd::Help) => {
            sys::write_all(sys::STDOUT, USAGE.as_bytes());
            return EXIT_OK;
        }
        Err(msg) => {
            eprint(&[b"ktap-agent: ", msg.as_bytes(), b"\n", USAGE.as_bytes()]);
            return EXIT_USAGE;
        }
    };

    let (rx, tx) = match device {
        None => (sys::STDIN, sys::STDOUT),
        Some(path) => match open_serial(path, baud) {
            Ok(fd) => (fd, fd),
            Err(code) => return code,
        },
    };

    if console {
        let mut n = [0u8; 20];
        match sys::tty_raw(sys::STDIN, baud) {
            Ok(saved) => TTY.set(sys::STDIN, saved),
            Err(e) => {
                eprint(&[
                    b"ktap-agent: --console: cannot put stdin in raw mode: errno ",
                    decimal(e as u64, &mut n),
                    b"\n",
                ]);
                return EXIT_DEVICE;
            }
        }
        sys::write_all(sys::STDOUT, CONSOLE_READY);
    }

    let facts = board::Facts::gather();
    let info = BoardInfo {
        machine: facts.names.machine(),
        release: facts.names.release(),
        build_id: facts.build_id(),
        base_symbol: facts.base.0,
        base_addr: facts.base.1,
    };
    if facts.build_id().is_empty() {
        eprint(&[
            b"ktap-agent: warning: no kernel build-id in /sys/kernel/notes; every image will be refused\n",
        ]);
    }
    // SAFETY: `run` runs once; this is the only reference ever made to IMAGE.
    let image: &'static mut [u8] = unsafe { &mut *IMAGE.0.get() };
    let mut session = Session::new(info, image, Ktap::new(), FdLink::new(tx));

    let mut clock = AwakeClock::new();
    let start = clock.observe(sys::now_ms(), 0);
    let mode = if console {
        Mode::Console { since: start }
    } else if device.is_some() {
        Mode::Serial
    } else {
        Mode::Stdio
    };
    let code = serve(&mut session, rx, mode, &mut clock);

    session.shutdown();
    session.device_mut().close();
    session.link_mut().drain(500);
    TTY.restore();
    if device.is_some() {
        sys::close(rx);
    }
    code
}

/// Open the serial line and put it in raw mode; something that is not a tty (a virtio port, a FIFO)
/// is used as it is.
fn open_serial(path: &core::ffi::CStr, baud: u32) -> Result<Fd, i32> {
    let mut n = [0u8; 20];
    let fd = sys::open(path, Access::Tty).map_err(|e| {
        eprint(&[
            b"ktap-agent: cannot open ",
            path.to_bytes(),
            b": errno ",
            decimal(e as u64, &mut n),
            b"\n",
        ]);
        EXIT_DEVICE
    })?;
    match sys::tty_raw(fd, baud) {
        Ok(saved) => TTY.set(fd, saved),
        Err(errno::ENOTTY) => eprint(&[b"ktap-agent: ", path.to_bytes(), b" is not a tty; using it as is\n"]),
        Err(e) => {
            eprint(&[
                b"ktap-agent: cannot configure ",
                path.to_bytes(),
                b": errno ",
                decimal(e as u64, &mut n),
                b"\n",
            ]);
            sys::close(fd);
            return Err(EXIT_DEVICE);
        }
    }
    eprint(&[
        b"ktap-agent: serving ",
        path.to_bytes(),
        b" at ",
        decimal(u64::from(baud), &mut n),
        b" baud\n",
    ]);
    Ok(fd)
}

/// What the link is, for when the event loop ends.
#[derive(Clone, Copy)]
enum Mode {
    /// stdin/stdout (ssh): end of input ends the agent.
    Stdio,
    /// A serial device: serves host after host, forever.
    Serial,
    /// A shared login console: one session, then the console goes back to the shell.
    Console {
        /// When the agent started (ms), for the idle timeout before the first message.
        since: u64,
    },
}

/// `--console`: the session the host opened has ended (`Bye`, heartbeat), or no host spoke for
/// [`CONSOLE_IDLE_MS`] while nothing ran.
fn console_done(s: &Session<'_, Ktap, FdLink>, since: u64, now: u64) -> bool {
    let ended = s.counters().sessions > 0 && s.state() == State::AwaitHello;
    let idle = !s.is_running() && now.saturating_sub(s.last_rx().max(since)) >= CONSOLE_IDLE_MS;
    ended || idle
}

/// The event loop; returns the exit status. The session's timers run on `clock`, which leaves out
/// the time the agent was not scheduled (a stopped or descheduled board is not a silent host).
fn serve(s: &mut Session<'_, Ktap, FdLink>, rx: Fd, mode: Mode, clock: &mut AwakeClock) -> i32 {
    let serial = !matches!(mode, Mode::Stdio);
    let mut buf = [0u8; 1024];
    // what the previous turn slept besides its poll (the idle wait of a serial line without a peer)
    let mut slept = 0u64;
    loop {
        if let Some(sig) = sys::pending_exit_signal() {
            return 128 + sig;
        }
        if s.link().dead().is_some() {
            return EXIT_LINK;
        }
        let tx = s.link().fd();
        let out = if s.link().has_pending() { ready::OUT } else { 0 };
        let mut reqs = [PollReq::new(rx, ready::IN); 3];
        let mut n = 1;
        let tx_slot = if tx == rx {
            reqs[0].events |= out;
            0
        } else {
            reqs[1] = PollReq::new(tx, out);
            n = 2;
            1
        };
        // the ring only while the session would read it: waiting for link room, a readable ring
        // would wake the loop at once, again and again (a busy loop starving the board's CPU)
        if let Some(fd) = s.device().fd().filter(|_| s.wants_records(clock.now())) {
            reqs[n] = PollReq::new(fd, ready::IN);
            n += 1;
        }
        // a packed stream's records gather in the ring until a set time: wake for it
        let wait =
            s.wake_in(clock.now()).map_or(POLL_MS, |ms| u32::try_from(ms).unwrap_or(POLL_MS).min(POLL_MS));
        match sys::poll(&mut reqs[..n], wait) {
            Ok(_) | Err(errno::EINTR) => {}
            Err(_) => return EXIT_LINK,
        }
        let now = clock.observe(sys::now_ms(), u64::from(POLL_MS).saturating_add(slept));
        slept = 0;

        if reqs[0].revents & (ready::IN | ready::HUP) != 0 {
            match sys::read(rx, &mut buf) {
                Ok(0) if !serial => return EXIT_OK,
                Ok(k) if k > 0 => s.feed(buf.get(..k).unwrap_or(&[]), now),
                Err(errno::EAGAIN | errno::EINTR) => {}
                Err(_) if !serial => return EXIT_LINK,
                // A serial line (or virtio port) with nobody on the other end: wait for one.
                _ => {
                    let _ = sys::poll(&mut [], POLL_MS);
                    slept = u64::from(POLL_MS);
                }
            }
        }
        s.poll(now);
        if let Mode::Console { since } = mode
            && console_done(s, since, now)
        {
            return EXIT_OK;
        }
        if reqs[tx_slot].revents & (ready::OUT | ready::HUP) != 0 || (tx == rx && s.link().has_pending()) {
            // tty: non-blocking, so writing without readiness only costs an EAGAIN
            s.link_mut().flush_some();
        }
    }
}
