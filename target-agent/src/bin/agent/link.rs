//! The host link as a [`Link`]: frames queue in an [`OutQueue`] and are written when the descriptor
//! is writable, so reading the kernel's records never waits on a slow serial line.

use ktap_agent::Link;
use ktap_agent::outq::{OutQueue, PushError};
use ktap_protocol::wire::{AgentMsg, HEARTBEAT_TIMEOUT_MS};

use crate::sys::{self, Fd, PollReq, errno, ready};

/// Queued output: about 0.7 s of a 115200-baud line.
pub const OUT_QUEUE: usize = 8 * 1024;
/// Largest single write: a pipe that polled writable takes this much without blocking (PIPE_BUF).
const WRITE_MAX: usize = 4096;
/// How long a message that must be sent waits for room before the link is given up as dead.
const SEND_TIMEOUT_MS: u64 = 2 * HEARTBEAT_TIMEOUT_MS as u64;

/// The write side of the host link.
pub struct FdLink {
    fd: Fd,
    q: OutQueue<OUT_QUEUE>,
    dead: Option<i32>,
}

impl FdLink {
    /// Write frames to `fd`.
    pub fn new(fd: Fd) -> Self {
        FdLink { fd, q: OutQueue::new(), dead: None }
    }

    /// The descriptor written to.
    pub fn fd(&self) -> Fd {
        self.fd
    }

    /// Whether bytes wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.q.is_empty()
    }

    /// The errno that ended the link (EPIPE, EIO...), or `ETIMEDOUT` (110) if nothing could be written for
    /// [`SEND_TIMEOUT_MS`].
    pub fn dead(&self) -> Option<i32> {
        self.dead
    }

    /// Write what the descriptor takes now (one write).
    pub fn flush_some(&mut self) {
        if self.dead.is_some() {
            return;
        }
        let pending = self.q.pending();
        let chunk = pending.get(..pending.len().min(WRITE_MAX)).unwrap_or(pending);
        if chunk.is_empty() {
            return;
        }
        match sys::write(self.fd, chunk) {
            Ok(n) => self.q.consume(n),
            Err(errno::EAGAIN | errno::EINTR) => {}
            Err(e) => self.dead = Some(e),
        }
    }

    /// Wait until the queue is empty or `timeout_ms` passed (used before exiting).
    pub fn drain(&mut self, timeout_ms: u64) {
        let until = sys::now_ms().saturating_add(timeout_ms);
        while self.has_pending() && self.dead.is_none() && sys::now_ms() < until {
            let mut p = [PollReq::new(self.fd, ready::OUT)];
            let _ = sys::poll(&mut p, 100);
            if p[0].revents & (ready::OUT | ready::HUP) != 0 {
                self.flush_some();
            }
        }
    }

    /// Make room by writing, waiting at most [`SEND_TIMEOUT_MS`] in total.
    fn wait_for_room(&mut self) -> bool {
        let until = sys::now_ms().saturating_add(SEND_TIMEOUT_MS);
        let before = self.q.room();
        while self.dead.is_none() {
            let mut p = [PollReq::new(self.fd, ready::OUT)];
            let _ = sys::poll(&mut p, 100);
            if p[0].revents & (ready::OUT | ready::HUP) != 0 {
                self.flush_some();
            }
            if self.q.room() > before {
                return true;
            }
            if sys::now_ms() >= until {
                self.dead = Some(110);
            }
        }
        false
    }
}

impl Link for FdLink {
    fn send(&mut self, msg: &AgentMsg<'_>) {
        loop {
            match self.q.push(msg) {
                Ok(()) | Err(PushError::TooBig) => return,
                Err(PushError::Full) => {
                    if !self.wait_for_room() {
                        return;
                    }
                }
            }
        }
    }

    fn try_send(&mut self, msg: &AgentMsg<'_>) -> bool {
        self.dead.is_none() && self.q.push(msg).is_ok()
    }

    fn room(&self) -> usize {
        if self.dead.is_some() { 0 } else { self.q.room() }
    }
}
