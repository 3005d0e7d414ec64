//! One session with the agent over a [`Link`]: handshake, build-id check, upload, run, stop.
//!
//! ```text
//! host                         agent
//! Hello{version}        ->                     (resent every second until answered)
//!                       <-  Hello{version, machine, release, build_id, base_symbol, base_addr}
//! LoadBegin             ->  <- LoadAck{0}      (every request below is resent until answered)
//! LoadChunk{offset}     ->  <- LoadAck{next}   (one chunk in flight; smaller chunks after a loss)
//! LoadEnd               ->  <- Loaded{probes} | Rejected{code, offset, detail}
//! StartPacked | Start   ->  <- Started          (packed: the record stream is DEFLATE, flushed per batch)
//! Ack{next, window}, Ping (every 250 ms) -> <- Pong, Stats, Records{offset, data}
//! Nak{next} (a gap)     ->  <- Records from `next` again
//! Stop                  ->  <- Records..., Stopped{stats, end}
//! Bye                   ->
//! ```
//!
//! The link may corrupt or drop any frame. Requests are repeated until answered (the agent answers
//! repeats the same way); records travel as a byte stream with offsets, acknowledged with credit and
//! resent after a gap ([`stream::RecordRx`]), so the final output is complete even on a noisy line.
//! Nothing is silent: corrupted frames, undecodable messages and resend requests are counted and
//! reported in the [`RunSummary`]; drop counters are shown live (via [`Output::notice`]) when they grow.
//! Architecture invariant: this module never prints; everything for the user goes through [`Output`].

mod errno;
mod install;
mod reject;
pub mod stream;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ktap_protocol::frame::{self, Deframer, MAX_PAYLOAD};
use ktap_protocol::wire::{
    self, AgentMsg, CHUNK, HEARTBEAT_INTERVAL_MS, HostMsg, MIN_CHUNK, PROTOCOL_VERSION, Stats, codes,
};

pub use install::Installed;
pub use reject::{ImageContext, agent_error, function_at, reason, rejection};

use self::stream::RecordRx;
use crate::link::Link;
use crate::sidecar::Sidecar;
use crate::vmlinux::hex;

/// How long the session waits for each step.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the agent's `Hello`.
    pub hello: Duration,
    /// For `Loaded` / `Started` after the request was sent.
    pub reply: Duration,
    /// For `Stopped` after `Stop`, counted from the last message received (records keep it alive).
    pub stop: Duration,
    /// While running: the agent answers pings, so this long without any message means it is gone.
    pub silence: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            hello: Duration::from_secs(10),
            reply: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            silence: Duration::from_secs(5),
        }
    }
}

/// Errors of a session. Each names the link (port or command) it happened on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The agent never answered `Hello`.
    #[error("no answer from the agent on {port} within {secs} s: is ktap-agent running on the board?")]
    NoAnswer {
        /// The link.
        port: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Host and agent speak different protocol versions.
    #[error(
        "protocol version mismatch on {port}: ktap-host speaks version {host}, the agent speaks version {agent}: {advice}"
    )]
    Version {
        /// The link.
        port: String,
        /// Our version.
        host: u16,
        /// The agent's version.
        agent: u16,
        /// Which side to upgrade.
        advice: &'static str,
    },
    /// The vmlinux is not the running kernel's.
    #[error(
        "vmlinux {path} has build-id {vmlinux} but the running kernel ({release}) has {kernel}: pass the vmlinux of the kernel the board runs"
    )]
    BuildId {
        /// The vmlinux file.
        path: PathBuf,
        /// Its build-id, hex.
        vmlinux: String,
        /// `uname -r` of the board.
        release: String,
        /// The running kernel's build-id, hex.
        kernel: String,
    },
    /// The agent did not report a build-id, so the vmlinux cannot be checked.
    #[error(
        "the agent on {port} did not report the running kernel's build-id (is /sys/kernel/notes readable?): refusing to arm without checking vmlinux {path}"
    )]
    NoKernelBuildId {
        /// The link.
        port: String,
        /// The vmlinux file.
        path: PathBuf,
    },
    /// The board refused the image.
    #[error("the board refused the image: {text}")]
    Rejected {
        /// Reason code (see [`codes`]).
        code: u16,
        /// Byte offset, or probe index for attach errors.
        offset: u32,
        /// Errno or detail.
        detail: i32,
        /// The rendered reason.
        text: String,
    },
    /// The agent answered with `Error`.
    #[error("the agent on {port} reported: {text}")]
    Agent {
        /// The link.
        port: String,
        /// Reason code.
        code: u16,
        /// The rendered reason.
        text: String,
    },
    /// The image is larger than the protocol can announce.
    #[error("image of {0} bytes is too large to upload")]
    ImageTooLarge(usize),
    /// Reading or writing the link failed.
    #[error("link {port}: {source}")]
    Io {
        /// The link.
        port: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A reply did not come in time.
    #[error("no {what} from the agent on {port} within {secs} s")]
    Timeout {
        /// The link.
        port: String,
        /// What was awaited.
        what: &'static str,
        /// Seconds waited.
        secs: u64,
    },
    /// The agent stopped answering while a program ran.
    #[error("the agent on {port} stopped answering: nothing received for {secs} s (pings unanswered)")]
    Silent {
        /// The link.
        port: String,
        /// Seconds of silence.
        secs: u64,
    },
    /// The agent sent a message that makes no sense at this point.
    #[error("unexpected {got} from the agent on {port} while waiting for {what}")]
    Unexpected {
        /// The link.
        port: String,
        /// What was awaited.
        what: &'static str,
        /// What came.
        got: String,
    },
    /// A file could not be installed on the board.
    #[error("installing {path} on the board: {text}")]
    Install {
        /// The destination on the board.
        path: String,
        /// What went wrong.
        text: String,
    },
    /// Writing formatted output failed (e.g. stdout closed).
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
}

