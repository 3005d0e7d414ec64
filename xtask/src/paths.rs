//! Where things live: the workspace, the per-user cache that survives fresh clones, and the per-board
//! build outputs under `target/ktap/`.

use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The user cache: `$KTAP_CACHE`, else `$XDG_CACHE_HOME/ktap-rs`, else `~/.cache/ktap-rs`.
/// Entries inside are keyed by package version or config hash, so a cache only saves time.
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("KTAP_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ktap-rs");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/ktap-rs")
}

/// Build outputs for one board: `target/ktap/<board>/`.
#[allow(dead_code)] // for `build`/`demo`/`test`, which are not wired yet
pub fn board_out(board: &str) -> PathBuf {
    workspace().join("target/ktap").join(board)
}

/// The boards directory.
pub fn boards() -> PathBuf {
    workspace().join("boards")
}
