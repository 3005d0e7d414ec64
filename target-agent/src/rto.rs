//! When the record stream's silence means a lost piece: a resend timeout that follows the measured
//! round trip (piece queued -> its acknowledgement back), as TCP's (RFC 6298) does.
//!
//! A fixed timeout cannot fit every line: at 2000 bytes/s the 4 KiB the agent keeps in flight take
//! two seconds to cross, so a 500 ms timeout fired while the pieces were merely queued, and every
//! go-back-N resend put the same bytes on the line again: the stream carried a fraction of what
//! the line could. The timer therefore measures one piece at a time (never a resent one: its
//! acknowledgement could answer either copy, Karn's rule), keeps a smoothed round trip and its
//! deviation, and doubles after each timeout until a new measurement comes.

use ktap_protocol::wire::RESEND_TIMEOUT_MS;

/// The longest resend timeout: a piece lost on a line this slow is resent within it.
pub const MAX_RESEND_TIMEOUT_MS: u32 = 8_000;

/// The round-trip estimate and the piece being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendTimer {
    /// Smoothed round trip (ms), once measured.
    srtt: Option<u32>,
    /// Its mean deviation (ms).
    rttvar: u32,
    /// The current timeout (ms).
    rto: u32,
    /// The piece being timed: the stream offset its acknowledgement reaches, and when it was queued.
    timed: Option<(u64, u64)>,
    /// Pieces before this offset were sent more than once (or may have been): never timed.
    fresh_from: u64,
}

impl Default for ResendTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResendTimer {
    /// No measurement yet: the protocol's minimum timeout.
    pub const fn new() -> Self {
        ResendTimer { srtt: None, rttvar: 0, rto: RESEND_TIMEOUT_MS, timed: None, fresh_from: 0 }
    }

    /// The timeout now (ms): no acknowledgement advancing for this long means a lost piece.
    pub fn timeout(&self) -> u64 {
        u64::from(self.rto)
    }

    /// A piece covering `offset..end` was queued at `now`; it is timed when nothing else is and it
    /// was never sent before.
    pub fn sent(&mut self, offset: u64, end: u64, now: u64) {
        if self.timed.is_none() && offset >= self.fresh_from {
            self.timed = Some((end, now));
        }
        self.fresh_from = self.fresh_from.max(end);
    }

    /// The host acknowledged every byte before `next` at `now`: a measurement when that covers the
    /// timed piece.
    pub fn acked(&mut self, next: u64, now: u64) {
        let Some((end, at)) = self.timed else { return };
        if next < end {
            return;
        }
        self.timed = None;
        let sample = u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX);
        let (srtt, rttvar) = match self.srtt {
            None => (sample, sample / 2),
            Some(srtt) => {
                let dev = srtt.abs_diff(sample);
                ((srtt / 8) * 7 + sample / 8, (self.rttvar / 4) * 3 + dev / 4)
            }
        };
        self.srtt = Some(srtt);
        self.rttvar = rttvar;
        self.rto =
            srtt.saturating_add(rttvar.saturating_mul(4)).clamp(RESEND_TIMEOUT_MS, MAX_RESEND_TIMEOUT_MS);
    }

    /// Everything unacknowledged is sent again (a timeout or the host's `Nak`): what is in flight
    /// now has two copies, so no piece before the furthest one sent is timed.
    pub fn rewound(&mut self) {
        self.timed = None;
    }

    /// The timeout expired: wait twice as long before the next one (the line may be slower than
    /// the estimate), until a fresh measurement replaces it.
    pub fn expired(&mut self) {
        self.rto = self.rto.saturating_mul(2).min(MAX_RESEND_TIMEOUT_MS);
    }

    /// A new stream (a new program): offsets start at 0 again; the line's round trip is kept.
    pub fn restart(&mut self) {
        self.timed = None;
        self.fresh_from = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_protocol_minimum() {
        assert_eq!(ResendTimer::new().timeout(), u64::from(RESEND_TIMEOUT_MS));
    }

    #[test]
    fn a_slow_round_trip_raises_the_timeout_above_it() {
        let mut t = ResendTimer::new();
        t.sent(0, 700, 0);
        t.acked(700, 2000);
        assert!(t.timeout() > 2000, "{}", t.timeout());
        assert!(t.timeout() <= u64::from(MAX_RESEND_TIMEOUT_MS));
    }

    #[test]
    fn a_fast_line_keeps_the_minimum() {
        let mut t = ResendTimer::new();
        for i in 0..20u64 {
            t.sent(i * 100, i * 100 + 100, i * 10);
            t.acked(i * 100 + 100, i * 10 + 20);
        }
        assert_eq!(t.timeout(), u64::from(RESEND_TIMEOUT_MS));
    }

    #[test]
    fn only_one_piece_is_timed_and_only_its_acknowledgement_measures() {
        let mut t = ResendTimer::new();
        t.sent(0, 100, 0);
        t.sent(100, 200, 5000); // not timed: the first one is
        t.acked(50, 3000); // does not cover the timed piece
        assert_eq!(t.timeout(), u64::from(RESEND_TIMEOUT_MS));
        t.acked(200, 100);
        assert_eq!(t.timeout(), u64::from(RESEND_TIMEOUT_MS), "a 100 ms trip keeps the minimum");
    }

    #[test]
    fn resent_pieces_are_never_timed() {
        let mut t = ResendTimer::new();
        t.sent(0, 100, 0);
        t.sent(100, 200, 0);
        t.rewound();
        // the same bytes again: an acknowledgement could answer the first copy
        t.sent(0, 100, 4000);
        t.acked(100, 4010);
        assert_eq!(t.timeout(), u64::from(RESEND_TIMEOUT_MS));
        // past what was ever sent: timed again
        t.sent(200, 300, 5000);
        t.acked(300, 7000);
        assert!(t.timeout() > 2000);
    }

    #[test]
    fn timeouts_back_off_to_the_cap_and_a_measurement_resets() {
        let mut t = ResendTimer::new();
        for _ in 0..10 {
            t.expired();
        }
        assert_eq!(t.timeout(), u64::from(MAX_RESEND_TIMEOUT_MS));
        t.sent(0, 10, 0);
        t.acked(10, 30);
        assert_eq!(t.timeout(), u64::from(RESEND_TIMEOUT_MS));
    }

    #[test]
    fn a_huge_sample_is_capped() {
        let mut t = ResendTimer::new();
        t.sent(0, 10, 0);
        t.acked(10, u64::MAX);
        assert_eq!(t.timeout(), u64::from(MAX_RESEND_TIMEOUT_MS));
    }
}
