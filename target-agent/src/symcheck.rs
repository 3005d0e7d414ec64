//! The load-time check of an image compiled from a System.map (or a saved `/proc/kallsyms`) instead
//! of a vmlinux. Such an image has no build-id to compare; it carries a SYMBOLS section listing every
//! kernel symbol whose address it uses. It is loaded only if
//! 1. every kprobe and kretprobe attaches at or after a listed symbol of its own name ([`coverage`]), and
//! 2. every listed symbol is at exactly that address in the running kernel's `/proc/kallsyms`
//!    ([`SymbolScan`], fed the file chunk by chunk in one pass).
//!
//! Together they mean no probe is armed at an address the running kernel does not have for that
//! function, whichever map the host used. A name listed several times in kallsyms (static functions
//! of different files) matches if any of its addresses does.

use ktap_protocol::image::{Image, KernelSyms, MAX_SYMBOLS, ProbeKind, SectionKind};
use ktap_protocol::wire::codes;

use crate::Device;
use crate::kinfo::{Lines, parse_line};
use crate::upload::Refusal;

/// Both checks, reading `/proc/kallsyms` through `dev`: [`coverage`], then a [`SymbolScan`] that
/// stops reading once every symbol is confirmed. An unreadable file is [`codes::NO_KALLSYMS`]
/// with the errno.
pub fn check(image: &Image<'_>, syms: KernelSyms<'_>, dev: &mut impl Device) -> Result<(), Refusal> {
    coverage(image, &syms)?;
    let mut scan = SymbolScan::new(syms);
    if let Err(errno) = dev.kallsyms(&mut |chunk| scan.feed(chunk)) {
        return Err(refusal(codes::NO_KALLSYMS, image.section_offset(SectionKind::Symbols), errno));
    }
    scan.finish()
}

fn refusal(code: u16, offset: usize, detail: i32) -> Refusal {
    Refusal { code, offset: u32::try_from(offset).unwrap_or(u32::MAX), detail }
}

/// Check that every kprobe and kretprobe of `image` attaches within a symbol its SYMBOLS section
/// lists: same name, address at or above the listed one (a probe may carry an offset into the
/// function). Refuses with [`codes::SYMBOL_UNLISTED`] at the first probe spec that does not.
pub fn coverage(image: &Image<'_>, syms: &KernelSyms<'_>) -> Result<(), Refusal> {
    let mut first_bad = None;
    image.probes_at(|at, p| {
        if first_bad.is_some() || !matches!(p.kind, ProbeKind::Kprobe | ProbeKind::Kretprobe) {
            return;
        }
        if !syms.iter().any(|s| s.name == p.name && p.addr >= s.addr) {
            first_bad = Some(at);
        }
    });
    match first_bad {
        Some(at) => Err(refusal(codes::SYMBOL_UNLISTED, at, 0)),
        None => Ok(()),
    }
}

/// What kallsyms showed for one listed symbol.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// A line had this name at the listed address.
    matched: bool,
    /// Address of the first line with this name.
    first: Option<u64>,
}

/// Longest kallsyms line kept: address (16), type, two separators and a name of up to 127 bytes
/// (longer names cannot be listed in an image, so their lines are skipped whole).
const LINE: usize = 160;

/// Compares a SYMBOLS section with `/proc/kallsyms`, fed in chunks of any size.
#[derive(Debug)]
pub struct SymbolScan<'a> {
    lines: Lines<LINE>,
    tally: Tally<'a>,
}

/// What the lines read so far showed.
#[derive(Debug)]
struct Tally<'a> {
    syms: KernelSyms<'a>,
    seen: [Seen; MAX_SYMBOLS],
    unmatched: usize,
    nonzero: bool,
}

impl<'a> SymbolScan<'a> {
    /// A scan of `syms`.
    pub fn new(syms: KernelSyms<'a>) -> Self {
        let tally = Tally {
            syms,
            seen: [Seen::default(); MAX_SYMBOLS],
            unmatched: syms.count.min(MAX_SYMBOLS),
            nonzero: false,
        };
        SymbolScan { lines: Lines::default(), tally }
    }

