//! The guest's console (first serial port on QEMU's stdio): a reader thread collects everything the
//! guest prints, and `run` types a shell command and waits for its exit status.
//!
//! Completion is detected with a marker the command itself prints. The marker is split by quotes in the
//! typed line (`"@@KT""AP-..."`), so the tty's echo of the command line never matches it.

use std::io::{Read, Write};
use std::process::ChildStdin;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::QemuError;

#[derive(Default)]
struct Shared {
    buf: Vec<u8>,
    closed: bool,
}

/// The console of a running guest.
pub struct Console {
    input: ChildStdin,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Bytes of `buf` already consumed by `expect`/`run`.
    pos: usize,
    serial: u64,
}

impl Console {
    /// Start collecting `output` in a thread; commands are typed into `input`.
    pub(super) fn new(input: ChildStdin, mut output: impl Read + Send + 'static) -> Console {
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = output.read(&mut chunk).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    g.closed = true;
                    cv.notify_all();
                    return;
                }
                g.buf.extend_from_slice(&chunk[..n]);
                cv.notify_all();
            }
        });
        Console { input, shared, pos: 0, serial: 0 }
    }

    /// Everything the guest printed so far (lossy UTF-8).
    pub fn transcript(&self) -> String {
        let g = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&g.buf).into_owned()
    }

    /// The last `n` lines of the transcript, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let t = self.transcript();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until `needle` appears after the current position; return the text up to and including it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, QemuError> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let hay = &g.buf[self.pos.min(g.buf.len())..];
            if let Some(i) = find(hay, needle.as_bytes()) {
                let end = self.pos + i + needle.len();
                let text = String::from_utf8_lossy(&g.buf[self.pos..end]).into_owned();
                self.pos = end;
                return Ok(text);
            }
            if g.closed {
                drop(g);
                return Err(QemuError::ConsoleClosed { waiting_for: needle.to_owned(), tail: self.tail(30) });
            }
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                return Err(QemuError::Timeout {
                    waiting_for: needle.to_owned(),
                    secs: timeout.as_secs(),
                    tail: self.tail(30),
                });
            }
            g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Type `line` followed by a newline.
    pub fn send_line(&mut self, line: &str) -> Result<(), QemuError> {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| self.input.flush())
            .map_err(QemuError::ConsoleWrite)
    }

    /// Run a shell command in the guest; returns its output (without the echoed command line) and exit status.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(String, i32), QemuError> {
        self.serial += 1;
        let n = self.serial;
        self.send_line(&format!("{cmd}; echo \"@@KT\"\"AP-$?-{n}@@\""))?;
        let head = "@@KTAP-";
        loop {
            let text = self.expect(head, timeout)?;
            let tail = self.expect("@@", timeout)?;
            let Some((status, serial)) = tail.trim_end_matches("@@").split_once('-') else { continue };
            if serial != n.to_string() {
                continue; // a marker of an earlier command that timed out
            }
            let status = status.parse().unwrap_or(-1);
            let out = text.strip_suffix(head).unwrap_or(&text);
            // The typed line comes back once from the tty's echo and once more after the prompt:
            // the output starts after the last copy of it.
            let typed_tail = format!("AP-$?-{n}@@\"");
            let out = match out.rfind(&typed_tail) {
                Some(i) => out[i + typed_tail.len()..].split_once('\n').map_or("", |(_, rest)| rest),
                None => out,
            };
            return Ok((out.replace('\r', ""), status));
        }
    }

    /// Run a command that must succeed; returns its output.
    pub fn run_ok(&mut self, cmd: &str, timeout: Duration) -> Result<String, QemuError> {
        let (out, status) = self.run(cmd, timeout)?;
        if status != 0 {
            return Err(QemuError::CommandFailed { cmd: cmd.to_owned(), status, output: out });
        }
        Ok(out)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
