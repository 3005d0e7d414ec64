//! The agent's session clock: monotonic time minus the stretches the agent was not running.
//!
//! The heartbeat ends a session when the host has been silent for `HEARTBEAT_TIMEOUT_MS`. Silence
//! is only evidence of a dead host while the agent itself was awake to hear it: when the whole
//! board stops (CPU hotplug runs `stop_machine`; an emulated board on a loaded host is descheduled
//! for seconds), the host's pings pile up in the UART and in the host's pty, and the agent wakes to
//! a clock that jumped past the timeout before the serial driver has handed it a single byte.
//!
//! The event loop waits at most a known time per turn (its poll timeout). A turn that took longer
//! than that plus [`LATE_SLACK_MS`] means the agent was not scheduled for the excess; that excess is
//! left out of the session clock. A host that really died is still noticed: every turn advances the
//! session clock by at least the poll timeout, so the heartbeat expires after at most about
//! `HEARTBEAT_TIMEOUT_MS / poll timeout` turns of an awake agent.

/// Lateness up to this much per turn is ordinary scheduling jitter and counts as time heard.
pub const LATE_SLACK_MS: u64 = 50;

/// Monotonic milliseconds with the agent's unscheduled stretches taken out.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwakeClock {
    /// The monotonic reading of the previous turn (`None` before the first).
    last: Option<u64>,
    /// Milliseconds left out so far.
    lost: u64,
}

impl AwakeClock {
    /// A clock that has not been read yet.
    pub const fn new() -> AwakeClock {
        AwakeClock { last: None, lost: 0 }
    }

    /// The session time for the monotonic reading `real`, taken after a turn of the event loop that
    /// should have waited at most `max_wait_ms`. Never goes backwards.
    pub fn observe(&mut self, real: u64, max_wait_ms: u64) -> u64 {
        if let Some(last) = self.last {
            let turn = real.saturating_sub(last);
            if turn > max_wait_ms.saturating_add(LATE_SLACK_MS) {
                self.lost = self.lost.saturating_add(turn.saturating_sub(max_wait_ms));
            }
        }
        self.last = Some(self.last.map_or(real, |l| l.max(real)));
        self.now()
    }

    /// The session time of the last reading.
    pub fn now(&self) -> u64 {
        self.last.unwrap_or(0).saturating_sub(self.lost)
    }

    /// Milliseconds left out so far (time the agent was not running).
    pub fn lost_ms(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use ktap_protocol::wire::HEARTBEAT_TIMEOUT_MS;

    use super::*;

    const POLL: u64 = 100;

    #[test]
    fn ordinary_turns_pass_unchanged() {
        let mut c = AwakeClock::new();
        assert_eq!(c.observe(5_000, POLL), 5_000);
        // early wake-ups, full timeouts and jitter within the slack all count
        for (real, want) in [(5_010, 5_010), (5_110, 5_110), (5_250, 5_250), (5_300, 5_300)] {
            assert_eq!(c.observe(real, POLL), want);
        }
        assert_eq!(c.lost_ms(), 0);
    }

    #[test]
    fn a_stall_is_left_out_but_only_its_excess() {
        let mut c = AwakeClock::new();
        c.observe(1_000, POLL);
        // the board stopped for 3 s inside one poll: only the poll's own 100 ms counts
        assert_eq!(c.observe(4_100, POLL), 1_100);
        assert_eq!(c.lost_ms(), 3_000);
        assert_eq!(c.observe(4_150, POLL), 1_150);
        // a reading that goes backwards (it must not, but) never moves the clock back
        assert_eq!(c.observe(4_000, POLL), 1_150);
    }

    #[test]
    fn a_dead_host_is_still_noticed_by_an_awake_agent() {
        // the host's last message at session time 0; the agent keeps waking every poll timeout
        let mut c = AwakeClock::new();
        let mut real = 10_000;
        c.observe(real, POLL);
        let start = c.now();
        let mut turns = 0;
        while c.now() - start < u64::from(HEARTBEAT_TIMEOUT_MS) {
            real += POLL + LATE_SLACK_MS; // as late as it may be and still count in full
            c.observe(real, POLL);
            turns += 1;
        }
        assert_eq!(turns, u64::from(HEARTBEAT_TIMEOUT_MS).div_ceil(POLL + LATE_SLACK_MS));
        // even stalls between turns delay the timeout by the stalls only, never forever
        let mut c = AwakeClock::new();
        let mut real = 0;
        c.observe(real, POLL);
        for _ in 0..12 {
            real += 5_000;
            c.observe(real, POLL);
        }
        assert!(c.now() >= u64::from(HEARTBEAT_TIMEOUT_MS));
    }
}
