//! The host simulator: the VM crate the kernel module runs (`ktap-vm`), run on the host against
//! recorded or synthetic events, its records rendered exactly as `push` renders the board's.
//!
//! [`events`] reads the JSON-lines events file, [`env`] answers the VM's context questions from one
//! event, and [`simulate`] is the run loop: `trace_begin`, every event's probes in file order,
//! `trace_end`. Everything is a pure function of the image and the events, so output is
//! deterministic.

pub mod env;
pub mod events;

use std::collections::BTreeMap;

use ktap_protocol::image::{Image, ProbeKind};
use ktap_protocol::record::{self as records, RecordKind};
use ktap_protocol::wire::Stats;
use ktap_vm::{Counters, Program};

use crate::format::Renderer;
use crate::lang::{Resolver, Syscalls};
use crate::session::loss_line;
use crate::sidecar::{Sidecar, SyscallProbe};
use env::EventEnv;
use events::{DEFAULT_TIME_STEP_NS, Event, canonical_probe};

/// A resolver for simulation without a vmlinux: every kernel function and tracepoint exists, and
/// each function gets a fake, nonzero, deterministic address (the simulator never attaches).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyKernel;

impl Resolver for AnyKernel {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        // FNV-1a, kept in a kernel-looking range and never 0.
        let h = sym
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Ok(0xc000_0000 | (h & 0x0fff_fff0))
    }

    fn tracepoint(&self, _subsys: &str, _event: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The simulator's kernel when there is no vmlinux: [`AnyKernel`], whose tracepoint patterns
/// (`trace sched:*`) expand to the tracepoints the events file names.
#[derive(Debug, Clone, Default)]
pub struct EventsKernel {
    /// (subsystem, event) of every `trace SUBSYS:EVENT` probe in the events, sorted, once each.
    pub tracepoints: Vec<(String, String)>,
}

impl EventsKernel {
    /// The tracepoints named by `events`.
    pub fn of(events: &[Event]) -> EventsKernel {
        let mut tracepoints: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| {
                let spec = canonical_probe(&e.probe);
                let (s, ev) = spec.strip_prefix("trace ")?.split_once(':')?;
                Some((s.to_owned(), ev.to_owned()))
            })
            .collect();
        tracepoints.sort();
        tracepoints.dedup();
        EventsKernel { tracepoints }
    }
}

impl Resolver for EventsKernel {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        AnyKernel.kprobe_addr(sym)
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        AnyKernel.tracepoint(subsys, event)
    }

    fn tracepoints_matching(&self, subsys: &str, event: &str) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .tracepoints
            .iter()
            .filter(|(s, e)| crate::lang::glob_match(subsys, s) && crate::lang::glob_match(event, e))
            .cloned()
            .collect())
    }

    /// The calls the events name (`trace syscalls:sys_enter_NAME`), numbered in name order, with a
    /// register layout of the simulator's own: the simulator builds each raw event from the layout
    /// the sidecar records, so any layout gives the same output.
    fn syscalls(&self) -> Result<Syscalls, String> {
        let mut names: Vec<&str> = self
            .tracepoints
            .iter()
            .filter(|(s, _)| s == "syscalls")
            .filter_map(|(_, e)| e.strip_prefix("sys_enter_").or_else(|| e.strip_prefix("sys_exit_")))
            .collect();
        names.sort();
        names.dedup();
        let table = names.iter().enumerate().map(|(i, n)| (i as u32, (*n).to_owned())).collect();
        let args = (0..6).map(|i| (i * 8, 8)).collect();
        Ok(Syscalls { table, args, exit_nr: Some((48, 8)) })
    }
}

/// Where the simulator puts the saved registers of a `syscalls:` event.
const SYSCALL_REGS: u64 = 0xffff_0000_0000;

