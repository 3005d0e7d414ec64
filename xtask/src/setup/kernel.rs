//! The board's Debian kernel: resolved from its metapackage to an exact ABI and package version (old
//! ABIs vanish from the mirror, so nothing is pinned), downloaded with `apt-get download` and
//! extracted into the cache without installing anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ktap_host::board::Board;

use super::apt::{SideApt, Source};
use super::cmd::{self, human, progress};
use super::deb::Stanza;
use super::host::native_arch;
use super::kernel_cache::{self, KernelCache};
use super::sources::Release;

/// The kernel packages of one resolution, as exact `apt-get download` specs.
struct Resolved {
    abi: String,
    version: String,
    image: String,
    headers: String,
    common: String,
    kbuild: String,
    dbg: String,
    busybox: String,
    busybox_version: String,
    download_bytes: u64,
}

/// Which Debian kernel: the board's `kernel.debian_metapackage` and `kernel.flavour`.
#[derive(Debug, Clone, Copy)]
pub struct Package<'a> {
    /// `linux-image-<flavour>`.
    pub metapackage: &'a str,
    /// The flavour the resolved ABI ends with.
    pub flavour: &'a str,
}

/// `<cache>/kernels/<debian_arch>-<flavour>`.
pub fn kernels_dir(cache: &Path, board: &Board, flavour: &str) -> PathBuf {
    cache.join("kernels").join(format!("{}-{flavour}", board.kernel.debian_arch))
}

/// The cached kernel `pkg` for `board`; without `refresh` a complete cache entry is used offline.
pub fn ensure(
    board: &Board,
    pkg: Package<'_>,
    release: &Release,
    cache: &Path,
    refresh: bool,
) -> Result<KernelCache> {
    let kernels = kernels_dir(cache, board, pkg.flavour);
    if !refresh
        && let Some(version) = kernel_cache::current(&kernels)
        && let Some(k) = KernelCache::load(&kernels.join(version))?
    {
        return Ok(k);
    }
    let apt = kernel_apt(board, release, cache)?;
    progress(format!(
        "apt-get update ({} kernel indexes, side config {})",
        board.kernel.debian_arch,
        cache.join("apt").join(format!("kernel-{}", board.kernel.debian_arch)).display()
    ));
    if let Err(e) = apt.update() {
        progress(format!("WARNING: {e:#}\n  resolving the kernel from the indexes that did download"));
    }
    let r = resolve(&apt, board, pkg)?;
    progress(format!(
        "{}:{} -> linux-image-{} {}",
        pkg.metapackage, board.kernel.debian_arch, r.abi, r.version
    ));
    let dir = kernels.join(&r.version);
    let k = match KernelCache::load(&dir)? {
        Some(k) => k,
        None => fetch(&apt, board, pkg, &r, &dir)?,
    };
    kernel_cache::set_current(&kernels, &r.version)?;
    Ok(k)
}

/// Side apt config for the kernel: `<codename>` and `<codename>-updates` (the point release's kernel,
/// which stays on the mirror until the next point release), for the native and the board's
/// architecture. Not `-security`: its kernel changes every few weeks, and its foreign-arch index is
/// the one mirrors serve stale ("File has unexpected size"), which makes apt drop the whole suite.
fn kernel_apt(board: &Board, release: &Release, cache: &Path) -> Result<SideApt> {
    let c = &release.codename;
    let sources: Vec<Source> = ["", "-updates"]
        .iter()
        .map(|s| Source { mirror: release.main.clone(), suite: format!("{c}{s}") })
        .collect();
    let mut archs = vec![native_arch()?];
    if archs[0] != board.kernel.debian_arch {
        archs.push(board.kernel.debian_arch.clone());
    }
    SideApt::new(
        &cache.join("apt").join(format!("kernel-{}", board.kernel.debian_arch)),
        &sources,
        &archs,
        true,
    )
}

