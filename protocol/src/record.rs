//! Records: what the VM emits per event, and what the agent ships to the host unchanged.
//!
//! A record is ids and raw values; the host owns every string that turns them into text.
//!
//! ```text
//! u16 total length (header included) | u8 kind | u8 flags (0) | u16 id | values...
//! value: u8 tag 0 + i64            (integer)
//!        u8 tag 1 + u8 len + bytes (string, at most MAX_STR bytes)
//!        u8 tag 2 + u8 n + n * (u8 bucket, u32 count)   (the non-empty buckets of an aggregate;
//!                                                        counts saturate at u32::MAX)
//! ```
//!
//! A table entry is its key components, then either the value (int tables) or count, sum, min, max
//! and one buckets value (aggregate tables; stats tables send an empty one). So the host tells the two
//! apart by the last value. With at most 4 keys of MAX_STR bytes and 66 buckets, an entry fits
//! MAX_RECORD (checked below).
//!
//! All integers are little-endian. Records are concatenated back to back in the kernel's ring buffer,
//! in `read()` results and in [`crate::wire::AgentMsg::Records`].

use core::fmt;

use crate::bytes::{Reader, put};
use crate::limits::{MAX_RECORD, MAX_STR};

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 6;

/// What a record carries.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A printf: `id` is the format, the values are its arguments.
    Printf = 1,
    /// One entry of a printed table: `id` is the table, values are key then value.
    TableEntry = 2,
    /// End of a printed table: `id` is the table, values are the entry count and refused inserts.
    TableEnd = 3,
    /// The program called `exit`: the host stops tracing (trace_end still runs). No values.
    Exit = 4,
    /// A hit of handler function `id` ran out of instruction budget and was aborted. Sent the first
    /// time per function only (every such hit is counted in `budget_exhausted`), so the host can
    /// name the probe without a flood. No values.
    BudgetExhausted = 5,
}

/// Size of one encoded bucket (index + count).
pub const BUCKET_LEN: usize = 5;

// the largest aggregate entry: header, 4 string keys, 4 stats, every bucket of a linear table
const _: () = assert!(
    RECORD_HEADER_LEN
        + crate::limits::MAX_KEYS * (2 + MAX_STR)
        + 4 * 9
        + 2
        + (crate::limits::MAX_LINEAR_BUCKETS as usize + 2) * BUCKET_LEN
        <= MAX_RECORD
);

impl RecordKind {
    /// Decode.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Printf),
            2 => Some(RecordKind::TableEntry),
            3 => Some(RecordKind::TableEnd),
            4 => Some(RecordKind::Exit),
            5 => Some(RecordKind::BudgetExhausted),
            _ => None,
        }
    }
}

/// A value inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A 64-bit integer.
    Int(i64),
    /// A string (bytes; the kernel does not promise UTF-8).
    Str(&'a [u8]),
    /// The non-empty buckets of an aggregate, encoded (see [`Value::buckets`]).
    Buckets(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The (bucket, count) pairs of a [`Value::Buckets`]; nothing for other values.
    pub fn buckets(&self) -> impl Iterator<Item = (u8, u32)> + 'a {
        let raw: &'a [u8] = match self {
            Value::Buckets(b) => b,
            _ => &[],
        };
        raw.chunks_exact(BUCKET_LEN).map(|c| {
            let mut r = Reader::new(c);
            (r.u8().unwrap_or(0), r.u32().unwrap_or(0))
        })
    }
}

/// Writes one record into a caller-supplied buffer without allocating or panicking.
/// Any write that does not fit marks the record as overflowed; [`RecordWriter::finish`] then fails.
#[derive(Debug)]
pub struct RecordWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    ok: bool,
}

impl<'b> RecordWriter<'b> {
    /// Start a record of `kind` with `id` in `buf`.
    pub fn new(buf: &'b mut [u8], kind: RecordKind, id: u16) -> Self {
        let mut w = RecordWriter { buf, pos: 0, ok: true };
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[2] = kind as u8;
        header[4..6].copy_from_slice(&id.to_le_bytes());
        w.raw(&header);
        w
    }

