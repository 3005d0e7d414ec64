//! In-memory fakes of the device and the link for the unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::string::{String, ToString};
use std::vec::Vec;

use ktap_protocol::frame;
use ktap_protocol::image::FuncSpec;
use ktap_protocol::image::build::ImageBuilder;
use ktap_protocol::kdev::KStats;
use ktap_protocol::wire::{self, AgentMsg};

use crate::install::Install;
use crate::outq::frame_len;
use crate::{Device, Errno, Link, LoadError};

/// A record of exactly `len` bytes, its id in bytes 4..6.
pub fn rec(len: usize, id: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&(len as u16).to_le_bytes());
    r.extend_from_slice(&[1, 0]);
    r.extend_from_slice(&id.to_le_bytes());
    r.resize(len, 0xaa);
    r
}

/// A structurally valid image with this build-id.
pub fn image(build_id: &[u8]) -> Vec<u8> {
    ImageBuilder {
        code: std::vec![0],
        funcs: std::vec![FuncSpec { code_off: 0, code_len: 1, n_int: 1, ..FuncSpec::default() }],
        build_id: build_id.to_vec(),
        ..ImageBuilder::default()
    }
    .build()
}

/// A scripted `/dev/ktap`.
#[derive(Debug, Default)]
pub struct FakeDevice {
    /// Calls, in order: "load", "start", "stop", "stats", "read", "unload".
    pub log: Vec<&'static str>,
    /// What `load` answers (`Ok(probes)` by default with 1).
    pub load_result: Option<Result<u16, LoadError>>,
    /// The image given to the last successful load.
    pub image: Option<Vec<u8>>,
    /// Whether the program is armed.
    pub armed: bool,
    /// Records waiting in the ring.
    pub ring: VecDeque<Vec<u8>>,
    /// Records that appear in the ring when `stop` runs (`trace_end` output).
    pub at_stop: Vec<Vec<u8>>,
    /// Bytes appended raw to the next read (to model a broken kernel).
    pub garbage: Vec<u8>,
    /// Counters `stats` reports.
    pub kstats: KStats,
    /// Make `start` fail with this errno.
    pub start_errno: Option<Errno>,
    /// A kernel whose stream never ends: every read returns a record.
    pub endless: bool,
    /// The size of every read buffer offered.
    pub read_sizes: Vec<usize>,
    /// Installed files: path -> (content, mode).
    pub files: BTreeMap<String, (Vec<u8>, u32)>,
    /// The temporary file being written: (path, content).
    pub writing: Option<(String, Vec<u8>)>,
    /// File and module calls, in order ("create /p", "commit /p", "discard /p", "module /p").
    pub file_log: Vec<String>,
    /// Make `write` fail with this errno.
    pub write_errno: Option<Errno>,
    /// Make `load_module` fail with this errno.
    pub module_errno: Option<Errno>,
    /// What `/proc/kallsyms` holds; `Err(errno)` makes reading it fail.
    pub kallsyms: Option<Result<Vec<u8>, Errno>>,
}

impl FakeDevice {
    /// Calls of one kind.
    pub fn calls(&self, name: &str) -> usize {
        self.log.iter().filter(|c| **c == name).count()
    }
}

