//! Symbol speed against Debian's 244 MB armmp `-dbg` vmlinux: the cold DWARF index (first query on
//! a new kernel), a cached query (every later compile), and `pahole -C` for the same structs in the
//! same run. `cargo bench -p ktap-host --bench symbols`; figures go to docs/benchmarks.md.
//!
//! Each measured iteration is what a `ktap-host` run does: open the vmlinux, answer the sample
//! queries: lazily (what every compile does, cache or not), or from the whole index read from the
//! cache (what a run does after a question that needed every name).

// the tests' way of finding the kernel (`KTAP_VMLINUX`, else the kernel cache)
#[path = "../tests/symbols/mod.rs"]
mod symbols;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::Criterion;
use ktap_host::ktypes::Shape;
use ktap_host::lang::Resolver;
use ktap_host::vmlinux::Vmlinux;

/// The sample corpus: what scripts ask about most.
const STRUCTS: [&str; 3] = ["sk_buff", "task_struct", "file"];
const FUNCS: [&str; 3] = ["do_sys_openat2", "vfs_read", "tcp_sendmsg"];
/// Structs defined only in units late in the link order.
const LATE_STRUCTS: [&str; 1] = ["tcp_sock"];

/// One compile's worth of symbol work: open, index, the parameters of the sample functions and the
/// member chains scripts follow (`arg.file->f_path.dentry->d_name.name`, `task->comm`).
fn queries(path: &Path, cache: Option<&Path>) -> Vmlinux {
    let mut v = Vmlinux::open(path).expect("open vmlinux");
    v.set_cache_dir(cache.map(Path::to_owned));
    if cache.is_some() {
        // answer from the whole (cached) index, as after a question that needed every name
        assert!(v.prepare_types().expect("index"), "cache hit");
    }
    for f in FUNCS {
        std::hint::black_box(v.function_info(f).expect("function"));
    }
    let mut ty = v.type_named("struct file").expect("struct file");
    for m in ["f_path", "dentry", "d_name", "name"] {
        ty = v.member(&ty, m).expect("member").ty;
        if let Ok(Shape::Ptr { to }) = v.shape(&ty) {
            ty = to;
        }
    }
    let task = v.type_named("struct task_struct").expect("task_struct");
    std::hint::black_box(v.member(&task, "comm").expect("comm"));
    v
}

/// `symbols type` for every sample struct: whole layouts (every member's type spelled).
fn layouts(v: &Vmlinux) {
    for s in STRUCTS {
        let ty = v.type_named(&format!("struct {s}")).expect("struct");
        std::hint::black_box(v.layout(ty).expect("layout"));
    }
}

