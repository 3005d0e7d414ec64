//! A runnable program: the verified code plus all of its memory, allocated once up front.
//!
//! Architecture invariant: [`Program::new`] is the only place that allocates; [`Program::run`] never
//! does, so it is safe in probe context (the kernel glue enforces this at run time too: its allocator
//! refuses to allocate with interrupts off).

use alloc::vec::Vec;

use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::{MAX_INT_REGS, MAX_RECORD, MAX_STR, MAX_STR_REGS};

use crate::error::{AllocFailed, RunError};
use crate::fixed::{try_filled, try_push};
use crate::table::{Key, Table};
use crate::verified::{ProbeInfo, StrBuf, Verified};

/// What the VM needs from the place it runs in (a probe hit in the kernel, a simulator on the host).
pub trait Env {
    /// The value of a context field for this hit (0 where it does not apply).
    fn ctx(&mut self, field: CtxField) -> i64;
    /// Copy the current task's command name into `out`; returns its length (at most `MAX_STR`).
    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize;
    /// Append one record to the output; `false` if there was no room (the VM counts the drop).
    fn emit(&mut self, record: &[u8]) -> bool;
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
}

/// A verified program with its globals, tables, register frame and record buffer.
#[derive(Debug)]
pub struct Program {
    pub(crate) v: Verified,
    pub(crate) globals: Vec<i64>,
    pub(crate) tables: Vec<Table>,
    pub(crate) regs: Vec<i64>,
    pub(crate) sregs: Vec<StrBuf>,
    pub(crate) rec: Vec<u8>,
    pub(crate) counters: Counters,
}

impl Program {
    /// Allocate everything the program will ever use. Only fallible allocation is used.
    pub fn new(v: Verified) -> Result<Program, AllocFailed> {
        let mut tables = Vec::new();
        tables.try_reserve_exact(v.tables.len()).map_err(|_| AllocFailed)?;
        for spec in &v.tables {
            try_push(&mut tables, Table::new(spec)?)?;
        }
        Ok(Program {
            globals: try_filled(v.globals.into(), 0)?,
            tables,
            regs: try_filled(MAX_INT_REGS.into(), 0)?,
            sregs: try_filled(MAX_STR_REGS.into(), StrBuf::EMPTY)?,
            rec: try_filled(MAX_RECORD, 0)?,
            counters: Counters::default(),
            v,
        })
    }

    /// Run function `func` for one hit. Never allocates. An error abandons this hit only (it is
    /// counted); the program stays usable.
    pub fn run(&mut self, func: u16, env: &mut impl Env) -> Result<(), RunError> {
        let c = &mut self.counters;
        c.hits = c.hits.wrapping_add(1);
        let r = self.exec(func, env);
        let c = &mut self.counters;
        match r {
            Ok(()) => {}
            Err(RunError::BudgetExhausted) => c.budget_exhausted = c.budget_exhausted.wrapping_add(1),
            Err(_) => c.runtime_errors = c.runtime_errors.wrapping_add(1),
        }
        r
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
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
        &self.globals
    }

    /// Number of entries in table `t`.
    pub fn table_len(&self, t: u8) -> Option<usize> {
        self.tables.get(usize::from(t)).map(Table::len)
    }

    /// `table[key]` of an int-keyed table `t`.
    pub fn table_get_int(&self, t: u8, key: i64) -> Option<i64> {
        self.tables.get(usize::from(t))?.get(Key::Int(key))
    }

    /// `table[key]` of a string-keyed table `t`.
    pub fn table_get_str(&self, t: u8, key: &[u8]) -> Option<i64> {
        self.tables.get(usize::from(t))?.get(Key::Str(key))
    }
}