/// Metapackage -> image package (ABI, version) -> headers, their common part and kbuild, -dbg, busybox.
fn resolve(apt: &SideApt, board: &Board, pkg: Package<'_>) -> Result<Resolved> {
    let arch = &board.kernel.debian_arch;
    let show = |spec: &str, why: &str| -> Result<Stanza> {
        apt.show(spec)?
            .with_context(|| format!("package {spec} ({why}) is not in the mirror's {arch} indexes"))
    };
    let meta_spec = format!("{}:{arch}", pkg.metapackage);
    let meta = show(&meta_spec, &format!("kernel metapackage of board {}", board.name))?;
    let image_dep = meta
        .depends()
        .into_iter()
        .find(|d| d.name.starts_with("linux-image-") && d.name != pkg.metapackage)
        .with_context(|| format!("{meta_spec} depends on no linux-image-* package"))?;
    let abi = image_dep.name["linux-image-".len()..].to_owned();
    if !abi.ends_with(&format!("-{}", pkg.flavour)) {
        bail!(
            "{meta_spec} depends on {}, which is not of flavour `{}` (board {})",
            image_dep.name,
            pkg.flavour,
            board.name
        );
    }
    let version = match image_dep.version {
        Some((op, v)) if op == "=" => v,
        _ => apt
            .candidate(&format!("{}:{arch}", image_dep.name))?
            .with_context(|| format!("no candidate version of {}:{arch}", image_dep.name))?,
    };
    let image = format!("{}:{arch}={version}", image_dep.name);
    let headers = format!("linux-headers-{abi}:{arch}={version}");
    let dbg = format!("linux-image-{abi}-dbg:{arch}={version}");
    let image_st = show(&image, "kernel image")?;
    let headers_st = show(&headers, "kernel headers")?;
    let dbg_st = show(&dbg, "vmlinux with DWARF")?;
    let dep = |pred: &dyn Fn(&str) -> bool, what: &str| {
        headers_st
            .depends()
            .into_iter()
            .find(|d| pred(&d.name))
            .map(|d| d.name)
            .with_context(|| format!("{headers} depends on no {what} package"))
    };
    let common_name =
        dep(&|n| n.starts_with("linux-headers-") && n.ends_with("-common"), "linux-headers-*-common")?;
    let kbuild_name = dep(&|n| n.starts_with("linux-kbuild-"), "linux-kbuild-*")?;
    // the common headers are arch `all`; kbuild runs on the host
    let common = format!("{common_name}={version}");
    let kbuild = format!("{kbuild_name}:{}={version}", native_arch()?);
    let common_st = show(&common, "common kernel headers")?;
    let kbuild_st = show(&kbuild, "host Kbuild tools")?;
    let busybox_st = show(&format!("busybox-static:{arch}"), "initramfs busybox")?;
    let busybox_version = busybox_st.get("Version").context("busybox-static has no Version")?.to_owned();
    let busybox = format!("busybox-static:{arch}={busybox_version}");
    let download_bytes = [&image_st, &headers_st, &dbg_st, &common_st, &kbuild_st, &busybox_st]
        .iter()
        .filter_map(|s| s.get("Size")?.parse::<u64>().ok())
        .sum();
    Ok(Resolved {
        abi,
        version,
        image,
        headers,
        common,
        kbuild,
        dbg,
        busybox,
        busybox_version,
        download_bytes,
    })
}

