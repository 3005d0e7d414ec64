//! A fixed-size queue of encoded frames waiting for the link: `push` encodes a message (postcard, then
//! COBS + CRC framing) at the tail, the writer takes [`OutQueue::pending`] and reports what it wrote.

use ktap_protocol::frame::{self, MAX_FRAME, MAX_PAYLOAD};
use ktap_protocol::wire::{self, AgentMsg};

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not enough room now; retry after the writer drained some bytes.
    Full,
    /// The message does not fit in one frame at all (never produced by the session).
    TooBig,
}

/// The encoded size of a frame carrying `payload` bytes, at most.
pub const fn frame_len(payload: usize) -> usize {
    payload + 4 + (payload + 4) / 254 + 1 + 2
}

/// A byte queue of `N` bytes holding whole frames.
#[derive(Debug)]
pub struct OutQueue<const N: usize> {
    buf: [u8; N],
    start: usize,
    end: usize,
}

impl<const N: usize> Default for OutQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> OutQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        assert!(N >= MAX_FRAME, "the queue must hold at least one frame");
        OutQueue { buf: [0; N], start: 0, end: 0 }
    }

    /// Encoded bytes that can be queued now.
    pub fn room(&self) -> usize {
        N - (self.end - self.start)
    }

    /// Bytes waiting for the link.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The writer wrote `n` bytes of [`OutQueue::pending`].
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Encode `msg` as one frame at the tail.
    pub fn push(&mut self, msg: &AgentMsg<'_>) -> Result<(), PushError> {
        let mut payload = [0u8; MAX_PAYLOAD];
        let payload = wire::encode(msg, &mut payload).map_err(|_| PushError::TooBig)?;
        if self.room() < frame_len(payload.len()) {
            return Err(PushError::Full);
        }
        if N - self.end < frame_len(payload.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let tail = self.buf.get_mut(self.end..).ok_or(PushError::Full)?;
        let n = frame::encode(payload, tail).ok_or(PushError::Full)?;
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use ktap_protocol::frame::Deframer;
    use ktap_protocol::wire::AgentMsg;

    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        Deframer::new().feed(bytes, |f| out.extend(f.ok().map(<[u8]>::to_vec)));
        out
    }

    #[test]
    fn frames_round_trip_in_order() {
        let mut q = OutQueue::<4096>::new();
        q.push(&AgentMsg::Pong { seq: 1 }).unwrap();
        q.push(&AgentMsg::Records { offset: 0, data: &[7; 700] }).unwrap();
        q.push(&AgentMsg::Started).unwrap();
        let frames = decode_all(q.pending());
        assert_eq!(frames.len(), 3);
        assert_eq!(wire::decode::<AgentMsg<'_>>(&frames[0]).unwrap(), AgentMsg::Pong { seq: 1 });
        assert_eq!(wire::decode::<AgentMsg<'_>>(&frames[2]).unwrap(), AgentMsg::Started);
    }

    #[test]
    fn full_then_drains_and_compacts() {
        let mut q = OutQueue::<1500>::new();
        let big = AgentMsg::Records { offset: 0, data: &[1; 1000] };
        q.push(&big).unwrap();
        q.push(&big).unwrap_err();
        assert!(q.room() < frame_len(1003));
        let first = q.pending().len();
        q.consume(10);
        // not enough room yet even after compaction
        assert_eq!(q.push(&big), Err(PushError::Full));
        q.consume(first - 10);
        assert!(q.is_empty());
        q.push(&big).unwrap();
        q.consume(500);
        q.push(&AgentMsg::Pong { seq: 9 }).unwrap();
        q.push(&AgentMsg::Records { offset: 0, data: &[2; 600] }).unwrap(); // needs compaction
        let frames = decode_all(q.pending());
        assert_eq!(frames.len(), 2, "the half-consumed first frame resyncs away, then two whole frames");
    }

    #[test]
    fn too_big_is_reported() {
        let mut q = OutQueue::<4096>::new();
        assert_eq!(q.push(&AgentMsg::Records { offset: 0, data: &[0; MAX_PAYLOAD] }), Err(PushError::TooBig));
    }

    #[test]
    fn frame_len_bounds_the_encoder() {
        for n in [0, 1, 250, 254, 700, MAX_PAYLOAD] {
            let mut out = [0u8; MAX_FRAME];
            let got = frame::encode(&std::vec![5u8; n], &mut out).unwrap();
            assert!(got <= frame_len(n), "{n}: {got} > {}", frame_len(n));
        }
        assert_eq!(frame_len(MAX_PAYLOAD), MAX_FRAME);
    }
}
