//! Host packages: Debian's Rust for the cross builds (`rustc-web` & co. from `<codename>-security`),
//! LLVM's linker and objcopy, the board's cross gcc, QEMU from backports, and the small tools the
//! build and the tests use. Nothing is fetched when everything is installed already.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ktap_host::board::Board;

use super::apt::{SideApt, Source};
use super::cmd::{self, progress};
use super::deb;
use super::sources::Release;

/// The LLVM whose `ld.lld`/`llvm-objcopy` link and trim the agent (`lld-22`, `llvm-22` in bookworm-security).
const PREFERRED_LLVM: u32 = 22;

/// Debian's Rust packages; all three must have one version (a mismatched `rust-web-src` fails in `core`).
const RUST_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "rust-web-src"];

/// Tools with no board in them: Kbuild (`make`, `bc`), `kmod` (modinfo, depmod), initramfs (`cpio`),
/// `dwarves` (pahole, for type layouts), `file`, and ssh for the SSH transport's tests (a throwaway
/// `sshd` on loopback; `ssh`/`scp` are what `push --ssh` and `deploy --ssh` run).
const TOOLS: [&str; 8] =
    ["make", "bc", "kmod", "cpio", "dwarves", "file", "openssh-client", "openssh-server"];

/// What building a kernel and busybox from Debian source needs besides `make` and `bc`: Kconfig's
/// lexer and parser generators, `dpkg-source` (unpacks and patches busybox), xz for the tarball.
const SOURCE_BUILD_TOOLS: [&str; 4] = ["flex", "bison", "dpkg-dev", "xz-utils"];

/// Cross C compilers for the calling-convention fixtures of the symbol tests
/// (`host-compiler/tests/symbols_abi.rs`): a small C file per arch, compiled with `-g`, whose DWARF
/// parameter locations must map to that arch's argument registers. Every board's arch, on every host.
const ABI_FIXTURE_GCC: [&str; 7] = [
    "gcc-arm-linux-gnueabihf",
    "gcc-aarch64-linux-gnu",
    "gcc-mips-linux-gnu",
    "gcc-mipsel-linux-gnu",
    "gcc-powerpc-linux-gnu",
    "gcc-powerpc64le-linux-gnu",
    "gcc-x86-64-linux-gnu",
];

/// What the host provides for the cross builds, as installed.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Debian's `rustc` (the rustc-web package), for `-Zbuild-std` cross builds.
    pub debian_rustc: PathBuf,
    /// Debian's `cargo` (cargo-web).
    pub debian_cargo: PathBuf,
    /// Debian package version of rustc-web (= cargo-web = rust-web-src), e.g. `1.96.0+dfsg1-1~deb12u2`.
    pub rust_package_version: String,
    /// LLVM major version of the linker and objcopy below.
    pub llvm_major: u32,
    /// The LLVM linker binary, e.g. `ld.lld-22`.
    pub lld: String,
    /// The LLVM objcopy binary, e.g. `llvm-objcopy-22`.
    pub objcopy: String,
    /// Every host package setup wants, with its installed version.
    pub packages: Vec<(String, String)>,
}

/// One wanted package and whether it must come from backports.
struct Wanted {
    name: String,
    backports: bool,
}

/// Make sure the host packages for `board` are installed; `refresh` re-runs apt (upgrading them).
pub fn ensure(board: &Board, release: &Release, cache: &Path, refresh: bool) -> Result<Toolchain> {
    // a fallback LLVM chosen once is remembered, so later runs stay offline; --refresh retries the preferred one
    let llvm_file = cache.join("setup/llvm-major");
    let recorded = std::fs::read_to_string(&llvm_file).ok().and_then(|s| s.trim().parse().ok());
    let mut llvm = if refresh { PREFERRED_LLVM } else { recorded.unwrap_or(PREFERRED_LLVM) };
    let todo = missing(&wanted(board, llvm))?;
    if !todo.is_empty() || refresh {
        let apt = host_apt(release, cache)?;
        progress(format!("apt-get update (host packages, side config {})", cache.join("apt/host").display()));
        if let Err(e) = apt.update() {
            progress(format!("WARNING: {e:#}\n  continuing with the indexes that did download"));
        }
        if apt.candidate(&format!("lld-{llvm}"))?.is_none() {
            llvm = fallback_llvm(&apt, llvm)?;
            std::fs::create_dir_all(cache.join("setup"))?;
            std::fs::write(&llvm_file, format!("{llvm}\n"))
                .with_context(|| format!("cannot write {}", llvm_file.display()))?;
        } else if recorded.is_some() && llvm == PREFERRED_LLVM {
            std::fs::remove_file(&llvm_file)
                .with_context(|| format!("cannot remove {}", llvm_file.display()))?;
        }
        // with --refresh, `install` of what is installed upgrades it to the candidate
        let all = wanted(board, llvm);
        let todo = if refresh { all } else { missing(&all)? };
        install(&apt, release, &todo)?;
        let still = missing(&wanted(board, llvm))?;
        if !still.is_empty() {
            let names: Vec<_> = still.iter().map(|w| w.name.as_str()).collect();
            bail!("still not installed after apt-get install: {}", names.join(" "));
        }
    }
    toolchain(board, llvm)
}