/// What the agent said about itself and the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Its protocol version (equal to ours once connected).
    pub version: u16,
    /// The agent's version string.
    pub agent: String,
    /// `uname -m`.
    pub machine: String,
    /// `uname -r`.
    pub release: String,
    /// GNU build-id of the running kernel.
    pub build_id: Vec<u8>,
    /// The symbol `base_addr` is the run-time address of (`_text` or `_stext`), empty if unknown.
    pub base_symbol: String,
    /// Run-time address of `base_symbol`, 0 if unknown.
    pub base_addr: u64,
}

/// Where the session's output goes: formatted records and status lines.
pub trait Output {
    /// Records from the agent, in the order the kernel emitted them.
    fn records(&mut self, data: &[u8]) -> io::Result<()>;
    /// A status line for the user (live drop counters, corrupted frames); not program output.
    fn notice(&mut self, line: &str);
    /// Whether the output keeps up. While it does not (its queue is full: stdout piped into a
    /// paused pager, a slow terminal), the session grants the agent no more credit, so the backlog
    /// waits on the board, which drops and counts what does not fit there; pings go on meanwhile,
    /// so the program stays armed. [`Output::records`] must therefore never block.
    fn has_room(&self) -> bool {
        true
    }
}

/// A stop request that can be triggered from anywhere (a Ctrl-C handler, another thread).
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// An untriggered flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the session to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Was a stop asked for?
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// When [`Session::run`] stops.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop when triggered (Ctrl-C).
    pub stop: StopFlag,
    /// Stop when this returns true (polled several times per second), e.g. a guest command finished.
    pub until: Option<Box<dyn FnMut() -> bool + 'a>>,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The [`StopFlag`] was triggered.
    Interrupted,
    /// `duration` elapsed.
    Duration,
    /// `until` returned true.
    Trigger,
    /// The agent stopped the program by itself.
    Agent,
    /// The program called `exit()` (an Exit record arrived): stopped like any other stop, so
    /// `trace_end` runs and its output is drained.
    Exit,
}

/// Whether a batch of records holds an Exit record.
fn has_exit(data: &[u8]) -> bool {
    ktap_protocol::record::records(data)
        .any(|r| r.is_ok_and(|r| r.kind == ktap_protocol::record::RecordKind::Exit))
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Final counters from `Stopped`.
    pub stats: Stats,
    /// Frames dropped for a bad CRC or bad COBS since the handshake.
    pub bad_frames: u64,
    /// Frames with a good CRC whose message could not be decoded.
    pub bad_messages: u64,
    /// Frames from the host that reached the agent corrupted (it said so).
    pub agent_bad_frames: u64,
    /// Requests to resend lost record-stream bytes (each recovered what a corrupted frame lost).
    pub resend_requests: u64,
    /// Bytes of a record that never completed (the stream ended inside it): lost.
    pub incomplete_bytes: u64,
    /// Why the run ended.
    pub reason: StopReason,
    /// Pings sent.
    pub pings: u32,
    /// Pongs received.
    pub pongs: u32,
    /// How long the output did not keep up, so the board held its records back.
    pub output_held: Duration,
}

