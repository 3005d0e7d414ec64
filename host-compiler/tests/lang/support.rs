//! Shared by the language tests: a fake kernel with deterministic symbol addresses, and the
//! per-script settings read from leading `# test: KEY VALUE` comments.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ktap_host::board::Arch;
use ktap_host::lang::{CompileOptions, NoKernel, Resolver};

/// A kernel where every function exists at an address derived from its name, except names
/// starting with `no_such`; a few tracepoints exist.
pub struct FakeKernel;

/// The fake kernel's build-id.
pub const BUILD_ID: [u8; 20] = [
    0x6b, 0x74, 0x61, 0x70, 0x2d, 0x72, 0x73, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
    0x0a, 0x0b, 0x0c,
];

const TRACEPOINTS: &[(&str, &str)] = &[
    ("sched", "sched_switch"),
    ("sched", "sched_process_exec"),
    ("syscalls", "sys_enter_read"),
    ("irq", "irq_handler_entry"),
];

impl Resolver for FakeKernel {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        if sym.starts_with("no_such") {
            return Err(format!("vmlinux (fake) has no function `{sym}`"));
        }
        // FNV-1a, so addresses are stable across runs and platforms
        let h =
            sym.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Ok(0xc010_0000 + (h & 0xf_fffc))
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        if TRACEPOINTS.contains(&(subsys, event)) {
            Ok(())
        } else {
            Err(format!("vmlinux (fake) has no tracepoint `{subsys}:{event}`"))
        }
    }
}

/// Settings of one test script.
pub struct Settings {
    /// `# test: arch x86_64` (default arm, the qemu-armv7 board).
    pub arch: Arch,
    /// `# test: resolver none` compiles with [`NoKernel`].
    pub no_kernel: bool,
}

impl Settings {
    /// Read the `# test:` lines at the top of `src`.
    pub fn of(src: &str) -> Settings {
        let mut s = Settings { arch: Arch::Arm, no_kernel: false };
        for line in src.lines().take_while(|l| l.starts_with('#')) {
            let Some(rest) = line.strip_prefix("# test: ") else { continue };
            match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["arch", "x86_64"] => s.arch = Arch::X86_64,
                ["arch", "aarch64"] => s.arch = Arch::Aarch64,
                ["arch", "mips"] => s.arch = Arch::Mips,
                ["arch", "arm"] => s.arch = Arch::Arm,
                ["resolver", "none"] => s.no_kernel = true,
                other => panic!("unknown test setting {other:?}"),
            }
        }
        s
    }

    /// Compile options for these settings.
    pub fn options(&self) -> CompileOptions {
        CompileOptions { arch: self.arch, build_id: BUILD_ID.to_vec() }
    }

    /// The resolver for these settings.
    pub fn resolver(&self) -> &'static dyn Resolver {
        if self.no_kernel { &NoKernel } else { &FakeKernel }
    }
}

/// The `.kp` scripts of `tests/lang/<dir>`, sorted.
pub fn scripts(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kp"))
        .collect();
    v.sort();
    v
}
