//! Wire messages between host and agent, encoded with postcard, one message per [`crate::frame`].
//!
//! Architecture invariant: variant 0 of both [`HostMsg`] and [`AgentMsg`] is `Hello`, and its first
//! field is the protocol version, in every protocol version. So two sides of different versions can
//! always read each other's version and say which side to upgrade.

use serde::{Deserialize, Serialize};

/// The wire protocol version. Bump on any incompatible change to messages or framing.
/// 3: the record stream is reliable and flow-controlled (`Records{offset}`, `Ack`, `Nak`,
/// `Stopped{end}`), uploads are acknowledged chunk by chunk (`LoadAck`).
/// 4: files are installed through the protocol (`FileBegin`/`FileChunk`/`FileEnd`, packed with
/// DEFLATE) and the module loaded from one (`ModuleLoad`): `deploy` over a serial line.
/// 5: the record stream may be packed (`StartPacked`, what the host asks for): a version-4 agent
/// cannot decode that request, so the versions must say so first.
pub const PROTOCOL_VERSION: u16 = 5;

/// The agent disarms a running program when no message arrived from the host for this long. With the
/// agent's 100 ms poll and a ping every [`HEARTBEAT_INTERVAL_MS`], a host that dies (or a cable pulled)
/// leaves probes armed for at most ~1.3 s: the promise is "disarmed within 2 s".
pub const HEARTBEAT_TIMEOUT_MS: u32 = 1200;
/// How often the host sends [`HostMsg::Ping`] while a program runs: several per timeout, so a few
/// pings lost to line noise do not end the session.
pub const HEARTBEAT_INTERVAL_MS: u32 = 250;
/// Largest image chunk in one [`HostMsg::LoadChunk`].
pub const CHUNK: usize = 512;
/// Smallest image chunk the host falls back to on a noisy link (a frame this short usually survives).
pub const MIN_CHUNK: usize = 48;
/// Largest piece of a packed file in one [`HostMsg::FileChunk`] (a frame's payload is at most
/// [`crate::frame::MAX_PAYLOAD`]; the path is not repeated in chunks).
pub const FILE_CHUNK: usize = 960;
/// Longest destination path of [`HostMsg::FileBegin`] and [`HostMsg::ModuleLoad`], in bytes.
pub const MAX_PATH: usize = 200;
/// The kernel module's name, as `delete_module` wants it when [`HostMsg::ModuleLoad`] replaces it.
pub const MODULE_NAME: &core::ffi::CStr = c"ktap";
/// Largest piece of the record stream in one [`AgentMsg::Records`].
pub const RECORD_BATCH: usize = 768;
/// Smallest piece of the record stream the agent falls back to after retransmissions.
pub const MIN_RECORD_BATCH: usize = 48;
/// The agent resends unacknowledged record bytes (go-back-N) when no acknowledgement advanced for
/// this long, or for the line's measured round trip when that is longer (a slow line).
pub const RESEND_TIMEOUT_MS: u32 = 500;

/// The symbols the agent may report as the kernel's run-time base, in order of preference. `_text`
/// is the image start but ARM32 and arm64 leave it out of `/proc/kallsyms` (it lies below `_stext`,
/// outside kallsyms' text range); `_stext` is listed on every arch we know. The host rebases every address by
/// the reported symbol's run-time address minus its address in the vmlinux.
pub const BASE_SYMBOLS: [&str; 2] = ["_text", "_stext"];