impl Device for FakeDevice {
    fn load(&mut self, image: &[u8]) -> Result<u16, LoadError> {
        self.log.push("load");
        let r = self.load_result.unwrap_or(Ok(1));
        if r.is_ok() {
            if self.image.is_some() {
                return Err(LoadError::Refused {
                    code: ktap_protocol::wire::codes::BUSY,
                    offset: 0,
                    detail: 0,
                });
            }
            self.image = Some(image.to_vec());
        }
        r
    }
    fn start(&mut self) -> Result<(), Errno> {
        self.log.push("start");
        if let Some(e) = self.start_errno {
            return Err(e);
        }
        assert!(self.image.is_some(), "start without a program");
        self.armed = true;
        Ok(())
    }
    fn stop(&mut self) -> Result<(), Errno> {
        self.log.push("stop");
        self.armed = false;
        self.ring.extend(self.at_stop.drain(..));
        Ok(())
    }
    fn stats(&mut self) -> Result<KStats, Errno> {
        self.log.push("stats");
        Ok(self.kstats)
    }
    fn read_records(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.log.push("read");
        self.read_sizes.push(buf.len());
        if self.endless {
            let r = rec(8, 0);
            buf[..8].copy_from_slice(&r);
            return Ok(8);
        }
        let mut n = 0;
        while let Some(r) = self.ring.front() {
            if n + r.len() > buf.len() {
                if n == 0 {
                    return Err(22); // EINVAL: the buffer cannot hold the next record
                }
                break;
            }
            buf[n..n + r.len()].copy_from_slice(r);
            n += r.len();
            self.ring.pop_front();
        }
        let g = core::mem::take(&mut self.garbage);
        buf[n..n + g.len()].copy_from_slice(&g);
        Ok(n + g.len())
    }
    fn kallsyms(&mut self, feed: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), Errno> {
        self.log.push("kallsyms");
        let text = match &self.kallsyms {
            Some(Ok(t)) => t.clone(),
            Some(Err(e)) => return Err(*e),
            None => Vec::new(),
        };
        for chunk in text.chunks(100) {
            if feed(chunk) {
                break;
            }
        }
        Ok(())
    }
    fn unload(&mut self) -> Result<(), Errno> {
        self.log.push("unload");
        self.armed = false;
        self.image = None;
        self.ring.clear();
        Ok(())
    }
}

fn path(p: &core::ffi::CStr) -> String {
    p.to_str().unwrap().to_string()
}

impl Install for FakeDevice {
    fn create(&mut self, tmp: &core::ffi::CStr) -> Result<(), Errno> {
        self.file_log.push(std::format!("create {}", path(tmp)));
        self.writing = Some((path(tmp), Vec::new()));
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), Errno> {
        if let Some(e) = self.write_errno {
            return Err(e);
        }
        self.writing.as_mut().expect("write without create").1.extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self, tmp: &core::ffi::CStr, dest: &core::ffi::CStr, mode: u32) -> Result<(), Errno> {
        self.file_log.push(std::format!("commit {}", path(dest)));
        let (name, data) = self.writing.take().expect("commit without create");
        assert_eq!(name, path(tmp));
        self.files.insert(path(dest), (data, mode));
        Ok(())
    }
    fn discard(&mut self, tmp: &core::ffi::CStr) {
        self.file_log.push(std::format!("discard {}", path(tmp)));
        self.writing = None;
    }
    fn load_module(&mut self, p: &core::ffi::CStr) -> Result<(), Errno> {
        assert!(self.image.is_none(), "the module is replaced with a program loaded");
        self.file_log.push(std::format!("module {}", path(p)));
        self.module_errno.map_or(Ok(()), Err)
    }
}

/// A link that keeps every message's postcard payload.
#[derive(Debug)]
pub struct FakeLink {
    /// Payloads sent, in order.
    pub sent: Vec<Vec<u8>>,
    /// Encoded bytes that fit now; `try_send` uses it up, `send` ignores it.
    pub room: usize,
}

impl Default for FakeLink {
    fn default() -> Self {
        FakeLink { sent: Vec::new(), room: 1 << 20 }
    }
}

impl FakeLink {
    /// The messages, decoded.
    pub fn msgs(&self) -> Vec<AgentMsg<'_>> {
        self.sent.iter().map(|p| wire::decode(p).unwrap()).collect()
    }

    /// Forget what was sent.
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    fn encode(msg: &AgentMsg<'_>) -> Vec<u8> {
        let mut buf = [0u8; frame::MAX_PAYLOAD];
        wire::encode(msg, &mut buf).expect("every message the agent sends fits a frame").to_vec()
    }
}

impl Link for FakeLink {
    fn send(&mut self, msg: &AgentMsg<'_>) {
        self.sent.push(Self::encode(msg));
    }
    fn try_send(&mut self, msg: &AgentMsg<'_>) -> bool {
        let p = Self::encode(msg);
        let cost = frame_len(p.len());
        if cost > self.room {
            return false;
        }
        self.room -= cost;
        self.sent.push(p);
        true
    }
    fn room(&self) -> usize {
        self.room
    }
}
