//! What the agent learns about the running kernel for its Hello: the GNU build-id from
//! `/sys/kernel/notes` and the run-time base (`_text` or `_stext`) from `/proc/kallsyms`. Both parsers
//! take bytes and never panic; the binary does the reading.

use ktap_protocol::limits::MAX_BUILD_ID;
use ktap_protocol::wire::BASE_SYMBOLS;

/// ELF note type of the GNU build-id.
pub const NT_GNU_BUILD_ID: u32 = 3;

fn pad4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// The GNU build-id in an ELF note list (`namesz`, `descsz`, `type` as u32 in the board's byte order,
/// then the name and the descriptor, each padded to 4 bytes). `None` if absent, malformed or longer
/// than `MAX_BUILD_ID`.
pub fn gnu_build_id(notes: &[u8], big_endian: bool) -> Option<&[u8]> {
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = notes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let mut pos = 0usize;
    while pos < notes.len() {
        let namesz = word(pos)? as usize;
        let descsz = word(pos + 4)? as usize;
        let kind = word(pos + 8)?;
        let name_at = pos + 12;
        let desc_at = name_at.checked_add(pad4(namesz)?)?;
        let next = desc_at.checked_add(pad4(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return (!desc.is_empty() && desc.len() <= MAX_BUILD_ID).then_some(desc);
        }
        pos = next;
    }
    None
}

/// Finds the kernel's run-time base in `/proc/kallsyms`, fed chunk by chunk in one pass: the address of
/// `_text` if listed, else of `_stext` (ARM32 and arm64 list only `_stext`; see
/// [`BASE_SYMBOLS`]). Reading can stop as soon as [`BaseScan::feed`] says so: at `_text`, or at the
/// first line above `_stext` (kallsyms lists the kernel's own symbols sorted by address, and
/// `_text <= _stext`). Addresses are zero for non-root readers.
#[derive(Debug, Default)]
pub struct BaseScan {
    lines: Lines<128>,
    base: Base,
}

/// What [`BaseScan`] has seen so far.
#[derive(Debug, Default)]
struct Base {
    text: Option<u64>,
    stext: Option<u64>,
    done: bool,
}

/// Cuts a byte stream fed in chunks of any size into lines of at most `N` bytes (without the
/// newline); a longer line is skipped whole. Shared by the `/proc/kallsyms` scanners.
#[derive(Debug)]
pub(crate) struct Lines<const N: usize> {
    line: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for Lines<N> {
    fn default() -> Self {
        Lines { line: [0; N], len: 0, overflow: false }
    }
}

impl<const N: usize> Lines<N> {
    /// Feed `chunk`, handing each complete line to `line` until it returns true (stop); returns
    /// whether it did.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut line: impl FnMut(&[u8]) -> bool) -> bool {
        for &b in chunk {
            if b == b'\n' {
                let stop = !self.overflow && line(self.line.get(..self.len).unwrap_or(&[]));
                self.len = 0;
                self.overflow = false;
                if stop {
                    return true;
                }
            } else if let Some(slot) = self.line.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            } else {
                self.overflow = true;
            }
        }
        false
    }
}

impl BaseScan {
    /// A scanner at the start of the file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes; returns true once nothing later in the file can change [`BaseScan::found`].
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let BaseScan { lines, base } = self;
        if !base.done {
            lines.feed(chunk, |line| {
                if let Some((addr, name)) = parse_line(line) {
                    base.take(addr, BASE_SYMBOLS.iter().position(|s| s.as_bytes() == name));
                }
                base.done
            });
        }
        base.done
    }

    /// The base symbol (from [`BASE_SYMBOLS`]) and its address, if found so far: `_text` over `_stext`.
    pub fn found(&self) -> Option<(&'static str, u64)> {
        match (self.base.text, self.base.stext) {
            (Some(a), _) => Some((BASE_SYMBOLS[0], a)),
            (None, Some(a)) => Some((BASE_SYMBOLS[1], a)),
            (None, None) => None,
        }
    }
}

impl Base {
    /// A complete line: `base` is the index of its name in [`BASE_SYMBOLS`], if it is one.
    fn take(&mut self, addr: u64, base: Option<usize>) {
        match base {
            Some(0) => {
                self.text = Some(addr);
                self.done = true;
            }
            Some(_) => {
                self.stext.get_or_insert(addr);
            }
            None => self.done = self.stext.is_some_and(|s| addr > s),
        }
    }
}

