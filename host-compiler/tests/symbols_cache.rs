//! The whole-index cache a first lazy compile leaves behind (docs/symbols.md): `check` starts a
//! detached builder, which stores the index where the next run finds it; concurrent builders build
//! once and every stored file reads back to the same answers. Run on the small x86_64 fixture ELF
//! of `symbols/abi.c` (built here with the host's gcc), so the whole index takes moments.

mod symbols;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ktap_host::ktypes::ParamsOf;
use ktap_host::lang::Resolver;
use ktap_host::vmlinux::Vmlinux;
use ktap_host::vmlinux::query::IndexCache;

const HOST: &str = env!("CARGO_BIN_EXE_ktap-host");

/// The fixture kernel: `symbols/abi.c` with DWARF, `_text` and a build-id.
fn fixture(dir: &Path) -> PathBuf {
    let out = dir.join("kernel.elf");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/symbols/abi.c");
    let o = Command::new("cc")
        .args(["-g", "-O2", "-nostdlib", "-static", "-fno-stack-protector", "-Wl,--build-id", "-Wl,-e,_text"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("cc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn index_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("symbols");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    v.sort();
    v
}

fn open(elf: &Path, cache: Option<&Path>) -> Vmlinux {
    let mut v = Vmlinux::open(elf).unwrap();
    v.set_cache_dir(cache.map(Path::to_path_buf));
    v
}

/// What a compile asks of the kernel's DWARF.
fn answers(v: &Vmlinux) -> Vec<String> {
    let p = v.params(ParamsOf::Function("ptr")).unwrap();
    let ty = v.type_named("struct pt").unwrap();
    vec![format!("{p:?}"), v.type_name(&p[0].ty), format!("{:?}", v.layout(ty).unwrap())]
}

#[test]
fn a_lazy_check_leaves_a_whole_index_behind_without_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let elf = fixture(dir.path());
    let cache = dir.path().join("cache");
    let script = dir.path().join("s.kp");
    std::fs::write(&script, "kprobe:ptr {\n    printf(\"%d\\n\", arg.p->y)\n}\n").unwrap();
    let boards = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards");
    let o = Command::new(HOST)
        .env("KTAP_CACHE", &cache)
        .env_remove("KTAP_BACKGROUND_INDEX")
        .args(["check", "--board", "qemu-x86_64", "--boards-dir", boards, "--vmlinux"])
        .arg(&elf)
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The builder runs on after `check` exited; wait for its file (bounded: a failure, not a hang).
    let deadline = Instant::now() + Duration::from_secs(120);
    while index_files(&cache).is_empty() {
        assert!(Instant::now() < deadline, "no index was cached under {}", cache.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let cached = open(&elf, Some(&cache));
    assert!(cached.prepare_types().unwrap(), "the next run reads the whole index from the cache");
    assert!(cached.has_full_index());
    assert!(!cached.index_cache_wanted(), "nothing left to build");
    assert_eq!(answers(&cached), answers(&open(&elf, None)), "the cache changes no answer");

    // the foreground form says so
    let o = Command::new(HOST)
        .env("KTAP_CACHE", &cache)
        .args(["symbols", "--json", "--vmlinux"])
        .arg(&elf)
        .arg("index")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "{\n  \"index\": \"cached\"\n}");
}

#[test]
fn a_lazy_query_wants_the_cache_and_concurrent_builders_store_one_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let elf = fixture(dir.path());
    let cache = dir.path().join("cache");
    let v = open(&elf, Some(&cache));
    assert!(!v.index_cache_wanted(), "no DWARF read yet");
    let want = answers(&open(&elf, None));
    assert_eq!(answers(&v), want);
    assert!(v.index_cache_wanted(), "answered lazily, nothing cached");
    assert!(!open(&elf, None).index_cache_wanted(), "without a cache directory there is nothing to leave");

    let results: Vec<IndexCache> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..4).map(|_| s.spawn(|| open(&elf, Some(&cache)).store_index_cache(false).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // whoever takes the lock first builds; a later one finds the cache or the lock taken
    assert_eq!(results.iter().filter(|r| **r == IndexCache::Built).count(), 1, "{results:?}");
    assert_eq!(index_files(&cache).len(), 1, "one entry");
    assert_eq!(open(&elf, Some(&cache)).store_index_cache(false).unwrap(), IndexCache::Cached);
    let cached = open(&elf, Some(&cache));
    assert!(cached.prepare_types().unwrap());
    assert_eq!(answers(&cached), want);

    // a damaged entry is a miss, and the builder replaces it
    let entry = &index_files(&cache)[0];
    let bytes = std::fs::read(entry).unwrap();
    std::fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    let again = open(&elf, Some(&cache));
    assert_eq!(answers(&again), want);
    assert!(again.index_cache_wanted(), "a truncated entry is no cache");
    assert_eq!(again.store_index_cache(false).unwrap(), IndexCache::Built);
    let rebuilt = open(&elf, Some(&cache));
    assert!(rebuilt.prepare_types().unwrap());
    assert_eq!(answers(&rebuilt), want);
}