impl RunSummary {
    /// One line for stderr when anything was lost, corrupted or aborted; `None` when all is clean.
    pub fn problems(&self) -> Option<String> {
        let mut link = Vec::new();
        if self.bad_frames > 0 {
            link.push(format!("{} corrupted frames dropped on the link", self.bad_frames));
        }
        if self.bad_messages > 0 {
            link.push(format!("{} undecodable messages", self.bad_messages));
        }
        if self.agent_bad_frames > 0 {
            link.push(format!("{} frames to the board corrupted on the link", self.agent_bad_frames));
        }
        if self.resend_requests > 0 {
            link.push(format!("{} resend requests (all lost records recovered)", self.resend_requests));
        }
        if self.incomplete_bytes > 0 {
            link.push(format!("{} bytes of an incomplete last record lost", self.incomplete_bytes));
        }
        if !self.output_held.is_zero() {
            link.push(format!(
                "output fell behind for {:.1} s (the board held records back meanwhile)",
                self.output_held.as_secs_f64()
            ));
        }
        loss_line(&self.stats, link)
    }
}

/// One line for stderr naming every non-zero loss counter of `stats` and then `extra` (link
/// problems); `None` when there is nothing to report. Shared by `push` and `sim`.
pub fn loss_line(stats: &Stats, extra: Vec<String>) -> Option<String> {
    let mut parts = drop_parts(stats);
    parts.extend(extra);
    (!parts.is_empty()).then(|| format!("{} hits; {}", stats.hits, parts.join(", ")))
}

