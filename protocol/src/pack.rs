//! Compression of bulk transfers (files sent by `deploy` over a serial line): raw DEFLATE
//! (RFC 1951, miniz_oxide), packed on the host ([`pack`], feature `alloc`) and unpacked on the board
//! as the pieces arrive ([`Unpacker`], no allocation, a fixed 32 KiB window).
//!
//! A packed stream is untrusted input to the agent: [`Unpacker::feed`] never panics, never writes
//! more than the announced length (a small packed stream cannot expand into a full disk), and the
//! whole file's length and CRC-32 are checked by [`Unpacker::finish`] before the agent renames it
//! into place. Frames carry their own CRC; this one covers the file as written, end to end.

use crc::{CRC_32_ISO_HDLC, Crc, Digest};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// The CRC of whole files ([`Unpacker::finish`], [`crc32`]): the same polynomial as the frames.
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// DEFLATE's largest match distance: the unpacker keeps this much of the output.
pub const WINDOW: usize = 32 * 1024;

/// The CRC-32 (ISO-HDLC, as zlib's) of `data`, which [`Unpacker::finish`] compares against.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}

/// Pack `data` for [`Unpacker`] (best compression: the link, not the host's CPU, is the bottleneck).
#[cfg(feature = "alloc")]
pub fn pack(data: &[u8]) -> alloc::vec::Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 9)
}

/// Why a packed stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackError<E> {
    /// The packed bytes are not a valid DEFLATE stream (at packed byte `at`, counted from the start).
    Corrupt {
        /// Packed bytes consumed before the decoder gave up.
        at: u64,
    },
    /// The stream unpacks to more than the announced length.
    TooLong {
        /// The announced length.
        limit: u64,
    },
    /// The stream ended before its last block, or bytes followed its last block.
    Truncated,
    /// The unpacked length or CRC differs from the announced one.
    Mismatch {
        /// Bytes unpacked.
        len: u64,
        /// Their CRC-32.
        crc: u32,
    },
    /// The sink refused the output (e.g. a failed write).
    Sink(E),
}

/// A streaming DEFLATE decoder into a wrapping 32 KiB window. Feed it packed pieces in order; every
/// unpacked piece goes to a sink (the file) as soon as it is decoded.
pub struct Unpacker {
    state: DecompressorOxide,
    window: [u8; WINDOW],
    /// Where the next output byte goes in `window`.
    pos: usize,
    /// Packed bytes consumed.
    packed: u64,
    /// Unpacked bytes produced.
    out: u64,
    /// The announced unpacked length.
    limit: u64,
    crc: Digest<'static, u32>,
    done: bool,
}

impl core::fmt::Debug for Unpacker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Unpacker")
            .field("packed", &self.packed)
            .field("out", &self.out)
            .field("limit", &self.limit)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Unpacker {
    /// A decoder for a stream announced to unpack to `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Unpacker {
            state: DecompressorOxide::new(),
            window: [0; WINDOW],
            pos: 0,
            packed: 0,
            out: 0,
            limit,
            crc: CRC32.digest(),
            done: false,
        }
    }

    /// Start over for another stream (keeps the window's memory).
    pub fn reset(&mut self, limit: u64) {
        self.state.init();
        self.pos = 0;
        self.packed = 0;
        self.out = 0;
        self.limit = limit;
        self.crc = CRC32.digest();
        self.done = false;
    }

    /// Unpacked bytes so far.
    pub fn unpacked(&self) -> u64 {
        self.out
    }

    /// Decode the next packed piece; `more` says whether further pieces follow. Every unpacked
    /// piece is handed to `sink` in order.
    pub fn feed<E>(
        &mut self,
        mut input: &[u8],
        more: bool,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), UnpackError<E>> {
        if self.done {
            return if input.is_empty() { Ok(()) } else { Err(UnpackError::Truncated) };
        }
        let flags = if more { inflate_flags::TINFL_FLAG_HAS_MORE_INPUT } else { 0 };
        loop {
            let (status, used, produced) =
                decompress(&mut self.state, input, &mut self.window, self.pos, flags);
            input = input.get(used..).unwrap_or(&[]);
            self.packed += used as u64;
            let end = self.pos.saturating_add(produced).min(WINDOW);
            let piece = self.window.get(self.pos..end).unwrap_or(&[]);
            self.out += piece.len() as u64;
            if self.out > self.limit {
                return Err(UnpackError::TooLong { limit: self.limit });
            }
            self.crc.update(piece);
            sink(piece).map_err(UnpackError::Sink)?;
            self.pos = end % WINDOW;
            match status {
                TINFLStatus::Done => {
                    self.done = true;
                    return if input.is_empty() { Ok(()) } else { Err(UnpackError::Truncated) };
                }
                TINFLStatus::NeedsMoreInput if more => return Ok(()),
                TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress if !more => {
                    return Err(UnpackError::Truncated);
                }
                // the window filled up: it wraps, and decoding goes on
                TINFLStatus::HasMoreOutput if used > 0 || produced > 0 => {}
                _ => return Err(UnpackError::Corrupt { at: self.packed }),
            }
        }
    }

    /// The stream is complete: check that it ended and unpacked to `len` bytes with CRC-32 `crc`.
    pub fn finish<E>(&self, len: u64, crc: u32) -> Result<(), UnpackError<E>> {
        if !self.done {
            return Err(UnpackError::Truncated);
        }
        let got = self.crc.clone().finalize();
        if self.out != len || got != crc {
            return Err(UnpackError::Mismatch { len: self.out, crc: got });
        }
        Ok(())
    }
}

