//! Our VM: images from the real compiler (or the shared assembler for what the language cannot say
//! yet), verified, run by the real `Program::run` with an [`Env`] that answers from the hit.

use std::collections::BTreeMap;

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, Resolver};
use ktap_protocol::image::Image;
use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::MAX_STR;
use ktap_protocol::record::{self, Value};
use ktap_vm::{Env, Program, verify};

use crate::{Engine, Hit, Outcome, Ring, Workload, hits};

/// Every kernel function exists, at one plausible ARM address (the benchmark never attaches).
struct AnyKernel;

impl Resolver for AnyKernel {
    fn kprobe_addr(&self, _sym: &str) -> Result<u64, String> {
        Ok(0xc01a_d730)
    }

    fn tracepoint(&self, _subsys: &str, _event: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The script of `w`, or its assembly where the language cannot express it yet.
fn source(w: Workload) -> Source {
    match w {
        Workload::Count => Source::Script("var hits = 0\nkprobe:vfs_read { hits += 1 }\n"),
        Workload::ExecnameCount => Source::Script("var t = {}\nkprobe:vfs_read { t[execname] += 1 }\n"),
        Workload::Printf3 => {
            Source::Script("kprobe:vfs_read { printf(\"%s %d %d\\n\", execname, pid, arg2) }\n")
        }
        // the language has no loops yet: what its `for i in 0..10 { s += i }` will lower to
        Workload::Loop10 => Source::Asm(
            "
            .func fn0 int=3
                movi r0, 0          ; i
                movi r1, 0          ; s
                movi r2, 10
            loop:
                add r1, r1, r0
                addi r0, r0, 1
                jlt r0, r2, loop
                stg g0, r1
                ret
            .globals 1
            .probe p0 kprobe vfs_read @0xc01ad730 -> fn0
            ",
        ),
        // the language has no aggregations yet: what `h[0] <<< arg2` (a log2 table) will lower to;
        // trace_end prints it, which is how the benchmark reads the result back
        Workload::Log2Hist => Source::Asm(
            "
            .func fn0 int=2
                ctx r1, arg2
                movi r0, 0
                tagg t0, (r0), r1
                ret
            .func fn1
                ptable t0
                ret
            .table t0 key=int value=log2 capacity=1
            .probe p0 kprobe vfs_read @0xc01ad730 -> fn0
            .probe p1 end -> fn1
            ",
        ),
    }
}

enum Source {
    Script(&'static str),
    Asm(&'static str),
}

/// The verified, preallocated program for `w`.
pub fn program(w: Workload) -> Program {
    let bytes = match source(w) {
        Source::Script(s) => {
            let opts = CompileOptions { arch: Arch::Arm, build_id: Vec::new() };
            match lang::compile(s, "bench.kp", &opts, &AnyKernel) {
                Ok(c) => c.image,
                Err(d) => panic!("{}: {d:?}", w.name()),
            }
        }
        Source::Asm(a) => {
            ktap_protocol::asm::assemble(a).unwrap_or_else(|e| panic!("{}: {e}", w.name())).image.build()
        }
    };
    let img = Image::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", w.name()));
    let v = verify(&img).unwrap_or_else(|e| panic!("{}: {e}", w.name()));
    Program::new(v).expect("allocation")
}

/// The context of one hit, as the kernel glue gives it (`pt_regs` and `current`).
struct HitEnv<'a> {
    hit: &'a Hit,
    ring: &'a mut Ring,
}

impl Env for HitEnv<'_> {
    fn ctx(&mut self, field: CtxField) -> i64 {
        if let Some(n) = field.arg_index() {
            return self.hit.args.get(usize::from(n)).copied().unwrap_or(0);
        }
        match field {
            CtxField::Pid => self.hit.pid,
            CtxField::Tid => self.hit.tid,
            CtxField::Cpu => self.hit.cpu,
            _ => 0,
        }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        let n = self.hit.comm.len().min(MAX_STR);
        out[..n].copy_from_slice(&self.hit.comm[..n]);
        n
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        self.ring.push(record)
    }
}

/// Our VM loaded with one workload.
pub struct Ours {
    w: Workload,
    prog: Program,
    func: u16,
    ring: Ring,
}

/// Load `w`.
pub fn load(w: Workload) -> Box<dyn Engine> {
    Box::new(Ours::new(w))
}

impl Ours {
    /// Load `w`.
    pub fn new(w: Workload) -> Ours {
        let prog = program(w);
        let func = prog.probes().first().expect("a kprobe").func;
        Ours { w, prog, func, ring: Ring::default() }
    }

    /// One hit (what the benchmark times).
    #[inline]
    pub fn run(&mut self, hit: &Hit) {
        let r = self.prog.run(self.func, &mut HitEnv { hit, ring: &mut self.ring });
        debug_assert!(r.is_ok(), "{r:?}");
    }
}

impl Engine for Ours {
    fn hit(&mut self, h: &Hit) {
        self.run(h);
    }

    fn outcome(&mut self) -> Outcome {
        match self.w {
            Workload::Count | Workload::Loop10 => Outcome::Value(self.prog.globals()[0]),
            Workload::ExecnameCount => {
                let mut m = BTreeMap::new();
                for h in hits() {
                    if let Some(v) = self.prog.table_get_str(0, &h.comm) {
                        m.insert(h.comm.clone(), v);
                    }
                }
                Outcome::PerName(m)
            }
            Workload::Log2Hist => {
                // trace_end's `ptable` emits the histogram as one record, as the host receives it
                let end = self.prog.probes().get(1).expect("an end probe").func;
                let mut ring = Ring::default();
                let none = Hit { comm: Vec::new(), pid: 0, tid: 0, cpu: 0, args: [0; 6] };
                self.prog.run(end, &mut HitEnv { hit: &none, ring: &mut ring }).expect("trace_end runs");
                let r = record::records(ring.first()).next().expect("a record").expect("valid");
                let v: Vec<_> = r.values().map(|v| v.expect("valid")).collect();
                let int = |i: usize| match v[i] {
                    Value::Int(x) => x,
                    ref other => panic!("value {i}: {other:?}"),
                };
                let buckets = v[5].buckets().map(|(b, n)| (usize::from(b), i64::from(n))).collect();
                Outcome::Hist { count: int(1), sum: int(2), min: int(3), max: int(4), buckets }
            }
            Workload::Printf3 => {
                let r = record::records(self.ring.last()).next().expect("a record").expect("valid");
                let v: Vec<_> = r.values().map(|v| v.expect("valid")).collect();
                let (Value::Str(name), Value::Int(pid), Value::Int(arg)) = (v[0], v[1], v[2]) else {
                    panic!("{v:?}")
                };
                Outcome::Records { n: self.ring.records, last: (name.to_vec(), pid, arg) }
            }
        }
    }
}
