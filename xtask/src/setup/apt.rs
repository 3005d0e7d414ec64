//! A private ("side") apt configuration under the cache: its own sources list, index lists and
//! archives, passed to apt with `-o` options. `/etc/apt` and `/var/lib/apt` are never touched, so the
//! host can use suites (backports) or architectures (armhf) it is not configured for.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::cmd::{self, progress};
use super::deb::{self, Stanza};
use super::sources::Mirror;

/// How often `apt-get update` is tried: a mirror in sync reports "File has unexpected size".
const UPDATE_TRIES: u32 = 3;

/// One `deb` line of a side sources list.
#[derive(Debug, Clone)]
pub struct Source {
    /// The archive.
    pub mirror: Mirror,
    /// The suite, e.g. `bookworm-backports`.
    pub suite: String,
}

/// A private apt configuration rooted at `dir`.
#[derive(Debug)]
pub struct SideApt {
    dir: PathBuf,
    /// `APT::Architectures` to set; empty keeps dpkg's list (needed when installing).
    apt_archs: Vec<String>,
}

impl SideApt {
    /// Create (or reuse) the side configuration in `dir`: `main` of each source, indexes for `archs`
    /// only. With `download_only`, `archs` also replace dpkg's architecture list, so packages of an
    /// architecture dpkg does not know (the board's) can be resolved and downloaded without
    /// `dpkg --add-architecture`; such a configuration must not install.
    pub fn new(dir: &Path, sources: &[Source], archs: &[String], download_only: bool) -> Result<SideApt> {
        for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let arch = archs.join(",");
        let mut list = String::from("# written by `cargo xtask setup`; not used by the system's apt\n");
        for s in sources {
            let key = s.mirror.keyring.as_ref().map(|k| format!(" signed-by={k}")).unwrap_or_default();
            list.push_str(&format!("deb [arch={arch}{key}] {} {} main\n", s.mirror.uri, s.suite));
        }
        let path = dir.join("sources.list");
        std::fs::write(&path, list).with_context(|| format!("cannot write {}", path.display()))?;
        let apt_archs = if download_only { archs.to_vec() } else { Vec::new() };
        Ok(SideApt { dir: dir.to_owned(), apt_archs })
    }

    /// Also list `deb-src` lines for `sources`, so [`SideApt::source_download`] can fetch source
    /// packages (call [`SideApt::update`] afterwards).
    pub fn add_deb_src(&self, sources: &[Source]) -> Result<()> {
        let path = self.dir.join("sources.list");
        let mut list =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for s in sources {
            let key = s.mirror.keyring.as_ref().map(|k| format!(" [signed-by={k}]")).unwrap_or_default();
            list.push_str(&format!("deb-src{key} {} {} main\n", s.mirror.uri, s.suite));
        }
        std::fs::write(&path, list).with_context(|| format!("cannot write {}", path.display()))
    }

    /// `apt-get source --download-only name` into `dir`: the candidate's `.dsc` and its tarballs.
    pub fn source_download(&self, name: &str, dir: &Path) -> Result<()> {
        let mut c = self.user("apt-get");
        c.current_dir(dir).args(["-q", "source", "--download-only", name]);
        cmd::run(&mut c).with_context(|| format!("downloading the source package {name}"))?;
        Ok(())
    }