/// The raw `raw_syscalls` event a `syscalls:` probe sees for a named event `e` of call `nr`: `arg0`
/// points to registers holding the event's `args` (and the number, at exit) where `sc` says,
/// `arg1` is the number (entry) or the event's `retval` (exit).
fn raw_syscall_event(e: &Event, sc: &SyscallProbe, nr: u32) -> Event {
    let end = sc.args.iter().chain(sc.exit_nr.iter()).map(|(o, w)| *o as usize + usize::from(*w)).max();
    let mut regs = vec![0u8; end.unwrap_or(0)];
    let mut put = |off: u32, w: u8, v: i64| {
        let (off, w) = (off as usize, usize::from(w));
        if let Some(d) = regs.get_mut(off..off + w) {
            d.copy_from_slice(&v.to_le_bytes()[..w.min(8)]);
        }
    };
    for (i, (off, w)) in sc.args.iter().enumerate() {
        put(*off, *w, e.args.get(i).copied().unwrap_or(0));
    }
    if let (true, Some((off, w))) = (sc.exit, sc.exit_nr) {
        put(off, w, i64::from(nr));
    }
    let mut raw = e.clone();
    raw.args = vec![SYSCALL_REGS as i64, if sc.exit { e.retval } else { i64::from(nr) }];
    raw.mem.push(events::Memory { addr: SYSCALL_REGS, bytes: regs, user: false });
    raw
}

/// `trace syscalls:sys_enter_openat` -> (exit, "openat").
fn syscall_event(spec: &str) -> Option<(bool, &str)> {
    let ev = spec.strip_prefix("trace syscalls:")?;
    match (ev.strip_prefix("sys_enter_"), ev.strip_prefix("sys_exit_")) {
        (Some(n), _) => Some((false, n)),
        (_, Some(n)) => Some((true, n)),
        _ => None,
    }
}

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `Image::parse` refused the image.
    #[error("image is malformed (code {code:#x}): {msg}")]
    Malformed {
        /// The refusal code.
        code: u16,
        /// Its description.
        msg: String,
    },
    /// The verifier refused the image.
    #[error("image fails the verifier (code {code:#x}): {msg}")]
    Rejected {
        /// The refusal code.
        code: u16,
        /// Its description, with the byte offset.
        msg: String,
    },
    /// `Program::new` could not allocate.
    #[error("cannot allocate the program's memory")]
    Alloc,
}

/// What a simulation printed and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimOutput {
    /// What `push` would print on stdout.
    pub stdout: String,
    /// Problem lines for stderr, without the `ktap: ` prefix: rendering problems, then the VM's loss
    /// counters (the line `push` prints), then events for probes the program does not have.
    pub problems: Vec<String>,
    /// The VM's counters at the end.
    pub counters: Counters,
    /// Hits for each probe spec the program does not have (repeats included), by spec.
    pub unknown: BTreeMap<String, u64>,
}

/// Run `image` (with the `sidecar` that names its probes) against `events`; stacks print as hex.
pub fn simulate(image: &[u8], sidecar: &Sidecar, events: &[Event]) -> Result<SimOutput, SimError> {
    simulate_with(image, sidecar, events, Renderer::new(sidecar))
}