/// Host to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg<'a> {
    /// Opens a session. Always variant 0 with the version first.
    Hello {
        /// [`PROTOCOL_VERSION`] of the host.
        version: u16,
        /// ktap-host's version string, for the agent's log.
        host: &'a str,
    },
    /// Start uploading an image of `len` bytes (replaces any unstarted upload).
    LoadBegin {
        /// Total image length.
        len: u32,
    },
    /// One piece of the image, in order.
    LoadChunk {
        /// Offset of this piece within the image.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// The upload is complete: hand it to the kernel, which verifies it and attaches its probes (disarmed).
    LoadEnd,
    /// Arm the loaded program.
    Start,
    /// Disarm, run `trace_end`, flush records, answer [`AgentMsg::Stopped`].
    Stop,
    /// Keep-alive while a program runs.
    Ping {
        /// Echoed in [`AgentMsg::Pong`].
        seq: u32,
    },
    /// The host is leaving: unload any program and close the session.
    Bye,
    /// Credit and acknowledgement for the record stream: every byte before `next` arrived; the agent
    /// may send bytes up to `next + window`. Sent on progress and with every ping (a lost one costs
    /// nothing).
    Ack {
        /// Offset of the first record-stream byte not yet received.
        next: u64,
        /// Bytes the host accepts beyond `next`.
        window: u32,
    },
    /// Like [`HostMsg::Ack`], and bytes from `next` on were lost (a later piece arrived first):
    /// resend everything from `next`.
    Nak {
        /// Offset of the first missing byte.
        next: u64,
        /// Bytes the host accepts beyond `next`.
        window: u32,
    },
    /// Start writing a file at the absolute path `path` (through a temporary file beside it, renamed
    /// into place by `FileEnd`; missing directories are created). The content follows packed
    /// ([`crate::pack`]): `packed` bytes that unpack to `len` bytes with CRC-32 `crc`. Answered with
    /// [`AgentMsg::FileAck`] `{next: 0}`; replaces any unfinished file.
    FileBegin {
        /// Absolute destination path, at most [`MAX_PATH`] bytes.
        path: &'a str,
        /// Unpacked length.
        len: u32,
        /// Packed length (the sum of the chunks).
        packed: u32,
        /// CRC-32 of the unpacked content ([`crate::pack::crc32`]).
        crc: u32,
        /// Permission bits of the installed file (e.g. 0o755).
        mode: u32,
    },
    /// One piece of the packed file, in order; answered with [`AgentMsg::FileAck`].
    FileChunk {
        /// Offset of this piece within the packed stream.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// All chunks were acknowledged: check length and CRC, then rename the file into place.
    /// Answered with [`AgentMsg::FileDone`] or an `Error` (also when repeated).
    FileEnd,
    /// Replace the kernel module: unload any program, remove the loaded `ktap` module if there is
    /// one, and load the module file at `path` (`finit_module`). Answered with
    /// [`AgentMsg::ModuleLoaded`] or `Error{MODULE_LOAD, -errno}`.
    ModuleLoad {
        /// Absolute path of the module file on the board.
        path: &'a str,
    },
    /// Like [`HostMsg::Start`], and the record stream is packed: the agent compresses each batch of
    /// records it reads with [`crate::pack::StreamPacker`] (one DEFLATE stream per program, flushed
    /// per batch), and `Records` offsets and `Ack`s count packed bytes. The host unpacks the
    /// reassembled stream in order with [`crate::pack::Unpacker`].
    StartPacked,
}

/// Counters a running program accumulates; never silently dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Probe hits that ran the program.
    pub hits: u64,
    /// Hits skipped because the VM was already running on that CPU (recursion guard).
    pub recursion_skipped: u64,
    /// Hits aborted because they ran out of instruction budget.
    pub budget_exhausted: u64,
    /// Hits aborted by a runtime error other than budget (e.g. a record too large).
    pub runtime_errors: u64,
    /// Table inserts refused because the table was full.
    pub table_full: u64,
    /// Records dropped because the kernel ring buffer was full.
    pub ring_dropped: u64,
    /// Records the agent could not send (the link, or the host's output, too slow: no credit), counted
    /// by the agent.
    pub link_dropped: u64,
    /// Kprobe/kretprobe misses counted by the kernel (`nmissed`).
    pub kernel_missed: u64,
    /// Kernel or user memory reads that faulted (`kernel_string` of a bad pointer, ...).
    pub mem_faults: u64,
}