/// Every package the board needs on the host.
fn wanted(board: &Board, llvm: u32) -> Vec<Wanted> {
    let plain = |n: &str| Wanted { name: n.to_owned(), backports: false };
    let mut w: Vec<Wanted> = RUST_PACKAGES.iter().map(|n| plain(n)).collect();
    w.push(plain(&format!("lld-{llvm}")));
    w.push(plain(&format!("llvm-{llvm}")));
    w.push(plain(&board.kernel.cross_gcc_package));
    // Recommended by the cross gcc (we install without recommends): the C library for static helpers
    // and the musl build of the std agent.
    w.push(plain(&format!("libc6-dev-{}-cross", board.kernel.debian_arch)));
    w.extend(TOOLS.iter().map(|n| plain(n)));
    if board.kernel.source.is_some() {
        w.extend(SOURCE_BUILD_TOOLS.iter().map(|n| plain(n)));
    }
    // the host's own arch has no cross package (on amd64 there is no gcc-x86-64-linux-gnu: the native
    // gcc is x86_64-linux-gnu-gcc already)
    let native = native_gcc_package();
    w.extend(
        ABI_FIXTURE_GCC
            .iter()
            .filter(|n| **n != board.kernel.cross_gcc_package && Some(**n) != native.as_deref())
            .map(|n| plain(n)),
    );
    if let Some(q) = &board.qemu {
        // backports: the host may carry qemu-utils 10 (which Breaks bookworm's qemu-system 7.2), and the
        // second PL011 on arm `virt` needs QEMU >= 10
        w.push(Wanted { name: q.package.clone(), backports: true });
    }
    w
}

/// The cross gcc package name of the host's own arch (`gcc-x86-64-linux-gnu` on amd64), from the
/// native gcc's target triplet; `None` without a gcc.
fn native_gcc_package() -> Option<String> {
    let out = std::process::Command::new("gcc").arg("-dumpmachine").output().ok()?;
    let triplet = String::from_utf8(out.stdout).ok()?;
    Some(format!("gcc-{}", triplet.trim().replace('_', "-")))
}

/// The wanted packages that are not installed (or not from backports when they must be).
fn missing(wanted: &[Wanted]) -> Result<Vec<Wanted>> {
    let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let versions = installed_versions(&names)?;
    Ok(wanted
        .iter()
        .filter(|w| match versions.iter().find(|(n, _)| *n == w.name) {
            Some((_, v)) => w.backports && !deb::is_backport(v),
            None => true,
        })
        .map(|w| Wanted { name: w.name.clone(), backports: w.backports })
        .collect())
}

/// `(name, version)` of those `names` that dpkg has fully installed.
pub fn installed_versions(names: &[&str]) -> Result<Vec<(String, String)>> {
    let mut c = cmd::command("dpkg-query");
    c.args(["-W", "-f=${Package}\t${db:Status-Abbrev}\t${Version}\n"]).args(names);
    // exit status 1 just means some names are unknown to dpkg
    let out = cmd::output(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            (status.trim() == "ii").then(|| (name.to_owned(), version.to_owned()))
        })
        .collect())
}

/// The side apt config for host installs: the release's suites plus backports, native arch only (a
/// foreign-arch index that fails to download would make apt drop the whole suite).
fn host_apt(release: &Release, cache: &Path) -> Result<SideApt> {
    let c = &release.codename;
    let mut sources: Vec<Source> = ["", "-updates", "-backports"]
        .iter()
        .map(|s| Source { mirror: release.main.clone(), suite: format!("{c}{s}") })
        .collect();
    match &release.security {
        Some(m) => sources.push(Source { mirror: m.clone(), suite: format!("{c}-security") }),
        None => progress(format!(
            "WARNING: no {c}-security source on this host: Debian's Rust will be the older one from {c}"
        )),
    }
    SideApt::new(&cache.join("apt/host"), &sources, &[native_arch()?], false)
}

