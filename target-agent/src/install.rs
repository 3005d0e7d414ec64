//! Files installed through the protocol (`ktap-host deploy` over a serial line, for boards without a
//! network): `FileBegin` -> `FileChunk`s -> `FileEnd`, then `ModuleLoad`.
//!
//! The content arrives packed ([`ktap_protocol::pack`]) one acknowledged chunk at a time and is
//! unpacked straight into a temporary file beside the destination (`PATH.part`). Only a file whose
//! length and CRC-32 match what `FileBegin` announced is renamed over the destination, so a
//! transfer cut short or corrupted never leaves a half-written agent or module in place; the
//! temporary file is removed instead. Requests may be repeated (the host resends when an answer
//! is lost): a chunk at another offset than expected is answered with the offset wanted, a repeated
//! `FileEnd` with the same answer.

use core::ffi::CStr;

use ktap_protocol::pack::{UnpackError, Unpacker};
use ktap_protocol::wire::{MAX_PATH, codes};

use crate::Errno;

/// The file-system and module operations of an install. The binary implements them with syscalls;
/// tests keep the files in memory.
pub trait Install {
    /// Create `tmp` for writing (truncated, private until committed), and any missing directories
    /// above it.
    fn create(&mut self, tmp: &CStr) -> Result<(), Errno>;
    /// Append to the file `create` opened.
    fn write(&mut self, data: &[u8]) -> Result<(), Errno>;
    /// Flush the file to storage, give it `mode`, close it and rename `tmp` over `path` (atomic).
    fn commit(&mut self, tmp: &CStr, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// Close and remove `tmp` (a transfer that failed or was replaced).
    fn discard(&mut self, tmp: &CStr);
    /// Remove the loaded `ktap` module if there is one, then load the module file at `path`.
    /// The caller has released `/dev/ktap` first.
    fn load_module(&mut self, path: &CStr) -> Result<(), Errno>;
}

/// What the temporary file's name adds to the destination's.
pub const TMP_SUFFIX: &[u8] = b".part";

/// A NUL-terminated copy of a destination path (and of its temporary name).
#[derive(Debug, Clone, Copy)]
pub struct PathBuf {
    bytes: [u8; MAX_PATH + TMP_SUFFIX.len() + 1],
}

impl PathBuf {
    /// `path` if it is absolute, at most [`MAX_PATH`] bytes, names a file (not ending in `/`) and
    /// contains no NUL; `suffix` is appended.
    pub fn new(path: &str, suffix: &[u8]) -> Option<PathBuf> {
        let p = path.as_bytes();
        let ok =
            p.first() == Some(&b'/') && p.last() != Some(&b'/') && p.len() <= MAX_PATH && !p.contains(&0);
        if !ok {
            return None;
        }
        let mut bytes = [0u8; MAX_PATH + TMP_SUFFIX.len() + 1];
        let s = suffix.get(..suffix.len().min(TMP_SUFFIX.len()))?;
        bytes.get_mut(..p.len())?.copy_from_slice(p);
        bytes.get_mut(p.len()..p.len() + s.len())?.copy_from_slice(s);
        Some(PathBuf { bytes })
    }

    /// The path, NUL-terminated.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

/// An answer to a file request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `FileAck{next}`.
    Ack(u32),
    /// `FileDone{len, crc}`.
    Done {
        /// Unpacked length.
        len: u32,
        /// CRC-32.
        crc: u32,
    },
    /// `Error{code, detail}`.
    Error(u16, i32),
}

/// A file in transfer.
#[derive(Debug, Clone, Copy)]
struct Current {
    path: PathBuf,
    tmp: PathBuf,
    len: u32,
    packed: u32,
    crc: u32,
    mode: u32,
    /// Packed bytes written so far.
    next: u32,
}

/// The receiving side of file installs.
#[derive(Debug)]
pub struct FileRx {
    current: Option<Current>,
    unpacker: Unpacker,
    /// The answer to the last `FileEnd` (or failure), repeated to a repeated request.
    last: Option<Reply>,
}

impl Default for FileRx {
    fn default() -> Self {
        Self::new()
    }
}

impl FileRx {
    /// Nothing in transfer.
    pub fn new() -> Self {
        FileRx { current: None, unpacker: Unpacker::new(0), last: None }
    }

