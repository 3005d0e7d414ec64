//! A serial port: a USB-serial adapter, a board's UART, or the pty QEMU connects a guest UART to.

use std::io::{self, Read, Write};
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use super::Link;

/// How long one write may block (a full pty or a stalled adapter) before it is an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A serial port in raw 8N1 mode, opened exclusively.
#[derive(Debug)]
pub struct SerialLink {
    port: TTYPort,
    name: String,
}

impl SerialLink {
    /// Open `path` (e.g. `/dev/ttyUSB0`, or `/dev/pts/3` from QEMU) at `baud` in raw mode.
    /// The baud rate is meaningless on a pty but harmless.
    pub fn open(path: &str, baud: u32) -> io::Result<SerialLink> {
        let port = serialport::new(path, baud).timeout(WRITE_TIMEOUT).open_native().map_err(|e| {
            io::Error::new(io::Error::from(e.clone()).kind(), format!("cannot open {path}: {e}"))
        })?;
        Ok(SerialLink { port, name: path.to_owned() })
    }
}

impl Link for SerialLink {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.port.set_timeout(timeout).map_err(io::Error::from)?;
        match self.port.read(buf) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} was closed", self.name))),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("{} hung up (the other end closed it)", self.name),
            )),
            Err(e) => Err(e),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.port.set_timeout(WRITE_TIMEOUT).map_err(io::Error::from)?;
        Write::write_all(&mut self.port, data)
            .map_err(|e| io::Error::new(e.kind(), format!("writing to {}: {e}", self.name)))
    }

    fn name(&self) -> &str {
        &self.name
    }
}
