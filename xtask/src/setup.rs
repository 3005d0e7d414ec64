//! `cargo xtask setup`: the shared, idempotent installer. It installs the host packages a board needs
//! (Debian's Rust, LLVM, the cross gcc, QEMU) and fetches the board's Debian kernel into the cache.
//! When everything is there it touches no network; `--refresh` re-resolves both from the mirror.
//!
//! Other commands call [`ensure`] and use the returned [`Setup`].

mod apt;
mod busybox_src;
mod cmd;
mod deb;
mod host;
mod kernel;
mod kernel_cache;
mod kernel_src;
mod sources;

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};
use ktap_host::board::{Board, KernelOrigin};

pub use host::Toolchain;
pub use kernel_cache::KernelCache;

use crate::paths;
use cmd::{disk_size, human, progress};

/// Options of `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board to set up (a file in `boards/`).
    #[arg(long, default_value = "qemu-armv7", env = "KTAP_BOARD")]
    pub board: String,
    /// Re-resolve packages and the kernel from the mirror (upgrading them) instead of trusting the cache.
    #[arg(long)]
    pub refresh: bool,
}

/// What setup provides for one board.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The board's Debian kernel in the cache.
    pub kernel: KernelCache,
    /// The host toolchain for the cross builds.
    pub toolchain: Toolchain,
}

/// Make sure the host packages and the kernel for `board` are in place, installing or fetching what
/// is missing (or everything again, with `refresh`). Serialized with other setups by a lock file;
/// a kernel built from source has its own lock, so a long build does not hold up other boards.
pub fn ensure(board: &Board, refresh: bool) -> Result<Setup> {
    let cache = paths::cache();
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the cache {}", cache.display()))?;
    let release = sources::Release::detect()?;
    let setup_lock = lock(&cache.join("setup.lock"))?;
    let toolchain = host::ensure(board, &release, &cache, refresh)
        .with_context(|| format!("setting up host packages for board {}", board.name))?;
    let kernel = match board.kernel.origin() {
        Some(KernelOrigin::Debian { metapackage, flavour }) => {
            kernel::ensure(board, kernel::Package { metapackage, flavour }, &release, &cache, refresh)
                .with_context(|| format!("fetching the Debian kernel of board {}", board.name))?
        }
        Some(KernelOrigin::Source(spec)) => {
            drop(setup_lock);
            kernel_src::ensure(board, spec, &release, &cache, refresh)
                .with_context(|| format!("building the kernel of board {} from source", board.name))?
        }
        None => anyhow::bail!("board {}: the kernel has no origin (see docs/boards.md)", board.name),
    };
    Ok(Setup { kernel, toolchain })
}

/// `cargo xtask setup`: [`ensure`], then a summary.
pub fn run(args: &Args) -> Result<Setup> {
    let board = Board::load(&paths::boards(), &args.board)?;
    let start = std::time::Instant::now();
    let setup = ensure(&board, args.refresh)?;
    summary(&board, &setup);
    progress(format!("done in {:.1} s", start.elapsed().as_secs_f64()));
    Ok(setup)
}

/// Hold an exclusive lock on `path` until the returned file is dropped.
fn lock(path: &Path) -> Result<File> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            progress(format!("waiting for another setup or build to finish (lock {})", path.display()));
            file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(file)
}

fn summary(board: &Board, s: &Setup) {
    let (t, k) = (&s.toolchain, &s.kernel);
    println!("board {}: {}", board.name, board.description);
    println!("host packages:");
    for (name, version) in &t.packages {
        println!("  {name:<32} {version}");
    }
    println!(
        "toolchain: rustc {} / cargo {} (rust-web {}), LLVM {}: {}, {}",
        t.debian_rustc.display(),
        t.debian_cargo.display(),
        t.rust_package_version,
        t.llvm_major,
        t.lld,
        t.objcopy
    );
    println!("kernel {} ({} {}), {}:", k.abi, k.metapackage, k.pkg_version, human(disk_size(&k.dir)));
    println!("  dir        {}", k.dir.display());
    println!("  vmlinuz    {} ({})", k.vmlinuz.display(), human(disk_size(&k.vmlinuz)));
    println!("  vmlinux    {} ({}, DWARF)", k.vmlinux.display(), human(disk_size(&k.vmlinux)));
    match &k.system_map {
        Some(m) => println!("  System.map {}", m.display()),
        None => println!("  System.map (none in the -dbg package)"),
    }
    println!("  config     {}", k.config.display());
    println!(
        "  headers    {}  (make -C this M=... ARCH={} CROSS_COMPILE={})",
        k.headers.display(),
        board.kernel.kbuild_arch,
        board.kernel.cross_compile
    );
    println!("  modules    {}", k.modules.display());
    println!("  busybox    {} ({})", k.busybox.display(), k.busybox_version);
}
