//! Framing: `0x00 | COBS(payload | CRC-32 LE) | 0x00`.
//!
//! The leading separator lets a reader that joined mid-stream (or after line noise) resynchronise at the
//! next frame; the CRC (CRC-32/ISO-HDLC) catches corruption COBS alone cannot. The decoder never stalls:
//! a bad frame is reported and dropped, and decoding continues with the next separator.

use core::fmt;

use crc::{CRC_32_ISO_HDLC, Crc};

/// Largest payload one frame carries.
pub const MAX_PAYLOAD: usize = 1024;
/// Largest encoded frame: payload + CRC, COBS overhead, two separators.
pub const MAX_FRAME: usize = MAX_PAYLOAD + 4 + (MAX_PAYLOAD + 4) / 254 + 1 + 2;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes than [`MAX_FRAME`] arrived before a separator.
    TooLong,
    /// The bytes between two separators are not valid COBS.
    Cobs,
    /// The frame is shorter than its CRC.
    TooShort,
    /// The CRC does not match: the frame was corrupted on the link.
    Crc,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::TooLong => "frame longer than the maximum",
            FrameError::Cobs => "frame is not valid COBS",
            FrameError::TooShort => "frame shorter than its CRC",
            FrameError::Crc => "frame CRC mismatch",
        })
    }
}

impl core::error::Error for FrameError {}

/// Encode `payload` as one frame into `out`; returns the frame length, or `None` if the payload is
/// larger than [`MAX_PAYLOAD`] or `out` is too small.
pub fn encode(payload: &[u8], out: &mut [u8]) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let crc = CRC32.checksum(payload).to_le_bytes();
    let (first, rest) = out.split_first_mut()?;
    *first = 0;
    let mut enc = cobs::CobsEncoder::new(rest);
    enc.push(payload).ok()?;
    enc.push(&crc).ok()?;
    let n = enc.finalize();
    *rest.get_mut(n)? = 0;
    Some(n + 2)
}

/// Encode into a new vector.
#[cfg(feature = "alloc")]
pub fn encode_vec(payload: &[u8]) -> Option<alloc::vec::Vec<u8>> {
    let mut out = alloc::vec![0u8; MAX_FRAME];
    let n = encode(payload, &mut out)?;
    out.truncate(n);
    Some(out)
}

/// A stream decoder with a fixed buffer: feed it bytes as they arrive, get whole payloads back.
#[derive(Debug)]
pub struct Deframer {
    buf: [u8; MAX_FRAME],
    len: usize,
    overflow: bool,
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer { buf: [0; MAX_FRAME], len: 0, overflow: false }
    }
}

impl Deframer {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; `on_frame` is called with each complete payload or the reason a frame was dropped.
    pub fn feed(&mut self, data: &[u8], mut on_frame: impl FnMut(Result<&[u8], FrameError>)) {
        for &b in data {
            if b != 0 {
                match self.buf.get_mut(self.len) {
                    Some(slot) if !self.overflow => {
                        *slot = b;
                        self.len += 1;
                    }
                    _ => self.overflow = true,
                }
                continue;
            }
            let (len, overflow) = (self.len, self.overflow);
            self.len = 0;
            self.overflow = false;
            if overflow {
                on_frame(Err(FrameError::TooLong));
                continue;
            }
            if len == 0 {
                continue; // separator pairs between frames
            }
            let Some(frame) = self.buf.get_mut(..len) else { continue };
            let n = match cobs::decode_in_place(frame) {
                Ok(n) => n,
                Err(_) => {
                    on_frame(Err(FrameError::Cobs));
                    continue;
                }
            };
            let Some(body_len) = n.checked_sub(4) else {
                on_frame(Err(FrameError::TooShort));
                continue;
            };
            let (body, crc) = frame.split_at(body_len);
            let crc = crc.get(..4).and_then(|c| <[u8; 4]>::try_from(c).ok()).map(u32::from_le_bytes);
            if crc == Some(CRC32.checksum(body)) {
                on_frame(Ok(body));
            } else {
                on_frame(Err(FrameError::Crc));
            }
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    fn decode_all(stream: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut d = Deframer::new();
        let mut out = Vec::new();
        d.feed(stream, |r| out.push(r.map(|p| p.to_vec())));
        out
    }

    #[test]
    fn round_trip_including_zeros_and_max_size() {
        for payload in [vec![], vec![0u8; 10], (0..=255u8).collect(), vec![7u8; MAX_PAYLOAD]] {
            let f = encode_vec(&payload).unwrap();
            assert_eq!(f.iter().filter(|b| **b == 0).count(), 2);
            assert_eq!(decode_all(&f), vec![Ok(payload)]);
        }
        assert!(encode_vec(&vec![0u8; MAX_PAYLOAD + 1]).is_none());
    }

    #[test]
    fn resyncs_after_garbage_and_reports_corruption() {
        let a = encode_vec(b"first").unwrap();
        let b = encode_vec(b"second").unwrap();
        let mut corrupt = encode_vec(b"third").unwrap();
        corrupt[3] ^= 0x40;
        let mut stream = vec![1, 2, 3, 0xff];
        stream.extend(&a);
        stream.extend(&corrupt);
        stream.extend(&b);
        let got = decode_all(&stream);
        assert!(got[0].is_err()); // the garbage before the first separator
        assert_eq!(got[1], Ok(b"first".to_vec()));
        assert!(matches!(got[2], Err(FrameError::Crc) | Err(FrameError::Cobs)));
        assert_eq!(got[3], Ok(b"second".to_vec()));
    }

    #[test]
    fn overlong_frames_are_dropped_not_stalled() {
        let mut stream = vec![0];
        stream.extend(vec![1u8; MAX_FRAME + 10]);
        stream.extend(encode_vec(b"ok").unwrap());
        assert_eq!(decode_all(&stream), vec![Err(FrameError::TooLong), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let f = encode_vec(b"split me").unwrap();
        let mut d = Deframer::new();
        let mut out = Vec::new();
        for b in &f {
            d.feed(core::slice::from_ref(b), |r| out.push(r.map(|p| p.to_vec())));
        }
        assert_eq!(out, vec![Ok(b"split me".to_vec())]);
    }
}