    fn raw(&mut self, bytes: &[u8]) {
        if self.ok && self.pos.saturating_add(bytes.len()) <= MAX_RECORD {
            self.ok = put(self.buf, &mut self.pos, bytes).is_some();
        } else {
            self.ok = false;
        }
    }

    /// Append an integer.
    pub fn int(&mut self, v: i64) {
        self.raw(&[0]);
        self.raw(&v.to_le_bytes());
    }

    /// Append a string (cut to [`MAX_STR`] bytes).
    pub fn str(&mut self, s: &[u8]) {
        let s = s.get(..MAX_STR).unwrap_or(s);
        self.raw(&[1, s.len() as u8]);
        self.raw(s);
    }

    /// Append the non-zero buckets of `counts` (bucket i = `counts[i]`; at most 255 are looked at).
    pub fn buckets(&mut self, counts: &[u64]) {
        let n = counts.iter().take(255).filter(|c| **c != 0).count();
        self.raw(&[2, n as u8]);
        for (i, c) in counts.iter().take(255).enumerate() {
            if *c != 0 {
                let c = u32::try_from(*c).unwrap_or(u32::MAX);
                self.raw(&[i as u8]);
                self.raw(&c.to_le_bytes());
            }
        }
    }

    /// Patch the length and return the record's bytes, or `None` if it did not fit.
    pub fn finish(self) -> Option<&'b [u8]> {
        if !self.ok {
            return None;
        }
        let len = self.pos as u16;
        self.buf.get_mut(0..2)?.copy_from_slice(&len.to_le_bytes());
        self.buf.get(..self.pos)
    }
}

/// Why a record stream could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// A record header or body runs past the end of the data.
    Truncated {
        /// Offset of the record.
        offset: usize,
    },
    /// A record's length field is shorter than its header.
    BadLength {
        /// Offset of the record.
        offset: usize,
    },
    /// Unknown record kind.
    UnknownKind {
        /// Offset of the record.
        offset: usize,
        /// The kind byte.
        kind: u8,
    },
    /// A value inside the record is malformed.
    BadValue {
        /// Offset of the value.
        offset: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated { offset } => write!(f, "record at byte offset {offset} is truncated"),
            RecordError::BadLength { offset } => write!(f, "record at byte offset {offset} has a bad length"),
            RecordError::UnknownKind { offset, kind } => {
                write!(f, "record at byte offset {offset} has unknown kind {kind}")
            }
            RecordError::BadValue { offset } => write!(f, "malformed value at byte offset {offset}"),
        }
    }
}

impl core::error::Error for RecordError {}

/// One record, borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// What it carries.
    pub kind: RecordKind,
    /// Format or table id.
    pub id: u16,
    /// Offset of the record in the buffer it was read from.
    pub offset: usize,
    body: &'a [u8],
}

impl<'a> Record<'a> {
    /// The values, in order. A malformed value ends the iteration with an error.
    pub fn values(&self) -> impl Iterator<Item = Result<Value<'a>, RecordError>> + 'a {
        let mut r = Reader::new(self.body);
        let base = self.offset + RECORD_HEADER_LEN;
        let mut failed = false;
        core::iter::from_fn(move || {
            if failed || r.remaining() == 0 {
                return None;
            }
            let at = base + r.pos();
            let bad = RecordError::BadValue { offset: at };
            let v = match r.u8() {
                Some(0) => r.i64().map(Value::Int),
                Some(1) => r.u8().and_then(|n| r.take(n as usize)).map(Value::Str),
                Some(2) => r.u8().and_then(|n| r.take(n as usize * BUCKET_LEN)).map(Value::Buckets),
                _ => None,
            };
            failed = v.is_none();
            Some(v.ok_or(bad))
        })
    }
}

