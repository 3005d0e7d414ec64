//! The agent's session state machine.
//!
//! ```text
//! AwaitHello --Hello(ours)--> Idle --LoadEnd ok--> Loaded --Start--> Running
//!     |                        ^                     ^                   | Stop
//!     |                        |                     +--Stopped{end}-- Draining
//!     +--Hello(other)--> Mismatch                    +--LoadEnd (replaces the program)
//!
//! any state --Hello--> disarm + unload, then Idle or Mismatch
//! any state --Bye----> disarm + unload, AwaitHello
//! Running --no message for HEARTBEAT_TIMEOUT_MS--> disarm + unload, AwaitHello
//! ```
//!
//! - A `Hello` always starts a fresh session: whatever an earlier host left loaded is disarmed and
//!   unloaded first, so a reconnect finds the board clean.
//! - A host with another protocol version gets the agent's `Hello`, then
//!   `Error{VERSION_MISMATCH, detail: agent version}`; every later message except a new `Hello` gets
//!   that error again.
//! - Without a session, messages other than `Hello` get `Error{NO_SESSION}` (`Bye` is ignored).
//! - While running or draining, a host silent for [`HEARTBEAT_TIMEOUT_MS`] ends the session: stop,
//!   unload, and back to `AwaitHello`.
//! - Records travel as a reliable byte stream ([`RecordStream`]): pieces go out within the host's
//!   credit (`Ack{next, window}`) and at most [`IN_FLIGHT`] unacknowledged bytes; a `Nak` or a
//!   silence without progress ([`ResendTimer`]: the measured round trip, at least
//!   [`wire::RESEND_TIMEOUT_MS`]) resends from the oldest unacknowledged byte and halves the piece size (a
//!   short frame survives a noisy line), which grows back as acknowledgements come.
//!   `Stop` disarms and moves to `Draining`: the kernel's last records (trace_end) join the stream,
//!   and `Stopped{end}` follows once all of it was sent; retransmissions are still served after that.
//! - Every request may be repeated by a host that lost the answer: `LoadBegin`/`LoadChunk` are
//!   answered with `LoadAck{next}`, a repeated `LoadEnd` with the same `Loaded`/`Rejected`, `Start`
//!   with `Started`, `Stop` with `Stopped`.
//!
//! Architecture invariant: the kernel's record ring is never left unread for longer than
//! [`LINK_STALL_MS`] while a program runs. Records that the stream has no room for (the host gives no
//! credit, or the link is too slow) are read anyway and counted in `link_dropped`, so a stalled link
//! shows up as a number rather than as a stuck ring. After `Stop` nothing is dropped: the drain waits
//! for the link.

use ktap_protocol::frame::{Deframer, FrameError};
use ktap_protocol::image::{Image, SectionKind};
use ktap_protocol::kdev::KStats;
use ktap_protocol::limits::MAX_RECORD;
use ktap_protocol::pack::{StreamPacker, packed_bound, unpacked_fit};
use ktap_protocol::wire::{
    self, AgentMsg, HEARTBEAT_TIMEOUT_MS, HostMsg, MIN_RECORD_BATCH, PROTOCOL_VERSION, RECORD_BATCH, Stats,
    codes,
};

use crate::batch;
use crate::install::{self, FileRx, Install};
use crate::rto::ResendTimer;
use crate::stream::RecordStream;
use crate::symcheck;
use crate::upload::{Refusal, Step, Upload};
use crate::{AGENT_VERSION, BoardInfo, Device, Errno, Link, LoadError};