    /// Whether a file is in transfer.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// `FileBegin`: create the temporary file (replacing any unfinished transfer).
    pub fn begin<I: Install>(
        &mut self,
        fs: &mut I,
        path: &str,
        len: u32,
        packed: u32,
        crc: u32,
        mode: u32,
    ) -> Reply {
        self.abort(fs);
        self.last = None;
        let (Some(p), Some(tmp)) = (PathBuf::new(path, b""), PathBuf::new(path, TMP_SUFFIX)) else {
            return Reply::Error(codes::BAD_PATH, 0);
        };
        if packed == 0 {
            return Reply::Error(codes::FILE_CORRUPT, 0);
        }
        if let Err(e) = fs.create(tmp.as_cstr()) {
            return Reply::Error(codes::FILE_WRITE, e);
        }
        self.unpacker.reset(u64::from(len));
        self.current = Some(Current { path: p, tmp, len, packed, crc, mode: mode & 0o7777, next: 0 });
        Reply::Ack(0)
    }

    /// `FileChunk`: unpack and write a piece if it is the one expected.
    pub fn chunk<I: Install>(&mut self, fs: &mut I, offset: u32, data: &[u8]) -> Reply {
        let Some(mut cur) = self.current else {
            return self.last.unwrap_or(Reply::Error(codes::NO_FILE, 0));
        };
        if offset != cur.next || data.is_empty() {
            return Reply::Ack(cur.next);
        }
        let end = match u32::try_from(data.len()).ok().and_then(|n| cur.next.checked_add(n)) {
            Some(end) if end <= cur.packed => end,
            _ => return self.fail(fs, Reply::Error(codes::FILE_CORRUPT, 0)),
        };
        match self.unpacker.feed(data, end < cur.packed, |piece| fs.write(piece)) {
            Ok(()) => {}
            Err(UnpackError::Sink(e)) => return self.fail(fs, Reply::Error(codes::FILE_WRITE, e)),
            Err(_) => return self.fail(fs, Reply::Error(codes::FILE_CORRUPT, 0)),
        }
        cur.next = end;
        self.current = Some(cur);
        Reply::Ack(end)
    }

    /// `FileEnd`: check the whole file and rename it into place.
    pub fn end<I: Install>(&mut self, fs: &mut I) -> Reply {
        let Some(cur) = self.current else {
            return self.last.unwrap_or(Reply::Error(codes::NO_FILE, 0));
        };
        if cur.next < cur.packed {
            return Reply::Ack(cur.next);
        }
        if self.unpacker.finish::<()>(u64::from(cur.len), cur.crc).is_err() {
            return self.fail(fs, Reply::Error(codes::FILE_CORRUPT, 0));
        }
        if let Err(e) = fs.commit(cur.tmp.as_cstr(), cur.path.as_cstr(), cur.mode) {
            return self.fail(fs, Reply::Error(codes::FILE_WRITE, e));
        }
        self.current = None;
        let done = Reply::Done { len: cur.len, crc: cur.crc };
        self.last = Some(done);
        done
    }

    /// Drop an unfinished transfer (a new session, `Bye`, the agent exiting): remove its temporary file.
    pub fn abort<I: Install>(&mut self, fs: &mut I) {
        if let Some(cur) = self.current.take() {
            fs.discard(cur.tmp.as_cstr());
        }
    }

    fn fail<I: Install>(&mut self, fs: &mut I, reply: Reply) -> Reply {
        self.abort(fs);
        self.last = Some(reply);
        reply
    }
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec::Vec;

    use ktap_protocol::pack::{crc32, pack};

    use super::*;
    use crate::fakes::FakeDevice;

    fn send(rx: &mut FileRx, fs: &mut FakeDevice, path: &str, data: &[u8], piece: usize) -> Reply {
        let packed = pack(data);
        let r = rx.begin(fs, path, data.len() as u32, packed.len() as u32, crc32(data), 0o755);
        assert_eq!(r, Reply::Ack(0));
        let mut at = 0;
        while at < packed.len() {
            let end = (at + piece).min(packed.len());
            assert_eq!(rx.chunk(fs, at as u32, &packed[at..end]), Reply::Ack(end as u32));
            at = end;
        }
        rx.end(fs)
    }

    fn content() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect()
    }

