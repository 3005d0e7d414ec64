//! The agent's session state machine.
//!
//! ```text
//! AwaitHello --Hello(ours)--> Idle --LoadEnd ok--> Loaded --Start--> Running
//!     |                        ^                     ^  <----Stop------ |
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
//! - While running, a host silent for [`HEARTBEAT_TIMEOUT_MS`] ends the session: stop, unload, and
//!   back to `AwaitHello`.
//!
//! Architecture invariant: the kernel's record ring is never left unread for longer than
//! [`LINK_STALL_MS`] while a program runs. Records that the link cannot take are read anyway and
//! counted in `link_dropped`, so a stalled link shows up as a number rather than as a stuck ring.

use ktap_protocol::frame::{Deframer, FrameError};
use ktap_protocol::image::{Image, SectionKind};
use ktap_protocol::kdev::KStats;
use ktap_protocol::limits::MAX_RECORD;
use ktap_protocol::wire::{
    self, AgentMsg, HEARTBEAT_TIMEOUT_MS, HostMsg, PROTOCOL_VERSION, RECORD_BATCH, Stats, codes,
};

use crate::batch::{self, MAX_RECORDS_DATA};
use crate::outq::frame_len;
use crate::upload::{Refusal, Step, Upload};
use crate::{AGENT_VERSION, BoardInfo, Device, Errno, Link, LoadError};

/// Interval of `Stats` messages while a program runs.
pub const STATS_INTERVAL_MS: u64 = 1000;
/// How long the ring may stay unread because the link has no room before records are dropped.
pub const LINK_STALL_MS: u64 = 1000;
/// The record read buffer: several batches per `read()`, and at least one largest record.
pub const READ_BUF: usize = 4096;
/// Reads per [`Session::poll`], so link input is serviced between them.
pub const READS_PER_POLL: usize = 4;
/// Upper bound of reads while draining after `Stop` (a kernel that never ends its stream cannot hang
/// the agent).
pub const DRAIN_MAX_READS: usize = 1 << 16;

/// `detail` of `Error{BAD_MESSAGE}` for a frame that failed its CRC or COBS decoding.
pub const DETAIL_BAD_FRAME: i32 = 1;
/// `detail` of `Error{BAD_MESSAGE}` for a good frame whose payload is not a `HostMsg`.
pub const DETAIL_UNDECODABLE: i32 = 2;

const _: () = assert!(READ_BUF >= MAX_RECORD);

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
    link_dropped: u64,
    counters: Counters,
    rbuf: [u8; READ_BUF],
}

/// How a batch of records is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Wait for the link (draining after `Stop`).
    Wait,
    /// Queue only if there is room; otherwise count the records as dropped.
    IfRoom,
    /// Drop and count (the link stalled).
    Drop,
}