/// Interval of `Stats` messages while a program runs.
pub const STATS_INTERVAL_MS: u64 = 1000;
/// How long the ring may stay unread because the link has no room before records are dropped.
pub const LINK_STALL_MS: u64 = 1000;
/// Packed, the ring is read at most once per this long while a program runs: each read is one
/// DEFLATE flush (an end marker and a new block's header, ~5 bytes), so a board too slow to fill
/// the ring between the agent's wake-ups paid that per event (5.8 B per printf event on a loaded
/// TCG guest, 0.4 B at rest). Gathering for this long costs at most as much latency, far below what
/// a serial line adds.
pub const PACK_GATHER_MS: u64 = 50;
/// The record read buffer: several batches per `read()`, and at least one largest record.
pub const READ_BUF: usize = 4096;
/// Reads per [`Session::poll`], so link input is serviced between them.
pub const READS_PER_POLL: usize = 4;
/// Upper bound of reads while draining after `Stop` (a kernel that never ends its stream cannot hang
/// the agent).
pub const DRAIN_MAX_READS: usize = 1 << 16;
/// Record-stream bytes held for retransmission: the most the host can be behind.
pub const STREAM_BUF: usize = 8 * 1024;
/// At most this many stream bytes are sent and not yet acknowledged: about 0.35 s of a 115200-baud
/// line, so an acknowledgement normally comes back before [`RESEND_TIMEOUT_MS`] even on a slow link
/// and the agent never resends what is merely queued.
pub const IN_FLIGHT: usize = 4 * 1024;

/// `detail` of `Error{BAD_MESSAGE}` for a frame that failed its CRC or COBS decoding.
pub const DETAIL_BAD_FRAME: i32 = 1;
/// `detail` of `Error{BAD_MESSAGE}` for a good frame whose payload is not a `HostMsg`.
pub const DETAIL_UNDECODABLE: i32 = 2;

const _: () = assert!(READ_BUF >= MAX_RECORD && STREAM_BUF >= PACK_BUF);

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No session: only `Hello` is answered.
    AwaitHello,
    /// The host speaks another protocol version: only a new `Hello` is accepted.
    Mismatch,
    /// In a session, no program loaded.
    Idle,
    /// A program is loaded and disarmed (never started, or stopped).
    Loaded,
    /// A program is armed; records and stats stream to the host.
    Running,
    /// Stopped in the kernel; its last records are still going to the host (then `Loaded`).
    Draining,
}

/// Things the agent counts for its own diagnostics (not sent on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames dropped for a bad CRC, bad COBS or length.
    pub bad_frames: u64,
    /// Good frames whose payload did not decode.
    pub bad_messages: u64,
    /// Sessions ended by the heartbeat.
    pub heartbeat_timeouts: u64,
    /// Kernel reads that did not consist of whole records.
    pub malformed_reads: u64,
    /// Sessions opened (accepted `Hello`s).
    pub sessions: u64,
    /// Times the record stream was resent from its oldest unacknowledged byte (`Nak` or timeout).
    pub resends: u64,
}

/// One agent: a deframer, the session state and the device and link it drives.
#[derive(Debug)]
pub struct Session<'a, D, L> {
    deframer: Deframer,
    core: Core<'a, D, L>,
}

#[derive(Debug)]
struct Core<'a, D, L> {
    info: BoardInfo<'a>,
    dev: D,
    link: L,
    upload: Upload<'a>,
    state: State,
    /// When the last decoded message arrived.
    last_rx: u64,
    /// When the last `Stats` went out.
    last_stats: u64,
    /// When the link last had room for a read's worth of records.
    last_room: u64,
    /// When the ring was last read for a packed stream ([`PACK_GATHER_MS`]).
    last_read: u64,
    link_dropped: u64,
    counters: Counters,
    rbuf: [u8; READ_BUF],
    /// The loaded program's record stream.
    stream: RecordStream<STREAM_BUF>,
    /// The host's credit: stream bytes before this offset may be sent.
    credit: u64,
    /// The current piece size, between `MIN_RECORD_BATCH` and `RECORD_BATCH`.
    piece: usize,
    /// When the stream last made progress (an acknowledgement, or the first unacknowledged send).
    last_progress: u64,
    /// How long without progress means a lost piece: follows the line's measured round trip.
    rto: ResendTimer,
    /// Draining: reads so far, and whether the kernel's stream ended.
    drain_reads: usize,
    kernel_done: bool,
    /// The answer to the last `LoadEnd`, repeated if the host asks again.
    last_load: Option<LoadReply>,
    /// Files being installed (`deploy` over the protocol).
    files: FileRx,
    /// Whether the running program's stream is packed (`StartPacked`), and its compressor.
    packed: bool,
    packer: StreamPacker,
    /// One packed read.
    pbuf: [u8; PACK_BUF],
}