/// Download and extract into `dir` (wiped first: it may hold an interrupted run), stamp it last.
fn fetch(apt: &SideApt, board: &Board, pkg: Package<'_>, r: &Resolved, dir: &Path) -> Result<KernelCache> {
    if dir.exists() {
        progress(format!("removing incomplete {}", dir.display()));
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let (debs, root, bb) = (dir.join("debs"), dir.join("root"), dir.join("busybox"));
    for d in [&debs, &root, &bb] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let specs = [&r.image, &r.headers, &r.common, &r.kbuild, &r.dbg, &r.busybox].map(|s| s.to_string());
    progress(format!(
        "downloading {} packages, {} (-dbg is most of it)",
        specs.len(),
        human(r.download_bytes)
    ));
    apt.download(&specs, &debs)?;

    progress("extracting image, headers, kbuild, busybox (dpkg -x)");
    let deb_of = |spec: &str| find_deb(&debs, spec);
    for spec in [&r.image, &r.headers, &r.common, &r.kbuild] {
        dpkg_x(&deb_of(spec)?, &root)?;
    }
    dpkg_x(&deb_of(&r.busybox)?, &bb)?;
    let dbg = deb_of(&r.dbg)?;
    progress(format!("extracting vmlinux and System.map from {} (reads the whole package)", file_name(&dbg)));
    extract_members(&dbg, &root, "./usr/lib/debug/boot/*")?;
    std::fs::remove_dir_all(&debs).with_context(|| format!("cannot remove {}", debs.display()))?;

    let abi = &r.abi;
    let headers = root.join("usr/src").join(format!("linux-headers-{abi}"));
    repoint_makefile(&headers.join("Makefile"), &root)?;
    let modules = root.join("lib/modules").join(abi);
    relativize_links(&modules, &root)?;
    let boot = root.join("boot");
    let vmlinuz = [format!("vmlinuz-{abi}"), format!("vmlinux-{abi}")]
        .iter()
        .map(|n| boot.join(n))
        .find(|p| p.exists())
        .with_context(|| format!("{} ships neither boot/vmlinuz-{abi} nor boot/vmlinux-{abi}", r.image))?;
    let debug_boot = root.join("usr/lib/debug/boot");
    let vmlinux = debug_boot.join(format!("vmlinux-{abi}"));
    if !vmlinux.exists() {
        bail!("{} has no usr/lib/debug/boot/vmlinux-{abi}", r.dbg);
    }
    let system_map = Some(debug_boot.join(format!("System.map-{abi}"))).filter(|p| p.exists());
    let busybox = bb.join("bin/busybox");
    if !busybox.exists() {
        bail!("{} has no bin/busybox", r.busybox);
    }
    let k = KernelCache {
        abi: abi.clone(),
        pkg_version: r.version.clone(),
        metapackage: pkg.metapackage.to_owned(),
        debian_arch: board.kernel.debian_arch.clone(),
        dir: dir.to_owned(),
        vmlinuz,
        vmlinux,
        system_map,
        config: boot.join(format!("config-{abi}")),
        headers,
        modules,
        busybox,
        busybox_version: r.busybox_version.clone(),
    };
    k.commit()?;
    Ok(k)
}

/// The downloaded `.deb` for `name[:arch]=version` (apt names it `name_version_arch.deb`, `:` as `%3a`).
fn find_deb(debs: &Path, spec: &str) -> Result<PathBuf> {
    let name = spec.split(['=', ':']).next().unwrap_or(spec);
    let prefix = format!("{name}_");
    std::fs::read_dir(debs)
        .with_context(|| format!("cannot read {}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| file_name(p).starts_with(&prefix) && file_name(p).ends_with(".deb"))
        .with_context(|| format!("apt-get download left no {prefix}*.deb in {}", debs.display()))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn dpkg_x(deb: &Path, into: &Path) -> Result<()> {
    cmd::run(cmd::command("dpkg-deb").arg("-x").arg(deb).arg(into))
        .with_context(|| format!("extracting {}", deb.display()))?;
    Ok(())
}

/// `dpkg-deb --fsys-tarfile deb | tar -x pattern`, then delete the package.
fn extract_members(deb: &Path, into: &Path, pattern: &str) -> Result<()> {
    let mut src = cmd::command("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start dpkg-deb on {}", deb.display()))?;
    let pipe = src.stdout.take().context("dpkg-deb stdout")?;
    let mut tar = Command::new("tar");
    tar.arg("-x").arg("-C").arg(into).args(["--wildcards", pattern]).stdin(pipe);
    let tar_out = tar.output().context("cannot start tar")?;
    let src_status = src.wait().context("waiting for dpkg-deb")?;
    if !tar_out.status.success() || !src_status.success() {
        bail!(
            "extracting {pattern} from {} failed (dpkg-deb {src_status}, tar {}): {}",
            deb.display(),
            tar_out.status,
            cmd::tail(&tar_out.stderr, 5)
        );
    }
    std::fs::remove_file(deb).with_context(|| format!("cannot remove {}", deb.display()))
}

/// The flavour headers' Makefile includes the common tree by absolute path (`include /usr/src/...`):
/// point it into the extracted root.
fn repoint_makefile(makefile: &Path, root: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(makefile).with_context(|| format!("cannot read {}", makefile.display()))?;
    let mut changed = false;
    let fixed: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("include /") {
            Some(rest) => {
                changed = true;
                let target = root.join(rest);
                format!("include {}", target.display())
            }
            None => line.to_owned(),
        })
        .collect();
    if !changed {
        bail!(
            "{} has no absolute `include /...` line to repoint (Debian changed its layout?)",
            makefile.display()
        );
    }
    for line in &fixed {
        if let Some(t) = line.strip_prefix("include ")
            && !Path::new(t).exists()
        {
            bail!("{} includes {t}, which the extracted packages do not contain", makefile.display());
        }
    }
    std::fs::write(makefile, fixed.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", makefile.display()))
}

/// Absolute symlinks directly in `dir` (`build`, `source` -> `/usr/src/...`) become relative links
/// to the same path inside `root`.
fn relativize_links(dir: &Path, root: &Path) -> Result<()> {
    let depth = dir.strip_prefix(root).map(|p| p.components().count()).unwrap_or(0);
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten() {
        let path = entry.path();
        let Ok(target) = std::fs::read_link(&path) else { continue };
        let Ok(inside) = target.strip_prefix("/") else { continue };
        let rel = PathBuf::from("../".repeat(depth)).join(inside);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        std::os::unix::fs::symlink(&rel, &path).with_context(|| format!("cannot link {}", path.display()))?;
    }
    Ok(())
}
