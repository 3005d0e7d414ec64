//! The program image: what the host compiles, the agent ships and the kernel verifies.
//!
//! Layout (all integers little-endian on every board, so big-endian boards read the same image):
//!
//! ```text
//! header   magic "KTAP" | u16 format version | u16 flags (0) | u16 section count | u16 reserved (0) | u32 total length
//! table    per section: u16 kind | u16 reserved (0) | u32 offset | u32 length        (offsets from image start)
//! sections CODE, FUNCS, CONSTS, STRINGS, GLOBALS, TABLES, PROBES, FORMATS, BUILD_ID, META, [SYMBOLS]
//! ```
//!
//! SYMBOLS is optional: only an image compiled from a `System.map` (or a saved `/proc/kallsyms`)
//! carries it, in place of a build-id. It lists every kernel symbol whose address the image uses,
//! so the agent can compare them with the running kernel's `/proc/kallsyms` before loading:
//!
//! ```text
//! u8 version (1) | u8 n | base symbol name (n bytes) | u64 base address the addresses assume
//! u16 count | count x (u64 address | u8 n | name (n bytes))
//! ```
//!
//! Counted sections start with a u16 count followed by that many entries, and must be exactly that long.
//! [`Image::parse`] checks structure only (bounds, counts, kinds, lengths); what the entries mean
//! (indices, jumps, frames, capacities) is the verifier's job in `ktap-vm`. The device-side image
//! carries no names, spans or format strings: those stay in the host's sidecar.

use core::fmt;

use crate::bytes::Reader;
use crate::limits::{MAX_BUILD_ID, MAX_IMAGE, MAX_PROBE_NAME, MAX_STR};

/// The first four bytes of every image.
pub const MAGIC: [u8; 4] = *b"KTAP";
/// The image format version; bumped on every incompatible change.
pub const FORMAT_VERSION: u16 = 2;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Size of one section table entry.
pub const SECTION_ENTRY_LEN: usize = 12;

/// Section kinds. Numbers are append-only.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Bytecode of all functions.
    Code = 1,
    /// Function table: code range and frame size of each function.
    Funcs = 2,
    /// 64-bit constant pool.
    Consts = 3,
    /// String constant pool.
    Strings = 4,
    /// Number of integer globals.
    Globals = 5,
    /// Table specs.
    Tables = 6,
    /// Probe specs: what to attach and which function runs on a hit.
    Probes = 7,
    /// Format specs: argument kinds of each printf format (strings stay on the host).
    Formats = 8,
    /// GNU build-id of the vmlinux the program was compiled against.
    BuildId = 9,
    /// Program-wide settings (instruction budget, frame budget).
    Meta = 10,
    /// Optional: the kernel symbols an image compiled from a symbol map uses (see the module docs).
    Symbols = 11,
}

impl SectionKind {
    /// Every kind, in canonical order.
    pub const ALL: [SectionKind; 11] = [
        SectionKind::Code,
        SectionKind::Funcs,
        SectionKind::Consts,
        SectionKind::Strings,
        SectionKind::Globals,
        SectionKind::Tables,
        SectionKind::Probes,
        SectionKind::Formats,
        SectionKind::BuildId,
        SectionKind::Meta,
        SectionKind::Symbols,
    ];

    /// The kind numbered `n`, if known.
    pub fn from_u16(n: u16) -> Option<SectionKind> {
        SectionKind::ALL.iter().copied().find(|k| *k as u16 == n)
    }
}

/// What a function returns.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetKind {
    /// Nothing (`ret`); probe handlers are void.
    #[default]
    Void = 0,
    /// An integer (`retv`).
    Int = 1,
    /// A string (`rets`).
    Str = 2,
}

impl RetKind {
    /// Decode.
    pub fn from_u8(b: u8) -> Option<RetKind> {
        match b {
            0 => Some(RetKind::Void),
            1 => Some(RetKind::Int),
            2 => Some(RetKind::Str),
            _ => None,
        }
    }
}

/// One function: a range of the code section, its frame, parameters and return kind.
///
/// Parameters arrive in the first registers of the frame: the integer arguments of a `call` in
/// r0..r(params_int - 1), the string arguments in s0..s(params_str - 1), each in call order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FuncSpec {
    /// Start of the function within the code section.
    pub code_off: u32,
    /// Length of the function in bytes.
    pub code_len: u32,
    /// Integer registers in the frame.
    pub n_int: u8,
    /// String registers in the frame.
    pub n_str: u8,
    /// Integer parameters (at most `n_int`).
    pub params_int: u8,
    /// String parameters (at most `n_str`).
    pub params_str: u8,
    /// What it returns.
    pub ret: RetKind,
}

/// Size of an encoded [`FuncSpec`]: u32 offset | u32 length | u8 n_int | u8 n_str | u8 params_int |
/// u8 params_str | u8 ret | 3 reserved (0).
pub const FUNC_SPEC_LEN: usize = 16;

/// Bytes of frame memory a function with `n_int` integer and `n_str` string registers takes: what
/// the verifier sums along the deepest call path and checks against the image's frame budget.
pub const fn frame_bytes(n_int: u8, n_str: u8) -> u32 {
    FRAME_OVERHEAD + 8 * n_int as u32 + (MAX_STR as u32 + 1) * n_str as u32
}

/// The VM's bookkeeping per frame (return point, register bases), counted in [`frame_bytes`].
pub const FRAME_OVERHEAD: u32 = 16;

/// What a table is keyed by.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// 64-bit integers.
    Int = 0,
    /// Strings of at most [`MAX_STR`] bytes.
    Str = 1,
}

impl KeyKind {
    /// Decode.
    pub fn from_u8(b: u8) -> Option<KeyKind> {
        match b {
            0 => Some(KeyKind::Int),
            1 => Some(KeyKind::Str),
            _ => None,
        }
    }
}

/// The kinds of a table key's components: `n` components, bit i of `str_mask` set when component i
/// is a string. Raw as encoded; the verifier checks `1 <= n <= MAX_KEYS` and no mask bit at or above n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyShape {
    /// Number of components.
    pub n: u8,
    /// Bit i set: component i is a string.
    pub str_mask: u8,
}