/// A DEFLATE compressor for a stream sent in flushed pieces (the record stream): what
/// [`StreamPacker::pack_flush`] returns ends on a byte boundary with everything before it decodable
/// (a sync flush), while matches still reach back into earlier pieces, so repeated events cost a few
/// bits each. Its buffers (about 330 KiB, allocated once) are why only the agent and the host use it.
#[cfg(feature = "alloc")]
pub struct StreamPacker {
    c: alloc::boxed::Box<miniz_oxide::deflate::core::CompressorOxide>,
}

#[cfg(feature = "alloc")]
impl core::fmt::Debug for StreamPacker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamPacker").finish_non_exhaustive()
    }
}

#[cfg(feature = "alloc")]
impl Default for StreamPacker {
    fn default() -> Self {
        Self::new()
    }
}

/// Room [`StreamPacker::pack_flush`] needs for `n` input bytes in the worst case: incompressible
/// input goes out as stored blocks (5 bytes each), plus the flush marker.
pub const fn packed_bound(n: usize) -> usize {
    n + n / 8 + 64
}

/// The most input whose [`packed_bound`] fits in `room`.
pub const fn unpacked_fit(room: usize) -> usize {
    room.saturating_sub(64) * 8 / 9
}

#[cfg(feature = "alloc")]
impl StreamPacker {
    /// A raw-DEFLATE stream at the fastest level (the board's CPU is slow; repetition is what
    /// pays on trace records).
    pub fn new() -> Self {
        use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
        let flags = create_comp_flags_from_zip_params(1, -15, 0);
        StreamPacker { c: alloc::boxed::Box::new(CompressorOxide::new(flags)) }
    }

    /// Start a new stream (the host starts a new decoder at the same point).
    pub fn reset(&mut self) {
        self.c.reset();
    }