/// Agent to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg<'a> {
    /// Answers [`HostMsg::Hello`]. Always variant 0 with the version first.
    Hello {
        /// [`PROTOCOL_VERSION`] of the agent.
        version: u16,
        /// The agent's version string.
        agent: &'a str,
        /// `uname -m` of the board.
        machine: &'a str,
        /// `uname -r` of the board.
        release: &'a str,
        /// GNU build-id of the running kernel (from `/sys/kernel/notes`).
        build_id: &'a [u8],
        /// The symbol whose run-time address is `base_addr`, one of [`BASE_SYMBOLS`]; empty if unknown.
        base_symbol: &'a str,
        /// Run-time address of `base_symbol` (differs from the vmlinux under KASLR); 0 if unknown.
        base_addr: u64,
    },
    /// The kernel accepted the image and attached `probes` probes (disarmed).
    Loaded {
        /// Number of probes attached.
        probes: u16,
    },
    /// The image was refused. `code` is in [`codes`]; `offset` is a byte offset in the image
    /// (or a probe index for attach errors); `detail` is an errno where one applies.
    Rejected {
        /// Reason code.
        code: u16,
        /// Byte offset or index the reason refers to.
        offset: u32,
        /// Errno or extra detail, 0 if none.
        detail: i32,
    },
    /// The program is armed.
    Started,
    /// A piece of the program's record stream: the kernel's records concatenated (see
    /// [`crate::record`]) and cut anywhere, so a record may span pieces. The stream starts at offset 0
    /// with each loaded program; pieces are resent after a [`HostMsg::Nak`] or a silence of at least
    /// [`RESEND_TIMEOUT_MS`], and only sent within the host's credit ([`HostMsg::Ack`]).
    Records {
        /// Stream offset of `data[0]`.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Live counters, sent periodically while running.
    Stats(Stats),
    /// The program was stopped and `trace_end` ran; the record stream is complete at `end` bytes
    /// (resent on request until the host has them all). Answered again to a repeated `Stop`.
    Stopped {
        /// Final counters.
        stats: Stats,
        /// Length of the whole record stream.
        end: u64,
    },
    /// Answers [`HostMsg::Ping`].
    Pong {
        /// The ping's sequence number.
        seq: u32,
    },
    /// Something failed on the board outside the image itself.
    Error {
        /// Reason code, in [`codes`].
        code: u16,
        /// Errno or extra detail.
        detail: i32,
    },
    /// Upload progress: every image byte before `next` arrived in order. Answers `LoadBegin` (with 0)
    /// and every `LoadChunk`; a chunk at any other offset than `next` is ignored, so the host resends
    /// from `next` (stop-and-wait, one chunk in flight: a slow agent is never overrun).
    LoadAck {
        /// The next image offset the agent expects.
        next: u32,
    },
    /// File progress: every packed byte before `next` was written. Answers `FileBegin` (with 0) and
    /// every `FileChunk` (one chunk in flight, as with images).
    FileAck {
        /// The next packed offset the agent expects.
        next: u32,
    },
    /// The file is complete, checked and renamed into place.
    FileDone {
        /// Unpacked length written.
        len: u32,
        /// Its CRC-32.
        crc: u32,
    },
    /// The module file was loaded into the kernel (`/dev/ktap` exists again).
    ModuleLoaded,
}