    /// Feed the next bytes of the file; true once every symbol is confirmed (reading may stop).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let SymbolScan { lines, tally } = self;
        if tally.unmatched > 0 {
            lines.feed(chunk, |line| {
                tally.take_line(line);
                tally.unmatched == 0
            });
        }
        tally.unmatched == 0
    }

    /// The verdict once the whole file (or enough of it) was fed: `Ok` if every symbol matched;
    /// else [`codes::NO_KALLSYMS`] when every address read was zero, or [`codes::SYMBOL_MISMATCH`]
    /// at the first listed symbol (image order) that did not match.
    pub fn finish(&self) -> Result<(), Refusal> {
        self.tally.finish()
    }
}

impl Tally<'_> {
    fn take_line(&mut self, line: &[u8]) {
        // module symbols (`name\t[mod]`) are never what a System.map of the kernel describes
        if line.contains(&b'[') {
            return;
        }
        let Some((addr, name)) = parse_line(line) else { return };
        self.nonzero |= addr != 0;
        for (sym, seen) in self.syms.iter().zip(self.seen.iter_mut()) {
            if sym.name != name {
                continue;
            }
            seen.first.get_or_insert(addr);
            if addr == sym.addr && !seen.matched {
                seen.matched = true;
                self.unmatched -= 1;
            }
        }
    }

    fn finish(&self) -> Result<(), Refusal> {
        if self.unmatched == 0 {
            return Ok(());
        }
        if !self.nonzero {
            return Err(refusal(codes::NO_KALLSYMS, self.syms_offset(), 0));
        }
        let bad = self.syms.iter().zip(self.seen.iter()).find(|(_, seen)| !seen.matched);
        let Some((sym, seen)) = bad else { return Ok(()) };
        let detail = match seen.first {
            None => codes::SYMBOL_ABSENT,
            Some(a) => {
                // relative to the base the image assumes: the board's offset from that base when
                // the base entry (listed first) matched, the slide when it is the base that differs
                let off = a.wrapping_sub(self.syms.base_addr) as i64;
                // saturate, but never onto the "absent" value
                off.clamp(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32
            }
        };
        Err(refusal(codes::SYMBOL_MISMATCH, sym.offset, detail))
    }

    fn syms_offset(&self) -> usize {
        self.syms.iter().next().map_or(0, |s| s.offset)
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use ktap_protocol::image::build::{ImageBuilder, OwnedProbe, OwnedSymbols};
    use ktap_protocol::image::{FuncSpec, PROBE_ENTRY_FIXED};

    use super::*;

    fn image(probes: &[(&str, u64)], syms: &[(&str, u64)]) -> Vec<u8> {
        ImageBuilder {
            code: vec![0],
            funcs: vec![FuncSpec { code_off: 0, code_len: 1, n_int: 1, ..FuncSpec::default() }],
            probes: probes
                .iter()
                .map(|(n, a)| OwnedProbe {
                    kind: ProbeKind::Kprobe,
                    func: 0,
                    addr: *a,
                    flags: 0,
                    name: n.as_bytes().to_vec(),
                })
                .collect(),
            symbols: Some(OwnedSymbols {
                base_name: b"_text".to_vec(),
                base_addr: 0xc000_8000,
                entries: syms.iter().map(|(n, a)| (*a, n.as_bytes().to_vec())).collect(),
            }),
            ..ImageBuilder::default()
        }
        .build()
    }

    const KALLSYMS: &[u8] = b"c0008000 T _text\nc0008000 T _stext\nc0100000 t helper\nc0200000 T vfs_read\n\
c0300000 t helper\nc0400000 T do_sys_openat2\nbf000000 t vfs_read\t[ktap]\n";

    fn scan(img: &[u8], file: &[u8], chunk: usize) -> Result<(), Refusal> {
        let parsed = Image::parse(img).unwrap();
        let syms = parsed.symbols.unwrap();
        coverage(&parsed, &syms)?;
        let mut s = SymbolScan::new(syms);
        for c in file.chunks(chunk) {
            if s.feed(c) {
                break;
            }
        }
        s.finish()
    }

    #[test]
    fn matching_symbols_pass_in_any_chunking() {
        let img = image(
            &[("vfs_read", 0xc020_0000), ("do_sys_openat2", 0xc040_0010)],
            &[("vfs_read", 0xc020_0000), ("do_sys_openat2", 0xc040_0000), ("helper", 0xc030_0000)],
        );
        for chunk in 1..KALLSYMS.len() + 1 {
            assert_eq!(scan(&img, KALLSYMS, chunk), Ok(()), "chunk {chunk}");
        }
    }

    #[test]
    fn the_first_differing_symbol_is_named_with_the_boards_offset() {
        let img = image(
            &[("vfs_read", 0xc020_0000), ("do_sys_openat2", 0xc040_0004)],
            &[("vfs_read", 0xc020_0000), ("do_sys_openat2", 0xc040_0004)],
        );
        let entry = Image::parse(&img).unwrap().symbols.unwrap().iter().nth(1).unwrap().offset;
        let want = Refusal { code: codes::SYMBOL_MISMATCH, offset: entry as u32, detail: 0x3f_8000 };
        for chunk in [1, 7, 4096] {
            assert_eq!(scan(&img, KALLSYMS, chunk), Err(want), "chunk {chunk}");
        }
    }

    #[test]
    fn a_name_the_kernel_lacks_is_absent_and_module_symbols_do_not_count() {
        let img = image(&[("vfs_read", 0xbf00_0000)], &[("vfs_read", 0xbf00_0000)]);
        let r = scan(&img, KALLSYMS, 64).unwrap_err();
        assert_eq!((r.code, r.detail), (codes::SYMBOL_MISMATCH, 0x1f_8000));
        let img = image(&[("gone", 0xc020_0000)], &[("gone", 0xc020_0000)]);
        let r = scan(&img, KALLSYMS, 64).unwrap_err();
        assert_eq!((r.code, r.detail), (codes::SYMBOL_MISMATCH, codes::SYMBOL_ABSENT));
    }

    #[test]
    fn zero_addresses_mean_kallsyms_is_unreadable() {
        let img = image(&[("vfs_read", 0xc020_0000)], &[("vfs_read", 0xc020_0000)]);
        let hidden = b"00000000 T _text\n00000000 T vfs_read\n";
        assert_eq!(scan(&img, hidden, 5).unwrap_err().code, codes::NO_KALLSYMS);
        assert_eq!(scan(&img, b"", 5).unwrap_err().code, codes::NO_KALLSYMS);
    }

    #[test]
    fn probes_outside_the_listed_symbols_are_refused_at_their_spec() {
        let img = image(
            &[("vfs_read", 0xc020_0000), ("do_sys_openat2", 0xc040_0000)],
            &[("vfs_read", 0xc020_0000)],
        );
        let parsed = Image::parse(&img).unwrap();
        let second = parsed.section_offset(SectionKind::Probes) + 2 + PROBE_ENTRY_FIXED + 8;
        let r = coverage(&parsed, &parsed.symbols.unwrap()).unwrap_err();
        assert_eq!((r.code, r.offset as usize), (codes::SYMBOL_UNLISTED, second));
        // below the listed address
        let img = image(&[("vfs_read", 0xc01f_fffc)], &[("vfs_read", 0xc020_0000)]);
        let parsed = Image::parse(&img).unwrap();
        assert!(coverage(&parsed, &parsed.symbols.unwrap()).is_err());
    }

    #[test]
    fn long_lines_are_skipped_whole() {
        let img = image(&[("vfs_read", 0xc020_0000)], &[("vfs_read", 0xc020_0000)]);
        let mut file = b"c0200000 T ".to_vec();
        file.extend_from_slice(&[b'x'; 300]);
        file.extend_from_slice(b"vfs_read\nc0200000 T vfs_read\n");
        assert_eq!(scan(&img, &file, 3), Ok(()));
        let mut file = b"c0008000 T _text\nc0200000 T ".to_vec();
        file.extend_from_slice(&[b'x'; 300]);
        file.extend_from_slice(b" vfs_read\n");
        assert_eq!(scan(&img, &file, 3).unwrap_err().detail, codes::SYMBOL_ABSENT);
    }
}
