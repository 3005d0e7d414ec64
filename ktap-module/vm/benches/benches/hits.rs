//! ns per probe hit: our VM, rbpf (eBPF) and Lua 5.4 on the five canonical programs of issue 4.
//! Criterion ids are `<workload>/<engine>`; `cargo xtask bench` reads the estimates and prints ratios.
// criterion_group! defines an undocumented `pub fn`
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ktap_vm_bench::{Workload, ebpf::Rbpf, hits, lua::LuaEngine, ours::Ours};

fn per_hit(c: &mut Criterion) {
    let hs = hits();
    for w in Workload::ALL {
        let mut g = c.benchmark_group(w.name());
        let mut i = 0usize;
        let mut next = || {
            i = (i + 1) % hs.len();
            black_box(&hs[i])
        };
        let mut ours = Ours::new(w);
        g.bench_function("ktap", |b| b.iter(|| ours.run(next())));
        let mut ebpf = Rbpf::new(w);
        g.bench_function("rbpf", |b| b.iter(|| ebpf.run(next())));
        let mut lua = LuaEngine::new(w);
        g.bench_function("lua", |b| b.iter(|| lua.run(next())));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // short windows: 15 benchmarks in well under a minute on two cores
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = per_hit
}
criterion_main!(benches);
