//! The host's end of the reliable record stream: pieces (`Records{offset, data}`) are taken in order,
//! joined into whole records, acknowledged with credit; a gap is answered with `Nak` so the agent
//! resends from the first missing byte. See `target-agent/src/stream.rs` for the other end.

use std::time::{Duration, Instant};

use ktap_protocol::pack::Unpacker;
use ktap_protocol::record::{self, RECORD_HEADER_LEN};
use ktap_protocol::wire::HostMsg;

/// Credit the host grants beyond what it has: the agent holds itself to less anyway (its
/// retransmission ring and in-flight bound), so this only says "the host keeps up".
pub const WINDOW: u32 = 32 * 1024;
/// At most one `Nak` per this long: the agent's resend is already on its way.
const NAK_INTERVAL: Duration = Duration::from_millis(200);

/// Reassembly state of one program's record stream.
#[derive(Debug, Default)]
pub struct RecordRx {
    /// Every stream byte before this arrived.
    next: u64,
    /// Bytes of a record not yet complete.
    partial: Vec<u8>,
    last_nak: Option<Instant>,
    /// `Nak`s sent (pieces lost or corrupted on the link, then resent).
    pub naks: u64,
    /// Stream bytes that arrived twice (resends of what had arrived).
    pub repeated_bytes: u64,
    /// Bytes that could not be records (a broken record header, or a packed stream that does not
    /// unpack): dropped.
    pub malformed_bytes: u64,
    /// Whether the stream is packed, and its decoder.
    packing: Packing,
    /// Stream bytes as they came over the link (packed or not) and unpacked.
    pub wire_bytes: u64,
    /// Record bytes they carried.
    pub record_bytes: u64,
    /// Credit withheld: the output does not keep up (see [`RecordRx::hold`]).
    held: bool,
}

/// How a stream's bytes become record bytes.
#[derive(Debug, Default)]
enum Packing {
    /// As they are (`Start`).
    #[default]
    Plain,
    /// Through a DEFLATE decoder fed the stream in order (`StartPacked`).
    Packed(Box<Unpacker>),
    /// A packed stream that failed to unpack: nothing after that point can be decoded.
    Broken,
}

impl RecordRx {
    /// A stream at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packed stream at offset 0 (see `HostMsg::StartPacked`).
    pub fn packed() -> Self {
        RecordRx { packing: Packing::Packed(Box::new(Unpacker::new(u64::MAX))), ..Self::default() }
    }