/// Reason codes for [`AgentMsg::Rejected`] and [`AgentMsg::Error`].
///
/// `0x01xx`: image structure ([`crate::image::ImageError::code`]); `0x02xx`: verifier (`ktap-vm`);
/// `0x03xx`: kernel-side; `0x04xx`: agent-side.
pub mod codes {
    /// A probe could not be attached (`offset` = probe index, `detail` = -errno).
    pub const ATTACH_FAILED: u16 = 0x301;
    /// The image's build-id differs from the running kernel's.
    pub const BUILD_ID_MISMATCH: u16 = 0x302;
    /// Another program is already loaded on this device.
    pub const BUSY: u16 = 0x303;
    /// The kernel could not allocate the program's fixed memory.
    pub const NO_MEMORY: u16 = 0x304;
    /// No tracepoint with the probe's name exists in this kernel (`offset` = probe index).
    pub const NO_TRACEPOINT: u16 = 0x305;
    /// Any other kernel error (`detail` = -errno).
    pub const KERNEL: u16 = 0x306;
    /// The agent cannot open the ktap device (`detail` = errno; is the module loaded?).
    pub const NO_DEVICE: u16 = 0x401;
    /// Image chunks arrived out of order or overran the announced length.
    pub const BAD_UPLOAD: u16 = 0x402;
    /// The announced image is larger than the agent accepts.
    pub const IMAGE_TOO_LARGE: u16 = 0x403;
    /// Start or Stop without a loaded program.
    pub const NOT_LOADED: u16 = 0x404;
    /// The host speaks another protocol version (`detail` = the agent's version).
    pub const VERSION_MISMATCH: u16 = 0x405;
    /// A message could not be decoded.
    pub const BAD_MESSAGE: u16 = 0x406;
    /// No session is open: the agent answers only `Hello` (it closes the session on `Bye` and when the
    /// heartbeat times out, disarming any program).
    pub const NO_SESSION: u16 = 0x407;
    /// A file could not be created, written or renamed (`detail` = errno).
    pub const FILE_WRITE: u16 = 0x408;
    /// A file's packed stream was invalid, or it unpacked to another length or CRC than announced
    /// (nothing was renamed into place).
    pub const FILE_CORRUPT: u16 = 0x409;
    /// A destination path was not absolute, too long, or contained a NUL byte.
    pub const BAD_PATH: u16 = 0x40a;
    /// `FileChunk`/`FileEnd` without a `FileBegin`, or a program is running.
    pub const NO_FILE: u16 = 0x40b;
    /// The kernel refused to load (or unload the old) module (`detail` = -errno).
    pub const MODULE_LOAD: u16 = 0x307;
    /// A symbol of the image's SYMBOLS section (compiled from a System.map) is not at that address
    /// in the running kernel's `/proc/kallsyms` (`offset` = the entry's byte offset in the image,
    /// `detail` = the board's address of the first symbol of that name minus the base address the
    /// image assumes, saturated, or [`SYMBOL_ABSENT`] when no symbol of that name exists).
    pub const SYMBOL_MISMATCH: u16 = 0x40c;
    /// A kprobe of an image with a SYMBOLS section attaches to a symbol the section does not list,
    /// or below its address (`offset` = the probe spec's byte offset in the image).
    pub const SYMBOL_UNLISTED: u16 = 0x40d;
    /// The agent could not read `/proc/kallsyms` with addresses to check an image compiled from a
    /// System.map (`detail` = errno, 0 when it shows only zero addresses: not root, kptr_restrict).
    pub const NO_KALLSYMS: u16 = 0x40e;
    /// [`SYMBOL_MISMATCH`]'s detail when the running kernel has no symbol of that name.
    pub const SYMBOL_ABSENT: i32 = i32::MIN;

    /// A short description of a kernel- or agent-side code.
    pub fn describe(code: u16) -> Option<&'static str> {
        Some(match code {
            ATTACH_FAILED => "a probe could not be attached",
            BUILD_ID_MISMATCH => "the image was compiled for another kernel build",
            BUSY => "another program is already loaded",
            NO_MEMORY => "the kernel could not allocate the program's memory",
            NO_TRACEPOINT => "no such tracepoint in this kernel",
            KERNEL => "kernel error",
            NO_DEVICE => "cannot open /dev/ktap (is the ktap module loaded?)",
            BAD_UPLOAD => "image upload out of order",
            IMAGE_TOO_LARGE => "image too large",
            NOT_LOADED => "no program loaded",
            VERSION_MISMATCH => "protocol version mismatch",
            BAD_MESSAGE => "undecodable message",
            NO_SESSION => "no session on the agent (send Hello first; a heartbeat timeout ends the session)",
            FILE_WRITE => "cannot write the file on the board",
            FILE_CORRUPT => "the file arrived corrupted (length or CRC differ); nothing was installed",
            BAD_PATH => "the destination path must be absolute, at most 200 bytes, without NUL",
            NO_FILE => "no file transfer in progress (or a program is running)",
            MODULE_LOAD => "the kernel refused to load the module",
            SYMBOL_MISMATCH => "the System.map the image was compiled from does not match the running kernel",
            SYMBOL_UNLISTED => "a kprobe's symbol is missing from the image's symbol list",
            NO_KALLSYMS => {
                "the agent cannot read /proc/kallsyms addresses to check the image's symbols (run it as root)"
            }
            _ => return crate::image::ImageError::describe_code(code),
        })
    }
}

