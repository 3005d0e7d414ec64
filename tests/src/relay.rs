//! A byte relay between two serial lines (ptys) that can corrupt, drop and rate-limit what it
//! forwards: the "bad cable" and "115200 baud" of the link tests and benchmarks, as a real process
//! between the real host and the real QEMU board.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Rng;

/// What the relay does to each byte, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impair {
    /// Bytes per thousand XORed with a random non-zero value.
    pub flip_per_mille: u32,
    /// Bytes per thousand not forwarded at all.
    pub drop_per_mille: u32,
    /// Forward at most this many bytes per second (a UART at N baud, 8N1, moves N/10).
    pub bytes_per_sec: Option<u32>,
    /// Seed of the noise, so a failing run can be repeated.
    pub seed: u64,
}

/// What one direction did.
#[derive(Debug, Default)]
pub struct Counts {
    /// Bytes read from the source.
    pub read: AtomicU64,
    /// Bytes corrupted.
    pub flipped: AtomicU64,
    /// Bytes dropped.
    pub dropped: AtomicU64,
}

impl Counts {
    /// `read/flipped/dropped` for logs.
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!("{} bytes, {} flipped, {} dropped", g(&self.read), g(&self.flipped), g(&self.dropped))
    }
}

/// A source that reads with a timeout (a serial port), or stdin.
pub trait Source: Send {
    /// Read what is there; `Ok(0)` on timeout; an error or EOF ends the relay direction.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
}

impl Source for serialport::TTYPort {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.read(buf) {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Some(0))
            }
            Err(e) => Err(e),
        }
    }
}

impl Source for io::Stdin {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.read(buf)? {
            0 => Ok(None),
            n => Ok(Some(n)),
        }
    }
}

/// Forward `src` to `dst` with `impair` until `src` ends or fails. Runs in the calling thread.
pub fn pump(
    mut src: impl Source,
    mut dst: impl Write,
    impair: Impair,
    counts: Arc<Counts>,
) -> io::Result<()> {
    let mut rng = Rng(impair.seed | 1);
    let mut buf = [0u8; 4096];
    // rate-limited, take no more than the line carries in about 10 ms at a time, as a UART's FIFO
    // does: the rest waits in the source's buffers (backpressure) instead of here, unread
    let take = impair.bytes_per_sec.map_or(buf.len(), |bps| (bps as usize / 100).clamp(16, buf.len()));
    let mut out = Vec::with_capacity(buf.len());
    // when the line may carry its next byte. An idle line earns no credit beyond `SLACK` (a UART
    // cannot send later, faster, the bytes it did not get earlier); the slack only makes up for
    // sleeps that overran.
    const SLACK: Duration = Duration::from_millis(20);
    let mut next_free = Instant::now();
    while let Some(n) = src.read_some(&mut buf[..take])? {
        counts.read.fetch_add(n as u64, Ordering::Relaxed);
        out.clear();
        for &b in &buf[..n] {
            if rng.per_mille(impair.drop_per_mille) {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if rng.per_mille(impair.flip_per_mille) {
                counts.flipped.fetch_add(1, Ordering::Relaxed);
                out.push(b ^ (rng.next() % 255 + 1) as u8);
            } else {
                out.push(b);
            }
        }
        match impair.bytes_per_sec {
            // one byte at a time at the line's pace, as a UART shifts them out
            Some(bps) => {
                let byte_time = Duration::from_secs_f64(1.0 / f64::from(bps));
                for b in &out {
                    let now = Instant::now();
                    next_free = next_free.max(now.checked_sub(SLACK).unwrap_or(now)) + byte_time;
                    if let Some(wait) = next_free.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    dst.write_all(std::slice::from_ref(b))?;
                }
            }
            None => dst.write_all(&out)?,
        }
        dst.flush()?;
    }
    Ok(())
}

/// Open a serial line (a pty) raw, with a short read timeout for [`pump`].
pub fn open(path: &str) -> io::Result<serialport::TTYPort> {
    serialport::new(path, 115_200)
        .timeout(Duration::from_millis(100))
        .open_native()
        .map_err(|e| io::Error::other(format!("cannot open {path}: {e}")))
}

/// Start `link_relay pty PORT ARGS..` (the binary at `bin`) between the board's `port` and a new
/// pty, its counts going to `log`; returns the process and the new pty's path for the host.
pub fn spawn(bin: &Path, port: &Path, args: &[&str], log: &Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .arg("pty")
        .arg(port)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display())))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let path =
        line.trim().strip_prefix("relay: ").unwrap_or_else(|| panic!("relay said `{line}`")).to_owned();
    (child, path)
}

/// Stop a relay from [`spawn`]; returns its last counts line from `log` ("" if none).
pub fn stop(mut child: Child, log: &Path) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().last().unwrap_or("").to_owned()
}