/// The packed form of one read in the worst case.
const PACK_BUF: usize = packed_bound(READ_BUF);

/// What a `LoadEnd` was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadReply {
    Loaded(u16),
    Rejected(Refusal),
    Error(u16, i32),
}

/// The version of a payload that starts like a `Hello` (variant 0, then the version), whatever follows.
fn hello_version(payload: &[u8]) -> Option<u16> {
    match wire::decode::<(u32, u16)>(payload) {
        Ok((0, v)) => Some(v),
        _ => None,
    }
}

fn to_stats(k: KStats, link_dropped: u64) -> Stats {
    Stats {
        hits: k.hits,
        recursion_skipped: k.recursion_skipped,
        budget_exhausted: k.budget_exhausted,
        runtime_errors: k.runtime_errors,
        table_full: k.table_full,
        ring_dropped: k.ring_dropped,
        link_dropped,
        kernel_missed: k.kernel_missed,
        mem_faults: k.mem_faults,
    }
}

impl<'a, D: Device + Install, L: Link> Session<'a, D, L> {
    /// A session waiting for `Hello`. `image_buf` receives uploads (its length is the largest image
    /// accepted; the binary uses `limits::MAX_IMAGE`).
    pub fn new(info: BoardInfo<'a>, image_buf: &'a mut [u8], dev: D, link: L) -> Self {
        Session {
            deframer: Deframer::new(),
            core: Core {
                info,
                dev,
                link,
                upload: Upload::new(image_buf),
                state: State::AwaitHello,
                last_rx: 0,
                last_stats: 0,
                last_room: 0,
                last_read: 0,
                link_dropped: 0,
                counters: Counters::default(),
                rbuf: [0; READ_BUF],
                stream: RecordStream::new(),
                credit: 0,
                piece: RECORD_BATCH,
                last_progress: 0,
                rto: ResendTimer::new(),
                drain_reads: 0,
                kernel_done: false,
                last_load: None,
                files: FileRx::new(),
                packed: false,
                packer: StreamPacker::new(),
                pbuf: [0; PACK_BUF],
            },
        }
    }

    /// Bytes from the link, at time `now` (milliseconds, monotonic).
    pub fn feed(&mut self, bytes: &[u8], now: u64) {
        let core = &mut self.core;
        self.deframer.feed(bytes, |frame| core.on_frame(frame, now));
    }

    /// One frame (or the reason it was dropped), as the deframer delivers it.
    pub fn on_frame(&mut self, frame: Result<&[u8], FrameError>, now: u64) {
        self.core.on_frame(frame, now);
    }

    /// One decoded message.
    pub fn on_message(&mut self, msg: HostMsg<'_>, now: u64) {
        self.core.on_message(msg, now);
    }

    /// Timers and record streaming; call on every event-loop turn (at least every ~100 ms, and when the
    /// device is readable).
    pub fn poll(&mut self, now: u64) {
        self.core.poll(now);
    }

