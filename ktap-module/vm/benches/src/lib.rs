//! Speed of the ktap VM per probe hit, against two peers doing the same work: hand-written eBPF run by
//! `rbpf`'s interpreter, and Lua 5.4 (`mlua`, vendored). `benches/hits.rs` times one hit of each
//! [`Workload`] in each [`Engine`]; `cargo xtask bench` runs it and prints the ratios.
//!
//! What makes the comparison fair (the same work, each engine the way it works in a kernel):
//! - Every engine sees the same [`Hit`]s (eight tasks, varying pids and arguments, cycled) and writes
//!   records into the same kind of [`Ring`] (a preallocated byte ring, as the kernel's).
//! - Ours runs the real `Program::run` on images from the real compiler (`lang::compile`) or, for what
//!   the language cannot say yet, the shared assembler, with an [`Env`](ktap_vm::Env) that answers from
//!   the hit like the kernel glue answers from `pt_regs` and `current`.
//! - eBPF gets its context the kernel's way: arguments are loads from the context (`pt_regs`), pid and
//!   command name come from helpers, maps are helpers in native code (as `bpf_map_lookup_elem` is in
//!   the kernel) returning pointers the program loads and stores through, globals are direct pointers
//!   (libbpf's `.bss`), and output is a helper copying a stack struct into the ring
//!   (`bpf_perf_event_output`). The helper maps are fixed-capacity open-addressing tables with the same
//!   hash as ours, so the peer pays no more for lookups than our VM does.
//! - Lua calls one Rust function per context value and per record, as an embedded Lua handler would.
//! - [`tests`] run every workload in every engine and check they all end with the same state.

use std::collections::BTreeMap;

pub mod ebpf;
mod hit;
pub mod lua;
pub mod ours;

pub use hit::{Hit, Ring, hits};

/// The five canonical probe programs of issue 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `hits += 1`.
    Count,
    /// `t[execname] += 1`.
    ExecnameCount,
    /// A log2 histogram (with count, sum, min, max) of `arg2`.
    Log2Hist,
    /// A 10-iteration loop summing 0..10 into a global.
    Loop10,
    /// `printf("%s %d %d\n", execname, pid, arg2)`: one record with three values.
    Printf3,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 5] =
        [Workload::Count, Workload::ExecnameCount, Workload::Log2Hist, Workload::Loop10, Workload::Printf3];

    /// Short name for reports and criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Count => "count",
            Workload::ExecnameCount => "execname_count",
            Workload::Log2Hist => "log2_hist",
            Workload::Loop10 => "loop10",
            Workload::Printf3 => "printf3",
        }
    }
}

/// What a workload leaves behind, compared across engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A counter or a global.
    Value(i64),
    /// Command name -> count.
    PerName(BTreeMap<Vec<u8>, i64>),
    /// A log2 histogram with its statistics.
    Hist {
        /// Values recorded.
        count: i64,
        /// Their sum.
        sum: i64,
        /// The smallest.
        min: i64,
        /// The largest.
        max: i64,
        /// The nonzero buckets.
        buckets: BTreeMap<usize, i64>,
    },
    /// Records written.
    Records {
        /// How many.
        n: u64,
        /// The values of the last one: name, pid, argument.
        last: (Vec<u8>, i64, i64),
    },
}

/// One of the compared interpreters, loaded with one workload.
pub trait Engine {
    /// Run the handler for one probe hit.
    fn hit(&mut self, h: &Hit);
    /// The state the hits so far left behind.
    fn outcome(&mut self) -> Outcome;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut e: Box<dyn Engine>, n: usize) -> Outcome {
        let hs = hits();
        for i in 0..n {
            e.hit(&hs[i % hs.len()]);
        }
        e.outcome()
    }

    #[test]
    fn every_engine_does_the_same_work() {
        for w in Workload::ALL {
            let ours = run(ours::load(w), 1000);
            assert_eq!(ours, run(ebpf::load(w), 1000), "{} ours vs ebpf", w.name());
            assert_eq!(ours, run(lua::load(w), 1000), "{} ours vs lua", w.name());
        }
    }

    #[test]
    fn the_workload_is_not_trivial() {
        let o = run(lua::load(Workload::ExecnameCount), 1000);
        let Outcome::PerName(m) = o else { panic!("{o:?}") };
        assert_eq!(m.len(), 8);
        assert_eq!(m.values().sum::<i64>(), 1000);
        let Outcome::Hist { buckets, count, .. } = run(lua::load(Workload::Log2Hist), 1000) else { panic!() };
        assert!(buckets.len() > 5 && count == 1000, "{buckets:?}");
    }
}
