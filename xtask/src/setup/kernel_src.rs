//! Kernels built from Debian's `linux-source-6.1`, for boards Debian ships no kernel for (big-endian
//! MIPS, 32-bit PowerPC): `tinyconfig` plus the board's Kconfig fragment, built with the board's
//! Debian cross gcc at low priority, cached by a hash of everything that decides the result.
//!
//! Cache layout, under `<cache>/`:
//! - `src/linux-source-6.1/current`: the package version last resolved (read when offline);
//! - `src/linux-source-6.1/<version>/linux-source-6.1/`: the extracted tree, valid once
//!   `<version>/complete` exists;
//! - `kernels/<board>-<hash>/build/`: the `O=` tree (vmlinux with DWARF, the boot image, `.config`,
//!   `Module.symvers`: what `make -C build M=...` needs), `manifest.toml`, `complete` (last).
//!
//! The hash covers the recipe version, the source package version, the fragment's bytes, the
//! compiler and linker versions, the arch and the image targets: change any and the kernel is rebuilt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ktap_host::board::{Board, SourceKernelSpec};

use super::apt::{SideApt, Source};
use super::busybox_src;
use super::cmd::{self, human, progress};
use super::host::native_arch;
use super::kernel_cache::{self, KernelCache};
use super::sources::Release;
use crate::paths;

/// The Debian package carrying the kernel source tarball.
pub const LINUX_SOURCE: &str = "linux-source-6.1";

/// Bump when the steps below change what they produce: it is part of every kernel's cache key.
const RECIPE: u32 = 1;

/// The cached kernel for `board`, built first if no cache entry matches its hash.
pub fn ensure(
    board: &Board,
    spec: &SourceKernelSpec,
    release: &Release,
    cache: &Path,
    refresh: bool,
) -> Result<KernelCache> {
    let fragment_path = paths::boards().join(&spec.fragment);
    let fragment_text = std::fs::read_to_string(&fragment_path)
        .with_context(|| format!("cannot read the kernel fragment {}", fragment_path.display()))?;
    let fragment = Fragment::parse(&fragment_path, &fragment_text)?;
    let (version, tree) = source_tree(release, cache, refresh)?;
    let k = &board.kernel;
    let gcc = format!("{}{}", k.cross_compile, crate::build_module::gcc_name(&k.cross_gcc_package));
    let gcc_version = first_line(&gcc, "--version")?;
    let ld_version = first_line(&format!("{}ld", k.cross_compile), "--version")?;
    // everything but the fragment: entries that agree on it can seed each other's builds
    let toolchain_key = [
        format!("recipe {RECIPE}"),
        format!("{LINUX_SOURCE} {version}"),
        format!("arch {} {}", k.kbuild_arch, k.cross_compile),
        gcc_version,
        ld_version,
    ]
    .join("\n");
    let mut h = sha1_smol::Sha1::new();
    for part in [
        toolchain_key.clone(),
        format!("image {} targets {}", spec.image, spec.make_targets.join(" ")),
        fragment_text.clone(),
    ] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let hash = h.digest().to_string();
    let kernels = cache.join("kernels");
    std::fs::create_dir_all(&kernels).with_context(|| format!("cannot create {}", kernels.display()))?;
    let name = format!("{}-{}", board.name, &hash[..12]);
    let dir = kernels.join(&name);
    // one build per entry at a time; other boards' setups go on meanwhile
    let _lock = super::lock(&kernels.join(format!("{name}.lock")))?;
    let busybox = busybox_src::ensure(board, release, cache, refresh)?;
    if let Some(mut k) = KernelCache::load_kernel(&dir)? {
        k.busybox = busybox.path;
        k.busybox_version = busybox.version;
        return Ok(k);
    }
    progress(format!(
        "no cached kernel {name}: building {LINUX_SOURCE} {version} for {} (tinyconfig + {})",
        board.name, spec.fragment
    ));
    let seed = seed_for(&kernels, &board.name, &toolchain_key);
    build(board, spec, &fragment, &tree, &gcc, &version, &dir, busybox, seed.as_deref(), &toolchain_key)
}

