//! Transports between ktap-host and the agent: a byte stream with a read timeout.
//!
//! [`SerialLink`] drives a serial port (a USB-serial adapter to a real board, or the host pty QEMU
//! gives the emulated board's agent UART: the same code path). [`ChildLink`] talks over the stdin and
//! stdout of a child process, which is how `ssh host ktap-agent -` is reached ([`SshTarget`]).
//! [`console`] starts the agent on a board's shared login console before the framed protocol begins.
//! Framing and messages live above this layer ([`crate::session`]); a link only moves bytes.

mod child;
pub mod console;
mod serial;
pub mod ssh;

use std::io;
use std::time::Duration;

pub use child::ChildLink;
pub use serial::SerialLink;
pub use ssh::SshTarget;

/// A blocking byte stream to the agent.
pub trait Link: Send {
    /// Read what has arrived into `buf`, waiting at most `timeout` for the first byte.
    /// `Ok(0)` means nothing arrived in time; the other side going away is an error.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// Write all of `data`.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;

    /// What this link is connected to, for messages (a device path or a command line).
    fn name(&self) -> &str;
}

impl<L: Link + ?Sized> Link for Box<L> {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        (**self).read(buf, timeout)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        (**self).write_all(data)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

#[cfg(test)]
mod tests;
