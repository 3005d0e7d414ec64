//! The agent's end of the reliable record stream: a ring of record bytes kept until the host has
//! acknowledged them, so a piece corrupted on the link can be sent again (go-back-N).
//!
//! ```text
//! stream offset:  acked ........ sent ........ end
//!                 |<- sent, not acked ->|<- queued ->|
//!                 |<------------- held: at most N ------------>|
//! ```
//! The host's credit (`Ack{next, window}`) bounds how far past `acked` the agent may send; the ring's
//! size `N` bounds how much it may hold. Kernel records are only read when the ring has room, so a
//! slow link backs up into the kernel's ring (which counts what it drops), never into lost memory.

/// A ring of `N` stream bytes with absolute offsets.
#[derive(Debug)]
pub struct RecordStream<const N: usize> {
    buf: [u8; N],
    /// Every byte before this was acknowledged by the host.
    acked: u64,
    /// Every byte before this was sent at least once; the next piece starts here.
    sent: u64,
    /// One past the last byte appended.
    end: u64,
}

impl<const N: usize> Default for RecordStream<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RecordStream<N> {
    /// An empty stream at offset 0.
    pub const fn new() -> Self {
        RecordStream { buf: [0; N], acked: 0, sent: 0, end: 0 }
    }

    /// Start a new stream at offset 0 (a new program).
    pub fn reset(&mut self) {
        self.acked = 0;
        self.sent = 0;
        self.end = 0;
    }

    /// Bytes that can be appended now.
    pub fn free(&self) -> usize {
        N - self.held()
    }

    fn held(&self) -> usize {
        usize::try_from(self.end - self.acked).unwrap_or(N)
    }

    /// Append bytes; `false` (nothing appended) if they do not fit.
    pub fn append(&mut self, data: &[u8]) -> bool {
        if data.len() > self.free() {
            return false;
        }
        for (i, b) in data.iter().enumerate() {
            let at = ((self.end + i as u64) % N as u64) as usize;
            if let Some(slot) = self.buf.get_mut(at) {
                *slot = *b;
            }
        }
        self.end += data.len() as u64;
        true
    }

    /// The host has every byte before `next`. Returns whether that acknowledged anything new. An
    /// acknowledgement beyond what was sent (a corrupted or forged one) is ignored.
    pub fn ack(&mut self, next: u64) -> bool {
        if next <= self.acked || next > self.sent {
            return false;
        }
        self.acked = next;
        true
    }

    /// Send everything unacknowledged again, from the oldest byte.
    pub fn rewind(&mut self) {
        self.sent = self.acked;
    }

    /// The next piece to send: at most `max` bytes, none at or beyond `limit` (the host's credit),
    /// contiguous in the ring. `None` when there is nothing to send within the credit.
    pub fn next_piece(&self, max: usize, limit: u64) -> Option<(u64, &[u8])> {
        let stop = self.end.min(limit).min(self.sent + max as u64);
        if stop <= self.sent {
            return None;
        }
        let start = (self.sent % N as u64) as usize;
        let len = usize::try_from(stop - self.sent).ok()?.min(N - start);
        Some((self.sent, self.buf.get(start..start + len)?))
    }

    /// The piece from [`RecordStream::next_piece`] of `len` bytes went out.
    pub fn sent(&mut self, len: usize) {
        self.sent = (self.sent + len as u64).min(self.end);
    }

    /// Whether sent bytes wait for an acknowledgement.
    pub fn unacked(&self) -> bool {
        self.sent > self.acked
    }

    /// Whether every appended byte was sent at least once.
    pub fn all_sent(&self) -> bool {
        self.sent == self.end
    }

    /// The stream's length so far.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The acknowledged prefix.
    pub fn acked(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn drain<const N: usize>(s: &mut RecordStream<N>, max: usize, limit: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((off, data)) = s.next_piece(max, limit) {
            let data = data.to_vec();
            s.sent(data.len());
            out.push((off, data));
        }
        out
    }

    #[test]
    fn pieces_respect_size_credit_and_the_ring_edge() {
        let mut s = RecordStream::<16>::new();
        assert!(s.append(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
        assert_eq!(drain(&mut s, 4, 6), [(0, vec![1, 2, 3, 4]), (4, vec![5, 6])]);
        assert_eq!(drain(&mut s, 4, 6), []);
        assert_eq!(drain(&mut s, 100, 100), [(6, vec![7, 8, 9, 10])]);
        assert_eq!(s.free(), 6, "unacknowledged bytes stay held");
        assert!(!s.append(&[0; 7]));
        assert!(s.ack(10));
        assert_eq!(s.free(), 16);
        // the ring wraps: offset 16 sits at index 0 again; a piece never crosses the edge
        assert!(s.append(&[11, 12, 13, 14, 15, 16, 17, 18]));
        assert_eq!(drain(&mut s, 100, 100), [(10, vec![11, 12, 13, 14, 15, 16]), (16, vec![17, 18])]);
    }

    #[test]
    fn rewind_resends_from_the_oldest_unacknowledged_byte() {
        let mut s = RecordStream::<64>::new();
        s.append(&(0..20).collect::<Vec<u8>>());
        drain(&mut s, 8, 100);
        assert!(s.all_sent() && s.unacked());
        assert!(s.ack(8));
        assert!(!s.ack(8), "nothing new");
        assert!(!s.ack(30), "beyond what was sent: ignored");
        s.rewind();
        assert_eq!(drain(&mut s, 100, 100), [(8, (8..20).collect::<Vec<u8>>())]);
        assert!(s.ack(20));
        assert!(!s.unacked());
        s.reset();
        assert_eq!((s.end(), s.acked(), s.free()), (0, 0, 64));
    }
}