/// The file in a kernel entry naming its source, arch and compiler (see [`seed_for`]).
const TOOLCHAIN_KEY: &str = "toolchain-key";

/// A complete entry of the same board built from the same source with the same compiler and
/// recipe (only the fragment or the image targets differ), newest first: its build tree is a valid
/// starting point, since Kbuild recompiles exactly what a changed config symbol touches (fixdep
/// records, per object, the symbols it used). This makes changing a fragment cost minutes, not a
/// full build.
fn seed_for(kernels: &Path, board: &str, toolchain_key: &str) -> Option<PathBuf> {
    let prefix = format!("{board}-");
    let mut seeds: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(kernels)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .filter(|p| p.join("complete").exists() && p.join("build/vmlinux").exists())
        .filter(|p| std::fs::read_to_string(p.join(TOOLCHAIN_KEY)).is_ok_and(|k| k == toolchain_key))
        .filter_map(|p| Some((std::fs::metadata(p.join("complete")).ok()?.modified().ok()?, p)))
        .collect();
    seeds.sort();
    seeds.pop().map(|(_, p)| p)
}

/// One `CONFIG_X=value` (or `# CONFIG_X is not set`) line of a fragment, with its line number.
struct Setting {
    line: usize,
    symbol: String,
    /// `y`, `m`, a number, a quoted string, or `n` for "is not set".
    value: String,
}

/// A board's Kconfig fragment, parsed so that every setting can be checked after Kconfig ran.
struct Fragment {
    path: PathBuf,
    settings: Vec<Setting>,
}

impl Fragment {
    /// Comments and blank lines are skipped; anything else that is not a setting is an error
    /// naming `path:line`.
    fn parse(path: &Path, text: &str) -> Result<Fragment> {
        let mut settings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let at = || format!("{}:{}", path.display(), i + 1);
            if let Some(rest) = line.strip_prefix("# ")
                && let Some(sym) = rest.strip_suffix(" is not set")
            {
                check_symbol(sym).with_context(at)?;
                settings.push(Setting { line: i + 1, symbol: sym.to_owned(), value: "n".into() });
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((sym, value)) = line.split_once('=') else {
                bail!("{}: expected `CONFIG_NAME=value`, found `{line}`", at());
            };
            check_symbol(sym).with_context(at)?;
            if value.is_empty() {
                bail!("{}: {sym} has no value", at());
            }
            settings.push(Setting { line: i + 1, symbol: sym.to_owned(), value: value.to_owned() });
        }
        if settings.is_empty() {
            bail!("{}: the fragment sets nothing", path.display());
        }
        Ok(Fragment { path: path.to_owned(), settings })
    }

    /// Every setting Kconfig did not keep in `config` (the final `.config`), as one error.
    fn check(&self, config: &str) -> Result<()> {
        let mut dropped = Vec::new();
        for s in &self.settings {
            let set = config.lines().find_map(|l| l.strip_prefix(&format!("{}=", s.symbol)));
            let got = set.unwrap_or("n");
            if got != s.value {
                let now = match set {
                    Some(v) => format!("is {v}"),
                    None => "is not set (unmet dependency, or no such symbol for this arch)".into(),
                };
                dropped.push(format!("  {}:{}: {}={} {now}", self.path.display(), s.line, s.symbol, s.value));
            }
        }
        if !dropped.is_empty() {
            bail!(
                "Kconfig did not keep {} setting(s) of the fragment:\n{}",
                dropped.len(),
                dropped.join("\n")
            );
        }
        Ok(())
    }
}