    /// Compress `input` and flush into `out`; returns the bytes written. `None` when `out` is smaller
    /// than [`packed_bound`] of the input allows for (the stream is then broken: reset it).
    pub fn pack_flush(&mut self, input: &[u8], out: &mut [u8]) -> Option<usize> {
        use miniz_oxide::deflate::core::{TDEFLFlush, TDEFLStatus, compress};
        if out.len() < packed_bound(input.len()) {
            return None;
        }
        let (status, used, n) = compress(&mut self.c, input, out, TDEFLFlush::Sync);
        (status == TDEFLStatus::Okay && used == input.len()).then_some(n)
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn unpack_in_pieces(packed: &[u8], limit: u64, piece: usize) -> Result<Vec<u8>, UnpackError<()>> {
        let mut u = Unpacker::new(limit);
        let mut out = Vec::new();
        let mut chunks = packed.chunks(piece.max(1)).peekable();
        if chunks.peek().is_none() {
            u.feed(&[], false, |_| Ok(()))?;
        }
        while let Some(c) = chunks.next() {
            let more = chunks.peek().is_some();
            u.feed(c, more, |p| {
                out.extend_from_slice(p);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Data larger than the window with long-distance repeats, so matches reach across the wrap.
    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        let mut x = 12345u32;
        for i in 0..200_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.push(if i % 3 == 0 { (x >> 24) as u8 } else { b"ktap-rs"[(i % 7) as usize] });
        }
        let copy = v[1000..40_000].to_vec();
        v.extend_from_slice(&copy);
        v
    }

    #[test]
    fn round_trips_in_any_piece_size() {
        let data = sample();
        let packed = pack(&data);
        assert!(packed.len() < data.len() * 2 / 3, "{} of {}", packed.len(), data.len());
        for piece in [1, 7, 48, 512, 1000, packed.len()] {
            let out = unpack_in_pieces(&packed, data.len() as u64, piece).unwrap();
            assert!(out == data, "piece {piece}");
        }
        let mut u = Unpacker::new(data.len() as u64);
        u.feed(&packed, false, |_| Ok::<(), ()>(())).unwrap();
        u.finish::<()>(data.len() as u64, crc32(&data)).unwrap();
        assert!(matches!(u.finish::<()>(data.len() as u64, 0), Err(UnpackError::Mismatch { .. })));
    }

    #[test]
    fn empty_input_round_trips() {
        let packed = pack(&[]);
        let out = unpack_in_pieces(&packed, 0, 512).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_expansion_beyond_the_announced_length() {
        let data = std::vec![0u8; 100_000];
        let packed = pack(&data);
        let err = unpack_in_pieces(&packed, 99_999, 512).unwrap_err();
        assert_eq!(err, UnpackError::TooLong { limit: 99_999 });
    }

    #[test]
    fn truncated_and_trailing_streams_are_refused() {
        let data = sample();
        let packed = pack(&data);
        let cut = &packed[..packed.len() - 10];
        assert_eq!(unpack_in_pieces(cut, data.len() as u64, 512).unwrap_err(), UnpackError::Truncated);
        let mut long = packed.clone();
        long.extend_from_slice(b"junk");
        assert_eq!(unpack_in_pieces(&long, data.len() as u64, 512).unwrap_err(), UnpackError::Truncated);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for seed in 0..200u32 {
            let mut x = seed.wrapping_mul(2_654_435_761);
            let junk: Vec<u8> = (0..300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = unpack_in_pieces(&junk, 1 << 20, 37);
        }
        // a block type 3 (reserved) is corrupt at once
        assert!(matches!(unpack_in_pieces(&[0xff; 8], 100, 8), Err(UnpackError::Corrupt { .. })));
    }

    #[test]
    fn sink_errors_stop_the_stream() {
        let packed = pack(b"hello hello hello");
        let mut u = Unpacker::new(100);
        assert_eq!(u.feed(&packed, false, |_| Err(7)), Err(UnpackError::Sink(7)));
    }
    #[test]
    fn a_flushed_stream_decodes_piece_by_piece_and_repeats_cost_little() {
        let mut p = StreamPacker::new();
        let mut u = Unpacker::new(u64::MAX);
        let record = b"\x1c\x00\x01\x00\x05\x00\x01\x02dd\x00\x7b\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00";
        let mut wire = 0;
        let mut out = std::vec![0u8; packed_bound(record.len() * 10)];
        for i in 0..100 {
            let input = record.repeat(1 + i % 10);
            let n = p.pack_flush(&input, &mut out).unwrap();
            wire += n;
            let mut got = Vec::new();
            u.feed(&out[..n], true, |b| {
                got.extend_from_slice(b);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(got == input, "piece {i} decodes on its own");
        }
        let events: usize = (0..100).map(|i| 1 + i % 10).sum();
        assert!(wire * 4 < events * record.len(), "{wire} bytes for {events} records");
        // incompressible input stays within the bound
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut out = std::vec![0u8; packed_bound(noise.len())];
        assert!(p.pack_flush(&noise, &mut out).is_some());
        assert_eq!(p.pack_flush(&noise, &mut out[..100]), None);
        assert!(unpacked_fit(packed_bound(4096)) >= 4096 && packed_bound(unpacked_fit(5000)) <= 5000);
    }
}
