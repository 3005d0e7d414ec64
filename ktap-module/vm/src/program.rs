//! A runnable program: the verified code plus all of its memory, allocated once up front.
//!
//! Architecture invariant: [`Program::new`] is the only place that allocates; [`Program::run`] never
//! does, so it is safe in probe context (the kernel glue enforces this at run time too: its allocator
//! refuses to allocate with interrupts off).

use alloc::vec::Vec;

use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::{MAX_FUNCS, MAX_RECORD, MAX_STR};
use ktap_protocol::record::{RecordKind, RecordWriter};

use crate::error::{AllocFailed, RunError};
use crate::fixed::{try_filled, try_push};
use crate::interp::{CallFrame, FrameStack, Machine};
use crate::table::{Comp, Key, Table};
use crate::verified::{ProbeInfo, StrBuf, Verified};

/// What the VM needs from the place it runs in (a probe hit in the kernel, a simulator on the host).
pub trait Env {
    /// The value of a context field for this hit (0 where it does not apply).
    fn ctx(&mut self, field: CtxField) -> i64;
    /// Copy the current task's command name into `out`; returns its length (at most `MAX_STR`).
    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize;
    /// Append one record to the output; `false` if there was no room (the VM counts the drop).
    fn emit(&mut self, record: &[u8]) -> bool;
    /// Copy `out.len()` bytes of kernel memory at `addr` into `out` without faulting (the kernel's
    /// `copy_from_kernel_nofault`); `false` if any byte is unreadable. An environment without kernel
    /// memory reads nothing.
    fn read_kernel(&mut self, addr: u64, out: &mut [u8]) -> bool {
        let _ = (addr, out);
        false
    }
    /// Copy the NUL-terminated string at `addr` (kernel memory, or the current task's user memory if
    /// `user`) into `out` without faulting, at most `out.len()` bytes; its length without the NUL,
    /// or `None` on a fault. An environment without memory reads nothing.
    fn read_str(&mut self, user: bool, addr: u64, out: &mut [u8]) -> Option<usize> {
        let _ = (user, addr, out);
        None
    }
    /// Write the kernel return addresses of this hit, innermost first, into `out`; how many. The
    /// environment leaves out its own frames (the probe and VM machinery).
    fn kstack(&mut self, out: &mut [u64]) -> usize {
        let _ = out;
        0
    }
}

/// Event counters of a program since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs started (probe hits that reached the VM).
    pub hits: u64,
    /// Runs aborted for lack of budget.
    pub budget_exhausted: u64,
    /// Runs aborted by another error (a bad function index or a VM fault).
    pub runtime_errors: u64,
    /// Table inserts refused because the table was full.
    pub table_full: u64,
    /// Records the environment had no room for.
    pub ring_dropped: u64,
    /// Kernel or user memory reads that faulted (they read 0 or "").
    pub mem_faults: u64,
}

/// A verified program with its globals, tables, register frame and record buffer.
#[derive(Debug)]
pub struct Program {
    pub(crate) v: Verified,
    /// Globals, tables, registers, the record buffer and the counters.
    pub(crate) m: Machine,
    pub(crate) frames: FrameStack,
    /// The program ran `exit`: only the END handler runs from now on.
    pub(crate) exited: bool,
    /// Functions (bit per index) whose budget exhaustion has been reported with a record.
    budget_reported: [u64; BUDGET_REPORT_WORDS],
}

/// Words of [`Program::budget_reported`]: one bit per possible function.
const BUDGET_REPORT_WORDS: usize = (MAX_FUNCS as usize).div_ceil(64);

impl Program {
    /// Allocate everything the program will ever use. Only fallible allocation is used.
    pub fn new(v: Verified) -> Result<Program, AllocFailed> {
        let mut tables = Vec::new();
        tables.try_reserve_exact(v.tables.len()).map_err(|_| AllocFailed)?;
        for spec in &v.tables {
            try_push(&mut tables, Table::new(spec)?)?;
        }
        Ok(Program {
            m: Machine::new(
                try_filled(v.stack_int.max(1), 0)?,
                try_filled(v.stack_str.max(1), StrBuf::EMPTY)?,
                try_filled(v.globals.into(), 0)?,
                tables,
                try_filled(MAX_RECORD, 0)?,
            ),
            frames: [CallFrame::default(); ktap_protocol::limits::MAX_CALL_DEPTH],
            exited: false,
            budget_reported: [0; BUDGET_REPORT_WORDS],
            v,
        })
    }

    /// Run function `func` for one hit. Never allocates. An error abandons this hit only (it is
    /// counted); the program stays usable.
    ///
    /// After the program ran `exit`, only the END handler still runs; other hits return at once
    /// (not counted as hits).
    pub fn run(&mut self, func: u16, env: &mut impl Env) -> Result<(), RunError> {
        if self.exited && self.v.end_func() != Some(func) {
            return Ok(());
        }
        let c = &mut self.m.counters;
        c.hits = c.hits.wrapping_add(1);
        let r = self.exec(func, env);
        let c = &mut self.m.counters;
        match r {
            Ok(()) => {}
            Err(RunError::BudgetExhausted) => {
                c.budget_exhausted = c.budget_exhausted.wrapping_add(1);
                self.report_budget(func, env);
            }
            Err(_) => c.runtime_errors = c.runtime_errors.wrapping_add(1),
        }
        r
    }

    /// The first budget exhaustion of handler `func` becomes a record naming it (so the host can
    /// say which probe), later ones are only counted. A record the environment has no room for is
    /// counted as dropped and tried again on the next exhaustion.
    fn report_budget(&mut self, func: u16, env: &mut impl Env) {
        let (word, bit) = (usize::from(func) / 64, 1u64 << (func % 64));
        let Some(w) = self.budget_reported.get_mut(word) else { return };
        if *w & bit != 0 {
            return;
        }
        let sent = RecordWriter::new(&mut self.m.rec, RecordKind::BudgetExhausted, func)
            .finish()
            .is_some_and(|bytes| env.emit(bytes));
        if sent {
            *w |= bit;
        } else {
            self.m.counters.ring_dropped = self.m.counters.ring_dropped.wrapping_add(1);
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.m.counters
    }

    /// The probes to attach, in image order.
    pub fn probes(&self) -> &[ProbeInfo] {
        self.v.probes()
    }

    /// The verified program this runs.
    pub fn verified(&self) -> &Verified {
        &self.v
    }

    /// Current values of the integer globals.
    pub fn globals(&self) -> &[i64] {
        &self.m.globals
    }

    /// Number of entries in table `t`.
    pub fn table_len(&self, t: u8) -> Option<usize> {
        self.m.tables.get(usize::from(t)).map(Table::len)
    }

    /// Whether the program ran `exit`.
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// `table[key]` of an int-keyed table `t` (the first value slot: the count, for aggregates).
    pub fn table_get_int(&self, t: u8, key: i64) -> Option<i64> {
        self.m.tables.get(usize::from(t))?.get(&Key::one(Comp::Int(key)))?.first().copied()
    }

    /// `table[key]` of a string-keyed table `t` (the first value slot).
    pub fn table_get_str(&self, t: u8, key: &[u8]) -> Option<i64> {
        self.m.tables.get(usize::from(t))?.get(&Key::one(Comp::Str(key)))?.first().copied()
    }
}
