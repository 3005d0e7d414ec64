//! The stdin and stdout of a child process (e.g. `ssh board ktap-agent -`); its stderr is passed through.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::Link;

/// How long a child gets to exit after its stdin is closed before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A child process spoken to over its stdin and stdout.
#[derive(Debug)]
pub struct ChildLink {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    name: String,
}

impl ChildLink {
    /// Start `cmd` with piped stdin/stdout (stderr inherited, so e.g. ssh's own errors reach the user).
    pub fn spawn(mut cmd: Command) -> io::Result<ChildLink> {
        let name = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{name}`: {e}")))?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().ok_or_else(|| io::Error::other("child has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("ktap-child-link".into()).spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        })?;
        Ok(ChildLink { child, stdin, rx, pending: Vec::new(), name })
    }

    fn closed(&mut self) -> io::Error {
        // the pipe closes a moment before the exit is reapable; wait briefly so the status can be named
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break format!(" ({st})"),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break String::new(),
            }
        };
        io::Error::new(io::ErrorKind::UnexpectedEof, format!("`{}` closed its output{status}", self.name))
    }
}

impl Link for ChildLink {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if self.pending.is_empty() {
            match self.rx.recv_timeout(timeout) {
                Ok(data) => self.pending = data,
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => return Err(self.closed()),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let name = &self.name;
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::other(format!("`{name}`: stdin closed")))?;
        match stdin.write_all(data).and_then(|()| stdin.flush()) {
            Ok(()) => Ok(()),
            // a child that exited (ssh refused, agent missing) is reported the same whether the host
            // noticed it first by reading or by writing: which one comes first is a race
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(self.closed()),
            Err(e) => Err(io::Error::new(e.kind(), format!("writing to `{name}`: {e}"))),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildLink {
    /// Close the child's stdin (the agent takes EOF as goodbye), give it a moment, then kill it.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