    /// `program` (apt-get, apt-cache) with the side configuration applied.
    fn apt(&self, mut cmd: Command) -> Command {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut opts = vec![
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("sources.list.d")),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::Cache={}", d("cache")),
            // Debian's docker images turn the binary caches off; each apt-cache call then re-reads the lists
            "Dir::Cache::pkgcache=pkgcache.bin".into(),
            "Dir::Cache::srcpkgcache=srcpkgcache.bin".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "DPkg::Lock::Timeout=600".into(),
        ];
        opts.extend(self.apt_archs.iter().map(|a| format!("APT::Architectures::={a}")));
        if cmd::is_root() {
            // the cache is not readable by apt's `_apt` download user: download as root, silently
            opts.push("APT::Sandbox::User=root".into());
        }
        for o in opts {
            cmd.arg("-o").arg(o);
        }
        cmd
    }

    fn user(&self, program: &str) -> Command {
        self.apt(cmd::command(program))
    }

    /// `apt-get update`, tried up to three times. An error names the index that failed; the lists
    /// that did download stay usable.
    pub fn update(&self) -> Result<()> {
        let mut last = String::new();
        for attempt in 1..=UPDATE_TRIES {
            let mut c = self.user("apt-get");
            c.args(["-q", "update"]);
            let out = cmd::output(&mut c)?;
            if out.status.success() {
                return Ok(());
            }
            last = cmd::tail(&out.stderr, 6);
            if attempt < UPDATE_TRIES {
                progress(format!("apt-get update failed (try {attempt}/{UPDATE_TRIES}), retrying in 10 s"));
                std::thread::sleep(std::time::Duration::from_secs(10));
            }
        }
        bail!("apt-get update failed {UPDATE_TRIES} times (side config {}):\n{last}", self.dir.display())
    }

    /// The version apt would install for `pkg` (`name` or `name:arch`), if any.
    pub fn candidate(&self, pkg: &str) -> Result<Option<String>> {
        let mut c = self.user("apt-cache");
        c.args(["policy", pkg]);
        Ok(deb::policy_candidate(&cmd::stdout(&mut c)?))
    }

    /// The control stanza of `spec` (`name[:arch][=version]`; the candidate when unversioned), or
    /// `None` when apt does not know it.
    pub fn show(&self, spec: &str) -> Result<Option<Stanza>> {
        let mut c = self.user("apt-cache");
        c.args(["show", "--no-all-versions", spec]);
        let out = cmd::output(&mut c)?;
        let stanza = Stanza::parse(&String::from_utf8_lossy(&out.stdout));
        Ok((out.status.success() && !stanza.is_empty()).then_some(stanza))
    }

    /// Package names starting with `prefix` that the lists know.
    pub fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let mut c = self.user("apt-cache");
        c.args(["pkgnames", prefix]);
        Ok(cmd::stdout(&mut c)?.lines().map(str::to_owned).collect())
    }

    /// `apt-get download` of exact `specs` into `dir` (no root needed).
    pub fn download(&self, specs: &[String], dir: &Path) -> Result<()> {
        let mut c = self.user("apt-get");
        c.current_dir(dir).args(["-q", "download"]).args(specs);
        cmd::run(&mut c).with_context(|| format!("downloading {}", specs.join(" ")))?;
        Ok(())
    }

    /// `apt-get install --no-install-recommends`, from `target_release` when given, as root.
    pub fn install(&self, pkgs: &[String], target_release: Option<&str>) -> Result<()> {
        if !self.apt_archs.is_empty() {
            bail!("internal: side apt config {} is download-only", self.dir.display());
        }
        let Some(base) = cmd::privileged("apt-get") else {
            bail!(
                "installing host packages needs root, and sudo is not installed; as root run:\n  \
                 apt-get install --no-install-recommends {}{}",
                target_release.map(|t| format!("-t {t} ")).unwrap_or_default(),
                pkgs.join(" ")
            );
        };
        let mut c = self.apt(base);
        c.args(["-q", "-y", "--no-install-recommends", "install"]);
        if let Some(t) = target_release {
            c.args(["-t", t]);
        }
        c.args(pkgs);
        cmd::run(&mut c).with_context(|| format!("installing {}", pkgs.join(" ")))?;
        Ok(())
    }

    /// Drop downloaded archives (`apt-get clean` on the side cache).
    pub fn clean(&self) {
        let archives = self.dir.join("cache/archives");
        if let Ok(entries) = std::fs::read_dir(&archives) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "deb") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