    /// Offset of the first byte not received.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The acknowledgement to send now (with every ping, so a lost one costs nothing).
    pub fn ack(&self) -> HostMsg<'static> {
        HostMsg::Ack { next: self.next, window: self.window() }
    }

    /// Withhold credit (`hold`: every acknowledgement grants a window of 0, so the agent sends
    /// nothing beyond what it was already allowed) or grant it again.
    pub fn hold(&mut self, hold: bool) {
        self.held = hold;
    }

    /// Whether credit is withheld.
    pub fn held(&self) -> bool {
        self.held
    }

    fn window(&self) -> u32 {
        if self.held { 0 } else { WINDOW }
    }

    /// A `Nak` for the first missing byte, unless one went out in the last [`NAK_INTERVAL`].
    pub fn nak(&mut self, now: Instant) -> Option<HostMsg<'static>> {
        if self.last_nak.is_some_and(|t| now.duration_since(t) < NAK_INTERVAL) {
            return None;
        }
        self.last_nak = Some(now);
        self.naks += 1;
        Some(HostMsg::Nak { next: self.next, window: self.window() })
    }

    /// One piece from the agent: returns the whole records it completes (possibly none) and what to
    /// answer.
    pub fn piece(&mut self, offset: u64, data: &[u8], now: Instant) -> (Vec<u8>, Option<HostMsg<'static>>) {
        let end = offset.saturating_add(data.len() as u64);
        if offset > self.next {
            // a piece before this one was lost: everything from `next` must come again
            return (Vec::new(), self.nak(now));
        }
        if end <= self.next {
            self.repeated_bytes += data.len() as u64;
            return (Vec::new(), None);
        }
        let skip = (self.next - offset) as usize;
        self.repeated_bytes += skip as u64;
        let fresh = data.get(skip..).unwrap_or(&[]);
        self.wire_bytes += fresh.len() as u64;
        let before = self.partial.len();
        match &mut self.packing {
            Packing::Plain => self.partial.extend_from_slice(fresh),
            Packing::Packed(u) => {
                let partial = &mut self.partial;
                let r = u.feed(fresh, true, |b| {
                    partial.extend_from_slice(b);
                    Ok::<(), ()>(())
                });
                // frames are CRC-checked, so only a broken agent gets here: nothing after it decodes
                if r.is_err() {
                    self.malformed_bytes += fresh.len() as u64;
                    self.packing = Packing::Broken;
                }
            }
            Packing::Broken => self.malformed_bytes += fresh.len() as u64,
        }
        self.record_bytes += (self.partial.len() - before) as u64;
        self.next = end;
        (self.whole_records(), Some(self.ack()))
    }

    /// Take the complete records off the front of `partial`.
    fn whole_records(&mut self) -> Vec<u8> {
        let mut at = 0;
        loop {
            let rest = self.partial.get(at..).unwrap_or(&[]);
            if let Some(n) = record::first_len(rest) {
                at += n;
                continue;
            }
            // a header that can never start a record: the agent sends whole records only, so this
            // is a broken agent or kernel; drop what is there rather than wait forever
            if let [a, b, ..] = rest
                && usize::from(u16::from_le_bytes([*a, *b])) < RECORD_HEADER_LEN
            {
                self.malformed_bytes += rest.len() as u64;
                let whole = self.partial[..at].to_vec();
                self.partial.clear();
                return whole;
            }
            break;
        }
        self.partial.drain(..at).collect()
    }

    /// Bytes of an incomplete record left over (at the end of a run: lost).
    pub fn leftover(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(len: usize, id: u8) -> Vec<u8> {
        let mut r = vec![id; len];
        r[..2].copy_from_slice(&(len as u16).to_le_bytes());
        r
    }

    #[test]
    fn pieces_join_into_whole_records_and_are_acknowledged() {
        let stream = [rec(10, 1), rec(300, 2), rec(7, 3)].concat();
        let now = Instant::now();
        let mut rx = RecordRx::new();
        let mut got = Vec::new();
        for (i, piece) in stream.chunks(64).enumerate() {
            let (whole, reply) = rx.piece(i as u64 * 64, piece, now);
            got.extend(whole);
            assert_eq!(reply, Some(HostMsg::Ack { next: rx.next(), window: WINDOW }));
        }
        assert_eq!(got, stream);
        assert_eq!(rx.leftover(), 0);
    }

    #[test]
    fn a_gap_is_naked_once_per_interval_and_repeats_are_counted() {
        let stream = [rec(40, 1), rec(40, 2), rec(40, 3)].concat();
        let t = Instant::now();
        let mut rx = RecordRx::new();
        assert_eq!(rx.piece(0, &stream[..40], t).0, rec(40, 1));
        // [40, 80) lost on the link
        let (whole, reply) = rx.piece(80, &stream[80..], t);
        assert!(whole.is_empty());
        assert_eq!(reply, Some(HostMsg::Nak { next: 40, window: WINDOW }));
        assert_eq!(rx.piece(80, &stream[80..], t + Duration::from_millis(10)).1, None, "rate-limited");
        // the resend from 40 (overlapping what arrived) completes the stream
        let (whole, _) = rx.piece(0, &stream, t + Duration::from_millis(300));
        assert_eq!(whole, [rec(40, 2), rec(40, 3)].concat());
        assert_eq!((rx.naks, rx.repeated_bytes), (1, 40));
        assert_eq!(rx.piece(0, &stream[..40], t).1, None, "a stale repeat needs no answer");
    }

    #[test]
    fn held_credit_grants_a_window_of_zero_until_released() {
        let mut rx = RecordRx::new();
        rx.hold(true);
        let (_, reply) = rx.piece(0, &rec(10, 1), Instant::now());
        assert_eq!(reply, Some(HostMsg::Ack { next: 10, window: 0 }), "what came is acknowledged");
        assert_eq!(rx.nak(Instant::now()), Some(HostMsg::Nak { next: 10, window: 0 }));
        rx.hold(false);
        assert_eq!(rx.ack(), HostMsg::Ack { next: 10, window: WINDOW });
    }

    #[test]
    fn a_packed_stream_that_fails_to_unpack_yields_nothing_after_the_failure() {
        let mut rx = RecordRx::packed();
        let t = Instant::now();
        // a DEFLATE block of the reserved type
        let (got, _) = rx.piece(0, &[0x07, 0, 0], t);
        assert!(got.is_empty());
        // what follows is never taken for plain records, however record-like it looks
        let (got, ack) = rx.piece(3, &rec(12, 1), t);
        assert!(got.is_empty() && ack.is_some(), "{got:?}");
        assert_eq!(rx.malformed_bytes, 3 + 12);
    }

    #[test]
    fn a_packed_stream_is_unpacked_in_order_across_pieces() {
        use ktap_protocol::pack::{StreamPacker, packed_bound};
        let mut p = StreamPacker::new();
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for i in 0..50u8 {
            let batch = [rec(30, i % 4), rec(12, 9)].concat();
            let mut out = vec![0u8; packed_bound(batch.len())];
            let n = p.pack_flush(&batch, &mut out).unwrap();
            wire.extend_from_slice(&out[..n]);
            want.extend(batch);
        }
        let mut rx = RecordRx::packed();
        let mut got = Vec::new();
        let t = Instant::now();
        // pieces cut anywhere, one repeated
        let mut at = 0;
        for len in [7usize, 100, 1, 50].into_iter().cycle() {
            if at >= wire.len() {
                break;
            }
            let end = (at + len).min(wire.len());
            got.extend(rx.piece(at as u64, &wire[at..end], t).0);
            got.extend(rx.piece(at as u64, &wire[at..end], t).0);
            at = end;
        }
        assert_eq!(got, want);
        assert_eq!((rx.wire_bytes, rx.record_bytes), (wire.len() as u64, want.len() as u64));
        assert!(rx.wire_bytes * 4 < rx.record_bytes, "{rx:?}");
    }

    #[test]
    fn a_broken_header_is_dropped_and_counted() {
        let mut rx = RecordRx::new();
        let mut data = rec(8, 1);
        data.extend([1, 0, 9, 9]);
        let (whole, _) = rx.piece(0, &data, Instant::now());
        assert_eq!(whole, rec(8, 1));
        assert_eq!(rx.malformed_bytes, 4);
    }
}