impl KeyShape {
    /// A single component of kind `k`.
    pub const fn single(k: KeyKind) -> KeyShape {
        KeyShape { n: 1, str_mask: if matches!(k, KeyKind::Str) { 1 } else { 0 } }
    }

    /// The shape of `kinds` (at most 8 are recorded).
    pub fn of(kinds: &[KeyKind]) -> KeyShape {
        let mut s = KeyShape { n: 0, str_mask: 0 };
        for (i, k) in kinds.iter().take(8).enumerate() {
            if *k == KeyKind::Str {
                s.str_mask |= 1 << i;
            }
            s.n += 1;
        }
        s
    }

    /// Kind of component `i` (`None` past the end).
    pub fn kind(&self, i: usize) -> Option<KeyKind> {
        (i < usize::from(self.n))
            .then(|| if i < 8 && self.str_mask & (1 << i) != 0 { KeyKind::Str } else { KeyKind::Int })
    }

    /// Whether the shape is one a table may have.
    pub fn is_valid(&self) -> bool {
        self.n >= 1
            && usize::from(self.n) <= crate::limits::MAX_KEYS
            && u32::from(self.str_mask) >> self.n == 0
    }
}

/// What a table's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// One 64-bit integer (`t[k] = v`, `t[k] += v`).
    Int,
    /// An aggregate of recorded values: count, sum, min, max (`t[k] <<< v` with count/sum/avg/...).
    Stats,
    /// Stats plus [`crate::limits::LOG2_BUCKETS`] power-of-two buckets (`hist`).
    Log2,
    /// Stats plus `nbuckets` buckets of width `step` from `min`, and an under and an over bucket
    /// (`lhist`). The verifier checks `step > 0` and `1 <= nbuckets <= MAX_LINEAR_BUCKETS`.
    Linear {
        /// Lower bound of bucket 0.
        min: i64,
        /// Width of each bucket.
        step: i64,
        /// Number of in-range buckets.
        nbuckets: u8,
    },
}

impl ValueKind {
    /// Whether values are recorded with `tagg` (not stored with `tst`).
    pub fn is_aggregate(&self) -> bool {
        !matches!(self, ValueKind::Int)
    }

    /// Number of buckets an entry keeps (linear: in-range + under + over).
    pub fn buckets(&self) -> usize {
        match self {
            ValueKind::Int | ValueKind::Stats => 0,
            ValueKind::Log2 => crate::limits::LOG2_BUCKETS,
            ValueKind::Linear { nbuckets, .. } => usize::from(*nbuckets) + 2,
        }
    }

    /// The encoded value-kind byte.
    pub fn code(&self) -> u8 {
        match self {
            ValueKind::Int => 0,
            ValueKind::Stats => 1,
            ValueKind::Log2 => 2,
            ValueKind::Linear { .. } => 3,
        }
    }
}

/// A table: key shape, value kind and fixed capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// Key shape.
    pub keys: KeyShape,
    /// Value kind.
    pub value: ValueKind,
    /// Maximum number of entries; inserts beyond it are refused and counted.
    pub capacity: u32,
}

impl TableSpec {
    /// An int-valued table with a single key of kind `key`.
    pub const fn single(key: KeyKind, capacity: u32) -> TableSpec {
        TableSpec { keys: KeyShape::single(key), value: ValueKind::Int, capacity }
    }
}

/// Size of an encoded [`TableSpec`]: u8 key count | u8 key string mask | u8 value kind (0 int,
/// 1 stats, 2 log2, 3 linear) | u8 linear buckets | u32 capacity | i64 linear min | i64 linear step
/// (the linear fields are 0 for other kinds).
pub const TABLE_SPEC_LEN: usize = 24;

/// Where a probe attaches.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A kprobe at a kernel address.
    Kprobe = 1,
    /// A kretprobe on a kernel function.
    Kretprobe = 2,
    /// A kernel tracepoint, by name.
    Tracepoint = 3,
    /// Runs once when the program starts.
    Begin = 4,
    /// Runs once when the program stops.
    End = 5,
    /// A periodic timer: `addr` is the period in ns; flag [`PROBE_EVERY_CPU`] runs it on every
    /// online CPU (`profile-N`), else on one (`tick-N`).
    Timer = 6,
}

/// Probe flag: a timer fires on every online CPU.
pub const PROBE_EVERY_CPU: u8 = 1;

impl ProbeKind {
    /// Decode.
    pub fn from_u8(b: u8) -> Option<ProbeKind> {
        match b {
            1 => Some(ProbeKind::Kprobe),
            2 => Some(ProbeKind::Kretprobe),
            3 => Some(ProbeKind::Tracepoint),
            4 => Some(ProbeKind::Begin),
            5 => Some(ProbeKind::End),
            6 => Some(ProbeKind::Timer),
            _ => None,
        }
    }
}

/// A probe: kind, handler function, kernel address (kprobes; rebased by the host) and target name.
///
/// Entry: u8 kind | u8 name length | u16 func | u8 flags | 3 reserved (0) | u64 addr | name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec<'a> {
    /// What to attach.
    pub kind: ProbeKind,
    /// Function run on each hit.
    pub func: u16,
    /// Kernel address for kprobes and kretprobes (already rebased to the running kernel); the period
    /// in nanoseconds for timers; 0 otherwise.
    pub addr: u64,
    /// [`PROBE_EVERY_CPU`] (timers); 0 otherwise.
    pub flags: u8,
    /// Symbol (kprobes, for messages) or tracepoint name (tracepoints, used to attach).
    pub name: &'a [u8],
}

/// The version of the SYMBOLS section layout this crate reads and writes.
pub const SYMBOLS_VERSION: u8 = 1;

/// Most entries a SYMBOLS section may list: one per distinct probed symbol at most.
pub const MAX_SYMBOLS: usize = crate::limits::MAX_PROBES as usize;

/// One entry of the SYMBOLS section: a kernel symbol and the run-time address the image assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSym<'a> {
    /// Address the image uses for it.
    pub addr: u64,
    /// Its name, printable ASCII.
    pub name: &'a [u8],
    /// Byte offset of this entry within the image (for refusals).
    pub offset: usize,
}

/// The SYMBOLS section: the base the addresses were computed from, and the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSyms<'a> {
    /// Name of the base symbol (`_text` or `_stext`), for messages.
    pub base_name: &'a [u8],
    /// The base symbol's address the image's addresses assume.
    pub base_addr: u64,
    /// Number of entries.
    pub count: usize,
    entries: &'a [u8],
    entries_offset: usize,
}

