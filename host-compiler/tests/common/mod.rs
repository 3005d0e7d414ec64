//! A scripted agent on the master side of a real pty pair: it reads and writes real frames and wire
//! messages, so the host's session and serial link run exactly as against a board's UART.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use ktap_protocol::frame::{self, Deframer};
use ktap_protocol::wire::{self, AgentMsg, HostMsg, PROTOCOL_VERSION};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// A kernel build-id for tests.
pub const KERNEL_ID: [u8; 20] = [0xab; 20];

/// What the host sent, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Hello { version: u16 },
    LoadBegin { len: u32 },
    LoadChunk { offset: u32, data: Vec<u8> },
    LoadEnd,
    Start,
    Stop,
    Ping { seq: u32 },
    Bye,
    Ack { next: u64, window: u32 },
    Nak { next: u64, window: u32 },
    FileBegin { path: String, len: u32, packed: u32, crc: u32, mode: u32 },
    FileChunk { offset: u32, data: Vec<u8> },
    FileEnd,
    ModuleLoad { path: String },
}

pub struct Peer {
    master: File,
    deframer: Deframer,
    inbox: VecDeque<Got>,
    /// Length of the record stream sent so far (the next `Records` offset).
    pub stream_end: u64,
    /// Keeps the slave open so the master never reads EIO between host opens.
    _slave: OwnedFd,
    /// The host asked for a packed record stream (`StartPacked`): `records` packs with this.
    packer: Option<ktap_protocol::pack::StreamPacker>,
}

/// A pty pair: the peer on the master, and the slave's path for the host to open as a serial port.
pub fn pty_peer() -> (Peer, String) {
    let p = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&p.slave).unwrap().to_string_lossy().into_owned();
    // raw on the slave from the start, so nothing the peer writes before the host opens is mangled
    let mut t = nix::sys::termios::tcgetattr(&p.slave).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&p.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    (
        Peer {
            master: File::from(p.master),
            deframer: Deframer::new(),
            inbox: VecDeque::new(),
            stream_end: 0,
            _slave: p.slave,
            packer: None,
        },
        path,
    )
}

impl Peer {
    /// The next message from the host, or `None` after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ms = PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap();
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, ms).unwrap() == 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            let n = match self.master.read(&mut buf) {
                Ok(n) => n,
                Err(_) => return None, // the host closed the port
            };
            let (inbox, packer) = (&mut self.inbox, &mut self.packer);
            self.deframer.feed(&buf[..n], |r| {
                let payload = r.expect("the host sends good frames");
                let m = match wire::decode::<HostMsg<'_>>(payload).expect("the host sends good messages") {
                    HostMsg::Hello { version, .. } => Got::Hello { version },
                    HostMsg::LoadBegin { len } => Got::LoadBegin { len },
                    HostMsg::LoadChunk { offset, data } => Got::LoadChunk { offset, data: data.to_vec() },
                    HostMsg::LoadEnd => Got::LoadEnd,
                    HostMsg::Start => {
                        *packer = None;
                        Got::Start
                    }
                    // the same to the tests; `records` packs from now on
                    HostMsg::StartPacked => {
                        *packer = Some(ktap_protocol::pack::StreamPacker::new());
                        Got::Start
                    }
                    HostMsg::Stop => Got::Stop,
                    HostMsg::Ping { seq } => Got::Ping { seq },
                    HostMsg::Bye => Got::Bye,
                    HostMsg::Ack { next, window } => Got::Ack { next, window },
                    HostMsg::Nak { next, window } => Got::Nak { next, window },
                    HostMsg::FileBegin { path, len, packed, crc, mode } => {
                        Got::FileBegin { path: path.to_owned(), len, packed, crc, mode }
                    }
                    HostMsg::FileChunk { offset, data } => Got::FileChunk { offset, data: data.to_vec() },
                    HostMsg::FileEnd => Got::FileEnd,
                    HostMsg::ModuleLoad { path } => Got::ModuleLoad { path: path.to_owned() },
                };
                inbox.push_back(m);
            });
        }
    }

    /// The next message that is not a ping or a plain acknowledgement (pings are answered with pongs
    /// on the way).
    pub fn recv_no_ping(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now()))? {
                Got::Ping { seq } => self.send(&AgentMsg::Pong { seq }),
                Got::Ack { .. } => {}
                m => return Some(m),
            }
        }
    }

    /// Send the next piece of the record stream.
    pub fn records(&mut self, data: &[u8]) {
        let packed;
        let data = match self.packer.as_mut() {
            Some(p) => {
                let mut out = vec![0u8; ktap_protocol::pack::packed_bound(data.len())];
                let n = p.pack_flush(data, &mut out).unwrap();
                out.truncate(n);
                packed = out;
                &packed[..]
            }
            None => data,
        };
        self.send(&AgentMsg::Records { offset: self.stream_end, data });
        self.stream_end += data.len() as u64;
    }

    /// `Stopped` with the stream's length.
    pub fn stopped(&mut self, stats: ktap_protocol::wire::Stats) {
        self.send(&AgentMsg::Stopped { stats, end: self.stream_end });
    }

    pub fn send(&mut self, msg: &AgentMsg<'_>) {
        let mut buf = [0u8; frame::MAX_PAYLOAD];
        let payload = wire::encode(msg, &mut buf).unwrap();
        self.send_payload(payload);
    }

    pub fn send_payload(&mut self, payload: &[u8]) {
        let f = frame::encode_vec(payload).unwrap();
        self.master.write_all(&f).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Wait for the host's Hello and answer with our identity.
    pub fn handshake(&mut self, build_id: &[u8], base_symbol: &str, base_addr: u64) {
        assert_eq!(self.recv(Duration::from_secs(5)), Some(Got::Hello { version: PROTOCOL_VERSION }));
        self.send(&AgentMsg::Hello {
            version: PROTOCOL_VERSION,
            agent: "ktap-agent test",
            machine: "armv7l",
            release: "6.1.0-50-armmp",
            build_id,
            base_symbol,
            base_addr,
        });
    }

    /// Receive a whole upload, acknowledging each step; returns the image.
    pub fn upload(&mut self) -> Vec<u8> {
        let Some(Got::LoadBegin { len }) = self.recv(Duration::from_secs(5)) else { panic!("no LoadBegin") };
        self.send(&AgentMsg::LoadAck { next: 0 });
        let mut image = Vec::new();
        loop {
            match self.recv(Duration::from_secs(5)) {
                Some(Got::LoadChunk { offset, data }) => {
                    assert_eq!(offset as usize, image.len(), "chunks in order");
                    assert!(data.len() <= wire::CHUNK);
                    image.extend(data);
                    self.send(&AgentMsg::LoadAck { next: image.len() as u32 });
                }
                Some(Got::LoadEnd) => break,
                other => panic!("unexpected during upload: {other:?}"),
            }
        }
        assert_eq!(image.len(), len as usize);
        image
    }
}
