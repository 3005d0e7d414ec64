//! Packed bytes from the link -> `Unpacker` (what the agent runs on a deploy's file chunks), fed in
//! pieces whose sizes come from the input: no panic, never more output than the announced limit, and
//! whatever unpacks completely packs and unpacks again to the same bytes.
#![no_main]

use ktap_protocol::pack::{Unpacker, crc32, pack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let Some((&limit, packed)) = rest.split_first() else { return };
    // limits up to 64 KiB in 256-byte steps: small enough that bombs hit them
    let limit = (u64::from(limit) + 1) * 256;
    let mut u = Unpacker::new(limit);
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = packed.chunks(usize::from(split) + 1).collect();
    let mut ok = true;
    for (i, piece) in pieces.iter().enumerate() {
        let more = i + 1 < pieces.len();
        let r = u.feed(piece, more, |p| {
            out.extend_from_slice(p);
            Ok::<(), ()>(())
        });
        assert!(out.len() as u64 <= limit, "{} bytes out of a {limit}-byte limit", out.len());
        if r.is_err() {
            ok = false;
            break;
        }
    }
    if ok && !pieces.is_empty() && u.finish::<()>(out.len() as u64, crc32(&out)).is_ok() {
        let again = pack(&out);
        let mut v = Unpacker::new(out.len() as u64);
        let mut back = Vec::new();
        v.feed(&again, false, |p| {
            back.extend_from_slice(p);
            Ok::<(), ()>(())
        })
        .expect("our own packing unpacks");
        assert!(back == out);
    }
});
