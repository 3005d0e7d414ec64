//! Installing files and the module through the protocol (`deploy` over a serial line):
//!
//! ```text
//! FileBegin{path, len, packed, crc, mode} ->  <- FileAck{0}
//! FileChunk{offset, data}                 ->  <- FileAck{next}     (one chunk in flight)
//! FileEnd                                 ->  <- FileDone{len, crc} (checked, renamed into place)
//! ModuleLoad{path}                        ->  <- ModuleLoaded
//! ```
//!
//! The content travels packed ([`ktap_protocol::pack`]); every request is repeated until answered,
//! and a chunk that is not acknowledged in time is resent smaller, as image uploads are.

use std::time::{Duration, Instant};

use ktap_protocol::pack::{crc32, pack};
use ktap_protocol::wire::{self, AgentMsg, FILE_CHUNK, HostMsg, MAX_PATH, MIN_CHUNK};

use super::{LOAD_RETRY, REQUEST_RETRY, Session, SessionError};
use crate::link::Link;

/// What one installed file cost on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// The file's length.
    pub len: u64,
    /// Bytes sent for it (packed).
    pub packed: u64,
    /// Chunks resent (a lost chunk or acknowledgement).
    pub resent: u64,
    /// Time from `FileBegin` to `FileDone`.
    pub elapsed: Duration,
}

/// How long the module load may take (the kernel links and initialises it before answering).
const MODULE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a file chunk waits for its acknowledgement before it is resent (smaller). Longer than
/// an image chunk's wait: a file is many chunks back to back, and on a slow or busy board a resend
/// of a chunk that was merely late only adds to the line's load.
const FILE_RETRY: Duration = Duration::from_secs(2);

impl<L: Link> Session<L> {
    /// Write `content` to `path` on the board with permission bits `mode`. `progress` is called with
    /// the packed bytes acknowledged and the packed total after every acknowledgement.
    pub fn install_file(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Installed, SessionError> {
        if !path.starts_with('/') || path.len() > MAX_PATH || path.ends_with('/') {
            return Err(SessionError::Install {
                path: path.to_owned(),
                text: format!("the destination must be an absolute file path of at most {MAX_PATH} bytes"),
            });
        }
        let len = u32::try_from(content.len()).map_err(|_| SessionError::ImageTooLarge(content.len()))?;
        let packed = pack(content);
        let total = u32::try_from(packed.len()).map_err(|_| SessionError::ImageTooLarge(packed.len()))?;
        let crc = crc32(content);
        let started = Instant::now();
        // the whole transfer may take long on a slow line; only a stall is an error
        let mut deadline = Instant::now() + self.timeouts.reply;
        let mut next: Option<u32> = None;
        let mut chunk = FILE_CHUNK;
        let mut resent = 0u64;
        loop {
            if Instant::now() >= deadline {
                return Err(self.timeout("an answer while installing a file"));
            }
            let (retry, done_expected) = match next {
                None => {
                    self.send(&HostMsg::FileBegin { path, len, packed: total, crc, mode })?;
                    (REQUEST_RETRY, false)
                }
                Some(at) if at < total => {
                    let from = at as usize;
                    let data = &packed[from..(from + chunk).min(packed.len())];
                    self.send(&HostMsg::FileChunk { offset: at, data })?;
                    (FILE_RETRY, false)
                }
                // the agent syncs the file to storage before answering
                Some(_) => {
                    self.send(&HostMsg::FileEnd)?;
                    (LOAD_RETRY, true)
                }
            };
            let until = (Instant::now() + retry).min(deadline);
            loop {
                let Some(payload) = self.next_payload(until)? else {
                    if next.is_some_and(|at| at < total) {
                        chunk = (chunk / 2).max(MIN_CHUNK);
                        resent += 1;
                    }
                    break;
                };
                match wire::decode::<AgentMsg<'_>>(&payload) {
                    Ok(AgentMsg::FileAck { next: n }) => {
                        let progressed = match next {
                            Some(at) => n > at,
                            None => true,
                        };
                        if progressed {
                            deadline = Instant::now() + self.timeouts.reply;
                            if next.is_some() {
                                chunk = (chunk * 2).min(FILE_CHUNK);
                            }
                        }
                        next = Some(n.min(total));
                        progress(u64::from(n.min(total)), u64::from(total));
                        if !done_expected || n < total {
                            break;
                        }
                    }
                    Ok(AgentMsg::FileDone { len: l, crc: c }) if done_expected => {
                        if (l, c) != (len, crc) {
                            return Err(SessionError::Install {
                                path: path.to_owned(),
                                text: format!(
                                    "the board wrote {l} bytes with CRC {c:#010x}, expected {len} bytes with CRC {crc:#010x}"
                                ),
                            });
                        }
                        return Ok(Installed {
                            len: u64::from(len),
                            packed: u64::from(total),
                            resent,
                            elapsed: started.elapsed(),
                        });
                    }
                    // a late answer to a repeated request
                    Ok(AgentMsg::FileDone { .. }) => {}
                    Ok(m) => self.unexpected_while_waiting(m, "an answer while installing a file")?,
                    Err(_) => self.bad_messages += 1,
                }
            }
        }
    }

    /// Replace the board's ktap module with the module file at `path` (installed before): the agent
    /// unloads any program, removes the loaded module and loads the file (`finit_module`).
    pub fn load_module(&mut self, path: &str) -> Result<(), SessionError> {
        let deadline = Instant::now() + MODULE_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(SessionError::Timeout {
                    port: self.port.clone(),
                    what: "ModuleLoaded",
                    secs: MODULE_TIMEOUT.as_secs(),
                });
            }
            self.send(&HostMsg::ModuleLoad { path })?;
            // loading is slow on a TCG guest: a repeat would unload and load it again
            let until = (Instant::now() + Duration::from_secs(5)).min(deadline);
            while let Some(payload) = self.next_payload(until)? {
                match wire::decode::<AgentMsg<'_>>(&payload) {
                    Ok(AgentMsg::ModuleLoaded) => return Ok(()),
                    Ok(AgentMsg::FileAck { .. } | AgentMsg::FileDone { .. }) => {}
                    Ok(m) => self.unexpected_while_waiting(m, "ModuleLoaded")?,
                    Err(_) => self.bad_messages += 1,
                }
            }
        }
    }
}