/// How many record bytes can be read so that every batch they make fits in `room` queued bytes.
/// Two consecutive batches hold more than `RECORD_BATCH` bytes, so `n` bytes make at most
/// `2n / RECORD_BATCH + 1` batches, each costing at most its frame overhead.
fn record_budget(room: usize) -> usize {
    let per_batch = frame_len(3) + 3;
    let batches = 2 * room / RECORD_BATCH + 1;
    room.saturating_sub(batches * per_batch)
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

impl<'a, D: Device, L: Link> Session<'a, D, L> {
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
                link_dropped: 0,
                counters: Counters::default(),
                rbuf: [0; READ_BUF],
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

impl<D: Device, L: Link> Core<'_, D, L> {
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
                self.disarm_and_unload();
                self.upload.reset();
                self.state = State::AwaitHello;
            }
            (State::AwaitHello, _) => self.error(codes::NO_SESSION, 0),
            (State::Mismatch, _) => self.error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION)),
            (_, HostMsg::LoadBegin { len }) => {
                if let Step::Refuse(r) = self.upload.begin(len) {
                    self.reject(r);
                }
            }
            (_, HostMsg::LoadChunk { offset, data }) => {
                if let Step::Refuse(r) = self.upload.chunk(offset, data) {
                    self.reject(r);
                }
            }
            (_, HostMsg::LoadEnd) => self.load_end(),
            (_, HostMsg::Start) => self.start(now),
            (_, HostMsg::Stop) => self.stop(),
            (_, HostMsg::Ping { seq }) => self.link.send(&AgentMsg::Pong { seq }),
        }
    }

    fn hello(&mut self, version: u16) {
        self.disarm_and_unload();
        self.upload.reset();
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

    fn load_end(&mut self) {
        let image = match self.upload.end() {
            Step::Complete(image) => image,
            Step::Refuse(r) => return self.reject(r),
            Step::Continue | Step::Ignored => return,
        };
        let refusal = |code, offset: usize| AgentMsg::Rejected {
            code,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            detail: 0,
        };
        if self.state == State::Running {
            return self.link.send(&refusal(codes::BUSY, 0));
        }
        let parsed = match Image::parse(image) {
            Ok(img) => img,
            Err(e) => return self.link.send(&refusal(e.code(), e.offset())),
        };
        if parsed.build_id.is_empty() || parsed.build_id != self.info.build_id {
            let at = parsed.section_offset(SectionKind::BuildId);
            return self.link.send(&refusal(codes::BUILD_ID_MISMATCH, at));
        }
        if self.state == State::Loaded {
            // The host replaces its program; the kernel holds one at a time.
            let _ = self.dev.unload();
            self.state = State::Idle;
        }
        match self.dev.load(image) {
            Ok(probes) => {
                self.state = State::Loaded;
                self.link_dropped = 0;
                self.link.send(&AgentMsg::Loaded { probes });
            }
            Err(LoadError::NoDevice { errno }) => self.error(codes::NO_DEVICE, errno),
            Err(LoadError::Refused { code, offset, detail }) => {
                // Nothing is loaded now; unloading releases the device, which is held only while a
                // program is loaded (else `rmmod ktap` and a second agent find it busy).
                let _ = self.dev.unload();
                self.link.send(&AgentMsg::Rejected { code, offset, detail })
            }
        }
    }

    fn start(&mut self, now: u64) {
        match self.state {
            State::Running => self.link.send(&AgentMsg::Started),
            State::Loaded => match self.dev.start() {
                Ok(()) => {
                    self.state = State::Running;
                    self.last_stats = now;
                    self.last_room = now;
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
                self.state = State::Loaded;
                for _ in 0..DRAIN_MAX_READS {
                    match self.dev.read_records(&mut self.rbuf) {
                        Ok(0) => break,
                        Ok(n) => self.send_records(n, Delivery::Wait),
                        Err(errno) => {
                            self.kernel_error(errno);
                            break;
                        }
                    }
                }
                let stats = self.stats();
                self.link.send(&AgentMsg::Stopped(stats));
            }
            State::Loaded => {
                let stats = self.stats();
                self.link.send(&AgentMsg::Stopped(stats));
            }
            _ => self.error(codes::NOT_LOADED, 0),
        }
    }

    fn stats(&mut self) -> Stats {
        to_stats(self.dev.stats().unwrap_or_default(), self.link_dropped)
    }

    /// Send the first `n` bytes of the read buffer as batches.
    fn send_records(&mut self, n: usize, how: Delivery) {
        let Core { rbuf, link, link_dropped, counters, .. } = self;
        let data = rbuf.get(..n).unwrap_or(&[]);
        for b in batch::batches(data, RECORD_BATCH) {
            let Ok(b) = b else {
                counters.malformed_reads += 1;
                *link_dropped += 1;
                break;
            };
            let msg = AgentMsg::Records { data: b.data };
            let sent = match how {
                _ if b.data.len() > MAX_RECORDS_DATA => false,
                Delivery::Wait => {
                    link.send(&msg);
                    true
                }
                Delivery::IfRoom => link.try_send(&msg),
                Delivery::Drop => false,
            };
            if !sent {
                *link_dropped += u64::from(b.records);
            }
        }
    }

    fn poll(&mut self, now: u64) {
        if self.state != State::Running {
            return;
        }
        if now.saturating_sub(self.last_rx) >= u64::from(HEARTBEAT_TIMEOUT_MS) {
            // The host vanished: leave nothing armed.
            self.counters.heartbeat_timeouts += 1;
            self.disarm_and_unload();
            self.upload.reset();
            self.state = State::AwaitHello;
            return;
        }
        self.pump(now);
        if self.state == State::Running && now.saturating_sub(self.last_stats) >= STATS_INTERVAL_MS {
            self.last_stats = now;
            if let Ok(k) = self.dev.stats() {
                let _ = self.link.try_send(&AgentMsg::Stats(to_stats(k, self.link_dropped)));
            }
        }
    }

    /// Move records from the kernel to the link, at most [`READS_PER_POLL`] reads.
    fn pump(&mut self, now: u64) {
        for _ in 0..READS_PER_POLL {
            let budget = record_budget(self.link.room()).min(READ_BUF);
            let (len, how) = if budget >= MAX_RECORD {
                self.last_room = now;
                (budget, Delivery::IfRoom)
            } else if now.saturating_sub(self.last_room) >= LINK_STALL_MS {
                (READ_BUF, Delivery::Drop)
            } else {
                return; // let the kernel ring hold them while the link catches up
            };
            let Some(buf) = self.rbuf.get_mut(..len) else { return };
            match self.dev.read_records(buf) {
                Ok(0) => return,
                Ok(n) => self.send_records(n, how),
                Err(errno) => return self.kernel_error(errno),
            }
        }
    }

    fn disarm_and_unload(&mut self) {
        match self.state {
            State::Running => {
                let _ = self.dev.stop();
                let _ = self.dev.unload();
            }
            State::Loaded => {
                let _ = self.dev.unload();
            }
            State::AwaitHello | State::Mismatch | State::Idle => {}
        }
        if matches!(self.state, State::Running | State::Loaded) {
            self.state = State::Idle;
        }
    }
}

#[cfg(test)]
mod tests;