impl<'a> KernelSyms<'a> {
    /// The entries, in image order (already checked by [`Image::parse`]).
    pub fn iter(&self) -> impl Iterator<Item = KernelSym<'a>> + use<'a> {
        let mut r = Reader::new(self.entries);
        let base = self.entries_offset;
        (0..self.count).map_while(move |_| {
            let at = r.pos();
            let addr = r.u64()?;
            let len = r.u8()? as usize;
            Some(KernelSym { addr, name: r.take(len)?, offset: base + at })
        })
    }

    /// The entry at byte offset `offset` of the image, if one starts there.
    pub fn at_offset(&self, offset: usize) -> Option<KernelSym<'a>> {
        self.iter().find(|s| s.offset == offset)
    }
}

/// Kind of one printf argument.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A 64-bit integer.
    Int = 0,
    /// A string.
    Str = 1,
}

impl ArgKind {
    /// Decode.
    pub fn from_u8(b: u8) -> Option<ArgKind> {
        match b {
            0 => Some(ArgKind::Int),
            1 => Some(ArgKind::Str),
            _ => None,
        }
    }
}

/// Why bytes are not a well-formed image. Every variant carries the byte offset it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the fixed header.
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// Does not start with `KTAP`.
    BadMagic,
    /// Written by an incompatible format version.
    UnsupportedVersion {
        /// Version in the image.
        found: u16,
    },
    /// Longer than [`MAX_IMAGE`].
    TooLarge {
        /// Length of the input.
        len: usize,
    },
    /// The header's total length differs from the input length.
    LengthMismatch {
        /// Length the header claims.
        header: u32,
        /// Length of the input.
        actual: usize,
    },
    /// A reserved header or section-table field is not zero.
    ReservedNotZero {
        /// Offset of the field.
        offset: usize,
    },
    /// The section table runs past the end of the image.
    SectionTableTruncated {
        /// Offset where the table ends.
        offset: usize,
    },
    /// A section's range lies outside the image or overlaps the header.
    SectionOutOfBounds {
        /// Section kind number.
        kind: u16,
        /// Offset of its table entry.
        offset: usize,
    },
    /// A section kind this version does not know.
    UnknownSection {
        /// Section kind number.
        kind: u16,
        /// Offset of its table entry.
        offset: usize,
    },
    /// The same section kind appears twice.
    DuplicateSection {
        /// Section kind number.
        kind: u16,
        /// Offset of the second table entry.
        offset: usize,
    },
    /// A required section (code, funcs) is absent.
    MissingSection {
        /// Section kind number.
        kind: u16,
    },
    /// A section's contents are malformed.
    Malformed {
        /// Section kind number.
        kind: u16,
        /// Offset of the problem within the image.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl ImageError {
    /// Byte offset within the image the error refers to.
    pub fn offset(&self) -> usize {
        match *self {
            ImageError::TooShort { .. } | ImageError::BadMagic => 0,
            ImageError::UnsupportedVersion { .. } => 4,
            ImageError::TooLarge { .. } | ImageError::LengthMismatch { .. } => 12,
            ImageError::MissingSection { .. } => 6,
            ImageError::ReservedNotZero { offset }
            | ImageError::SectionTableTruncated { offset }
            | ImageError::SectionOutOfBounds { offset, .. }
            | ImageError::UnknownSection { offset, .. }
            | ImageError::DuplicateSection { offset, .. }
            | ImageError::Malformed { offset, .. } => offset,
        }
    }

    /// A stable numeric code, so the agent can report the reason without text (see [`crate::wire`]).
    pub fn code(&self) -> u16 {
        match self {
            ImageError::TooShort { .. } => 0x101,
            ImageError::BadMagic => 0x102,
            ImageError::UnsupportedVersion { .. } => 0x103,
            ImageError::TooLarge { .. } => 0x104,
            ImageError::LengthMismatch { .. } => 0x105,
            ImageError::ReservedNotZero { .. } => 0x106,
            ImageError::SectionTableTruncated { .. } => 0x107,
            ImageError::SectionOutOfBounds { .. } => 0x108,
            ImageError::UnknownSection { .. } => 0x109,
            ImageError::DuplicateSection { .. } => 0x10a,
            ImageError::MissingSection { .. } => 0x10b,
            ImageError::Malformed { .. } => 0x10c,
        }
    }

    /// A short name for a code returned by [`ImageError::code`].
    pub fn describe_code(code: u16) -> Option<&'static str> {
        Some(match code {
            0x101 => "image shorter than its header",
            0x102 => "bad magic (not a ktap image)",
            0x103 => "unsupported image format version",
            0x104 => "image too large",
            0x105 => "image length differs from its header",
            0x106 => "reserved field not zero",
            0x107 => "section table truncated",
            0x108 => "section out of bounds",
            0x109 => "unknown section kind",
            0x10a => "duplicate section",
            0x10b => "required section missing",
            0x10c => "malformed section",
            _ => return None,
        })
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort { len } => {
                write!(f, "image is {len} bytes, shorter than its {HEADER_LEN}-byte header")
            }
            ImageError::BadMagic => write!(f, "bad magic at byte offset 0: not a ktap image"),
            ImageError::UnsupportedVersion { found } => {
                write!(f, "image format version {found}, this build reads version {FORMAT_VERSION}")
            }
            ImageError::TooLarge { len } => {
                write!(f, "image is {len} bytes, more than the {MAX_IMAGE}-byte limit")
            }
            ImageError::LengthMismatch { header, actual } => {
                write!(f, "header says {header} bytes but the image is {actual} bytes")
            }
            ImageError::ReservedNotZero { offset } => {
                write!(f, "reserved field at byte offset {offset} is not zero")
            }
            ImageError::SectionTableTruncated { offset } => {
                write!(f, "section table runs past the end of the image at byte offset {offset}")
            }
            ImageError::SectionOutOfBounds { kind, offset } => {
                write!(f, "section {kind} (table entry at byte offset {offset}) lies outside the image")
            }
            ImageError::UnknownSection { kind, offset } => {
                write!(f, "unknown section kind {kind} at byte offset {offset}")
            }
            ImageError::DuplicateSection { kind, offset } => {
                write!(f, "section {kind} appears twice (second at byte offset {offset})")
            }
            ImageError::MissingSection { kind } => write!(f, "required section {kind} is missing"),
            ImageError::Malformed { kind, offset, what } => {
                write!(f, "section {kind} is malformed at byte offset {offset}: {what}")
            }
        }
    }
}