/// One `ktap-host symbols type NAME` process with cache root `cache`.
fn symbols_type(host: &str, cache: &Path, vmlinux: &Path, name: &str) {
    let o = Command::new(host)
        .env("KTAP_CACHE", cache)
        .args(["symbols", "--vmlinux"])
        .arg(vmlinux)
        .args(["type", name])
        .output()
        .expect("ktap-host");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A script asking what compiles usually ask: argument names and types, a member chain through
/// pointers, a tracepoint's arguments.
const SAMPLE: &str = "kprobe:vfs_read {\n    printf(\"%s %d\\n\", arg.file->f_path.dentry->d_name.name, arg.count)\n}\n\
kprobe:do_sys_openat2 {\n    printf(\"%s\\n\", arg.filename)\n}\n\
trace sched:sched_process_fork {\n    printf(\"%s\\n\", arg.parent->comm)\n}\n";

/// One `ktap-host compile` of `script` for qemu-armv7 (`KTAP_BACKGROUND_INDEX` as given).
fn compile(host: &str, cache: &Path, vmlinux: &Path, script: &Path, background: &str) {
    let boards = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards");
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let o = Command::new(host)
        .env("KTAP_CACHE", cache)
        .env("KTAP_BACKGROUND_INDEX", background)
        .args(["compile", "--board", "qemu-armv7", "--boards-dir", boards, "--vmlinux"])
        .arg(vmlinux)
        .arg(script)
        .arg("-o")
        .arg(out.path())
        .output()
        .expect("ktap-host");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn main() {
    let Some(path) = symbols::armmp_vmlinux() else {
        eprintln!("symbols bench: no armmp -dbg vmlinux (run `cargo xtask setup`): skipped");
        return;
    };
    let mut c = Criterion::default().configure_from_args();
    let cache = tempfile::tempdir().expect("temp dir");
    {
        // fill the cache
        let mut v = Vmlinux::open(&path).expect("open vmlinux");
        v.set_cache_dir(Some(cache.path().to_owned()));
        v.prepare_types().expect("index");
    }
    let mut g = c.benchmark_group("symbols");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    g.bench_function("open (ELF symbols only)", |b| b.iter(|| Vmlinux::open(&path).expect("open")));
    g.bench_function("open + cached index", |b| {
        b.iter(|| {
            let mut v = Vmlinux::open(&path).expect("open");
            v.set_cache_dir(Some(cache.path().to_owned()));
            assert!(v.prepare_types().expect("index"));
        })
    });
    g.bench_function("cold: compile queries, lazy (no cache)", |b| {
        b.iter(|| {
            let v = queries(&path, None);
            assert!(!v.has_full_index(), "the sample needs no whole index");
        })
    });
    g.bench_function("cold: layouts of sk_buff, task_struct, file, lazy (no cache)", |b| {
        b.iter(|| layouts(&queries(&path, None)))
    });
    g.bench_function("cached whole index: compile queries (in process)", |b| {
        b.iter(|| queries(&path, Some(cache.path())))
    });
    g.bench_function("cached whole index: layouts of sk_buff, task_struct, file (in process)", |b| {
        b.iter(|| layouts(&queries(&path, Some(cache.path()))))
    });
    let host = env!("CARGO_BIN_EXE_ktap-host");
    let empty = tempfile::tempdir().expect("temp dir");
    for (row, dir) in [("no cache", empty.path()), ("cache filled", cache.path())] {
        g.bench_function(format!("ktap-host symbols type 'struct sk_buff' ({row}, process)"), |b| {
            b.iter(|| symbols_type(host, dir, &path, "struct sk_buff"))
        });
    }
    // A compile of the sample script, whole process: the first against a kernel (no cache; the
    // background builder off so every iteration stays first) and a later one (the cache the
    // background builder leaves, here filled above).
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(script.path(), SAMPLE).expect("script");
    for (row, dir, background) in
        [("first, no cache", empty.path(), "0"), ("later, cache filled", cache.path(), "1")]
    {
        g.bench_function(format!("ktap-host compile, sample script ({row}, process)"), |b| {
            b.iter(|| compile(host, dir, &path, script.path(), background))
        });
    }
    if Command::new("pahole").arg("--version").output().is_ok() {
        let list = STRUCTS.join(",");
        g.bench_function("pahole -F dwarf -C sk_buff,task_struct,file (process)", |b| {
            b.iter(|| {
                let o = Command::new("pahole")
                    .args(["-F", "dwarf", "-C", &list])
                    .arg(&path)
                    .output()
                    .expect("pahole");
                assert!(o.status.success() && !o.stdout.is_empty());
            })
        });
        g.bench_function("pahole -F dwarf -C sk_buff (process)", |b| {
            b.iter(|| {
                let o = Command::new("pahole")
                    .args(["-F", "dwarf", "-C", "sk_buff"])
                    .arg(&path)
                    .output()
                    .expect("pahole");
                assert!(o.status.success() && !o.stdout.is_empty());
            })
        });
    } else {
        eprintln!("symbols bench: pahole (dwarves) is not installed: its rows are skipped");
    }
    g.finish();
    let mut g = c.benchmark_group("symbols-full");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    g.bench_function("whole index build (2 threads over 3 000 units)", |b| {
        b.iter(|| {
            let mut v = Vmlinux::open(&path).expect("open");
            v.set_cache_dir(None);
            v.rebuild_type_index().expect("index");
        })
    });
    g.finish();
    c.final_summary();
    // pahole stops at the first unit defining the struct: fast for structs early in the link order,
    // slow for late ones; too slow for criterion's ten samples, so three timed runs each.
    if Command::new("pahole").arg("--version").output().is_ok() {
        for s in LATE_STRUCTS {
            let mut runs: Vec<Duration> = (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let o = Command::new("pahole")
                        .args(["-F", "dwarf", "-C", s])
                        .arg(&path)
                        .output()
                        .expect("pahole");
                    assert!(o.status.success() && !o.stdout.is_empty());
                    t.elapsed()
                })
                .collect();
            runs.sort();
            println!("symbols/pahole -F dwarf -C {s} (process): median of 3 {:?}", runs[1]);
            let t = std::time::Instant::now();
            symbols_type(host, cache.path(), &path, &format!("struct {s}"));
            println!("symbols/ktap-host symbols type 'struct {s}' (cached, process): {:?}", t.elapsed());
            // no cache: past the lazy share of the units, the whole index is built (and cached)
            let cold = tempfile::tempdir().expect("temp dir");
            let t = std::time::Instant::now();
            symbols_type(host, cold.path(), &path, &format!("struct {s}"));
            println!("symbols/ktap-host symbols type 'struct {s}' (no cache, process): {:?}", t.elapsed());
        }
    }
}
