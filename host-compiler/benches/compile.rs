//! Compile time per sample: parse, check, generate, assemble and verify each `samples/*.kp`
//! against a kernel where every symbol exists (no vmlinux I/O, so the figure is the compiler's).
//! `cargo bench -p ktap-host --bench compile`; results go to docs/benchmarks.md.
// criterion's macros generate undocumented items
#![allow(missing_docs)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions};
use ktap_host::sim::AnyKernel;

fn samples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("samples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kp"))
        .map(|p| {
            let name = p.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("sample readable"))
        })
        .collect();
    v.sort();
    v
}

fn compile(c: &mut Criterion) {
    let opts = CompileOptions { arch: Arch::Arm, build_id: vec![0; 20] };
    let mut g = c.benchmark_group("compile");
    for (name, src) in samples() {
        // a tracepoint pattern needs a kernel that lists its events: such samples are left out
        if lang::compile(&src, "s.kp", &opts, &AnyKernel).is_err() {
            eprintln!("compile/{name}: left out (needs a vmlinux)");
            continue;
        }
        g.bench_function(&name, |b| {
            b.iter(|| {
                let r = lang::compile(std::hint::black_box(&src), "s.kp", &opts, &AnyKernel);
                std::hint::black_box(r.is_ok())
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = compile
}
criterion_main!(benches);
