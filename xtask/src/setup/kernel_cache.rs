//! One cached Debian kernel: the files other commands need (image, DWARF vmlinux, headers, modules,
//! busybox), recorded in `manifest.toml` and valid only once the `complete` stamp exists.
//!
//! Layout, under `<cache>/kernels/<debian_arch>-<flavour>/`:
//! - `current`: the package version the last resolution chose (read when offline);
//! - `<pkg_version>/manifest.toml`, `<pkg_version>/complete` (written last);
//! - `<pkg_version>/root/`: the image, headers, common headers and kbuild packages `dpkg -x`'d, plus
//!   `usr/lib/debug/boot/{vmlinux,System.map}-<abi>` from the -dbg package;
//! - `<pkg_version>/busybox/bin/busybox`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

const MANIFEST: &str = "manifest.toml";
const STAMP: &str = "complete";
const CURRENT: &str = "current";

/// A Debian kernel for a board, extracted into the cache. All paths are absolute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelCache {
    /// Kernel release as `uname -r` prints it (`6.1.0-50-armmp`): names `lib/modules/<abi>` and the packages.
    pub abi: String,
    /// Debian version of the kernel packages (`6.1.176-1`).
    pub pkg_version: String,
    /// The metapackage it was resolved from (`linux-image-armmp`).
    pub metapackage: String,
    /// Debian architecture (`armhf`).
    pub debian_arch: String,
    /// This cache entry's directory.
    pub dir: PathBuf,
    /// The image QEMU boots with `-kernel`: `boot/vmlinuz-<abi>`, or `boot/vmlinux-<abi>` where Debian
    /// ships the image uncompressed.
    pub vmlinuz: PathBuf,
    /// The unstripped vmlinux with DWARF from the -dbg package (same build-id as the running kernel).
    pub vmlinux: PathBuf,
    /// The full System.map from the -dbg package (the image package's one is a stub), if it ships one.
    pub system_map: Option<PathBuf>,
    /// The kernel's `.config` (`boot/config-<abi>`).
    pub config: PathBuf,
    /// The flavour headers directory: what `make -C` takes to build an out-of-tree module.
    pub headers: PathBuf,
    /// `lib/modules/<abi>`: the kernel's modules (`kernel/...`, `modules.order`; no `modules.dep`).
    pub modules: PathBuf,
    /// A static busybox for the board's architecture (busybox-static), for the initramfs.
    pub busybox: PathBuf,
    /// Debian version of busybox-static.
    pub busybox_version: String,
}

impl KernelCache {
    /// The entry in `dir`, if it is complete and its files are all still there.
    pub fn load(dir: &Path) -> Result<Option<KernelCache>> {
        Ok(Self::load_kernel(dir)?.filter(|k| k.busybox.exists()))
    }

    /// Like [`KernelCache::load`], without requiring the busybox (a kernel built from source takes
    /// the busybox from its own cache, which may have been rebuilt since).
    pub fn load_kernel(dir: &Path) -> Result<Option<KernelCache>> {
        if !dir.join(STAMP).exists() {
            return Ok(None);
        }
        let path = dir.join(MANIFEST);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let k: KernelCache =
            toml::from_str(&text).with_context(|| format!("bad kernel manifest {}", path.display()))?;
        let mut files = vec![&k.vmlinuz, &k.vmlinux, &k.config, &k.headers, &k.modules];
        files.extend(k.system_map.as_ref());
        Ok(files.iter().all(|f| f.exists()).then_some(k))
    }

    /// Write the manifest, then the stamp that makes the entry valid.
    pub fn commit(&self) -> Result<()> {
        let path = self.dir.join(MANIFEST);
        let text = toml::to_string(self).context("serializing the kernel manifest")?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        let stamp = self.dir.join(STAMP);
        std::fs::write(&stamp, format!("{} {}\n", self.abi, self.pkg_version))
            .with_context(|| format!("cannot write {}", stamp.display()))
    }
}

/// The package version `current` names in a board kernel directory, if any.
pub fn current(kernels: &Path) -> Option<String> {
    let v = std::fs::read_to_string(kernels.join(CURRENT)).ok()?;
    let v = v.trim();
    (!v.is_empty() && !v.contains('/')).then(|| v.to_owned())
}

/// Point `current` at `version` (atomically: write then rename).
pub fn set_current(kernels: &Path, version: &str) -> Result<()> {
    let tmp = kernels.join(format!("{CURRENT}.tmp{}", std::process::id()));
    std::fs::write(&tmp, format!("{version}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, kernels.join(CURRENT))
        .with_context(|| format!("cannot update {}", kernels.join(CURRENT).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_validity() {
        let dir = std::env::temp_dir().join(format!("ktap-kcache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("f")).unwrap();
        let file = |n: &str| {
            let p = dir.join("f").join(n);
            std::fs::write(&p, n).unwrap();
            p
        };
        let k = KernelCache {
            abi: "6.1.0-50-armmp".into(),
            pkg_version: "6.1.176-1".into(),
            metapackage: "linux-image-armmp".into(),
            debian_arch: "armhf".into(),
            dir: dir.clone(),
            vmlinuz: file("vmlinuz"),
            vmlinux: file("vmlinux"),
            system_map: None,
            config: file("config"),
            headers: dir.join("f"),
            modules: dir.join("f"),
            busybox: file("busybox"),
            busybox_version: "1:1.35.0-4".into(),
        };
        assert!(KernelCache::load(&dir).unwrap().is_none(), "no stamp yet");
        k.commit().unwrap();
        let back = KernelCache::load(&dir).unwrap().expect("complete");
        assert_eq!(back.abi, k.abi);
        assert_eq!(back.system_map, None);
        assert_eq!(back.vmlinux, k.vmlinux);
        std::fs::remove_file(&k.busybox).unwrap();
        assert!(KernelCache::load(&dir).unwrap().is_none(), "a missing file invalidates the entry");
        set_current(&dir, "6.1.176-1").unwrap();
        assert_eq!(current(&dir).as_deref(), Some("6.1.176-1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