    #[test]
    fn a_file_is_unpacked_into_a_temporary_and_renamed_into_place() {
        let (mut rx, mut fs) = (FileRx::new(), FakeDevice::default());
        let data = content();
        let r = send(&mut rx, &mut fs, "/opt/ktap/ktap.ko", &data, 960);
        assert_eq!(r, Reply::Done { len: data.len() as u32, crc: crc32(&data) });
        assert_eq!(fs.files.get("/opt/ktap/ktap.ko").map(|(d, m)| (d.len(), *m)), Some((data.len(), 0o755)));
        assert!(fs.files.get("/opt/ktap/ktap.ko").unwrap().0 == data);
        assert!(fs.writing.is_none());
        // a repeated FileEnd gets the same answer and renames nothing again
        assert_eq!(rx.end(&mut fs), r);
        assert_eq!(fs.file_log.iter().filter(|c| c.starts_with("commit")).count(), 1);
    }

    #[test]
    fn repeated_and_early_chunks_are_answered_with_the_offset_wanted() {
        let (mut rx, mut fs) = (FileRx::new(), FakeDevice::default());
        let data = content();
        let packed = pack(&data);
        rx.begin(&mut fs, "/a", data.len() as u32, packed.len() as u32, crc32(&data), 0o644);
        assert_eq!(rx.chunk(&mut fs, 0, &packed[..100]), Reply::Ack(100));
        assert_eq!(rx.chunk(&mut fs, 0, &packed[..100]), Reply::Ack(100), "repeat");
        assert_eq!(rx.chunk(&mut fs, 300, &packed[300..400]), Reply::Ack(100), "ahead");
        assert_eq!(rx.end(&mut fs), Reply::Ack(100), "end before the last chunk");
        assert_eq!(rx.chunk(&mut fs, 100, &packed[100..]), Reply::Ack(packed.len() as u32));
        assert!(matches!(rx.end(&mut fs), Reply::Done { .. }));
        assert!(fs.files["/a"].0 == data);
    }

    #[test]
    fn a_corrupted_file_is_never_renamed_into_place() {
        let (mut rx, mut fs) = (FileRx::new(), FakeDevice::default());
        let data = content();
        let packed = pack(&data);
        // the announced CRC is wrong: the content unpacks fine but does not match
        rx.begin(&mut fs, "/a", data.len() as u32, packed.len() as u32, crc32(&data) ^ 1, 0o644);
        rx.chunk(&mut fs, 0, &packed);
        assert_eq!(rx.end(&mut fs), Reply::Error(codes::FILE_CORRUPT, 0));
        assert_eq!(rx.end(&mut fs), Reply::Error(codes::FILE_CORRUPT, 0), "repeated");
        assert!(fs.files.is_empty() && fs.writing.is_none());
        assert!(fs.file_log.contains(&String::from("discard /a.part")), "{:?}", fs.file_log);
        // garbage instead of a packed stream
        rx.begin(&mut fs, "/b", 10, 8, 0, 0o644);
        assert_eq!(rx.chunk(&mut fs, 0, &[0xff; 8]), Reply::Error(codes::FILE_CORRUPT, 0));
        // more than announced
        rx.begin(&mut fs, "/c", 10, 8, 0, 0o644);
        assert_eq!(rx.chunk(&mut fs, 0, &[0; 9]), Reply::Error(codes::FILE_CORRUPT, 0));
        assert!(fs.files.is_empty());
    }

    #[test]
    fn paths_must_be_absolute_file_names() {
        let (mut rx, mut fs) = (FileRx::new(), FakeDevice::default());
        for p in ["relative", "/dir/", "", "/a\0b"] {
            assert_eq!(rx.begin(&mut fs, p, 1, 1, 0, 0), Reply::Error(codes::BAD_PATH, 0), "{p:?}");
        }
        let long = std::format!("/{}", "x".repeat(MAX_PATH));
        assert_eq!(rx.begin(&mut fs, &long, 1, 1, 0, 0), Reply::Error(codes::BAD_PATH, 0));
        assert_eq!(rx.chunk(&mut fs, 0, b"x"), Reply::Error(codes::NO_FILE, 0));
    }

    #[test]
    fn write_errors_are_reported_with_their_errno() {
        let (mut rx, mut fs) = (FileRx::new(), FakeDevice::default());
        fs.write_errno = Some(28); // ENOSPC
        assert_eq!(send_err(&mut rx, &mut fs), Reply::Error(codes::FILE_WRITE, 28));
        assert!(fs.files.is_empty() && fs.writing.is_none());
    }

    fn send_err(rx: &mut FileRx, fs: &mut FakeDevice) -> Reply {
        let data = content();
        let packed = pack(&data);
        rx.begin(fs, "/a", data.len() as u32, packed.len() as u32, crc32(&data), 0o644);
        rx.chunk(fs, 0, &packed)
    }
}