/// `ADDR TYPE NAME[\t[module]]` -> (ADDR, NAME).
pub(crate) fn parse_line(line: &[u8]) -> Option<(u64, &[u8])> {
    let mut fields = line.split(|c| *c == b' ' || *c == b'\t').filter(|f| !f.is_empty());
    let addr = fields.next()?;
    let _kind = fields.next()?;
    let name = fields.next()?;
    if addr.is_empty() || addr.len() > 16 {
        return None;
    }
    let addr =
        addr.iter().try_fold(0u64, |acc, c| Some((acc << 4) | u64::from((*c as char).to_digit(16)?)))?;
    Some((addr, name))
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8], be: bool) -> Vec<u8> {
        let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut n = Vec::new();
        n.extend_from_slice(&w(name.len() as u32));
        n.extend_from_slice(&w(desc.len() as u32));
        n.extend_from_slice(&w(kind));
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn finds_the_gnu_note_among_others_both_endians() {
        let id: Vec<u8> = (1..=20).collect();
        for be in [false, true] {
            let notes = [
                note(b"Xen\0", 3, &[9; 6], be),
                note(b"GNU\0", 1, &[1, 2, 3], be),
                note(b"GNU\0", 3, &id, be),
            ]
            .concat();
            assert_eq!(gnu_build_id(&notes, be), Some(&id[..]));
            assert_ne!(gnu_build_id(&notes, !be), Some(&id[..]));
        }
    }

    #[test]
    fn malformed_notes_do_not_panic() {
        let good = note(b"GNU\0", 3, &[7; 20], false);
        for cut in 0..good.len() {
            assert_eq!(gnu_build_id(&good[..cut], false), None, "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gnu_build_id(&huge, false), None);
        huge[0..4].copy_from_slice(&4u32.to_le_bytes());
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gnu_build_id(&huge, false), None);
        assert_eq!(gnu_build_id(&note(b"GNU\0", 3, &[1; 65], false), false), None);
        assert_eq!(gnu_build_id(&note(b"GNU\0", 3, &[], false), false), None);
    }

    fn scan(file: &[u8]) -> (bool, Option<(&'static str, u64)>) {
        let mut s = BaseScan::new();
        let done = s.feed(file);
        (done, s.found())
    }

    #[test]
    fn text_found_across_chunks() {
        let file = b"00000000 A __abs\nc0100000 T stext\nc0008000 T _text\nc0008000 T _stext\n";
        for split in 0..file.len() {
            let mut s = BaseScan::new();
            s.feed(&file[..split]);
            assert!(s.feed(&file[split..]), "split at {split}");
            assert_eq!(s.found(), Some(("_text", 0xc000_8000)), "split at {split}");
        }
    }

    #[test]
    fn stext_only_as_on_arm() {
        // arm64 under KASLR: no `_text`; the scan stops at the first symbol above `_stext`
        let mut s = BaseScan::new();
        assert!(!s.feed(b"ffffa0e1c7e10000 T _stext\n"));
        assert!(!s.feed(b"ffffa0e1c7e10000 T __exception_text_start\n"), "same address: keep reading");
        assert!(s.feed(b"ffffa0e1c7e10010 t el1_sync\nffffa0e1c7e10020 T _text\n"));
        assert_eq!(s.found(), Some(("_stext", 0xffff_a0e1_c7e1_0000)), "a later `_text` is not read");
        // the whole file without anything above `_stext`: found at the end
        assert_eq!(scan(b"c0008000 T _stext\n"), (false, Some(("_stext", 0xc000_8000))));
    }

    #[test]
    fn both_present_prefers_text_in_either_order() {
        assert_eq!(scan(b"c0008000 T _text\nc0008240 T _stext\n"), (true, Some(("_text", 0xc000_8000))));
        assert_eq!(scan(b"c0008000 T _stext\nc0008000 T _text\n"), (true, Some(("_text", 0xc000_8000))));
    }

    #[test]
    fn neither_present() {
        assert_eq!(scan(b"c0008000 T stext\nc0008000 T _text_end\nc0100000 T vfs_read\n"), (false, None));
        assert_eq!(scan(b""), (false, None));
    }

    #[test]
    fn lines_parse_strictly() {
        assert_eq!(scan(b"ffff800008000000 T _text\n").1, Some(("_text", 0xffff_8000_0800_0000)));
        assert_eq!(scan(b"00000000 T _text\n").1, Some(("_text", 0)));
        assert_eq!(scan(b"c0008000 T _text_end\n").1, None);
        assert_eq!(scan(b"c0008000 T _stext_x\n").1, None);
        assert_eq!(scan(b"c0008000 t _text\t[mod]\n").1, Some(("_text", 0xc000_8000)));
        assert_eq!(scan(b"zz T _text\n").1, None);
        assert_eq!(scan(b"11112222333344445 T _text\n").1, None);
        assert_eq!(scan(b"c0008000 _text\n").1, None, "three fields");
        let mut s = BaseScan::new();
        s.feed(&[b'x'; 300]);
        assert!(s.feed(b"\nc0 T _text\n"));
        assert_eq!(s.found(), Some(("_text", 0xc0)));
        let mut s = BaseScan::new();
        assert!(!s.feed(b"c0008000 T _text"), "needs the newline");
        assert_eq!(s.found(), None);
    }
}
