//! The board-side agent's session logic: `no_std`, allocation-free, and tested on the host.
//!
//! The agent sits between the host's link (a serial line or SSH stdio) and the kernel module's
//! `/dev/ktap`. This library is everything that does not touch a syscall:
//!
//! - [`session`]: the state machine. It takes frames (or decoded [`HostMsg`]s) and a clock reading,
//!   drives a [`Device`] and answers through a [`Link`]: handshake, image upload, build-id check,
//!   start/stop, record streaming, periodic stats and the heartbeat that disarms when the host vanishes.
//! - [`upload`]: reassembles an image from in-order chunks into a caller-supplied fixed buffer.
//! - [`install`]: files sent by `deploy` over a serial line, unpacked into a temporary file and renamed
//!   into place once their CRC matches; the module loaded from one.
//! - [`batch`]: cuts the kernel's record stream into [`AgentMsg::Records`] batches, never splitting a record.
//! - [`rto`]: the record stream's resend timeout, following the line's measured round trip.
//! - [`outq`]: a fixed-size queue of encoded frames for the binary's link writer.
//! - [`clock`]: the session clock, which leaves out the time the agent was not scheduled, so a
//!   stalled board does not look like a silent host to the heartbeat.
//! - [`kinfo`]: parsers for what the Hello reply reports (`/sys/kernel/notes`, `/proc/kallsyms`).
//! - [`symcheck`]: an image compiled from a System.map is checked against `/proc/kallsyms` instead of
//!   a build-id.
//!
//! The binary (`src/bin/agent/`, feature `target`) adds `_start`, the syscall layer, the tty setup and
//! the event loop.
//!
//! Architecture invariant: nothing here blocks or reads a clock; time comes in as a millisecond
//! argument, so every timeout is testable with a fake clock.
//!
//! [`HostMsg`]: ktap_protocol::wire::HostMsg
//! [`AgentMsg::Records`]: ktap_protocol::wire::AgentMsg::Records
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

#[cfg(test)]
extern crate std;

pub mod batch;
pub mod clock;
pub mod install;
pub mod kinfo;
pub mod outq;
pub mod rto;
pub mod session;
pub mod stream;
pub mod symcheck;
pub mod upload;

#[cfg(test)]
mod fakes;

use ktap_protocol::kdev::KStats;
use ktap_protocol::wire::AgentMsg;

pub use session::{Counters, Session, State};

/// The agent's version string, sent in its Hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A positive errno value.
pub type Errno = i32;

/// What the board reports in its Hello and checks images against. Gathered once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardInfo<'a> {
    /// `uname -m`.
    pub machine: &'a str,
    /// `uname -r`.
    pub release: &'a str,
    /// GNU build-id of the running kernel (empty if unknown: then every image is refused).
    pub build_id: &'a [u8],
    /// Which symbol `base_addr` is the address of (`_text` or `_stext`), empty if unknown.
    pub base_symbol: &'a str,
    /// Run-time address of `base_symbol`, 0 if unknown.
    pub base_addr: u64,
}

/// Why [`Device::load`] did not load an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// `/dev/ktap` could not be opened (answered as `Error{NO_DEVICE, errno}`).
    NoDevice {
        /// The `open` errno.
        errno: Errno,
    },
    /// The kernel refused the image (answered as `Rejected` with these fields).
    Refused {
        /// Reason code (`wire::codes`, image or verifier code).
        code: u16,
        /// Byte offset in the image, or probe index.
        offset: u32,
        /// Errno or extra detail.
        detail: i32,
    },
}

/// The `/dev/ktap` operations (see `ktap_protocol::kdev`). The binary implements it with ioctls;
/// tests use an in-memory fake.
pub trait Device {
    /// Hand an image to the kernel, which verifies it and attaches its probes disarmed.
    /// Returns the number of probes attached. Opens the device on first use.
    fn load(&mut self, image: &[u8]) -> Result<u16, LoadError>;
    /// Arm the loaded program.
    fn start(&mut self) -> Result<(), Errno>;
    /// Disarm, run `trace_end`, end the record stream.
    fn stop(&mut self) -> Result<(), Errno>;
    /// The kernel's counters for the loaded program.
    fn stats(&mut self) -> Result<KStats, Errno>;
    /// Read whole records into `buf`; `Ok(0)` when none are available now (running) or the
    /// stream has ended (stopped). Never blocks.
    fn read_records(&mut self, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Detach and free the program, if any, and release the device. Also called after a refused
    /// load, which leaves nothing loaded.
    fn unload(&mut self) -> Result<(), Errno>;
    /// Read the running kernel's `/proc/kallsyms` from the start, handing each chunk to `feed`
    /// until it returns true or the file ends (for [`symcheck`]).
    fn kallsyms(&mut self, feed: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), Errno>;
}

/// Where [`AgentMsg`]s go: the binary frames them into an [`outq::OutQueue`] and writes it to the link.
pub trait Link {
    /// Queue a message that must arrive; may wait for the link to drain.
    fn send(&mut self, msg: &AgentMsg<'_>);
    /// Queue a message only if that needs no waiting; `false` if it was not queued.
    fn try_send(&mut self, msg: &AgentMsg<'_>) -> bool;
    /// Encoded bytes that can be queued now without waiting.
    fn room(&self) -> usize;
}
