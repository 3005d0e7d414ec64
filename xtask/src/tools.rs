//! Finding the tools the cross builds run: Debian's cargo/rustc ahead of rustup's, cross binutils.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use ktap_host::board::Board;

/// Fail with a pointer to setup unless Debian's `cargo` and `rustc` (the cross builds' toolchain) exist.
pub fn ensure_debian_rust(board: &Board, cargo: &Path, rustc: &Path) -> Result<()> {
    for tool in [cargo, rustc] {
        ensure!(
            tool.exists(),
            "{} not found: run `cargo xtask setup --board {}`",
            tool.display(),
            board.name
        );
    }
    Ok(())
}

/// `PATH` with Debian's cargo directory (`/usr/bin`) first, so its `rustc`/`rustdoc` win over rustup's
/// proxies (rustup here has no cross targets; Debian's Rust has `rust-src` for `-Zbuild-std`).
pub fn debian_path(cargo: &Path) -> OsString {
    let first = cargo.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let mut dirs = vec![first, PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
    if let Some(rest) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&rest));
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/bin:/bin"))
}

/// The first `tool` on `PATH`, or in `/usr/bin` (where Debian's cross tools live) if `PATH` lacks it.
pub fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