/// What to do about a version difference, phrased for the user.
pub fn version_advice(host: u16, agent: u16) -> Option<&'static str> {
    match host.cmp(&agent) {
        core::cmp::Ordering::Equal => None,
        core::cmp::Ordering::Greater => {
            Some("the agent on the board is older than ktap-host: upgrade the agent")
        }
        core::cmp::Ordering::Less => {
            Some("ktap-host is older than the agent on the board: upgrade ktap-host")
        }
    }
}

/// Encode a message into `buf`, returning the used prefix.
pub fn encode<'b, T: Serialize>(msg: &T, buf: &'b mut [u8]) -> Result<&'b mut [u8], postcard::Error> {
    postcard::to_slice(msg, buf)
}

/// Decode a message from a frame payload.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(payload)
}

/// One of every message with typical field values: the round-trip test's cases and the seeds of
/// the link's fuzz targets (`cargo xtask fuzz`), kept in one list so neither misses a message.
#[doc(hidden)]
pub mod examples {
    use super::{AgentMsg, HostMsg, PROTOCOL_VERSION, Stats};

    static DATA: [u8; 64] = [0x5a; 64];

    /// Every `HostMsg`, in variant order.
    pub fn host() -> [HostMsg<'static>; 15] {
        [
            HostMsg::Hello { version: PROTOCOL_VERSION, host: "ktap-host" },
            HostMsg::LoadBegin { len: 4096 },
            HostMsg::LoadChunk { offset: 512, data: &DATA },
            HostMsg::LoadEnd,
            HostMsg::Start,
            HostMsg::Stop,
            HostMsg::Ping { seq: 7 },
            HostMsg::Bye,
            HostMsg::Ack { next: 4096, window: 32768 },
            HostMsg::Nak { next: 300, window: 32768 },
            HostMsg::FileBegin {
                path: "/tmp/ktap/ktap.ko",
                len: 120_000,
                packed: 47_000,
                crc: 0x1234_5678,
                mode: 0o644,
            },
            HostMsg::FileChunk { offset: 960, data: &DATA },
            HostMsg::FileEnd,
            HostMsg::ModuleLoad { path: "/tmp/ktap/ktap.ko" },
            HostMsg::StartPacked,
        ]
    }

