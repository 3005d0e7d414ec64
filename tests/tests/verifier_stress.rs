//! Mutated images through the real agent into the kernel's verifier and VM: byte flips, truncations and
//! section shuffles of valid images (seeded, so every run writes the same images) are pushed with host
//! verification off, so the module parses, verifies and, when a mutant still verifies, runs them. The
//! kernel must not complain (dmesg) and the module must unload afterwards.
//!
//! Kprobe addresses and the build-id are never mutated: the first would ask the kernel to probe
//! arbitrary addresses (that is the kprobes API's problem, not the verifier's), the second would only
//! test the agent's build-id check.
//!
//! The suite pushes the 200 mutants (`KTAP_STRESS_IMAGES=N` changes the count). The test holds
//! the agent's pty open for the whole run, so QEMU forwards each push at once instead of noticing a
//! new client on its one-second poll. `KTAP_STRESS_VERBOSE=1` prints why the board refused each
//! mutant.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ktap_e2e::{HostRun, Rng, TestEnv, kernel_complaints, workspace};
use ktap_protocol::image::{HEADER_LEN, Image, SECTION_ENTRY_LEN, SectionKind};

const T: Duration = Duration::from_secs(90);

/// Scripts whose images are mutated: a kprobe with a table, and probe-free programs whose handlers run
/// as soon as they are armed (BEGIN) or stopped (END), so verified mutants execute in the kernel.
const SCRIPTS: &[(&str, &str)] = &[
    ("reads", "var reads = {}\nkprobe:vfs_read { reads[execname] += 1 }\ntrace_end { print(reads) }\n"),
    (
        "begin",
        "var n = 7\nvar t = {}\ntrace_begin {\n    n = n * 3 + pid\n    t[execname] += n\n    t[\"x\"] += 1\n    \
         printf(\"%s %d %d\\n\", execname, n, cpu)\n}\ntrace_end { print(t)\n    printf(\"%d\\n\", n) }\n",
    ),
    ("globals", "var a = 1\nvar b = 0x100000000\ntrace_begin { a += b; b -= a; print(a, b, uid, tid) }\n"),
];

/// Byte ranges that must stay as compiled: the probe and build-id sections and their table entries.
fn protected(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let img = Image::parse(bytes).unwrap();
    let mut out = Vec::new();
    for kind in [SectionKind::Probes, SectionKind::BuildId] {
        let sec = img.section(kind).unwrap();
        let at = img.section_offset(kind);
        out.push(at..at + sec.len());
        let entry = SectionKind::ALL.iter().position(|k| *k == kind).unwrap();
        let e = HEADER_LEN + entry * SECTION_ENTRY_LEN;
        out.push(e..e + SECTION_ENTRY_LEN);
    }
    out
}

/// One mutant of `good`.
fn mutate(good: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let keep = protected(good);
    let mut b = good.to_vec();
    // the header and section table: flips there mostly meet the structural parser
    let body = HEADER_LEN + SectionKind::ALL.len() * SECTION_ENTRY_LEN;
    match rng.below(10) {
        // byte flips (most mutants): 1..=4 random bytes outside the protected ranges, anywhere for
        // 3 in 10 mutants and in the sections (code, functions, pools, specs) for 4 in 10
        k @ 0..=6 => {
            let from = if k < 3 { 0 } else { body };
            let n = 1 + rng.below(4);
            let mut at = Vec::new();
            while at.len() < n {
                let i = from + rng.below(b.len() - from);
                if keep.iter().all(|r| !r.contains(&i)) {
                    b[i] ^= 1 << rng.below(8) | (rng.next() as u8 & 0x0f);
                    at.push(i);
                }
            }
            (format!("flip {at:?}"), b)
        }
        // truncation, with the header's length patched half of the time so parsing goes further
        7 | 8 => {
            let len = HEADER_LEN + rng.below(b.len() - HEADER_LEN);
            b.truncate(len);
            if rng.below(2) == 0 {
                b[12..16].copy_from_slice(&(len as u32).to_le_bytes());
            }
            (format!("truncate {len}"), b)
        }
        // section shuffle: swap the ranges of two section table entries (not probes, not build-id)
        _ => {
            let free: Vec<usize> = (0..SectionKind::ALL.len())
                .filter(|i| ![SectionKind::Probes, SectionKind::BuildId].contains(&SectionKind::ALL[*i]))
                .collect();
            let x = free[rng.below(free.len())];
            let y = free[rng.below(free.len())];
            let (ex, ey) = (HEADER_LEN + x * SECTION_ENTRY_LEN + 4, HEADER_LEN + y * SECTION_ENTRY_LEN + 4);
            let (vx, vy) = (b[ex..ex + 8].to_vec(), b[ey..ey + 8].to_vec());
            b[ex..ex + 8].copy_from_slice(&vy);
            b[ey..ey + 8].copy_from_slice(&vx);
            (format!("swap sections {x} {y}"), b)
        }
    }
}