/// Iterate over the records concatenated in `data`.
pub fn records(data: &[u8]) -> impl Iterator<Item = Result<Record<'_>, RecordError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || pos >= data.len() {
            return None;
        }
        let offset = pos;
        let rec = (|| {
            let mut r = Reader::at(data, pos);
            let len = r.u16().ok_or(RecordError::Truncated { offset })? as usize;
            let kind_byte = r.u8().ok_or(RecordError::Truncated { offset })?;
            let _flags = r.u8().ok_or(RecordError::Truncated { offset })?;
            let id = r.u16().ok_or(RecordError::Truncated { offset })?;
            if len < RECORD_HEADER_LEN {
                return Err(RecordError::BadLength { offset });
            }
            let kind =
                RecordKind::from_u8(kind_byte).ok_or(RecordError::UnknownKind { offset, kind: kind_byte })?;
            let body = r.take(len - RECORD_HEADER_LEN).ok_or(RecordError::Truncated { offset })?;
            Ok((Record { kind, id, offset, body }, len))
        })();
        match rec {
            Ok((rec, len)) => {
                pos += len;
                Some(Ok(rec))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// The length of the first whole record in `data`, if `data` starts with one.
pub fn first_len(data: &[u8]) -> Option<usize> {
    let len = Reader::new(data).u16()? as usize;
    (len >= RECORD_HEADER_LEN && len <= data.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        extern crate std;
        use std::vec::Vec;
        let mut buf = [0u8; 64];
        let mut w = RecordWriter::new(&mut buf, RecordKind::Printf, 7);
        w.int(-3);
        w.str(b"dd");
        let rec = w.finish().unwrap().to_vec();
        assert_eq!(rec.len(), 6 + 9 + 4);
        let all = [rec.clone(), rec.clone()].concat();
        let got: Vec<_> = records(&all).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 2);
        let r = got[1];
        assert_eq!((r.kind, r.id, r.offset), (RecordKind::Printf, 7, rec.len()));
        let vals: Vec<_> = r.values().map(|v| v.unwrap()).collect();
        assert_eq!(vals, [Value::Int(-3), Value::Str(b"dd")]);
        assert_eq!(first_len(&all), Some(rec.len()));
    }

    #[test]
    fn buckets_keep_only_nonzero_counts() {
        extern crate std;
        use std::vec::Vec;
        let mut buf = [0u8; 64];
        let mut w = RecordWriter::new(&mut buf, RecordKind::TableEntry, 1);
        w.int(5);
        w.buckets(&[0, 3, 0, 1 << 40]);
        let rec = w.finish().unwrap().to_vec();
        let r = records(&rec).next().unwrap().unwrap();
        let vals: Vec<_> = r.values().map(|v| v.unwrap()).collect();
        assert_eq!(vals.len(), 2);
        assert_eq!(vals[1].buckets().collect::<Vec<_>>(), [(1, 3), (3, u32::MAX)]);
    }

    #[test]
    fn overflow_is_refused_not_truncated() {
        let mut buf = [0u8; 10];
        let mut w = RecordWriter::new(&mut buf, RecordKind::Printf, 0);
        w.int(1);
        assert!(w.finish().is_none());
    }

    #[test]
    fn malformed_streams_are_errors() {
        assert_eq!(records(&[5, 0]).next(), Some(Err(RecordError::Truncated { offset: 0 })));
        assert_eq!(records(&[2, 0, 1, 0, 0, 0]).next(), Some(Err(RecordError::BadLength { offset: 0 })));
        assert_eq!(
            records(&[6, 0, 9, 0, 0, 0]).next(),
            Some(Err(RecordError::UnknownKind { offset: 0, kind: 9 }))
        );
        let r = records(&[8, 0, 1, 0, 0, 0, 7, 0]).next().unwrap().unwrap();
        assert_eq!(r.values().next(), Some(Err(RecordError::BadValue { offset: 6 })));
    }
}