/// [`simulate`] rendering through `renderer` (for stacks symbolized from a vmlinux, as `push` does).
pub fn simulate_with(
    image: &[u8],
    sidecar: &Sidecar,
    events: &[Event],
    mut renderer: Renderer<'_>,
) -> Result<SimOutput, SimError> {
    let img = Image::parse(image).map_err(|e| SimError::Malformed { code: e.code(), msg: e.to_string() })?;
    let v = ktap_vm::verify(&img).map_err(|e| SimError::Rejected { code: e.code(), msg: e.to_string() })?;
    let mut prog = Program::new(v).map_err(|_| SimError::Alloc)?;
    // (kind, func, canonical spec) per probe, in image order.
    let probes: Vec<(ProbeKind, u16, String)> = prog
        .probes()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let spec = sidecar.probes.get(i).map(|s| canonical_probe(&s.spec)).unwrap_or_default();
            (p.kind, p.func, spec)
        })
        .collect();
    let mut by_spec: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    // probes on system calls by name, matched by the call a `trace syscalls:...` event names
    let mut by_call: Vec<(u16, &SyscallProbe)> = Vec::new();
    for (i, (kind, func, spec)) in probes.iter().enumerate() {
        if let Some(sc) = sidecar.probes.get(i).and_then(|p| p.syscalls.as_ref()) {
            by_call.push((*func, sc));
        } else if !matches!(kind, ProbeKind::Begin | ProbeKind::End) {
            by_spec.entry(spec.as_str()).or_default().push(*func);
        }
    }
    let funcs_of = |k: ProbeKind| -> Vec<u16> {
        probes.iter().filter(|(kind, ..)| *kind == k).map(|(_, f, _)| *f).collect()
    };

    let mut out = SimOutput::default();
    let mut records = Vec::new();
    let mut run =
        |prog: &mut Program, func: u16, event: Option<&Event>, time_ns: i64, out: &mut SimOutput| {
            records.clear();
            // An aborted run is counted by the VM and reported with the counters, as in the kernel.
            let _ = prog.run(func, &mut EventEnv { event, time_ns, records: &mut records });
            out.stdout.push_str(&renderer.feed(&records));
            // `exit()`: push stops tracing (trace_end still runs), so the simulation stops too
            records::records(&records).any(|r| r.is_ok_and(|r| r.kind == RecordKind::Exit))
        };

    let start = events.first().map_or(0, |e| e.time_ns);
    let mut exited = false;
    for f in funcs_of(ProbeKind::Begin) {
        exited |= run(&mut prog, f, None, start, &mut out);
    }
    let mut time = start;
    'events: for e in events.iter().take(if exited { 0 } else { events.len() }) {
        let spec = canonical_probe(&e.probe);
        // (handler, the event it sees)
        let mut hits: Vec<(u16, std::borrow::Cow<'_, Event>)> = Vec::new();
        if let Some((exit, name)) = syscall_event(&spec) {
            for (f, sc) in &by_call {
                if let Some((nr, _)) = sc.calls.iter().find(|(_, n)| n == name).filter(|_| sc.exit == exit) {
                    hits.push((*f, std::borrow::Cow::Owned(raw_syscall_event(e, sc, *nr))));
                }
            }
        }
        if let Some(funcs) = by_spec.get(spec.as_str()) {
            hits.extend(funcs.iter().map(|f| (*f, std::borrow::Cow::Borrowed(e))));
        }
        if hits.is_empty() {
            *out.unknown.entry(spec).or_default() += e.repeat;
            continue;
        }
        for i in 0..e.repeat {
            time = e.time_ns.wrapping_add(DEFAULT_TIME_STEP_NS.wrapping_mul(i as i64));
            for (f, ev) in &hits {
                if run(&mut prog, *f, Some(ev), time, &mut out) {
                    break 'events;
                }
            }
        }
    }
    let end = time.wrapping_add(DEFAULT_TIME_STEP_NS);
    for f in funcs_of(ProbeKind::End) {
        run(&mut prog, f, None, end, &mut out);
    }
    out.stdout.push_str(&renderer.finish());
    out.problems = renderer.take_problems();
    out.counters = prog.counters();
    if let Some(line) = counters_problem(out.counters) {
        out.problems.push(line);
    }
    if !out.unknown.is_empty() {
        let n: u64 = out.unknown.values().sum();
        let list: Vec<String> = out.unknown.iter().map(|(s, n)| format!("{s} ({n})")).collect();
        out.problems.push(format!("{n} events for probes the program does not have: {}", list.join(", ")));
    }
    Ok(out)
}

/// The line `push` prints for the VM's loss counters (the same wording: the counters go through the
/// session's [`RunSummary::problems`]); `None` when nothing was lost.
pub fn counters_problem(c: Counters) -> Option<String> {
    let stats = Stats {
        hits: c.hits,
        budget_exhausted: c.budget_exhausted,
        runtime_errors: c.runtime_errors,
        table_full: c.table_full,
        ring_dropped: c.ring_dropped,
        mem_faults: c.mem_faults,
        ..Stats::default()
    };
    loss_line(&stats, Vec::new())
}