fn tmp_dir() -> PathBuf {
    let d = workspace().join("target/e2e-tmp").join(format!("stress-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn compile(env: &TestEnv, dir: &Path, name: &str, src: &str) -> (PathBuf, Vec<u8>) {
    let script = dir.join(format!("{name}.kp"));
    std::fs::write(&script, src).unwrap();
    let image = dir.join(format!("{name}.kimg"));
    let st = env
        .host()
        .args(["compile", "--vmlinux"])
        .arg(&env.artifacts.vmlinux)
        .arg(&script)
        .arg("-o")
        .arg(&image)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {name} failed");
    let bytes = std::fs::read(&image).unwrap();
    (image, bytes)
}

#[test]
fn mutated_images_leave_the_kernel_healthy_and_the_module_unloads() {
    let env = TestEnv::get();
    let count: usize = std::env::var("KTAP_STRESS_IMAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let dir = tmp_dir();
    let bases: Vec<_> = SCRIPTS.iter().map(|(n, s)| compile(&env, &dir, n, s)).collect();
    let mut guest = env.boot();
    // hold the agent pty open (raw, no echo) so every push is forwarded at once
    let _hold = File::options().read(true).write(true).open(guest.agent_port()).unwrap();
    let stty =
        Command::new("stty").arg("-F").arg(guest.agent_port()).args(["raw", "-echo"]).status().unwrap();
    assert!(stty.success(), "stty failed");
    let mut rng = Rng(0x6b74_6170_2d72_7321);
    let (mut ran, mut refused, mut other) = (0, 0, 0);
    let started = Instant::now();
    for i in 0..count {
        let (base_path, good) = &bases[i % bases.len()];
        let (what, bytes) = mutate(good, &mut rng);
        let image = dir.join(format!("m{i}.kimg"));
        std::fs::write(&image, &bytes).unwrap();
        std::fs::copy(
            ktap_host::sidecar::Sidecar::path_for(base_path),
            ktap_host::sidecar::Sidecar::path_for(&image),
        )
        .unwrap();
        let mut c = env.push(guest.agent_port());
        c.args(["--no-host-verify", "--duration", "0.2", "--image"]).arg(&image);
        let (status, _, err) = HostRun::spawn(c).finish(T);
        assert!(!err.contains("panicked"), "mutant {i} ({what}): ktap-host panicked:\n{err}");
        if status.success() {
            ran += 1;
        } else if err.contains("refused") {
            refused += 1;
            if std::env::var_os("KTAP_STRESS_VERBOSE").is_some() {
                eprintln!("mutant {i} ({what}): {}", err.lines().last().unwrap_or(""));
            }
        } else {
            other += 1;
            eprintln!("mutant {i} ({what}): {}", err.lines().last().unwrap_or(""));
        }
    }
    let per = started.elapsed().as_secs_f64() / count.max(1) as f64;
    eprintln!("{count} mutants: {ran} ran, {refused} refused by the board, {other} other ({per:.2} s each)");
    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    if let Err(e) = guest.console.run_ok("rmmod ktap", T) {
        let holders = guest.console.run_ok("lsmod; ls -l /proc/*/fd 2>/dev/null | grep ktap", T);
        panic!("rmmod failed: {e:?}\n{holders:?}");
    }
    let lsmod = guest.console.run_ok("lsmod", T).unwrap();
    assert!(!lsmod.contains("ktap"), "{lsmod}");
    guest.shutdown();
}
