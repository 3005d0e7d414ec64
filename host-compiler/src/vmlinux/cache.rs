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
pub const FORMAT: u32 = 3;

/// The first bytes of a cache file.
const MAGIC: &[u8; 8] = b"KTAPIDX\n";

/// What the cached index belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Key {
    pub build_id: Vec<u8>,
    pub info_len: u64,
    pub abbrev_len: u64,
}

// The file, read with one `read` and decoded without copying the index bytes through serde:
// MAGIC, FORMAT (u32 LE), key length (u32 LE), the key (postcard), checksum (u64 LE) and
// length (u64 LE) of the index bytes, then the index (postcard). A damaged file is a miss
// rather than wrong offsets.

/// FNV-1a over the bytes taken eight at a time (a 2 MB index checks in well under a millisecond).
fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(0x100_0000_01b3);
    }
    words.remainder().iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
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

/// Split `n` bytes off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (b.get(..n)?, b.get(n..)?);
    *b = rest;
    Some(head)
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
}

fn take_u64(b: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
}

/// The cached index for `key`, if there is a valid one.
pub(crate) fn load(root: &Path, key: &Key) -> Option<Index> {
    let bytes = std::fs::read(path_for(root, key)).ok()?;
    let mut b = bytes.as_slice();
    if take(&mut b, MAGIC.len())? != MAGIC || take_u32(&mut b)? != FORMAT {
        return None;
    }
    let key_len = take_u32(&mut b)? as usize;
    let stored: Key = postcard::from_bytes(take(&mut b, key_len)?).ok()?;
    let sum = take_u64(&mut b)?;
    let len = usize::try_from(take_u64(&mut b)?).ok()?;
    let index = take(&mut b, len)?;
    if stored != *key || !b.is_empty() || checksum(index) != sum {
        return None;
    }
    postcard::from_bytes(index).ok()
}

/// Store the index for `key` (atomically). Failure only costs time next run, so callers may ignore it.
pub(crate) fn store(root: &Path, key: &Key, index: &Index) -> std::io::Result<()> {
    let path = path_for(root, key);
    let dir = path.parent().ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let index = postcard::to_stdvec(index).map_err(std::io::Error::other)?;
    let key = postcard::to_stdvec(key).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(index.len() + key.len() + 32);
    bytes.extend(MAGIC);
    bytes.extend(FORMAT.to_le_bytes());
    bytes.extend((key.len() as u32).to_le_bytes());
    bytes.extend(&key);
    bytes.extend(checksum(&index).to_le_bytes());
    bytes.extend((index.len() as u64).to_le_bytes());
    bytes.extend(&index);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}
