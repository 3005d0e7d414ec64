//! A static busybox built from Debian's busybox source package, with Debian's own `busybox-static`
//! configuration, for the initramfs of boards whose architecture Debian no longer ships binaries for
//! (big-endian MIPS, 32-bit PowerPC): the board's cross gcc and the `libc6-dev-<arch>-cross` C
//! library (static glibc) stand in for the missing port.
//!
//! Cache: `<cache>/busybox/<debian_arch>/current` names the entry last built or used;
//! `<cache>/busybox/<debian_arch>/<hash>/busybox` is valid once `complete` exists beside it. The hash
//! covers the recipe version, the source version, the compiler's version line and the target.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use ktap_host::board::{Board, Endian};

use super::cmd::{self, human, progress};
use super::kernel_cache;
use super::kernel_src::source_apt;
use super::sources::Release;

/// Bump when the steps below change what they produce.
const RECIPE: u32 = 1;

/// A built busybox.
pub struct Busybox {
    /// The static binary.
    pub path: PathBuf,
    /// Debian version of the busybox source it was built from.
    pub version: String,
}

/// The cached busybox for `board`'s arch, built if needed; offline unless `refresh` or nothing is cached.
pub fn ensure(board: &Board, release: &Release, cache: &Path, refresh: bool) -> Result<Busybox> {
    let base = cache.join("busybox").join(&board.kernel.debian_arch);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let _lock = super::lock(&base.join("lock"))?;
    if !refresh
        && let Some(entry) = kernel_cache::current(&base)
        && let Some(b) = load(&base.join(entry))
    {
        return Ok(b);
    }
    let k = &board.kernel;
    let gcc = format!("{}{}", k.cross_compile, crate::build_module::gcc_name(&k.cross_gcc_package));
    let gcc_version = cmd::stdout(cmd::command(&gcc).arg("--version"))
        .with_context(|| format!("{gcc} is missing: run `cargo xtask setup --board {}`", board.name))?;

    let work = base.join(format!("work-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let apt = source_apt(release, cache)?;
    progress("downloading Debian's busybox source package");
    apt.source_download("busybox", &work)?;
    let dsc = cmd::find_with_extension(&work, "dsc", "apt-get source")?;
    // busybox_1.35.0-4+deb12u1.dsc: the version without its epoch
    let stem = dsc.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let version = stem.strip_prefix("busybox_").unwrap_or(&stem).to_owned();

    let mut h = sha1_smol::Sha1::new();
    for part in
        [format!("recipe {RECIPE}"), format!("busybox {version}"), gcc_version, k.cross_compile.clone()]
    {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let entry = h.digest().to_string()[..12].to_owned();
    let dir = base.join(&entry);
    let built = match load(&dir) {
        Some(b) => Ok(b),
        None => build(board, &gcc, &dsc, &version, &work, &dir),
    };
    std::fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    let b = built?;
    kernel_cache::set_current(&base, &entry)?;
    Ok(b)
}

fn load(dir: &Path) -> Option<Busybox> {
    let version = std::fs::read_to_string(dir.join("complete")).ok()?;
    let path = dir.join("busybox");
    path.exists().then(|| Busybox { path, version: version.trim().to_owned() })
}

/// Unpack (patches applied), configure as Debian's busybox-static, build, check, install into `dir`.
fn build(board: &Board, gcc: &str, dsc: &Path, version: &str, work: &Path, dir: &Path) -> Result<Busybox> {
    let src = work.join("src");
    let out = work.join("out");
    cmd::run(cmd::command("dpkg-source").arg("-x").arg(dsc).arg(&src).current_dir(work))
        .with_context(|| format!("unpacking {}", dsc.display()))?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let config = src.join("debian/config/pkg/static");
    std::fs::copy(&config, out.join(".config"))
        .with_context(|| format!("busybox {version} has no {}", config.display()))?;
    let k = &board.kernel;
    let make = |target: &str| {
        let mut c = cmd::command("make");
        c.current_dir(&src)
            .arg(format!("O={}", out.display()))
            .arg(format!("CROSS_COMPILE={}", k.cross_compile))
            .arg(format!("CC={gcc}"))
            .arg(target)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        c
    };
    // `oldconfig` asks about options the Debian config does not mention: take every default
    let mut conf = make("oldconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start make oldconfig for busybox")?;
    if let Some(mut stdin) = conf.stdin.take() {
        // a closed pipe just means it asked nothing more
        let _ = stdin.write_all(&b"\n".repeat(4096));
    }
    let conf_out = conf.wait_with_output().context("waiting for busybox oldconfig")?;
    if !conf_out.status.success() {
        bail!("busybox make oldconfig failed: {}", cmd::tail(&conf_out.stderr, 10));
    }
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    progress(format!(
        "building busybox {version} for {} (static, Debian's busybox-static config)",
        board.name
    ));
    let log = work.join("build.log");
    cmd::run_logged(make("busybox").arg(format!("-j{jobs}")), &log, "busybox build")?;
    let bin = out.join("busybox");
    check_elf(&std::fs::read(&bin).with_context(|| format!("cannot read {}", bin.display()))?, board)
        .with_context(|| format!("{} does not run on {}", bin.display(), board.name))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("busybox");
    std::fs::copy(&bin, &path).with_context(|| format!("cannot copy busybox to {}", path.display()))?;
    std::fs::write(dir.join("complete"), format!("{version}\n"))
        .with_context(|| format!("cannot stamp {}", dir.display()))?;
    progress(format!("busybox {version}: {}", human(cmd::disk_size(&path))));
    Ok(Busybox { path, version: version.to_owned() })
}

/// A static executable of the board's machine and byte order (no interpreter: the initramfs has no
/// dynamic loader).
fn check_elf(bytes: &[u8], board: &Board) -> Result<()> {
    let elf = goblin::elf::Elf::parse(bytes).context("not an ELF file")?;
    let big = elf.header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2MSB;
    if big != (board.endian == Endian::Big) {
        bail!("wrong byte order (board is {:?}-endian)", board.endian);
    }
    if elf.header.e_machine != board.arch.elf_machine() {
        bail!("ELF machine {} (board wants {})", elf.header.e_machine, board.arch.elf_machine());
    }
    if let Some(interp) = elf.interpreter {
        bail!("dynamically linked (interpreter {interp})");
    }
    Ok(())
}