fn check_symbol(sym: &str) -> Result<()> {
    let ok = sym.strip_prefix("CONFIG_").is_some_and(|n| {
        // mostly upper case, but not only: PowerPC has PPC_85xx, PPC_8xx
        !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !ok {
        bail!("`{sym}` is not a Kconfig symbol (CONFIG_ followed by letters, digits, _)");
    }
    Ok(())
}

/// The first line `program arg` prints (a compiler's version line).
fn first_line(program: &str, arg: &str) -> Result<String> {
    let out = cmd::stdout(cmd::command(program).arg(arg))
        .with_context(|| format!("{program} is missing: run `cargo xtask setup`"))?;
    Ok(out.lines().next().unwrap_or_default().to_owned())
}

/// Side apt for Debian source: the native arch's `<codename>` and `<codename>-updates`, with
/// `deb-src` lines (busybox's source package); updated once per process run that needs it.
pub(super) fn source_apt(release: &Release, cache: &Path) -> Result<SideApt> {
    let c = &release.codename;
    let sources: Vec<Source> = ["", "-updates"]
        .iter()
        .map(|s| Source { mirror: release.main.clone(), suite: format!("{c}{s}") })
        .collect();
    let apt = SideApt::new(&cache.join("apt/source"), &sources, &[native_arch()?], true)?;
    apt.add_deb_src(&sources)?;
    progress(format!("apt-get update (source indexes, side config {})", cache.join("apt/source").display()));
    if let Err(e) = apt.update() {
        progress(format!("WARNING: {e:#}\n  resolving from the indexes that did download"));
    }
    Ok(apt)
}

/// The extracted `linux-source-6.1` tree: `(package version, tree)`; offline from the cache unless
/// `refresh` or nothing is cached.
fn source_tree(release: &Release, cache: &Path, refresh: bool) -> Result<(String, PathBuf)> {
    let base = cache.join("src").join(LINUX_SOURCE);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let _lock = super::lock(&base.join("lock"))?;
    let tree_of = |v: &str| base.join(v).join(LINUX_SOURCE);
    if !refresh
        && let Some(v) = kernel_cache::current(&base)
        && base.join(&v).join("complete").exists()
    {
        return Ok((v.clone(), tree_of(&v)));
    }
    let apt = source_apt(release, cache)?;
    let version = apt
        .candidate(LINUX_SOURCE)?
        .with_context(|| format!("{LINUX_SOURCE} is not in the mirror's indexes"))?;
    let dir = base.join(&version);
    if !dir.join("complete").exists() {
        fetch_source(&apt, &version, &dir)?;
    }
    kernel_cache::set_current(&base, &version)?;
    Ok((version.clone(), tree_of(&version)))
}

/// Download `linux-source-6.1=version` and unpack its tarball into `dir` (wiped first).
fn fetch_source(apt: &SideApt, version: &str, dir: &Path) -> Result<()> {
    if dir.exists() {
        progress(format!("removing incomplete {}", dir.display()));
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    progress(format!("downloading {LINUX_SOURCE} {version} (~140 MB)"));
    apt.download(&[format!("{LINUX_SOURCE}={version}")], &debs)?;
    let deb = cmd::find_with_extension(&debs, "deb", "apt-get download")?;
    // the package holds one tarball, usr/src/linux-source-6.1.tar.xz: unpack it straight from the
    // package's data, never writing the tarball itself
    progress(format!("unpacking {} into {}", LINUX_SOURCE, dir.display()));
    let member = format!("./usr/src/{LINUX_SOURCE}.tar.xz");
    let mut deb_tar = cmd::command("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start dpkg-deb on {}", deb.display()))?;
    let pipe = deb_tar.stdout.take().context("dpkg-deb stdout")?;
    let mut inner = Command::new("tar")
        .args(["-xO", &member])
        .stdin(pipe)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let xz = inner.stdout.take().context("tar stdout")?;
    let out =
        Command::new("tar").arg("-xJ").arg("-C").arg(dir).stdin(xz).output().context("cannot start tar")?;
    let s1 = deb_tar.wait().context("waiting for dpkg-deb")?;
    let s2 = inner.wait().context("waiting for tar")?;
    if !(s1.success() && s2.success() && out.status.success()) {
        bail!(
            "unpacking {member} from {} failed (dpkg-deb {s1}, tar {s2}, tar -xJ {}): {}",
            deb.display(),
            out.status,
            cmd::tail(&out.stderr, 5)
        );
    }
    std::fs::remove_dir_all(&debs).with_context(|| format!("cannot remove {}", debs.display()))?;
    if !dir.join(LINUX_SOURCE).join("Makefile").exists() {
        bail!("{LINUX_SOURCE} {version} did not unpack to {}/{LINUX_SOURCE}/Makefile", dir.display());
    }
    std::fs::write(dir.join("complete"), format!("{version}\n"))
        .with_context(|| format!("cannot stamp {}", dir.display()))
}

/// Configure and build into `dir/build` (wiped first), check the result, record it.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
fn build(
    board: &Board,
    spec: &SourceKernelSpec,
    fragment: &Fragment,
    tree: &Path,
    gcc: &str,
    version: &str,
    dir: &Path,
    busybox: busybox_src::Busybox,
    seed: Option<&Path>,
    toolchain_key: &str,
) -> Result<KernelCache> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let out = dir.join("build");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match seed {
        Some(seed) => {
            progress(format!(
                "starting from {} (same source, compiler and recipe): Kbuild rebuilds what the config change touches",
                seed.display()
            ));
            cmd::run(cmd::command("cp").arg("-a").arg(seed.join("build")).arg(&out))
                .with_context(|| format!("copying the build tree of {}", seed.display()))?;
        }
        None => std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?,
    }
    std::fs::write(dir.join(TOOLCHAIN_KEY), toolchain_key)
        .with_context(|| format!("cannot write {}", dir.join(TOOLCHAIN_KEY).display()))?;
    let k = &board.kernel;
    let make = |extra: &[&str]| {
        let mut c = cmd::command("make");
        c.arg("-C")
            .arg(tree)
            .arg(format!("O={}", out.display()))
            .arg(format!("ARCH={}", k.kbuild_arch))
            .arg(format!("CROSS_COMPILE={}", k.cross_compile))
            .arg(format!("CC={gcc}"))
            .args(extra)
            // a jobserver or flags of an outer make (cargo under make) would change how Kbuild runs
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        c
    };
    // tinyconfig is allnoconfig with these two files forced; the fragment goes last, so it wins
    let mut all = String::new();
    for f in ["kernel/configs/tiny-base.config", "kernel/configs/tiny.config"] {
        let p = tree.join(f);
        all.push_str(&std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?);
        all.push('\n');
    }
    all.push_str(&std::fs::read_to_string(&fragment.path)?);
    let allconfig = dir.join("allconfig");
    std::fs::write(&allconfig, all).with_context(|| format!("cannot write {}", allconfig.display()))?;
    let start = std::time::Instant::now();
    cmd::run(make(&["allnoconfig"]).env("KCONFIG_ALLCONFIG", &allconfig))
        .context("configuring the kernel (allnoconfig + tiny configs + fragment)")?;
    let config_path = out.join(".config");
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    fragment.check(&config)?;

    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut targets: Vec<&str> = vec!["vmlinux", "modules"];
    targets.extend(spec.make_targets.iter().map(String::as_str));
    let jobs_arg = format!("-j{jobs}");
    let mut args = vec![jobs_arg.as_str()];
    args.extend(&targets);
    let log = dir.join("build.log");
    progress(format!("make {} (log {}, nice 10)", targets.join(" "), log.display()));
    cmd::run_logged(&make(&args), &log, "kernel build")?;

    let release = cmd::stdout(&mut make(&["-s", "kernelrelease"]))?.trim().to_owned();
    let vmlinux = out.join("vmlinux");
    let image = out.join(&spec.image);
    for (f, what) in [
        (&vmlinux, "vmlinux"),
        (&image, "kernel.source.image"),
        (&out.join("Module.symvers"), "Module.symvers"),
    ] {
        if !f.exists() {
            bail!("the kernel build made no {} ({what})", f.display());
        }
    }
    check_dwarf(&vmlinux, &fragment.path)?;
    let k = KernelCache {
        abi: release,
        pkg_version: version.to_owned(),
        metapackage: LINUX_SOURCE.into(),
        debian_arch: board.kernel.debian_arch.clone(),
        dir: dir.to_owned(),
        vmlinuz: image,
        vmlinux,
        system_map: Some(out.join("System.map")),
        config: config_path,
        headers: out.clone(),
        // everything is built in: the tree stands in for lib/modules/<release>
        modules: out.clone(),
        busybox: busybox.path,
        busybox_version: busybox.version,
    };
    k.commit()?;
    progress(format!(
        "kernel {} for {} built in {:.1} min: vmlinux {}, boot image {} {}",
        k.abi,
        board.name,
        start.elapsed().as_secs_f64() / 60.0,
        human(cmd::disk_size(&k.vmlinux)),
        spec.image,
        human(cmd::disk_size(&k.vmlinuz)),
    ));
    Ok(k)
}

/// The host resolves symbols and arguments from the vmlinux's DWARF: a kernel without it is useless.
fn check_dwarf(vmlinux: &Path, fragment: &Path) -> Result<()> {
    let mut f = File::open(vmlinux).with_context(|| format!("cannot open {}", vmlinux.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes)
        .with_context(|| format!("cannot read {}", vmlinux.display()))?;
    let elf = goblin::elf::Elf::parse(&bytes)
        .with_context(|| format!("{} is not an ELF file", vmlinux.display()))?;
    let has = elf.section_headers.iter().any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".debug_info"));
    if !has {
        bail!(
            "{} has no .debug_info: add CONFIG_DEBUG_KERNEL=y and CONFIG_DEBUG_INFO_DWARF5=y to {}",
            vmlinux.display(),
            fragment.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines_parse_and_bad_lines_name_their_place() {
        let p = Path::new("boards/kernels/x.config");
        let f =
            Fragment::parse(p, "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"s\"\n").unwrap();
        let got: Vec<_> = f.settings.iter().map(|s| (s.line, s.symbol.as_str(), s.value.as_str())).collect();
        assert_eq!(got, [(3, "CONFIG_A", "y"), (4, "CONFIG_B", "n"), (5, "CONFIG_C", "\"s\"")]);
        assert!(Fragment::parse(p, "CONFIG_PPC_85xx=y\n").is_ok(), "Kconfig symbols may have lower case");
        assert!(Fragment::parse(p, "CONFIG_A-B=y\n").is_err());
        let e = format!("{:#}", Fragment::parse(p, "CONFIG_A=y\nKPROBES=y\n").err().unwrap());
        assert!(e.contains("x.config:2") && e.contains("not a Kconfig symbol"), "{e}");
        let e = format!("{:#}", Fragment::parse(p, "CONFIG_A y\n").err().unwrap());
        assert!(e.contains("x.config:1") && e.contains("CONFIG_NAME=value"), "{e}");
    }

    #[test]
    fn settings_kconfig_dropped_are_listed_with_their_lines() {
        let p = Path::new("f.config");
        let f = Fragment::parse(p, "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=y\n").unwrap();
        f.check("CONFIG_A=y\nCONFIG_C=y\nCONFIG_D=y\n").unwrap();
        let e = f.check("CONFIG_A=y\nCONFIG_B=y\nCONFIG_D=m\n").unwrap_err().to_string();
        assert!(e.contains("f.config:2: CONFIG_B=n is y"), "{e}");
        assert!(e.contains("f.config:3: CONFIG_C=y is not set"), "{e}");
        assert!(e.contains("f.config:4: CONFIG_D=y is m"), "{e}");
        assert!(!e.contains("f.config:1"), "{e}");
    }

    #[test]
    fn every_board_fragment_parses() {
        for name in ktap_host::board::list(&paths::boards()).unwrap() {
            let b = Board::load(&paths::boards(), &name).unwrap();
            if let Some(s) = &b.kernel.source {
                let p = paths::boards().join(&s.fragment);
                Fragment::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap();
            }
        }
    }
}