impl core::error::Error for ImageError {}

/// A structurally valid image, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    sections: [Option<(u32, u32)>; SectionKind::ALL.len()],
    /// Offset of the code section within the image (0 when empty).
    pub code_offset: usize,
    /// The code section.
    pub code: &'a [u8],
    /// Number of integer globals.
    pub globals: u16,
    /// Instruction budget per probe hit the program asks for (the VM clamps it).
    pub budget: u32,
    /// Frame memory in bytes the program declares for its deepest call path (0: the maximum).
    pub frame_budget: u32,
    /// GNU build-id of the vmlinux the program was compiled against (may be empty).
    pub build_id: &'a [u8],
    /// The SYMBOLS section of an image compiled from a symbol map, if present.
    pub symbols: Option<KernelSyms<'a>>,
}

/// Fixed bytes of a probe entry before its name.
pub const PROBE_ENTRY_FIXED: usize = 16;

fn counted<'a>(sec: &'a [u8]) -> Option<(usize, Reader<'a>)> {
    let mut r = Reader::new(sec);
    let n = r.u16()? as usize;
    Some((n, r))
}

impl<'a> Image<'a> {
    /// Check the structure of `bytes` and return a view of it.
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::TooShort { len: bytes.len() });
        }
        let mut r = Reader::new(bytes);
        if r.take(4) != Some(&MAGIC[..]) {
            return Err(ImageError::BadMagic);
        }
        let short = ImageError::TooShort { len: bytes.len() };
        let version = r.u16().ok_or(short)?;
        if version != FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion { found: version });
        }
        if r.u16().ok_or(short)? != 0 {
            return Err(ImageError::ReservedNotZero { offset: 6 });
        }
        let nsec = r.u16().ok_or(short)? as usize;
        if r.u16().ok_or(short)? != 0 {
            return Err(ImageError::ReservedNotZero { offset: 10 });
        }
        if bytes.len() > MAX_IMAGE {
            return Err(ImageError::TooLarge { len: bytes.len() });
        }
        let total = r.u32().ok_or(short)?;
        if total as usize != bytes.len() {
            return Err(ImageError::LengthMismatch { header: total, actual: bytes.len() });
        }
        let table_end = nsec.saturating_mul(SECTION_ENTRY_LEN).saturating_add(HEADER_LEN);
        if table_end > bytes.len() {
            return Err(ImageError::SectionTableTruncated { offset: bytes.len() });
        }
        let mut sections = [None; SectionKind::ALL.len()];
        for i in 0..nsec {
            let at = HEADER_LEN + i * SECTION_ENTRY_LEN;
            let mut e = Reader::at(bytes, at);
            let trunc = ImageError::SectionTableTruncated { offset: at };
            let kind = e.u16().ok_or(trunc)?;
            if e.u16().ok_or(trunc)? != 0 {
                return Err(ImageError::ReservedNotZero { offset: at + 2 });
            }
            let off = e.u32().ok_or(trunc)?;
            let len = e.u32().ok_or(trunc)?;
            let k = SectionKind::from_u16(kind).ok_or(ImageError::UnknownSection { kind, offset: at })?;
            let end = (off as usize).checked_add(len as usize);
            if (off as usize) < table_end || end.is_none_or(|end| end > bytes.len()) {
                return Err(ImageError::SectionOutOfBounds { kind, offset: at });
            }
            let slot =
                sections.get_mut(k as usize - 1).ok_or(ImageError::UnknownSection { kind, offset: at })?;
            if slot.is_some() {
                return Err(ImageError::DuplicateSection { kind, offset: at });
            }
            *slot = Some((off, len));
        }
        let mut img = Image {
            bytes,
            sections,
            code_offset: 0,
            code: &[],
            globals: 0,
            budget: 0,
            frame_budget: 0,
            build_id: &[],
            symbols: None,
        };
        for k in [SectionKind::Code, SectionKind::Funcs] {
            if img.section(k).is_none() {
                return Err(ImageError::MissingSection { kind: k as u16 });
            }
        }
        img.code = img.section(SectionKind::Code).unwrap_or(&[]);
        img.code_offset = img.section_offset(SectionKind::Code);
        img.check_entries()?;
        Ok(img)
    }

    /// The raw bytes of a section, if present.
    pub fn section(&self, kind: SectionKind) -> Option<&'a [u8]> {
        let (off, len) = (*self.sections.get(kind as usize - 1)?)?;
        self.bytes.get(off as usize..(off as usize).checked_add(len as usize)?)
    }

    /// Offset of a section within the image (0 if absent).
    pub fn section_offset(&self, kind: SectionKind) -> usize {
        self.sections.get(kind as usize - 1).copied().flatten().map_or(0, |(o, _)| o as usize)
    }

    fn malformed(&self, kind: SectionKind, at: usize, what: &'static str) -> ImageError {
        ImageError::Malformed { kind: kind as u16, offset: self.section_offset(kind) + at, what }
    }

    /// Walk every counted section once so that the accessors below can never fail later.
    fn check_entries(&mut self) -> Result<(), ImageError> {
        use SectionKind as K;
        let fixed = |s: &Self, k: K, size: usize| -> Result<usize, ImageError> {
            let Some(sec) = s.section(k) else { return Ok(0) };
            let (n, r) = counted(sec).ok_or(s.malformed(k, 0, "missing entry count"))?;
            if r.remaining() != n.saturating_mul(size) {
                return Err(s.malformed(k, 0, "entry count does not match section length"));
            }
            Ok(n)
        };
        fixed(self, K::Funcs, FUNC_SPEC_LEN)?;
        fixed(self, K::Consts, 8)?;
        fixed(self, K::Tables, TABLE_SPEC_LEN)?;
        for (i, e) in self.fixed_entries(K::Funcs, FUNC_SPEC_LEN).enumerate() {
            let at = 2 + i * FUNC_SPEC_LEN;
            if e.get(12).copied().and_then(RetKind::from_u8).is_none() {
                return Err(self.malformed(K::Funcs, at + 12, "unknown return kind"));
            }
            if e.get(13..16).is_none_or(|r| r.iter().any(|b| *b != 0)) {
                return Err(self.malformed(K::Funcs, at + 13, "reserved bytes not zero"));
            }
        }
        for (i, t) in self.table_entries().enumerate() {
            if let Err(what) = t {
                return Err(self.malformed(K::Tables, 2 + i * TABLE_SPEC_LEN, what));
            }
        }
        if let Some(sec) = self.section(K::Globals) {
            let mut r = Reader::new(sec);
            self.globals = r.u16().ok_or(self.malformed(K::Globals, 0, "missing global count"))?;
            if r.remaining() != 0 {
                return Err(self.malformed(K::Globals, 2, "trailing bytes"));
            }
        }
        if let Some(sec) = self.section(K::Meta) {
            let mut r = Reader::new(sec);
            self.budget = r.u32().ok_or(self.malformed(K::Meta, 0, "missing budget"))?;
            self.frame_budget = r.u32().ok_or(self.malformed(K::Meta, 4, "missing frame budget"))?;
            if r.remaining() != 0 {
                return Err(self.malformed(K::Meta, 8, "trailing bytes"));
            }
        }
        if let Some(id) = self.section(K::BuildId) {
            if id.len() > MAX_BUILD_ID {
                return Err(self.malformed(K::BuildId, 0, "build-id longer than 64 bytes"));
            }
            self.build_id = id;
        }
        self.symbols = self.parse_symbols()?;
        // variable-length sections: strings, probes, formats
        self.walk_strings(|_| Ok(()))?;
        self.walk_probes(|_, _| Ok(()))?;
        self.walk_formats(|_| Ok(()))?;
        Ok(())
    }

    /// The optional SYMBOLS section, every entry checked.
    fn parse_symbols(&self) -> Result<Option<KernelSyms<'a>>, ImageError> {
        let k = SectionKind::Symbols;
        let Some(sec) = self.section(k) else { return Ok(None) };
        let mut r = Reader::new(sec);
        let name = |r: &mut Reader<'a>, at: usize| -> Result<&'a [u8], ImageError> {
            let len = r.u8().ok_or(self.malformed(k, at, "truncated symbol name"))? as usize;
            if len == 0 || len > MAX_PROBE_NAME {
                return Err(self.malformed(k, at, "symbol name empty or longer than 127 bytes"));
            }
            let n = r.take(len).ok_or(self.malformed(k, at, "truncated symbol name"))?;
            if !n.iter().all(|c| c.is_ascii_graphic()) {
                return Err(self.malformed(k, at + 1, "symbol name is not printable ASCII"));
            }
            Ok(n)
        };
        if r.u8() != Some(SYMBOLS_VERSION) {
            return Err(self.malformed(k, 0, "unknown symbols section version"));
        }
        let base_name = name(&mut r, 1)?;
        let base_addr = r.u64().ok_or(self.malformed(k, r.pos(), "missing base address"))?;
        let at = r.pos();
        let count = r.u16().ok_or(self.malformed(k, at, "missing entry count"))? as usize;
        if count == 0 || count > MAX_SYMBOLS {
            return Err(self.malformed(k, at, "symbol count must be 1 to 64"));
        }
        let entries_at = r.pos();
        for _ in 0..count {
            let at = r.pos();
            r.u64().ok_or(self.malformed(k, at, "truncated symbol entry"))?;
            name(&mut r, at + 8)?;
        }
        if r.remaining() != 0 {
            return Err(self.malformed(k, r.pos(), "trailing bytes"));
        }
        Ok(Some(KernelSyms {
            base_name,
            base_addr,
            count,
            entries: sec.get(entries_at..).unwrap_or(&[]),
            entries_offset: self.section_offset(k) + entries_at,
        }))
    }

    fn walk_strings(&self, mut f: impl FnMut(&'a [u8]) -> Result<(), ImageError>) -> Result<(), ImageError> {
        let k = SectionKind::Strings;
        let Some(sec) = self.section(k) else { return Ok(()) };
        let (n, mut r) = counted(sec).ok_or(self.malformed(k, 0, "missing entry count"))?;
        for _ in 0..n {
            let at = r.pos();
            let len = r.u8().ok_or(self.malformed(k, at, "truncated string"))? as usize;
            if len > MAX_STR {
                return Err(self.malformed(k, at, "string longer than MAX_STR (128) bytes"));
            }
            f(r.take(len).ok_or(self.malformed(k, at, "truncated string"))?)?;
        }
        if r.remaining() != 0 {
            return Err(self.malformed(k, r.pos(), "trailing bytes"));
        }
        Ok(())
    }

    fn walk_probes(
        &self,
        mut f: impl FnMut(usize, ProbeSpec<'a>) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        let k = SectionKind::Probes;
        let Some(sec) = self.section(k) else { return Ok(()) };
        let (n, mut r) = counted(sec).ok_or(self.malformed(k, 0, "missing entry count"))?;
        for _ in 0..n {
            let at = r.pos();
            let bad = self.malformed(k, at, "truncated probe spec");
            let kind =
                ProbeKind::from_u8(r.u8().ok_or(bad)?).ok_or(self.malformed(k, at, "unknown probe kind"))?;
            let name_len = r.u8().ok_or(bad)? as usize;
            let func = r.u16().ok_or(bad)?;
            let flags = r.u8().ok_or(bad)?;
            if r.take(3).ok_or(bad)?.iter().any(|b| *b != 0) {
                return Err(self.malformed(k, at + 5, "reserved bytes not zero"));
            }
            let addr = r.u64().ok_or(bad)?;
            if name_len > MAX_PROBE_NAME {
                return Err(self.malformed(k, at + 1, "probe name longer than 127 bytes"));
            }
            let name = r.take(name_len).ok_or(bad)?;
            if !name.iter().all(|c| c.is_ascii_graphic()) {
                return Err(self.malformed(k, at + PROBE_ENTRY_FIXED, "probe name is not printable ASCII"));
            }
            f(self.section_offset(k) + at, ProbeSpec { kind, func, addr, flags, name })?;
        }
        if r.remaining() != 0 {
            return Err(self.malformed(k, r.pos(), "trailing bytes"));
        }
        Ok(())
    }

    fn walk_formats(&self, mut f: impl FnMut(&'a [u8]) -> Result<(), ImageError>) -> Result<(), ImageError> {
        let k = SectionKind::Formats;
        let Some(sec) = self.section(k) else { return Ok(()) };
        let (n, mut r) = counted(sec).ok_or(self.malformed(k, 0, "missing entry count"))?;
        for _ in 0..n {
            let at = r.pos();
            let nargs = r.u8().ok_or(self.malformed(k, at, "truncated format spec"))? as usize;
            if nargs > crate::limits::MAX_ARGS {
                return Err(self.malformed(k, at, "format has more than 8 arguments"));
            }
            let kinds = r.take(nargs).ok_or(self.malformed(k, at, "truncated format spec"))?;
            if kinds.iter().any(|b| ArgKind::from_u8(*b).is_none()) {
                return Err(self.malformed(k, at + 1, "unknown argument kind"));
            }
            f(kinds)?;
        }
        if r.remaining() != 0 {
            return Err(self.malformed(k, r.pos(), "trailing bytes"));
        }
        Ok(())
    }

    fn fixed_entries(&self, k: SectionKind, size: usize) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let body = self.section(k).and_then(|s| s.get(2..)).unwrap_or(&[]);
        body.chunks_exact(size)
    }

    fn table_entries(&self) -> impl Iterator<Item = Result<TableSpec, &'static str>> + use<'a> {
        self.fixed_entries(SectionKind::Tables, TABLE_SPEC_LEN).map(|e| {
            let mut r = Reader::new(e);
            let short = "truncated table spec";
            let keys = KeyShape { n: r.u8().ok_or(short)?, str_mask: r.u8().ok_or(short)? };
            let kind = r.u8().ok_or(short)?;
            let nbuckets = r.u8().ok_or(short)?;
            let capacity = r.u32().ok_or(short)?;
            let (min, step) = (r.i64().ok_or(short)?, r.i64().ok_or(short)?);
            let value = match kind {
                0 => ValueKind::Int,
                1 => ValueKind::Stats,
                2 => ValueKind::Log2,
                3 => ValueKind::Linear { min, step, nbuckets },
                _ => return Err("unknown value kind"),
            };
            if kind != 3 && (nbuckets != 0 || min != 0 || step != 0) {
                return Err("linear fields set on a table that is not linear");
            }
            Ok(TableSpec { keys, value, capacity })
        })
    }

    /// Functions, in index order.
    pub fn funcs(&self) -> impl Iterator<Item = FuncSpec> + use<'a> {
        self.fixed_entries(SectionKind::Funcs, FUNC_SPEC_LEN).filter_map(|e| {
            let mut r = Reader::new(e);
            Some(FuncSpec {
                code_off: r.u32()?,
                code_len: r.u32()?,
                n_int: r.u8()?,
                n_str: r.u8()?,
                params_int: r.u8()?,
                params_str: r.u8()?,
                ret: RetKind::from_u8(r.u8()?)?,
            })
        })
    }

    /// Number of functions.
    pub fn func_count(&self) -> usize {
        self.funcs().count()
    }

    /// Offset within the image of function entry `i` (for error messages).
    pub fn func_entry_offset(&self, i: usize) -> usize {
        self.section_offset(SectionKind::Funcs) + 2 + i * FUNC_SPEC_LEN
    }

    /// The 64-bit constant pool, in index order.
    pub fn consts(&self) -> impl Iterator<Item = i64> + use<'a> {
        self.fixed_entries(SectionKind::Consts, 8).filter_map(|e| Reader::new(e).i64())
    }

    /// Table specs, in index order.
    pub fn tables(&self) -> impl Iterator<Item = TableSpec> + use<'a> {
        self.table_entries().filter_map(Result::ok)
    }

    /// Offset within the image of table entry `i` (for error messages).
    pub fn table_entry_offset(&self, i: usize) -> usize {
        self.section_offset(SectionKind::Tables) + 2 + i * TABLE_SPEC_LEN
    }

    /// String constants, in index order.
    pub fn strings(&self, mut f: impl FnMut(&'a [u8])) {
        let _ = self.walk_strings(|s| {
            f(s);
            Ok(())
        });
    }

    /// Probe specs, in index order.
    pub fn probes(&self, mut f: impl FnMut(ProbeSpec<'a>)) {
        self.probes_at(|_, p| f(p));
    }

    /// Probe specs, in index order, each with the byte offset of its entry in the image (what
    /// verifier errors and the agent's refusals point at).
    pub fn probes_at(&self, mut f: impl FnMut(usize, ProbeSpec<'a>)) {
        let _ = self.walk_probes(|at, p| {
            f(at, p);
            Ok(())
        });
    }

    /// Format specs (argument kind bytes, see [`ArgKind`]), in index order.
    pub fn formats(&self, mut f: impl FnMut(&'a [u8])) {
        let _ = self.walk_formats(|p| {
            f(p);
            Ok(())
        });
    }

    /// The whole image.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Builds images on the host (the compiler and the test assembler).
#[cfg(feature = "alloc")]
pub mod build {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    /// A probe to encode.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OwnedProbe {
        /// What to attach.
        pub kind: ProbeKind,
        /// Handler function index.
        pub func: u16,
        /// Kernel address (kprobes), period in ns (timers).
        pub addr: u64,
        /// [`PROBE_EVERY_CPU`] for timers on every CPU; 0 otherwise.
        pub flags: u8,
        /// Symbol or tracepoint name.
        pub name: Vec<u8>,
    }

    /// Everything an image holds, as owned data.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct ImageBuilder {
        /// Bytecode.
        pub code: Vec<u8>,
        /// Functions.
        pub funcs: Vec<FuncSpec>,
        /// 64-bit constants.
        pub consts: Vec<i64>,
        /// String constants.
        pub strings: Vec<Vec<u8>>,
        /// Number of integer globals.
        pub globals: u16,
        /// Tables.
        pub tables: Vec<TableSpec>,
        /// Probes.
        pub probes: Vec<OwnedProbe>,
        /// Formats: argument kinds of each.
        pub formats: Vec<Vec<ArgKind>>,
        /// Kernel build-id.
        pub build_id: Vec<u8>,
        /// The SYMBOLS section (images compiled from a symbol map); `None` writes no section.
        pub symbols: Option<OwnedSymbols>,
        /// Instruction budget per hit (0: the VM's default).
        pub budget: u32,
        /// Frame memory budget in bytes (0: `MAX_FRAME_BUDGET`).
        pub frame_budget: u32,
    }

    /// The SYMBOLS section to encode.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct OwnedSymbols {
        /// The base symbol's name (`_text` or `_stext`).
        pub base_name: Vec<u8>,
        /// The base address the addresses assume.
        pub base_addr: u64,
        /// (address, name) of every kernel symbol the image uses.
        pub entries: Vec<(u64, Vec<u8>)>,
    }

    impl OwnedSymbols {
        fn encode(&self) -> Vec<u8> {
            let mut b = vec![SYMBOLS_VERSION, self.base_name.len() as u8];
            b.extend_from_slice(&self.base_name);
            b.extend_from_slice(&self.base_addr.to_le_bytes());
            b.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
            for (addr, name) in &self.entries {
                b.extend_from_slice(&addr.to_le_bytes());
                b.push(name.len() as u8);
                b.extend_from_slice(name);
            }
            b
        }
    }

    fn counted(n: usize, body: Vec<u8>) -> Vec<u8> {
        let mut v = Vec::with_capacity(body.len() + 2);
        v.extend_from_slice(&(n as u16).to_le_bytes());
        v.extend_from_slice(&body);
        v
    }

    impl ImageBuilder {
        /// Encode the image. Every section is written, empty ones included, in canonical order; the
        /// optional SYMBOLS section only when set.
        pub fn build(&self) -> Vec<u8> {
            let mut secs: Vec<(SectionKind, Vec<u8>)> = Vec::new();
            secs.push((SectionKind::Code, self.code.clone()));
            let mut b = Vec::new();
            for f in &self.funcs {
                b.extend_from_slice(&f.code_off.to_le_bytes());
                b.extend_from_slice(&f.code_len.to_le_bytes());
                b.extend_from_slice(&[f.n_int, f.n_str, f.params_int, f.params_str, f.ret as u8, 0, 0, 0]);
            }
            secs.push((SectionKind::Funcs, counted(self.funcs.len(), b)));
            let b = self.consts.iter().flat_map(|c| c.to_le_bytes()).collect();
            secs.push((SectionKind::Consts, counted(self.consts.len(), b)));
            let mut b = Vec::new();
            for s in &self.strings {
                b.push(s.len() as u8);
                b.extend_from_slice(s);
            }
            secs.push((SectionKind::Strings, counted(self.strings.len(), b)));
            secs.push((SectionKind::Globals, self.globals.to_le_bytes().to_vec()));
            let mut b = Vec::new();
            for t in &self.tables {
                let (min, step, nb) = match t.value {
                    ValueKind::Linear { min, step, nbuckets } => (min, step, nbuckets),
                    _ => (0, 0, 0),
                };
                b.extend_from_slice(&[t.keys.n, t.keys.str_mask, t.value.code(), nb]);
                b.extend_from_slice(&t.capacity.to_le_bytes());
                b.extend_from_slice(&min.to_le_bytes());
                b.extend_from_slice(&step.to_le_bytes());
            }
            secs.push((SectionKind::Tables, counted(self.tables.len(), b)));
            let mut b = Vec::new();
            for p in &self.probes {
                b.push(p.kind as u8);
                b.push(p.name.len() as u8);
                b.extend_from_slice(&p.func.to_le_bytes());
                b.extend_from_slice(&[p.flags, 0, 0, 0]);
                b.extend_from_slice(&p.addr.to_le_bytes());
                b.extend_from_slice(&p.name);
            }
            secs.push((SectionKind::Probes, counted(self.probes.len(), b)));
            let mut b = Vec::new();
            for f in &self.formats {
                b.push(f.len() as u8);
                b.extend(f.iter().map(|k| *k as u8));
            }
            secs.push((SectionKind::Formats, counted(self.formats.len(), b)));
            secs.push((SectionKind::BuildId, self.build_id.clone()));
            let mut meta = self.budget.to_le_bytes().to_vec();
            meta.extend_from_slice(&self.frame_budget.to_le_bytes());
            secs.push((SectionKind::Meta, meta));
            if let Some(syms) = &self.symbols {
                secs.push((SectionKind::Symbols, syms.encode()));
            }

            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&(secs.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes()); // total length, patched below
            let mut off = HEADER_LEN + secs.len() * SECTION_ENTRY_LEN;
            for (k, body) in &secs {
                out.extend_from_slice(&(*k as u16).to_le_bytes());
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&(off as u32).to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                off += body.len();
            }
            for (_, body) in &secs {
                out.extend_from_slice(body);
            }
            let total = (out.len() as u32).to_le_bytes();
            if let Some(len_field) = out.get_mut(12..16) {
                len_field.copy_from_slice(&total);
            }
            out
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::build::*;
    use super::*;

    fn sample() -> ImageBuilder {
        ImageBuilder {
            code: vec![0x00],
            funcs: vec![FuncSpec {
                code_off: 0,
                code_len: 1,
                n_int: 2,
                n_str: 1,
                params_int: 1,
                params_str: 1,
                ret: RetKind::Str,
            }],
            consts: vec![-5, 1 << 40],
            strings: vec![b"dd".to_vec(), Vec::new()],
            globals: 3,
            tables: vec![
                TableSpec::single(KeyKind::Str, 128),
                TableSpec {
                    keys: KeyShape::of(&[KeyKind::Int, KeyKind::Str]),
                    value: ValueKind::Linear { min: -10, step: 5, nbuckets: 20 },
                    capacity: 8,
                },
            ],
            probes: vec![OwnedProbe {
                kind: ProbeKind::Kprobe,
                func: 0,
                addr: 0xc0de,
                flags: 0,
                name: b"vfs_read".to_vec(),
            }],
            formats: vec![vec![ArgKind::Int, ArgKind::Str]],
            build_id: vec![0xab; 20],
            budget: 500,
            frame_budget: 4000,
            symbols: None,
        }
    }

    fn with_symbols() -> ImageBuilder {
        ImageBuilder {
            build_id: Vec::new(),
            symbols: Some(OwnedSymbols {
                base_name: b"_text".to_vec(),
                base_addr: 0xc000_8000,
                entries: vec![(0xc0de, b"vfs_read".to_vec()), (0xc100, b"do_sys_openat2".to_vec())],
            }),
            ..sample()
        }
    }

    #[test]
    fn symbols_section_is_optional_and_round_trips() {
        let plain = sample().build();
        assert_eq!(Image::parse(&plain).unwrap().symbols, None);
        let bytes = with_symbols().build();
        let img = Image::parse(&bytes).unwrap();
        let syms = img.symbols.unwrap();
        assert_eq!((syms.base_name, syms.base_addr, syms.count), (&b"_text"[..], 0xc000_8000, 2));
        let all: Vec<_> = syms.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[1].addr, all[1].name), (0xc100, &b"do_sys_openat2"[..]));
        // offsets point at the entry's address field inside the image
        assert_eq!(&bytes[all[1].offset..all[1].offset + 8], &0xc100u64.to_le_bytes());
        assert_eq!(syms.at_offset(all[0].offset), Some(all[0]));
        assert_eq!(syms.at_offset(all[0].offset + 1), None);
        assert!(img.build_id.is_empty());
    }

    #[test]
    fn symbols_section_errors_name_the_byte() {
        let sec_at = |b: &[u8]| Image::parse(b).unwrap().section_offset(SectionKind::Symbols);
        let good = with_symbols().build();
        let base = sec_at(&good);
        let what = |b: &[u8]| match Image::parse(b).unwrap_err() {
            ImageError::Malformed { kind: 11, offset, what } => (offset - base, what),
            e => panic!("{e:?}"),
        };
        let mut b = good.clone();
        b[base] = 2;
        assert_eq!(what(&b), (0, "unknown symbols section version"));
        let mut b = good.clone();
        b[base + 2] = b' ';
        assert_eq!(what(&b), (2, "symbol name is not printable ASCII"));
        let mut s = with_symbols();
        s.symbols.as_mut().unwrap().entries.clear();
        assert_eq!(what(&s.build()), (15, "symbol count must be 1 to 64"));
        let mut s = with_symbols();
        s.symbols.as_mut().unwrap().entries[0].1.clear();
        assert_eq!(what(&s.build()), (17 + 8, "symbol name empty or longer than 127 bytes"));
        let mut s = with_symbols();
        s.symbols.as_mut().unwrap().entries = vec![(1, b"f".to_vec()); MAX_SYMBOLS + 1];
        assert_eq!(what(&s.build()), (15, "symbol count must be 1 to 64"));
        for n in 0..good.len() {
            assert!(Image::parse(&good[..n]).is_err());
        }
        for i in base..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                if let Ok(img) = Image::parse(&b) {
                    let syms = img.symbols.unwrap();
                    assert_eq!(syms.iter().count(), syms.count, "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn round_trip() {
        let bytes = sample().build();
        let img = Image::parse(&bytes).unwrap();
        assert_eq!(img.code, &[0x00]);
        assert_eq!(img.funcs().collect::<Vec<_>>(), sample().funcs);
        assert_eq!(img.consts().collect::<Vec<_>>(), vec![-5, 1 << 40]);
        let mut strings = Vec::new();
        img.strings(|s| strings.push(s));
        assert_eq!(strings, vec![&b"dd"[..], &b""[..]]);
        assert_eq!(img.globals, 3);
        assert_eq!(img.tables().collect::<Vec<_>>(), sample().tables);
        let mut probes = Vec::new();
        img.probes(|p| probes.push(p));
        assert_eq!(probes.len(), 1);
        assert_eq!(
            (probes[0].kind, probes[0].addr, probes[0].name),
            (ProbeKind::Kprobe, 0xc0de, &b"vfs_read"[..])
        );
        let mut formats = Vec::new();
        img.formats(|f| formats.push(f));
        assert_eq!(formats, vec![&[0u8, 1][..]]);
        assert_eq!(img.build_id, &[0xab; 20]);
        assert_eq!(img.budget, 500);
        assert_eq!(img.frame_budget, 4000);
    }

    #[test]
    fn header_errors_name_offsets() {
        let good = sample().build();
        assert_eq!(Image::parse(&good[..10]).unwrap_err(), ImageError::TooShort { len: 10 });
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(Image::parse(&b).unwrap_err(), ImageError::BadMagic);
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(Image::parse(&b).unwrap_err(), ImageError::UnsupportedVersion { found: 9 });
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(Image::parse(&b).unwrap_err(), ImageError::LengthMismatch { .. }));
        let mut b = good.clone();
        b[HEADER_LEN] = 0x63; // first section kind -> unknown
        assert_eq!(
            Image::parse(&b).unwrap_err(),
            ImageError::UnknownSection { kind: 0x63, offset: HEADER_LEN }
        );
        let mut b = good.clone();
        b[HEADER_LEN + SECTION_ENTRY_LEN] = 1; // second entry also CODE
        assert_eq!(
            Image::parse(&b).unwrap_err(),
            ImageError::DuplicateSection { kind: 1, offset: HEADER_LEN + SECTION_ENTRY_LEN }
        );
        let mut b = good.clone();
        b[HEADER_LEN + 8] = 0xff; // code length huge
        assert_eq!(
            Image::parse(&b).unwrap_err(),
            ImageError::SectionOutOfBounds { kind: 1, offset: HEADER_LEN }
        );
    }

    #[test]
    fn section_content_errors_are_reported_with_image_offsets() {
        let mut s = sample();
        s.probes[0].name = b"bad name".to_vec();
        let b = s.build();
        let err = Image::parse(&b).unwrap_err();
        let ImageError::Malformed { kind: 7, offset, what } = err else { panic!("{err:?}") };
        assert_eq!(what, "probe name is not printable ASCII");
        assert_eq!(&b[offset - 16..offset - 4], &[1, 8, 0, 0, 0, 0, 0, 0, 0xde, 0xc0, 0, 0]);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_valid_never_a_panic() {
        let good = sample().build();
        for n in 0..good.len() {
            assert!(Image::parse(&good[..n]).is_err());
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = Image::parse(&b);
            }
        }
    }
}