    /// The agent is exiting: disarm and unload whatever is loaded (closing `/dev/ktap` does the same).
    pub fn shutdown(&mut self) {
        self.core.files.abort(&mut self.core.dev);
        self.core.disarm_and_unload();
        self.core.state = State::AwaitHello;
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Whether a program is armed (the binary then polls the device for records).
    pub fn is_running(&self) -> bool {
        self.core.state == State::Running
    }

    /// Whether the next [`Session::poll`] would read the kernel ring: the event loop waits for the
    /// ring's readiness only then, so an agent waiting for link room sleeps instead of spinning on a
    /// ring that stays readable.
    pub fn wants_records(&self, now: u64) -> bool {
        self.core.wants_records(now)
    }

    /// How long the event loop may sleep at most before [`Session::poll`] has work that no input
    /// announces (a packed stream's gathering time ending), in milliseconds.
    pub fn wake_in(&self, now: u64) -> Option<u64> {
        // once gathered, the ring's descriptor is in the poll set and wakes the loop itself
        let c = &self.core;
        (c.read_room().1 && !c.gathered(now)).then(|| c.gather_left(now))
    }

    /// The agent's own counters.
    pub fn counters(&self) -> Counters {
        self.core.counters
    }

    /// When the last decoded message from the host arrived (ms, the clock `feed` was given; 0: never).
    pub fn last_rx(&self) -> u64 {
        self.core.last_rx
    }

    /// Records dropped for lack of link capacity since the program was loaded.
    pub fn link_dropped(&self) -> u64 {
        self.core.link_dropped
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.core.dev
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.core.dev
    }

    /// The link.
    pub fn link(&self) -> &L {
        &self.core.link
    }

    /// The link, mutably.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.core.link
    }
}