/// The non-zero loss counters of `stats`, as phrases.
fn drop_parts(s: &Stats) -> Vec<String> {
    [
        (s.budget_exhausted, "hits aborted: instruction budget exhausted (budget_exhausted)"),
        (s.runtime_errors, "hits aborted by runtime errors (runtime_errors)"),
        (s.recursion_skipped, "hits skipped: recursion (recursion_skipped)"),
        (s.table_full, "table inserts refused: table full (table_full)"),
        (s.ring_dropped, "records dropped: kernel ring buffer full (ring_dropped)"),
        (s.link_dropped, "records dropped: link or host output too slow (link_dropped)"),
        (s.kernel_missed, "probe hits missed by the kernel (kernel_missed)"),
        (s.mem_faults, "memory reads faulted and read 0 or \"\" (mem_faults)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect()
}

/// The sum of all loss counters (what makes a live notice worth printing).
fn losses(s: &Stats) -> u64 {
    s.budget_exhausted
        + s.runtime_errors
        + s.recursion_skipped
        + s.table_full
        + s.ring_dropped
        + s.link_dropped
        + s.kernel_missed
}

/// How long a request (`LoadBegin`, a chunk) waits for its answer before it is sent again.
const REQUEST_RETRY: Duration = Duration::from_millis(500);
/// The same for requests the kernel takes longer over (`LoadEnd`, `Start`, `Stop`).
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// A connected session.
pub struct Session<L: Link> {
    link: L,
    port: String,
    deframer: Deframer,
    inbox: VecDeque<Vec<u8>>,
    rx: RecordRx,
    bad_frames: u64,
    bad_messages: u64,
    /// Our frames the agent reported corrupted (`Error{BAD_MESSAGE}`).
    agent_bad_frames: u64,
    agent: AgentInfo,
    timeouts: Timeouts,
    bye_sent: bool,
    /// Ask for a packed record stream (`StartPacked`).
    pack_records: bool,
    /// Since when credit is withheld for a slow output, and for how long it was before.
    held_since: Option<Instant>,
    held_before: Duration,
}

impl<L: Link> std::fmt::Debug for Session<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("port", &self.port)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// The first two fields of any `Hello`, readable whatever the rest of the peer's protocol looks like.
fn hello_version(payload: &[u8]) -> Option<u16> {
    let (variant, rest) = postcard::take_from_bytes::<u32>(payload).ok()?;
    if variant != 0 {
        return None;
    }
    postcard::take_from_bytes::<u16>(rest).ok().map(|(v, _)| v)
}

/// A short name of a message, for errors.
fn msg_name(m: &AgentMsg<'_>) -> String {
    match m {
        AgentMsg::Hello { .. } => "Hello".into(),
        AgentMsg::Loaded { probes } => format!("Loaded({probes} probes)"),
        AgentMsg::Rejected { code, .. } => format!("Rejected({code:#06x})"),
        AgentMsg::Started => "Started".into(),
        AgentMsg::Records { offset, data } => format!("Records({} bytes at {offset})", data.len()),
        AgentMsg::Stats(_) => "Stats".into(),
        AgentMsg::Stopped { .. } => "Stopped".into(),
        AgentMsg::LoadAck { next } => format!("LoadAck({next})"),
        AgentMsg::FileAck { next } => format!("FileAck({next})"),
        AgentMsg::FileDone { len, .. } => format!("FileDone({len} bytes)"),
        AgentMsg::ModuleLoaded => "ModuleLoaded".into(),
        AgentMsg::Pong { seq } => format!("Pong({seq})"),
        AgentMsg::Error { code, .. } => format!("Error({code:#06x})"),
    }
}

impl<L: Link> Session<L> {
    /// Say `Hello` until the agent answers (resent every second, for an agent that starts late),
    /// then check the protocol version.
    pub fn connect(link: L, timeouts: Timeouts) -> Result<Session<L>, SessionError> {
        let port = link.name().to_owned();
        let mut s = Session {
            link,
            port,
            deframer: Deframer::new(),
            inbox: VecDeque::new(),
            rx: RecordRx::new(),
            bad_frames: 0,
            bad_messages: 0,
            agent_bad_frames: 0,
            agent: AgentInfo {
                version: 0,
                agent: String::new(),
                machine: String::new(),
                release: String::new(),
                build_id: Vec::new(),
                base_symbol: String::new(),
                base_addr: 0,
            },
            timeouts,
            bye_sent: true, // nothing to say goodbye to until the agent answered
            pack_records: true,
            held_since: None,
            held_before: Duration::ZERO,
        };
        let host = concat!("ktap-host ", env!("CARGO_PKG_VERSION"));
        let deadline = Instant::now() + timeouts.hello;
        let mut next_hello = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(SessionError::NoAnswer { port: s.port.clone(), secs: timeouts.hello.as_secs() });
            }
            if now >= next_hello {
                s.send(&HostMsg::Hello { version: PROTOCOL_VERSION, host })?;
                next_hello = now + Duration::from_secs(1);
            }
            let Some(payload) = s.next_payload(next_hello.min(deadline))? else { continue };
            if let Some(v) = hello_version(&payload)
                && v != PROTOCOL_VERSION
            {
                return Err(s.version_error(v));
            }
            match wire::decode::<AgentMsg<'_>>(&payload) {
                Ok(AgentMsg::Hello {
                    version,
                    agent,
                    machine,
                    release,
                    build_id,
                    base_symbol,
                    base_addr,
                }) => {
                    s.agent = AgentInfo {
                        version,
                        agent: agent.to_owned(),
                        machine: machine.to_owned(),
                        release: release.to_owned(),
                        build_id: build_id.to_vec(),
                        base_symbol: base_symbol.to_owned(),
                        base_addr,
                    };
                    break;
                }
                Ok(AgentMsg::Error { code: codes::VERSION_MISMATCH, detail }) => {
                    return Err(s.version_error(detail as u16));
                }
                // a Hello (or an earlier session's frame) corrupted on the way: Hello is resent anyway
                Ok(AgentMsg::Error { code: codes::BAD_MESSAGE, .. }) => {}
                Ok(AgentMsg::Error { code, detail }) => {
                    return Err(SessionError::Agent {
                        port: s.port.clone(),
                        code,
                        text: agent_error(code, detail, ""),
                    });
                }
                // leftovers of an earlier session, or noise before the agent started: not ours
                Ok(_) | Err(_) => {}
            }
        }
        // garbage before the agent answered (a console, a previous session) is not a link problem
        s.bad_frames = 0;
        s.bad_messages = 0;
        s.agent_bad_frames = 0;
        s.bye_sent = false;
        Ok(s)
    }

    fn version_error(&self, agent: u16) -> SessionError {
        SessionError::Version {
            port: self.port.clone(),
            host: PROTOCOL_VERSION,
            agent,
            advice: wire::version_advice(PROTOCOL_VERSION, agent).unwrap_or("versions differ"),
        }
    }

    /// What the agent reported.
    pub fn agent(&self) -> &AgentInfo {
        &self.agent
    }

    /// The link's name (port or command).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// `connected to AGENT on LINK (MACHINE, Linux RELEASE)`: what the CLI tells the user once the
    /// handshake is done, so they see which board and which transport answered.
    pub fn connected_to(&self) -> String {
        let a = &self.agent;
        format!("connected to {} on {} ({}, Linux {})", a.agent, self.port, a.machine, a.release)
    }

    /// Mandatory before arming: the vmlinux symbols were resolved from must be the running kernel's.
    pub fn check_build_id(&self, vmlinux: &Path, vmlinux_build_id: &[u8]) -> Result<(), SessionError> {
        if self.agent.build_id.is_empty() {
            return Err(SessionError::NoKernelBuildId { port: self.port.clone(), path: vmlinux.to_owned() });
        }
        if self.agent.build_id != vmlinux_build_id {
            return Err(SessionError::BuildId {
                path: vmlinux.to_owned(),
                vmlinux: hex(vmlinux_build_id),
                release: self.agent.release.clone(),
                kernel: hex(&self.agent.build_id),
            });
        }
        Ok(())
    }

    /// Upload an image; the kernel verifies it and attaches its probes (disarmed). Returns the number
    /// of probes. A refusal is rendered with the sidecar's names.
    ///
    /// One chunk is in flight at a time, so a slow agent is never overrun; a chunk not acknowledged
    /// within [`REQUEST_RETRY`] is resent at half the size (down to `MIN_CHUNK`), since on a noisy
    /// line a shorter frame is likelier to arrive whole.
    pub fn upload(&mut self, image: &[u8], sidecar: Option<&Sidecar>) -> Result<u16, SessionError> {
        let len = u32::try_from(image.len()).map_err(|_| SessionError::ImageTooLarge(image.len()))?;
        let deadline = Instant::now() + self.timeouts.reply;
        // None until LoadBegin is acknowledged; then the offset the agent wants next
        let mut next: Option<u32> = None;
        let mut chunk = CHUNK;
        loop {
            if Instant::now() >= deadline {
                return Err(self.timeout("an answer to the upload"));
            }
            let (retry, what) = match next {
                None => {
                    self.send(&HostMsg::LoadBegin { len })?;
                    (REQUEST_RETRY, "LoadAck")
                }
                Some(at) if at < len => {
                    let from = at as usize;
                    let data = &image[from..(from + chunk).min(image.len())];
                    self.send(&HostMsg::LoadChunk { offset: at, data })?;
                    (REQUEST_RETRY, "LoadAck")
                }
                // the kernel verifies and attaches probes before answering: give it longer
                Some(_) => {
                    self.send(&HostMsg::LoadEnd)?;
                    (LOAD_RETRY, "Loaded")
                }
            };
            let until = (Instant::now() + retry).min(deadline);
            loop {
                let Some(payload) = self.next_payload(until)? else {
                    if next.is_some_and(|at| at < len) {
                        chunk = (chunk / 2).max(MIN_CHUNK);
                    }
                    break;
                };
                match wire::decode::<AgentMsg<'_>>(&payload) {
                    Ok(AgentMsg::LoadAck { next: n }) if what == "LoadAck" => {
                        if next.is_some_and(|at| n > at) {
                            chunk = (chunk * 2).min(CHUNK);
                        }
                        next = Some(n.min(len));
                        break;
                    }
                    Ok(AgentMsg::Loaded { probes }) if what == "Loaded" => return Ok(probes),
                    Ok(AgentMsg::Rejected { code, offset, detail }) => {
                        let ctx = ImageContext { image: Some(image), sidecar };
                        let text = rejection(code, offset, detail, &self.agent.machine, ctx);
                        return Err(SessionError::Rejected { code, offset, detail, text });
                    }
                    // late answers to requests that were repeated
                    Ok(AgentMsg::LoadAck { .. } | AgentMsg::Loaded { .. }) => {}
                    Ok(m) => self.unexpected_while_waiting(m, "an answer to the upload")?,
                    Err(_) => self.bad_messages += 1,
                }
            }
        }
    }

    /// Whether `start` asks for a packed record stream (the default: trace records repeat, and a
    /// serial line is slow).
    pub fn set_record_packing(&mut self, on: bool) {
        self.pack_records = on;
    }

    /// Stream bytes received on the link and the record bytes they carried, for the current program.
    pub fn stream_bytes(&self) -> (u64, u64) {
        (self.rx.wire_bytes, self.rx.record_bytes)
    }

    /// Arm the loaded program (`Start`/`StartPacked` is repeated until `Started` comes).
    pub fn start(&mut self) -> Result<(), SessionError> {
        let deadline = Instant::now() + self.timeouts.reply;
        let (request, rx) = match self.pack_records {
            true => (HostMsg::StartPacked, RecordRx::packed()),
            false => (HostMsg::Start, RecordRx::new()),
        };
        self.rx = rx;
        loop {
            if Instant::now() >= deadline {
                return Err(self.timeout("Started"));
            }
            self.send(&request)?;
            let until = (Instant::now() + LOAD_RETRY).min(deadline);
            while let Some(payload) = self.next_payload(until)? {
                match wire::decode::<AgentMsg<'_>>(&payload) {
                    Ok(AgentMsg::Started) => {
                        // the first credit: the agent sends no record before it
                        let ack = self.rx.ack();
                        return self.send(&ack);
                    }
                    Ok(AgentMsg::LoadAck { .. } | AgentMsg::Loaded { .. }) => {}
                    Ok(m) => self.unexpected_while_waiting(m, "Started")?,
                    Err(_) => self.bad_messages += 1,
                }
            }
        }
    }

    fn timeout(&self, what: &'static str) -> SessionError {
        SessionError::Timeout { port: self.port.clone(), what, secs: self.timeouts.reply.as_secs() }
    }

    /// Messages that may arrive at any time are ignored; an `Error` ends the wait; the rest is a
    /// protocol violation.
    fn unexpected_while_waiting(&mut self, m: AgentMsg<'_>, what: &'static str) -> Result<(), SessionError> {
        match m {
            AgentMsg::Pong { .. } | AgentMsg::Stats(_) | AgentMsg::Hello { .. } | AgentMsg::Started => Ok(()),
            // one of our frames was corrupted on the way: the request is repeated anyway
            AgentMsg::Error { code: codes::BAD_MESSAGE, .. } => {
                self.agent_bad_frames += 1;
                Ok(())
            }
            AgentMsg::Error { code, detail } => Err(SessionError::Agent {
                port: self.port.clone(),
                code,
                text: agent_error(code, detail, &self.agent.machine),
            }),
            m => Err(SessionError::Unexpected { port: self.port.clone(), what, got: msg_name(&m) }),
        }
    }

    /// Stream records to `out` until a stop condition, then stop the program, drain its last records
    /// and say goodbye. Pings (with the record stream's acknowledgement) keep the agent's heartbeat fed
    /// throughout.
    pub fn run(
        &mut self,
        out: &mut dyn Output,
        mut opts: RunOptions<'_>,
    ) -> Result<RunSummary, SessionError> {
        let started = Instant::now();
        let interval = Duration::from_millis(u64::from(HEARTBEAT_INTERVAL_MS));
        let mut hb = Heartbeat { next: started, seq: 0, pongs: 0 };
        let mut last_heard = started;
        // pings sent when the agent was last heard (for the account of a lost session)
        let mut pings_when_heard = 0u32;
        let mut shown_losses = 0u64;
        let mut shown_bad_frames = 0u64;
        let mut exited = false;
        self.held_since = None;
        self.held_before = Duration::ZERO;

        let mut final_stats = None;
        let reason = loop {
            if exited {
                break StopReason::Exit;
            }
            if opts.stop.is_set() {
                break StopReason::Interrupted;
            }
            if opts.duration.is_some_and(|d| started.elapsed() >= d) {
                break StopReason::Duration;
            }
            if opts.until.as_mut().is_some_and(|f| f()) {
                break StopReason::Trigger;
            }
            self.pace(out)?;
            hb.tick(self, interval)?;
            let wait = hb.next.min(Instant::now() + Duration::from_millis(100));
            let Some(payload) = self.next_payload(wait)? else {
                if last_heard.elapsed() >= self.timeouts.silence {
                    return Err(SessionError::Silent {
                        port: self.port.clone(),
                        secs: self.timeouts.silence.as_secs(),
                    });
                }
                continue;
            };
            let heard_before = std::mem::replace(&mut last_heard, Instant::now());
            let pings_before = std::mem::replace(&mut pings_when_heard, hb.seq);
            match wire::decode::<AgentMsg<'_>>(&payload) {
                Ok(AgentMsg::Records { offset, data }) => exited |= self.take_records(offset, data, out)?,
                Ok(AgentMsg::Pong { .. }) => hb.pongs += 1,
                Ok(AgentMsg::Stats(s)) => {
                    if losses(&s) > shown_losses {
                        shown_losses = losses(&s);
                        out.notice(&format!("live: {} hits; {}", s.hits, drop_parts(&s).join(", ")));
                    }
                }
                Ok(AgentMsg::Stopped { stats, end }) => {
                    final_stats = Some((stats, end));
                    break StopReason::Agent;
                }
                // The agent dropped our session (e.g. its heartbeat timed out): nothing runs any more.
                // What the host saw before tells a line or board that stalled (pings went out, the
                // board heard none) from a host that did not ping.
                Ok(AgentMsg::Error { code: code @ (codes::NO_SESSION | codes::NOT_LOADED), detail }) => {
                    let text = format!(
                        "{} ({} ms into the run; the agent was last heard {} ms before this, and {} pings, one every {} ms, went out in between)",
                        agent_error(code, detail, &self.agent.machine),
                        last_heard.duration_since(started).as_millis(),
                        last_heard.duration_since(heard_before).as_millis(),
                        hb.seq.wrapping_sub(pings_before),
                        interval.as_millis(),
                    );
                    return Err(SessionError::Agent { port: self.port.clone(), code, text });
                }
                // One of our frames arrived corrupted: counted (it is repeated or its loss is harmless).
                Ok(AgentMsg::Error { code: codes::BAD_MESSAGE, .. }) => self.agent_bad_frames += 1,
                // The program keeps running (a failed ring read): tell the user.
                Ok(AgentMsg::Error { code, detail }) => {
                    out.notice(&format!("agent: {}", agent_error(code, detail, &self.agent.machine)));
                }
                Ok(
                    AgentMsg::Hello { .. }
                    | AgentMsg::Started
                    | AgentMsg::Loaded { .. }
                    | AgentMsg::LoadAck { .. },
                ) => {}
                Ok(
                    m @ (AgentMsg::Rejected { .. }
                    | AgentMsg::FileAck { .. }
                    | AgentMsg::FileDone { .. }
                    | AgentMsg::ModuleLoaded),
                ) => {
                    return Err(SessionError::Unexpected {
                        port: self.port.clone(),
                        what: "records",
                        got: msg_name(&m),
                    });
                }
                Err(_) => self.bad_messages += 1,
            }
            if self.bad_frames > shown_bad_frames {
                shown_bad_frames = self.bad_frames;
                out.notice(&format!(
                    "{} corrupted frames dropped so far on {} (lost records are resent)",
                    self.bad_frames, self.port
                ));
            }
        };

        let (stats, end) = match final_stats {
            Some(s) => s,
            None => self.stop(out, &mut hb, interval)?,
        };
        self.complete(end, out, &mut hb, interval)?;
        self.bye()?;
        Ok(RunSummary {
            stats,
            bad_frames: self.bad_frames,
            bad_messages: self.bad_messages,
            agent_bad_frames: self.agent_bad_frames,
            resend_requests: self.rx.naks,
            incomplete_bytes: self.rx.leftover() as u64 + self.rx.malformed_bytes,
            reason,
            pings: hb.seq,
            pongs: hb.pongs,
            output_held: self.held_before + self.held_since.map_or(Duration::ZERO, |t| t.elapsed()),
        })
    }

    /// Withhold the agent's credit while `out` has no room, grant it again when it has; each change
    /// is sent at once (a released hold must not wait for the next ping).
    fn pace(&mut self, out: &dyn Output) -> Result<(), SessionError> {
        let hold = !out.has_room();
        if hold == self.rx.held() {
            return Ok(());
        }
        self.rx.hold(hold);
        match (hold, self.held_since.take()) {
            (true, _) => self.held_since = Some(Instant::now()),
            (false, Some(t)) => self.held_before += t.elapsed(),
            (false, None) => {}
        }
        let ack = self.rx.ack();
        self.send(&ack)
    }

    /// One piece of the record stream: whole records to `out`, and the acknowledgement or resend
    /// request to the agent. Returns whether the records hold an Exit record.
    fn take_records(&mut self, offset: u64, data: &[u8], out: &mut dyn Output) -> Result<bool, SessionError> {
        let (whole, reply) = self.rx.piece(offset, data, Instant::now());
        if let Some(reply) = reply {
            self.send(&reply)?;
        }
        if whole.is_empty() {
            return Ok(false);
        }
        out.records(&whole).map_err(SessionError::Output)?;
        Ok(has_exit(&whole))
    }

    /// Send `Stop` (repeated every [`LOAD_RETRY`] until answered) and format records until `Stopped`.
    fn stop(
        &mut self,
        out: &mut dyn Output,
        hb: &mut Heartbeat,
        interval: Duration,
    ) -> Result<(Stats, u64), SessionError> {
        let mut deadline = Instant::now() + self.timeouts.stop;
        let mut resend = Instant::now();
        loop {
            if Instant::now() >= resend {
                self.send(&HostMsg::Stop)?;
                resend = Instant::now() + LOAD_RETRY;
            }
            self.pace(out)?;
            hb.tick(self, interval)?;
            if Instant::now() >= deadline {
                return Err(SessionError::Timeout {
                    port: self.port.clone(),
                    what: "Stopped after Stop",
                    secs: self.timeouts.stop.as_secs(),
                });
            }
            let Some(payload) = self.next_payload(hb.next.min(deadline).min(resend))? else { continue };
            deadline = Instant::now() + self.timeouts.stop;
            match wire::decode::<AgentMsg<'_>>(&payload) {
                Ok(AgentMsg::Stopped { stats, end }) => return Ok((stats, end)),
                Ok(AgentMsg::Records { offset, data }) => {
                    self.take_records(offset, data, out)?;
                }
                Ok(AgentMsg::Pong { .. }) => hb.pongs += 1,
                // e.g. a ring read failing while draining: the agent still answers Stopped
                Ok(AgentMsg::Error { code, detail })
                    if !matches!(code, codes::NO_SESSION | codes::NOT_LOADED | codes::BAD_MESSAGE) =>
                {
                    out.notice(&format!("agent: {}", agent_error(code, detail, &self.agent.machine)));
                }
                Ok(m) => self.unexpected_while_waiting(m, "Stopped")?,
                Err(_) => self.bad_messages += 1,
            }
        }
    }

    /// After `Stopped{end}`: ask for whatever part of the stream before `end` is still missing.
    fn complete(
        &mut self,
        end: u64,
        out: &mut dyn Output,
        hb: &mut Heartbeat,
        interval: Duration,
    ) -> Result<(), SessionError> {
        let mut deadline = Instant::now() + self.timeouts.stop;
        while self.rx.next() < end {
            if Instant::now() >= deadline {
                return Err(SessionError::Timeout {
                    port: self.port.clone(),
                    what: "the last records after Stopped",
                    secs: self.timeouts.stop.as_secs(),
                });
            }
            self.pace(out)?;
            if let Some(nak) = self.rx.nak(Instant::now()) {
                self.send(&nak)?;
            }
            hb.tick(self, interval)?;
            let until = hb.next.min(deadline).min(Instant::now() + Duration::from_millis(100));
            let Some(payload) = self.next_payload(until)? else { continue };
            match wire::decode::<AgentMsg<'_>>(&payload) {
                Ok(AgentMsg::Records { offset, data }) => {
                    deadline = Instant::now() + self.timeouts.stop;
                    self.take_records(offset, data, out)?;
                }
                Ok(AgentMsg::Pong { .. }) => hb.pongs += 1,
                Ok(AgentMsg::Stopped { .. }) => {}
                Ok(m) => self.unexpected_while_waiting(m, "the last records")?,
                Err(_) => self.bad_messages += 1,
            }
        }
        Ok(())
    }

    /// Tell the agent to unload and close (also done on drop, best effort).
    pub fn bye(&mut self) -> Result<(), SessionError> {
        if !self.bye_sent {
            self.bye_sent = true;
            // `Bye` has no answer; on a line that corrupted frames, say it thrice so the program is
            // unloaded now rather than when the next host says Hello. Not on a clean line: after the
            // first one a console agent has exited and the shell would read the rest.
            let times = if self.bad_frames + self.agent_bad_frames > 0 { 3 } else { 1 };
            for _ in 0..times {
                self.send(&HostMsg::Bye)?;
            }
        }
        Ok(())
    }

    /// Frames dropped for a bad CRC/COBS since the handshake.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames
    }

    fn send(&mut self, msg: &HostMsg<'_>) -> Result<(), SessionError> {
        let mut buf = [0u8; MAX_PAYLOAD];
        let payload = wire::encode(msg, &mut buf)
            .map_err(|e| self.io_error(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
        let framed = frame::encode_vec(payload)
            .ok_or_else(|| self.io_error(io::Error::new(io::ErrorKind::InvalidInput, "message too large")))?;
        self.link.write_all(&framed).map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: io::Error) -> SessionError {
        SessionError::Io { port: self.port.clone(), source }
    }

    /// The next good frame's payload, waiting until `deadline` at most. Bad frames are counted.
    fn next_payload(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, SessionError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(p) = self.inbox.pop_front() {
                return Ok(Some(p));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let n = self.link.read(&mut buf, left).map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Ok(None);
            }
            let (inbox, bad) = (&mut self.inbox, &mut self.bad_frames);
            self.deframer.feed(&buf[..n], |r| match r {
                Ok(p) => inbox.push_back(p.to_vec()),
                Err(_) => *bad += 1,
            });
        }
    }
}

impl<L: Link> Drop for Session<L> {
    /// An error path still tells the agent to unload the program.
    fn drop(&mut self) {
        let _ = self.bye();
    }
}

/// Ping bookkeeping shared by the run and stop loops.
struct Heartbeat {
    next: Instant,
    seq: u32,
    pongs: u32,
}

impl Heartbeat {
    fn tick<L: Link>(&mut self, s: &mut Session<L>, interval: Duration) -> Result<(), SessionError> {
        let now = Instant::now();
        if now >= self.next {
            // the acknowledgement rides along, so a lost one is repaired within one interval
            let ack = s.rx.ack();
            s.send(&ack)?;
            s.send(&HostMsg::Ping { seq: self.seq })?;
            self.seq = self.seq.wrapping_add(1);
            self.next = now + interval;
        }
        Ok(())
    }
}
