//! What the agent learns about the running kernel for its Hello: the GNU build-id from
//! `/sys/kernel/notes` and the run-time `_text` address from `/proc/kallsyms`. Both parsers take bytes
//! and never panic; the binary does the reading.

use ktap_protocol::limits::MAX_BUILD_ID;

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

/// Finds the `_text` line of `/proc/kallsyms` (`c0008000 T _text`) in a stream fed chunk by chunk, so
/// the binary can stop reading as soon as it appears. Addresses are zero for non-root readers.
#[derive(Debug)]
pub struct TextScan {
    line: [u8; 128],
    len: usize,
    overflow: bool,
    found: Option<u64>,
}

impl Default for TextScan {
    fn default() -> Self {
        TextScan { line: [0; 128], len: 0, overflow: false, found: None }
    }
}

impl TextScan {
    /// A scanner at the start of the file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes; returns the address once the `_text` line was complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<u64> {
        for &b in chunk {
            if self.found.is_some() {
                break;
            }
            if b == b'\n' {
                if !self.overflow {
                    self.found = self.line.get(..self.len).and_then(parse_text_line);
                }
                self.len = 0;
                self.overflow = false;
            } else if let Some(slot) = self.line.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            } else {
                self.overflow = true;
            }
        }
        self.found
    }

    /// The address, if found so far.
    pub fn found(&self) -> Option<u64> {
        self.found
    }
}

/// `ADDR TYPE NAME[\t[module]]` -> ADDR if NAME is `_text`.
fn parse_text_line(line: &[u8]) -> Option<u64> {
    let mut fields = line.split(|c| *c == b' ' || *c == b'\t').filter(|f| !f.is_empty());
    let addr = fields.next()?;
    let _kind = fields.next()?;
    if fields.next()? != b"_text" {
        return None;
    }
    if addr.is_empty() || addr.len() > 16 {
        return None;
    }
    addr.iter().try_fold(0u64, |acc, c| Some((acc << 4) | u64::from((*c as char).to_digit(16)?)))
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

    #[test]
    fn text_found_across_chunks() {
        let file = b"00000000 A __abs\nc0100000 T stext\nc0008000 T _text\nc0008000 T _stext\n";
        for split in 0..file.len() {
            let mut s = TextScan::new();
            s.feed(&file[..split]);
            assert_eq!(s.feed(&file[split..]), Some(0xc000_8000), "split at {split}");
        }
    }

    #[test]
    fn text_lines_parse_strictly() {
        assert_eq!(parse_text_line(b"ffff800008000000 T _text"), Some(0xffff_8000_0800_0000));
        assert_eq!(parse_text_line(b"00000000 T _text"), Some(0));
        assert_eq!(parse_text_line(b"c0008000 T _text_end"), None);
        assert_eq!(parse_text_line(b"c0008000 t _text\t[mod]"), Some(0xc000_8000));
        assert_eq!(parse_text_line(b"zz T _text"), None);
        assert_eq!(parse_text_line(b"11112222333344445 T _text"), None);
        let mut s = TextScan::new();
        let long = [b'x'; 300];
        s.feed(&long);
        assert_eq!(s.feed(b"\nc0 T _text\n"), Some(0xc0));
        assert_eq!(TextScan::new().feed(b"c0008000 T _text"), None, "needs the newline");
    }
}