    /// Every `AgentMsg`, in variant order.
    pub fn agent() -> [AgentMsg<'static>; 13] {
        [
            AgentMsg::Hello {
                version: PROTOCOL_VERSION,
                agent: "0.1.0",
                machine: "armv7l",
                release: "6.1.0",
                build_id: &DATA[..20],
                base_symbol: "_stext",
                base_addr: 0xc000_8000,
            },
            AgentMsg::Loaded { probes: 2 },
            AgentMsg::Rejected { code: 0x201, offset: 40, detail: -22 },
            AgentMsg::Started,
            AgentMsg::Records { offset: 1 << 33, data: &DATA },
            AgentMsg::Stats(Stats { hits: 1000, ring_dropped: 3, ..Stats::default() }),
            AgentMsg::Stopped {
                stats: Stats { hits: 1000, ring_dropped: 2, ..Stats::default() },
                end: 12345,
            },
            AgentMsg::Pong { seq: 7 },
            AgentMsg::Error { code: 0x406, detail: 1 },
            AgentMsg::LoadAck { next: 512 },
            AgentMsg::FileAck { next: 960 },
            AgentMsg::FileDone { len: 120_000, crc: 0x1234_5678 },
            AgentMsg::ModuleLoaded,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_variant_zero_with_version_first() {
        let mut buf = [0u8; 64];
        let b = encode(&HostMsg::Hello { version: 0x1234, host: "x" }, &mut buf).unwrap();
        assert_eq!(b[0], 0, "variant index");
        // postcard encodes u16 as a varint: 0x1234 -> b4 24
        assert_eq!(&b[1..3], &[0xb4, 0x24]);
        let mut buf = [0u8; 64];
        let msg = AgentMsg::Hello {
            version: 7,
            agent: "a",
            machine: "armv7l",
            release: "6.1",
            build_id: &[1, 2],
            base_symbol: "_stext",
            base_addr: 0xc000_8000,
        };
        let b = encode(&msg, &mut buf).unwrap();
        assert_eq!(&b[..2], &[0, 7]);
        assert_eq!(decode::<AgentMsg<'_>>(b).unwrap(), msg);
    }

    #[test]
    fn every_example_round_trips_and_each_message_has_one() {
        let mut buf = [0u8; 256];
        let mut tags = [false; 32];
        for m in examples::host() {
            let b = encode(&m, &mut buf).unwrap();
            assert!(!core::mem::replace(&mut tags[usize::from(b[0])], true), "two examples of {m:?}");
            assert_eq!(decode::<HostMsg<'_>>(b).unwrap(), m);
            // a new message needs an example: this match has no wildcard on purpose
            match m {
                HostMsg::Hello { .. }
                | HostMsg::LoadBegin { .. }
                | HostMsg::LoadChunk { .. }
                | HostMsg::LoadEnd
                | HostMsg::Start
                | HostMsg::Stop
                | HostMsg::Ping { .. }
                | HostMsg::Bye
                | HostMsg::Ack { .. }
                | HostMsg::Nak { .. }
                | HostMsg::FileBegin { .. }
                | HostMsg::FileChunk { .. }
                | HostMsg::FileEnd
                | HostMsg::ModuleLoad { .. }
                | HostMsg::StartPacked => {}
            }
        }
        assert!(tags[..examples::host().len()].iter().all(|t| *t), "variants without an example");
        let mut tags = [false; 32];
        for m in examples::agent() {
            let b = encode(&m, &mut buf).unwrap();
            assert!(!core::mem::replace(&mut tags[usize::from(b[0])], true), "two examples of {m:?}");
            assert_eq!(decode::<AgentMsg<'_>>(b).unwrap(), m);
            match m {
                AgentMsg::Hello { .. }
                | AgentMsg::Loaded { .. }
                | AgentMsg::Rejected { .. }
                | AgentMsg::Started
                | AgentMsg::Records { .. }
                | AgentMsg::Stats(_)
                | AgentMsg::Stopped { .. }
                | AgentMsg::Pong { .. }
                | AgentMsg::Error { .. }
                | AgentMsg::LoadAck { .. }
                | AgentMsg::FileAck { .. }
                | AgentMsg::FileDone { .. }
                | AgentMsg::ModuleLoaded => {}
            }
        }
        assert!(tags[..examples::agent().len()].iter().all(|t| *t), "variants without an example");
    }

    #[test]
    fn version_advice_names_the_side_to_upgrade() {
        assert_eq!(version_advice(1, 1), None);
        assert!(version_advice(2, 1).unwrap().contains("upgrade the agent"));
        assert!(version_advice(1, 2).unwrap().contains("upgrade ktap-host"));
    }

    #[test]
    fn codes_have_descriptions() {
        assert_eq!(codes::describe(codes::BUSY), Some("another program is already loaded"));
        assert_eq!(codes::describe(0x102), Some("bad magic (not a ktap image)"));
        assert_eq!(codes::describe(0x999), None);
    }
}
