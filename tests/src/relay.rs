//! A byte relay between two serial lines (ptys) that can corrupt, drop and rate-limit what it
//! forwards: the "bad cable" and "115200 baud" of the link tests and benchmarks, as a real process
//! between the real host and the real QEMU board.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Rng;

/// What the relay does to each byte, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impair {
    /// Bytes per thousand XORed with a random non-zero value.
    pub flip_per_mille: u32,
    /// Bytes per thousand not forwarded at all.
    pub drop_per_mille: u32,
    /// Seed of the noise, so a failing run can be repeated.
    pub seed: u64,
}

/// How fast a line forwards, changeable while the relay runs (`link_relay pty --control`): at
/// most N bytes per second (a UART at N*10 baud, 8N1), or as fast as the source delivers.
#[derive(Debug, Default)]
pub struct Pace(AtomicU32);

impl Pace {
    /// A pace of `bps` bytes per second (`None`: unlimited).
    pub fn new(bps: Option<u32>) -> Arc<Pace> {
        let p = Arc::new(Pace::default());
        p.set(bps);
        p
    }

    /// Change the pace; takes effect within one chunk.
    pub fn set(&self, bps: Option<u32>) {
        self.0.store(bps.unwrap_or(0), Ordering::Relaxed);
    }

    /// The current pace (`None`: unlimited).
    pub fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }
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

/// Forward `src` to `dst` with `impair`, at `pace`, until `src` ends or fails. Runs in the calling
/// thread.
pub fn pump(
    mut src: impl Source,
    mut dst: impl Write,
    impair: Impair,
    pace: &Pace,
    counts: Arc<Counts>,
) -> io::Result<()> {
    let mut rng = Rng(impair.seed | 1);
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(buf.len());
    let mut line = Line::default();
    loop {
        // paced, take no more than the line carries in about 10 ms at a time, as a UART's FIFO
        // does: the rest waits in the source's buffers (backpressure) instead of here, unread
        let take = pace.get().map_or(buf.len(), |bps| (bps as usize / 100).clamp(16, buf.len()));
        let Some(n) = src.read_some(&mut buf[..take])? else { break };
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
        line.send(&out, &mut dst, pace)?;
        dst.flush()?;
    }
    Ok(())
}

/// The clock of a paced line: when it has carried everything it was given so far.
#[derive(Default)]
struct Line {
    free_at: Option<Instant>,
}

impl Line {
    /// An idle line earns no credit beyond this (a UART cannot send later, faster, the bytes it did
    /// not get earlier); within it, a relay that was not scheduled for a while catches up, so a busy
    /// machine does not make the line slower than its pace.
    const SLACK: Duration = Duration::from_millis(50);
    /// The shortest sleep while the line is busy.
    const TICK: Duration = Duration::from_millis(2);

    /// Write `data` to `dst` no faster than `pace`, in chunks of what the line has carried by now
    /// (not a write and a sleep per byte: under load every sleep overruns and the line would crawl).
    fn send(&mut self, mut data: &[u8], dst: &mut impl Write, pace: &Pace) -> io::Result<()> {
        while !data.is_empty() {
            let now = Instant::now();
            let Some(bps) = pace.get() else {
                self.free_at = None;
                return dst.write_all(data);
            };
            let free_at = self.free_at.map_or(now, |f| f.max(now.checked_sub(Self::SLACK).unwrap_or(now)));
            if let Some(busy) = free_at.checked_duration_since(now).filter(|d| !d.is_zero()) {
                // still shifting out what it was given; a few bytes' worth of sleep at least, the
                // overrun is caught up on the next turn
                std::thread::sleep(busy.max(Self::TICK));
                continue;
            }
            // what the line carried since it was free, and the byte it starts now
            let due = (now.duration_since(free_at).as_secs_f64() * f64::from(bps)) as usize + 1;
            let n = due.min(data.len());
            dst.write_all(&data[..n])?;
            data = &data[n..];
            self.free_at = Some(free_at + Duration::from_secs_f64(n as f64 / f64::from(bps)));
        }
        Ok(())
    }
}

/// Open a serial line (a pty) raw, with a short read timeout for [`pump`].
pub fn open(path: &str) -> io::Result<serialport::TTYPort> {
    serialport::new(path, 115_200)
        .timeout(Duration::from_millis(100))
        .open_native()
        .map_err(|e| io::Error::other(format!("cannot open {path}: {e}")))
}

/// A `link_relay pty` process between the board's pty and one of its own, for the host.
pub struct Relay {
    child: Child,
    control: Option<ChildStdin>,
    log: PathBuf,
    /// The relay's pty, for the host to open.
    pub port: String,
}

/// Start `link_relay pty PORT --control ARGS..` (the binary at `bin`) between the board's `port`
/// and a new pty, its counts going to `log`.
pub fn spawn(bin: &Path, port: &Path, args: &[&str], log: &Path) -> Relay {
    let mut child = Command::new(bin)
        .arg("pty")
        .arg(port)
        .arg("--control")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display())))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let port =
        line.trim().strip_prefix("relay: ").unwrap_or_else(|| panic!("relay said `{line}`")).to_owned();
    let control = child.stdin.take();
    Relay { child, control, log: log.to_owned(), port }
}

impl Relay {
    /// Change the pace of both directions (`None`: unlimited), as if the line's baud rate changed.
    pub fn pace(&mut self, bps: Option<u32>) {
        let control = self.control.as_mut().expect("the relay's control input is open");
        writeln!(control, "pace {}", bps.unwrap_or(0))
            .and_then(|()| control.flush())
            .unwrap_or_else(|e| panic!("cannot tell the relay its pace: {e}"));
    }

    /// Stop the relay; returns its last counts line from the log ("" if none).
    pub fn stop(mut self) -> String {
        drop(self.control.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().last().unwrap_or("").to_owned()
    }
}
