//! The simulator's [`Env`]: the context of one event, and a growing buffer of the records emitted.

use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::MAX_STR;
use ktap_vm::Env;

use super::events::Event;

/// One hit: answers context questions from `event` and keeps every record (the host has no ring to
/// overflow, so `emit` never drops).
#[derive(Debug)]
pub struct EventEnv<'e> {
    /// The event being run; `None` for `trace_begin` and `trace_end` (every field 0, comm empty).
    pub event: Option<&'e Event>,
    /// Monotonic time for this run.
    pub time_ns: i64,
    /// Concatenated records, as the kernel ring would hold them.
    pub records: &'e mut Vec<u8>,
}

impl Env for EventEnv<'_> {
    fn ctx(&mut self, field: CtxField) -> i64 {
        if field == CtxField::TimeNs {
            return self.time_ns;
        }
        let Some(e) = self.event else { return 0 };
        if let Some(n) = field.arg_index() {
            return e.args.get(usize::from(n)).copied().unwrap_or(0);
        }
        match field {
            CtxField::Pid => e.pid,
            CtxField::Tid => e.tid,
            CtxField::Cpu => e.cpu,
            CtxField::Uid => e.uid,
            CtxField::Retval => e.retval,
            CtxField::WallNs => e.wall_ns,
            CtxField::NumCpus => e.num_cpus,
            CtxField::InInterrupt => i64::from(e.in_interrupt),
            _ => 0,
        }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        let Some(e) = self.event else { return 0 };
        let n = e.comm.len().min(MAX_STR);
        out[..n].copy_from_slice(&e.comm.as_bytes()[..n]);
        n
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        self.records.extend_from_slice(record);
        true
    }

    fn read_kernel(&mut self, addr: u64, out: &mut [u8]) -> bool {
        match self.read(false, addr, out.len()) {
            Some(b) => {
                out.copy_from_slice(b);
                true
            }
            None => false,
        }
    }

    fn read_str(&mut self, user: bool, addr: u64, out: &mut [u8]) -> Option<usize> {
        // byte by byte, like the kernel's page-piece copies: a string may end right before a hole
        for (i, d) in out.iter_mut().enumerate() {
            let b = *self.read(user, addr.wrapping_add(i as u64), 1)?.first()?;
            if b == 0 {
                return Some(i);
            }
            *d = b;
        }
        Some(out.len())
    }

    fn kstack(&mut self, out: &mut [u64]) -> usize {
        let Some(e) = self.event else { return 0 };
        let n = out.len().min(e.stack.len());
        out[..n].copy_from_slice(&e.stack[..n]);
        n
    }
}

impl EventEnv<'_> {
    /// `len` bytes at `addr` from the event's memory, if one piece holds them all.
    fn read(&self, user: bool, addr: u64, len: usize) -> Option<&[u8]> {
        self.event?.mem.iter().find_map(|m| m.read(user, addr, len))
    }
}