impl<D: Device + Install, L: Link> Core<'_, D, L> {
    fn error(&mut self, code: u16, detail: i32) {
        self.link.send(&AgentMsg::Error { code, detail });
    }

    fn kernel_error(&mut self, errno: Errno) {
        self.error(codes::KERNEL, errno.saturating_neg());
    }

    fn reject(&mut self, r: Refusal) {
        self.link.send(&AgentMsg::Rejected { code: r.code, offset: r.offset, detail: r.detail });
    }

    /// Answer something that was not a usable message.
    fn bad(&mut self, detail: i32) {
        match self.state {
            State::AwaitHello => {} // nobody to tell: line noise before a host connects
            State::Mismatch => self.error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION)),
            _ => self.error(codes::BAD_MESSAGE, detail),
        }
    }

    fn on_frame(&mut self, frame: Result<&[u8], FrameError>, now: u64) {
        match frame {
            Ok(payload) => self.on_payload(payload, now),
            Err(_) => {
                self.counters.bad_frames += 1;
                self.bad(DETAIL_BAD_FRAME);
            }
        }
    }

    fn on_payload(&mut self, payload: &[u8], now: u64) {
        match wire::decode::<HostMsg<'_>>(payload) {
            Ok(msg) => self.on_message(msg, now),
            // A Hello of another protocol version may not decode as ours: the version comes first in
            // every version, so it can still be answered.
            Err(_) => match hello_version(payload) {
                Some(version) if version != PROTOCOL_VERSION => {
                    self.on_message(HostMsg::Hello { version, host: "" }, now)
                }
                _ => {
                    self.counters.bad_messages += 1;
                    self.bad(DETAIL_UNDECODABLE);
                }
            },
        }
    }

    fn on_message(&mut self, msg: HostMsg<'_>, now: u64) {
        self.last_rx = now;
        match (self.state, msg) {
            (_, HostMsg::Hello { version, .. }) => self.hello(version),
            (_, HostMsg::Bye) => {
                self.files.abort(&mut self.dev);
                self.disarm_and_unload();
                self.upload.reset();
                self.state = State::AwaitHello;
            }
            (State::AwaitHello, _) => self.error(codes::NO_SESSION, 0),
            (State::Mismatch, _) => self.error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION)),
            (_, HostMsg::LoadBegin { len }) => {
                self.last_load = None;
                match self.upload.begin(len) {
                    Step::Refuse(r) => self.reject(r),
                    _ => self.link.send(&AgentMsg::LoadAck { next: 0 }),
                }
            }
            (_, HostMsg::LoadChunk { offset, data }) => match self.upload.chunk(offset, data) {
                Step::Refuse(r) => self.reject(r),
                Step::Continue | Step::Stale => {
                    if let Some(next) = self.upload.next() {
                        self.link.send(&AgentMsg::LoadAck { next });
                    }
                }
                Step::Ignored | Step::Complete(_) => {}
            },
            (_, HostMsg::LoadEnd) => match self.last_load {
                Some(reply) if !self.upload.in_progress() => self.answer_load(reply),
                _ => self.load_end(),
            },
            (_, HostMsg::Start) => self.start(now, false),
            (_, HostMsg::StartPacked) => self.start(now, true),
            (_, HostMsg::Stop) => self.stop(),
            // Never waited for: a queue too full for a Pong is already carrying proof of life to the
            // host, and waiting on a slow line would stop the agent reading the host's next pings.
            (_, HostMsg::Ping { seq }) => {
                let _ = self.link.try_send(&AgentMsg::Pong { seq });
            }
            (_, HostMsg::Ack { next, window }) => self.ack(next, window, false, now),
            (_, HostMsg::Nak { next, window }) => self.ack(next, window, true, now),
            // a running program keeps the board as it is: no file or module changes under it
            (
                State::Running | State::Draining,
                HostMsg::FileBegin { .. }
                | HostMsg::FileChunk { .. }
                | HostMsg::FileEnd
                | HostMsg::ModuleLoad { .. },
            ) => self.error(codes::BUSY, 0),
            (_, HostMsg::FileBegin { path, len, packed, crc, mode }) => {
                let r = self.files.begin(&mut self.dev, path, len, packed, crc, mode);
                self.file_reply(r);
            }
            (_, HostMsg::FileChunk { offset, data }) => {
                let r = self.files.chunk(&mut self.dev, offset, data);
                self.file_reply(r);
            }
            (_, HostMsg::FileEnd) => {
                let r = self.files.end(&mut self.dev);
                self.file_reply(r);
            }
            (_, HostMsg::ModuleLoad { path }) => self.module_load(path),
        }
    }

    fn file_reply(&mut self, r: install::Reply) {
        match r {
            install::Reply::Ack(next) => self.link.send(&AgentMsg::FileAck { next }),
            install::Reply::Done { len, crc } => self.link.send(&AgentMsg::FileDone { len, crc }),
            install::Reply::Error(code, detail) => self.error(code, detail),
        }
    }

    /// Replace the kernel module with the file at `path`. Whatever program is loaded goes first: the
    /// old module cannot be removed while `/dev/ktap` is open.
    fn module_load(&mut self, path: &str) {
        let Some(p) = install::PathBuf::new(path, b"") else {
            return self.error(codes::BAD_PATH, 0);
        };
        self.disarm_and_unload();
        self.last_load = None;
        match self.dev.load_module(p.as_cstr()) {
            Ok(()) => self.link.send(&AgentMsg::ModuleLoaded),
            Err(errno) => self.error(codes::MODULE_LOAD, errno.saturating_neg()),
        }
    }

    fn hello(&mut self, version: u16) {
        self.files.abort(&mut self.dev);
        self.disarm_and_unload();
        self.upload.reset();
        self.last_load = None;
        self.new_stream();
        self.link_dropped = 0;
        let info = self.info;
        self.link.send(&AgentMsg::Hello {
            version: PROTOCOL_VERSION,
            agent: AGENT_VERSION,
            machine: info.machine,
            release: info.release,
            build_id: info.build_id,
            base_symbol: info.base_symbol,
            base_addr: info.base_addr,
        });
        if version == PROTOCOL_VERSION {
            self.counters.sessions += 1;
            self.state = State::Idle;
        } else {
            self.error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION));
            self.state = State::Mismatch;
        }
    }

    fn answer_load(&mut self, reply: LoadReply) {
        match reply {
            LoadReply::Loaded(probes) => self.link.send(&AgentMsg::Loaded { probes }),
            LoadReply::Rejected(r) => self.reject(r),
            LoadReply::Error(code, detail) => self.error(code, detail),
        }
    }

    fn load_end(&mut self) {
        let reply = self.load_image();
        if let Some(reply) = reply {
            self.last_load = Some(reply);
            self.answer_load(reply);
        }
    }

    /// Load a completely uploaded image; `None` when there is nothing to answer.
    fn load_image(&mut self) -> Option<LoadReply> {
        let image = match self.upload.end() {
            Step::Complete(image) => image,
            Step::Refuse(r) => return Some(LoadReply::Rejected(r)),
            Step::Continue | Step::Stale | Step::Ignored => return None,
        };
        let refusal = |code, offset: usize| {
            LoadReply::Rejected(Refusal {
                code,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                detail: 0,
            })
        };
        if matches!(self.state, State::Running | State::Draining) {
            return Some(refusal(codes::BUSY, 0));
        }
        let parsed = match Image::parse(image) {
            Ok(img) => img,
            Err(e) => return Some(refusal(e.code(), e.offset())),
        };
        // A vmlinux-compiled image must carry the running kernel's build-id; one compiled from a
        // System.map lists its symbols instead, checked against /proc/kallsyms (any build-id it
        // also carries must still match).
        let same = parsed.build_id == self.info.build_id;
        let build_id_ok = match parsed.symbols {
            None => same && !parsed.build_id.is_empty(),
            Some(_) => same || parsed.build_id.is_empty(),
        };
        if !build_id_ok {
            let at = parsed.section_offset(SectionKind::BuildId);
            return Some(refusal(codes::BUILD_ID_MISMATCH, at));
        }
        if let Some(syms) = parsed.symbols {
            if let Err(r) = symcheck::check(&parsed, syms, &mut self.dev) {
                return Some(LoadReply::Rejected(r));
            }
        }
        if self.state == State::Loaded {
            // The host replaces its program; the kernel holds one at a time.
            let _ = self.dev.unload();
            self.state = State::Idle;
        }
        Some(match self.dev.load(image) {
            Ok(probes) => {
                self.state = State::Loaded;
                self.link_dropped = 0;
                self.new_stream();
                LoadReply::Loaded(probes)
            }
            Err(LoadError::NoDevice { errno }) => LoadReply::Error(codes::NO_DEVICE, errno),
            Err(LoadError::Refused { code, offset, detail }) => {
                // Nothing is loaded now; unloading releases the device, which is held only while a
                // program is loaded (else `rmmod ktap` and a second agent find it busy).
                let _ = self.dev.unload();
                LoadReply::Rejected(Refusal { code, offset, detail })
            }
        })
    }

    /// A fresh record stream for a new program: nothing sent, no credit until the host's first `Ack`.
    fn new_stream(&mut self) {
        self.stream.reset();
        self.credit = 0;
        self.piece = RECORD_BATCH;
        self.rto.restart();
        self.drain_reads = 0;
        self.kernel_done = false;
        self.packed = false;
        self.packer.reset();
    }

    /// `Ack` or (`resend`) `Nak` from the host.
    fn ack(&mut self, next: u64, window: u32, resend: bool, now: u64) {
        if self.stream.ack(next) {
            self.last_progress = now;
            self.rto.acked(next, now);
            if !resend {
                self.piece = (self.piece * 2).min(RECORD_BATCH);
            }
        }
        // a corrupted acknowledgement cannot move the credit beyond what the host could have seen
        self.credit = next.min(self.stream.end()).saturating_add(u64::from(window));
        if resend {
            self.resend(now);
        }
        self.send_pieces(now);
    }

    /// Go back to the oldest unacknowledged byte with smaller pieces.
    fn resend(&mut self, now: u64) {
        self.stream.rewind();
        self.rto.rewound();
        self.piece = (self.piece / 2).max(MIN_RECORD_BATCH);
        self.last_progress = now;
        self.counters.resends += 1;
    }

    /// Queue stream pieces while the host's credit, [`IN_FLIGHT`] and the link allow.
    fn send_pieces(&mut self, now: u64) {
        let Core { stream, link, piece, credit, last_progress, rto, .. } = self;
        let limit = (*credit).min(stream.acked() + IN_FLIGHT as u64);
        while let Some((offset, data)) = stream.next_piece(*piece, limit) {
            let len = data.len();
            let first = !stream.unacked();
            if !link.try_send(&AgentMsg::Records { offset, data }) {
                break;
            }
            if first {
                *last_progress = now;
            }
            rto.sent(offset, offset + len as u64, now);
            stream.sent(len);
        }
    }

    fn start(&mut self, now: u64, packed: bool) {
        match self.state {
            State::Running => self.link.send(&AgentMsg::Started),
            State::Loaded => match self.dev.start() {
                Ok(()) => {
                    self.new_stream();
                    self.packed = packed;
                    self.state = State::Running;
                    self.last_stats = now;
                    self.last_room = now;
                    // the first records are read as soon as they come: no gathering before them
                    self.last_read = now.saturating_sub(PACK_GATHER_MS);
                    self.link.send(&AgentMsg::Started);
                }
                Err(errno) => self.kernel_error(errno),
            },
            _ => self.error(codes::NOT_LOADED, 0),
        }
    }

    fn stop(&mut self) {
        match self.state {
            State::Running => {
                if let Err(errno) = self.dev.stop() {
                    return self.kernel_error(errno);
                }
                self.state = State::Draining;
                self.drain_reads = 0;
                self.kernel_done = false;
            }
            // `Stopped` follows when the drain is complete
            State::Draining => {}
            State::Loaded => self.stopped(),
            _ => self.error(codes::NOT_LOADED, 0),
        }
    }

    fn stopped(&mut self) {
        let stats = self.stats();
        self.link.send(&AgentMsg::Stopped { stats, end: self.stream.end() });
    }

    fn stats(&mut self) -> Stats {
        to_stats(self.dev.stats().unwrap_or_default(), self.link_dropped)
    }

    fn poll(&mut self, now: u64) {
        let streaming = match self.state {
            State::Running | State::Draining => true,
            State::Loaded => false,
            _ => return,
        };
        if streaming && now.saturating_sub(self.last_rx) >= u64::from(HEARTBEAT_TIMEOUT_MS) {
            // The host vanished: leave nothing armed.
            self.counters.heartbeat_timeouts += 1;
            self.disarm_and_unload();
            self.upload.reset();
            self.state = State::AwaitHello;
            return;
        }
        if streaming {
            self.pump(now);
        }
        if self.stream.unacked() && now.saturating_sub(self.last_progress) >= self.rto.timeout() {
            self.rto.expired();
            self.resend(now);
        }
        self.send_pieces(now);
        if self.state == State::Draining && self.kernel_done && self.stream.all_sent() {
            self.state = State::Loaded;
            self.stopped();
        }
        if self.state == State::Running && now.saturating_sub(self.last_stats) >= STATS_INTERVAL_MS {
            self.last_stats = now;
            if let Ok(k) = self.dev.stats() {
                let _ = self.link.try_send(&AgentMsg::Stats(to_stats(k, self.link_dropped)));
            }
        }
    }

    /// How many ring bytes one read may take now, and whether that is enough to read at all.
    fn read_room(&self) -> (usize, bool) {
        let room = self.stream.free();
        match self.packed {
            true => (unpacked_fit(room).min(READ_BUF), unpacked_fit(room) >= READ_BUF),
            false => (room.min(READ_BUF), room >= MAX_RECORD),
        }
    }

    /// Whether [`Core::pump`] would read the ring now: the stream has room, or the link has had none
    /// for [`LINK_STALL_MS`] and the ring's records are to be dropped and counted.
    fn wants_records(&self, now: u64) -> bool {
        self.state == State::Running
            && (self.read_room().1 && self.gathered(now)
                || now.saturating_sub(self.last_room) >= LINK_STALL_MS)
    }

    /// Whether a packed stream's records have gathered in the ring long enough to be read
    /// ([`PACK_GATHER_MS`]); always true for a plain stream and while draining.
    fn gathered(&self, now: u64) -> bool {
        !(self.packed && self.state == State::Running) || self.gather_left(now) == 0
    }

    /// Milliseconds until a packed stream's ring is read again (0: now).
    fn gather_left(&self, now: u64) -> u64 {
        PACK_GATHER_MS.saturating_sub(now.saturating_sub(self.last_read))
    }

    /// Move records from the kernel into the stream, at most [`READS_PER_POLL`] reads.
    fn pump(&mut self, now: u64) {
        // a busy ring is read out in one go (several reads); a trickle waits to gather
        let gathered = self.gathered(now);
        for _ in 0..READS_PER_POLL {
            // Packed, a read must fit the stream even if it does not compress, and it waits for room
            // for a whole read buffer: on a busy link small reads would each be a DEFLATE block of
            // their own (a Huffman table and a flush marker apiece), and the ring holds the records
            // meanwhile. An idle link has the room at once, so the first record is not delayed.
            let (free, enough) = self.read_room();
            let keep = if enough {
                if !gathered {
                    return;
                }
                self.last_room = now;
                true
            } else if self.state == State::Running && now.saturating_sub(self.last_room) >= LINK_STALL_MS {
                false
            } else {
                return; // let the kernel ring hold them while the link catches up
            };
            let len = if keep { free } else { READ_BUF };
            let Some(buf) = self.rbuf.get_mut(..len) else { return };
            let n = match self.dev.read_records(buf) {
                Ok(0) => {
                    self.kernel_done = self.state == State::Draining;
                    return;
                }
                Ok(n) => n,
                Err(errno) => {
                    self.kernel_done = self.state == State::Draining;
                    return self.kernel_error(errno);
                }
            };
            self.last_read = now;
            if self.state == State::Draining {
                self.drain_reads += 1;
                self.kernel_done = self.drain_reads >= DRAIN_MAX_READS;
            }
            self.take_records(n, keep);
        }
    }

    /// The first `n` bytes of the read buffer: whole records go into the stream (`keep`) or are
    /// counted as dropped; a read that is not whole records is cut at the last whole one.
    fn take_records(&mut self, n: usize, keep: bool) {
        let Core { rbuf, stream, link_dropped, counters, packed, packer, pbuf, .. } = self;
        let data = rbuf.get(..n).unwrap_or(&[]);
        let mut whole = 0usize;
        let mut records = 0u64;
        for b in batch::batches(data, READ_BUF) {
            match b {
                Ok(b) => {
                    whole += b.data.len();
                    records += u64::from(b.records);
                }
                Err(_) => {
                    counters.malformed_reads += 1;
                    *link_dropped += 1;
                    break;
                }
            }
        }
        let whole = data.get(..whole).unwrap_or(&[]);
        let kept = match (keep, *packed) {
            (false, _) => false,
            (true, false) => stream.append(whole),
            (true, true) if whole.is_empty() => true,
            // the pump read no more than fits packed; a failure (a bug) loses these records, counted
            (true, true) => match packer.pack_flush(whole, pbuf) {
                Some(k) => stream.append(pbuf.get(..k).unwrap_or(&[])),
                None => false,
            },
        };
        if !kept {
            *link_dropped += records;
        }
    }

    fn disarm_and_unload(&mut self) {
        match self.state {
            State::Running => {
                let _ = self.dev.stop();
                let _ = self.dev.unload();
            }
            State::Loaded | State::Draining => {
                let _ = self.dev.unload();
            }
            State::AwaitHello | State::Mismatch | State::Idle => {}
        }
        if matches!(self.state, State::Running | State::Loaded | State::Draining) {
            self.state = State::Idle;
        }
    }
}

#[cfg(test)]
mod tests;
