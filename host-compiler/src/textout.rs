//! Text for stdout or stderr, written by a thread of its own.
//!
//! `push` must keep talking to the board while it prints: the agent disarms the program when the
//! host has been silent for 1.2 s, and a reader that stops reading (stdout piped into a paused
//! `less`, a slow terminal) would otherwise block the whole session in a `write`. So the session
//! only queues text here and never waits; [`TextOut::has_room`] tells it when the queue is past its
//! mark, and the session then stops granting the agent credit: the backlog stays on the board, where
//! whatever does not fit is dropped and counted, never lost silently on the host.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The most queued text one `write` call takes at a time, so a burst is written in a few calls
/// while the queue still shrinks visibly.
const WRITE_BATCH: usize = 64 * 1024;

/// A queue of text in front of a writer that may block.
#[derive(Debug)]
pub struct TextOut {
    tx: Option<Sender<String>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Past this many queued bytes, [`TextOut::has_room`] says no.
    mark: usize,
}

#[derive(Debug, Default)]
struct Shared {
    /// Bytes queued and not yet written (including those the writer is blocked on).
    queued: AtomicUsize,
    /// The writer's failure, kept as kind and text so every later call can report it.
    error: Mutex<Option<(io::ErrorKind, String)>>,
}

impl Shared {
    fn failed(&self) -> Option<io::Error> {
        let e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        e.as_ref().map(|(kind, text)| io::Error::new(*kind, text.clone()))
    }
}

impl TextOut {
    /// Start the writer thread for `w` (named `name` in thread listings); `mark` is the queue
    /// length (bytes) past which [`TextOut::has_room`] turns false.
    pub fn spawn(name: &str, w: impl Write + Send + 'static, mark: usize) -> io::Result<TextOut> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name(name.to_owned()).spawn(move || write_all(w, &rx, &s))?;
        Ok(TextOut { tx: Some(tx), shared, thread: Some(thread), mark })
    }

    /// Queue `text`; never blocks. An error is the writer's earlier failure (e.g. a closed pipe).
    pub fn write(&self, text: String) -> io::Result<()> {
        if let Some(e) = self.shared.failed() {
            return Err(e);
        }
        if text.is_empty() {
            return Ok(());
        }
        let len = text.len();
        self.shared.queued.fetch_add(len, Ordering::SeqCst);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(text).is_ok());
        if !sent {
            self.shared.queued.fetch_sub(len, Ordering::SeqCst);
            return Err(self.shared.failed().unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()));
        }
        Ok(())
    }

    /// Whether the queue is below its mark (the reader keeps up).
    pub fn has_room(&self) -> bool {
        self.queued() < self.mark
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Write out everything queued (waiting for the reader as long as it takes) and stop the thread.
    pub fn finish(mut self) -> io::Result<()> {
        self.close();
        match self.shared.failed() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TextOut {
    /// What was queued is still written: an error path's last lines matter most.
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: queued text in batches, until the queue closes or a write fails.
fn write_all(mut w: impl Write, rx: &Receiver<String>, shared: &Shared) {
    while let Ok(mut batch) = rx.recv() {
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push_str(&more),
                Err(_) => break,
            }
        }
        let r = w.write_all(batch.as_bytes()).and_then(|()| w.flush());
        shared.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        if let Err(e) = r {
            *shared.error.lock().unwrap_or_else(|p| p.into_inner()) = Some((e.kind(), e.to_string()));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::SyncSender;
    use std::time::{Duration, Instant};

    use super::*;

    /// A writer that blocks until the test lets each write through, and records what it wrote.
    struct Gate {
        go: Receiver<()>,
        done: SyncSender<Vec<u8>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.go.recv().map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            let _ = self.done.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_reader_never_blocks_the_writer_and_fills_the_queue_past_its_mark() {
        let (go_tx, go) = mpsc::channel();
        let (done, written) = mpsc::sync_channel(1000);
        let out = TextOut::spawn("test-out", Gate { go, done }, 100).unwrap();
        let t = Instant::now();
        for i in 0..50 {
            out.write(format!("line {i}\n")).unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "write waited for the reader");
        assert!(!out.has_room(), "{} bytes queued", out.queued());
        // the reader comes back: everything arrives, in order, and the queue empties
        let expect: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let mut got = Vec::new();
        while got.len() < expect.len() {
            go_tx.send(()).unwrap();
            got.extend(written.recv_timeout(Duration::from_secs(10)).unwrap());
        }
        assert_eq!(String::from_utf8(got).unwrap(), expect);
        drop(go_tx);
        // the count drops once the write call returned, just after the bytes were handed over
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.queued() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(out.has_room(), "{} bytes still queued", out.queued());
        out.finish().unwrap();
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_reported_by_the_next_call_and_by_finish() {
        let out = TextOut::spawn("test-out", Closed, 100).unwrap();
        out.write("first\n".into()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = loop {
            match out.write("more\n".into()) {
                Err(e) => break e,
                Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Ok(()) => panic!("the failure was never reported"),
            }
        };
        assert_eq!((e.kind(), e.to_string()), (io::ErrorKind::BrokenPipe, "the reader went away".into()));
        assert_eq!(out.finish().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
