//! Compressed DWARF sections: `SHF_COMPRESSED` (an ELF compression header, then zlib or zstd, as
//! `--compress-debug-sections` and `CONFIG_DEBUG_INFO_COMPRESSED` write) and the older GNU
//! `.zdebug_*` form (`ZLIB`, the big-endian size, then zlib). Inflated once per vmlinux, when the
//! first DWARF query needs them.

use std::ops::Range;

/// `ch_type` values of the ELF compression header.
const ELFCOMPRESS_ZLIB: u32 = 1;
const ELFCOMPRESS_ZSTD: u32 = 2;

/// How a section is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Zlib,
    Zstd,
    /// A `ch_type` this reader does not know.
    Unknown(u32),
}

/// A compressed section: where its bytes are, how they are packed and how big they unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    /// The whole section in the file (header included).
    pub stored: Range<usize>,
    /// The compressed stream in the file.
    pub payload: Range<usize>,
    pub codec: Codec,
    /// Size once inflated.
    pub size: u64,
}

/// An `SHF_COMPRESSED` section stored at `stored` of `data`: read its `Elf32_Chdr`/`Elf64_Chdr`.
pub(crate) fn elf_compressed(
    data: &[u8],
    stored: Range<usize>,
    is_64: bool,
    le: bool,
) -> Result<Packed, String> {
    let bytes = data.get(stored.clone()).ok_or("compressed section lies outside the file")?;
    let u32_at = |o: usize| -> Option<u32> {
        let a: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
        Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    };
    let u64_at = |o: usize| -> Option<u64> {
        let a: [u8; 8] = bytes.get(o..o + 8)?.try_into().ok()?;
        Some(if le { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) })
    };
    let short = || format!("compressed section header truncated ({} bytes)", bytes.len());
    // Elf64_Chdr: type, reserved, size, align (24 bytes); Elf32_Chdr: type, size, align (12 bytes)
    let (ch_type, size, header) = if is_64 {
        (u32_at(0).ok_or_else(short)?, u64_at(8).ok_or_else(short)?, 24)
    } else {
        (u32_at(0).ok_or_else(short)?, u64::from(u32_at(4).ok_or_else(short)?), 12)
    };
    let codec = match ch_type {
        ELFCOMPRESS_ZLIB => Codec::Zlib,
        ELFCOMPRESS_ZSTD => Codec::Zstd,
        t => Codec::Unknown(t),
    };
    Ok(Packed { payload: stored.start + header..stored.end, stored, codec, size })
}

/// A GNU `.zdebug_*` section: `ZLIB`, the inflated size as 8 big-endian bytes, then zlib.
pub(crate) fn gnu_zdebug(data: &[u8], stored: Range<usize>) -> Result<Packed, String> {
    let bytes = data.get(stored.clone()).ok_or("compressed section lies outside the file")?;
    let (Some(b"ZLIB"), Some(size)) = (bytes.get(..4), bytes.get(4..12)) else {
        return Err("a .zdebug section without its `ZLIB` header".into());
    };
    let size = u64::from_be_bytes(size.try_into().map_err(|_| "short .zdebug header")?);
    Ok(Packed { payload: stored.start + 12..stored.end, stored, codec: Codec::Zlib, size })
}

/// The inflated bytes of section `name`.
pub(crate) fn inflate(name: &str, p: &Packed, data: &[u8]) -> Result<Box<[u8]>, String> {
    let payload =
        data.get(p.payload.clone()).ok_or_else(|| format!("{name}: compressed data outside the file"))?;
    let size = usize::try_from(p.size).map_err(|_| format!("{name}: inflated size {} is too big", p.size))?;
    let out = match p.codec {
        Codec::Zlib => miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(payload, size)
            .map_err(|e| format!("{name}: corrupt zlib data ({:?})", e.status))?,
        Codec::Zstd => {
            use std::io::Read;
            let mut dec = ruzstd::decoding::StreamingDecoder::new(payload)
                .map_err(|e| format!("{name}: corrupt zstd data ({e})"))?;
            let mut out = Vec::with_capacity(size);
            dec.read_to_end(&mut out).map_err(|e| format!("{name}: corrupt zstd data ({e})"))?;
            out
        }
        Codec::Unknown(t) => {
            return Err(format!(
                "{name} is compressed with ELF compression type {t}, which ktap-host does not know (zlib and zstd are read): decompress it with `objcopy --decompress-debug-sections`"
            ));
        }
    };
    if out.len() != size {
        return Err(format!("{name}: inflated to {} bytes, its header says {size}", out.len()));
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zlib(raw: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec_zlib(raw, 6)
    }

    #[test]
    fn elf64_and_elf32_headers_of_both_byte_orders_inflate() {
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for (is_64, le) in [(true, true), (true, false), (false, true), (false, false)] {
            let mut sec = Vec::new();
            let w32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            let w64 = |v: u64| if le { v.to_le_bytes() } else { v.to_be_bytes() };
            sec.extend(w32(ELFCOMPRESS_ZLIB));
            if is_64 {
                sec.extend(w32(0));
                sec.extend(w64(raw.len() as u64));
                sec.extend(w64(1));
            } else {
                sec.extend(w32(raw.len() as u32));
                sec.extend(w32(1));
            }
            sec.extend(zlib(&raw));
            let mut file = vec![0xeeu8; 7];
            file.extend(&sec);
            let p = elf_compressed(&file, 7..file.len(), is_64, le).expect("header");
            assert_eq!(p.codec, Codec::Zlib);
            assert_eq!(&*inflate(".debug_info", &p, &file).expect("inflate"), &raw[..]);
        }
    }

    #[test]
    fn gnu_zdebug_inflates_and_bad_input_is_an_error_naming_the_section() {
        let raw = b"struct sk_buff".repeat(100);
        let mut sec = b"ZLIB".to_vec();
        sec.extend((raw.len() as u64).to_be_bytes());
        sec.extend(zlib(&raw));
        let p = gnu_zdebug(&sec, 0..sec.len()).expect("header");
        assert_eq!(&*inflate(".debug_str", &p, &sec).expect("inflate"), &raw[..]);

        let mut broken = sec.clone();
        broken.truncate(20);
        let e = inflate(".debug_str", &gnu_zdebug(&broken, 0..broken.len()).expect("header"), &broken)
            .expect_err("truncated");
        assert!(e.contains(".debug_str"), "{e}");
        assert!(gnu_zdebug(b"ZLIX12345678", 0..12).is_err());
        let unknown = Packed { stored: 0..4, payload: 0..4, codec: Codec::Unknown(7), size: 4 };
        let e = inflate(".debug_info", &unknown, b"abcd").expect_err("unknown codec");
        assert!(e.contains("compression type 7"), "{e}");
    }
}