/// `dpkg --print-architecture`.
pub fn native_arch() -> Result<String> {
    Ok(cmd::stdout(cmd::command("dpkg").arg("--print-architecture"))?.trim().to_owned())
}

/// The newest LLVM with both `lld-N` and `llvm-N` available, when `preferred` is not.
fn fallback_llvm(apt: &SideApt, preferred: u32) -> Result<u32> {
    let mut majors: Vec<u32> =
        apt.names("lld-")?.iter().filter_map(|n| n.strip_prefix("lld-")?.parse().ok()).collect();
    majors.sort_unstable_by(|a, b| b.cmp(a));
    for n in majors {
        if apt.candidate(&format!("lld-{n}"))?.is_some() && apt.candidate(&format!("llvm-{n}"))?.is_some() {
            progress(format!("WARNING: lld-{preferred} is not available; using lld-{n}/llvm-{n}"));
            return Ok(n);
        }
    }
    bail!("neither lld-{preferred} nor any other lld-N/llvm-N pair is available from the host's suites")
}

fn install(apt: &SideApt, release: &Release, pkgs: &[Wanted]) -> Result<()> {
    let (bpo, plain): (Vec<&Wanted>, Vec<&Wanted>) = pkgs.iter().partition(|w| w.backports);
    let names = |ws: &[&Wanted]| ws.iter().map(|w| w.name.clone()).collect::<Vec<_>>();
    if !plain.is_empty() {
        let n = names(&plain);
        progress(format!("apt-get install {}", n.join(" ")));
        apt.install(&n, None)?;
    }
    if !bpo.is_empty() {
        let n = names(&bpo);
        let suite = format!("{}-backports", release.codename);
        progress(format!("apt-get install -t {suite} {}", n.join(" ")));
        apt.install(&n, Some(&suite))?;
    }
    apt.clean();
    Ok(())
}

/// Facts about the installed toolchain; checks the Rust packages agree on one version.
fn toolchain(board: &Board, llvm: u32) -> Result<Toolchain> {
    let wanted = wanted(board, llvm);
    let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let packages = installed_versions(&names)?;
    let version = |p: &str| packages.iter().find(|(n, _)| n == p).map(|(_, v)| v.clone()).unwrap_or_default();
    let rust: Vec<String> = RUST_PACKAGES.iter().map(|p| version(p)).collect();
    if rust.iter().any(|v| *v != rust[0]) {
        let listed: Vec<String> = RUST_PACKAGES.iter().zip(&rust).map(|(p, v)| format!("{p} {v}")).collect();
        bail!(
            "Debian's Rust packages disagree ({}): rustc-web and rust-web-src must be one version, or \
             -Zbuild-std fails compiling `core`; run `cargo xtask setup --refresh`",
            listed.join(", ")
        );
    }
    let lld = format!("ld.lld-{llvm}");
    let objcopy = format!("llvm-objcopy-{llvm}");
    for tool in [&lld, &objcopy] {
        cmd::which(tool)
            .with_context(|| format!("`{tool}` is not on PATH although lld/llvm-{llvm} are installed"))?;
    }
    Ok(Toolchain {
        debian_rustc: package_binary("rustc-web", "rustc")?,
        debian_cargo: package_binary("cargo-web", "cargo")?,
        rust_package_version: rust[0].clone(),
        llvm_major: llvm,
        lld,
        objcopy,
        packages,
    })
}

/// The `bin/<name>` a package ships, preferring `/usr/bin/<name>`.
fn package_binary(package: &str, name: &str) -> Result<PathBuf> {
    let files = cmd::stdout(cmd::command("dpkg-query").args(["-L", package]))
        .with_context(|| format!("listing the files of {package}"))?;
    let suffix = format!("/bin/{name}");
    let mut found: Vec<&str> = files.lines().filter(|l| l.ends_with(&suffix)).collect();
    found.sort_by_key(|l| *l != format!("/usr/bin/{name}"));
    found.first().map(PathBuf::from).with_context(|| format!("package {package} ships no bin/{name}"))
}
