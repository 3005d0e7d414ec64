//! The on-disk cache of DWARF name indexes, one file per kernel, so only the first query against a
//! vmlinux walks its whole `.debug_info`.
//!
//! Key: the GNU build-id plus the sizes of `.debug_info` and `.debug_abbrev` (a stripped or
//! re-split file with the same build-id has other DWARF, and offsets into one are meaningless in the
//! other). The file carries [`FORMAT`] and its key; any mismatch, read error or decode error makes
//! it a miss, and the index is rebuilt. Writes go to a temporary file in the same directory, then
//! rename: readers see the old file or the new one, never half of one.
//!
//! Location: `$KTAP_CACHE`, else `$XDG_CACHE_HOME/ktap-rs`, else `~/.cache/ktap-rs` (as `xtask`),
//! then `symbols/<build-id>-<info size>.idx`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dwarf::index::Index;

/// Version of the file layout; bump when [`Index`] or its meaning changes.
pub const FORMAT: u32 = 2;

/// What the cached index belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Key {
    pub build_id: Vec<u8>,
    pub info_len: u64,
    pub abbrev_len: u64,
}

/// The file: a header, then the index's own postcard bytes and their checksum, so a damaged file is
/// a miss rather than wrong offsets.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    key: Key,
    checksum: u64,
    index: Vec<u8>,
}

/// FNV-1a over the index bytes.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The user's ktap-rs cache directory.
pub fn cache_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KTAP_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("ktap-rs"));
    }
    Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/ktap-rs"))
}

/// Where the index for `key` lives under cache root `root`.
pub(crate) fn path_for(root: &Path, key: &Key) -> PathBuf {
    root.join("symbols").join(format!("{}-{}.idx", super::hex(&key.build_id), key.info_len))
}

/// The cached index for `key`, if there is a valid one.
pub(crate) fn load(root: &Path, key: &Key) -> Option<Index> {
    let bytes = std::fs::read(path_for(root, key)).ok()?;
    let file: CacheFile = postcard::from_bytes(&bytes).ok()?;
    if file.format != FORMAT || file.key != *key || checksum(&file.index) != file.checksum {
        return None;
    }
    postcard::from_bytes(&file.index).ok()
}

/// Store the index for `key` (atomically). Failure only costs time next run, so callers may ignore it.
pub(crate) fn store(root: &Path, key: &Key, index: &Index) -> std::io::Result<()> {
    let path = path_for(root, key);
    let dir = path.parent().ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let index = postcard::to_stdvec(index).map_err(std::io::Error::other)?;
    let file = CacheFile { format: FORMAT, key: key.clone(), checksum: checksum(&index), index };
    let bytes = postcard::to_stdvec(&file).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}
