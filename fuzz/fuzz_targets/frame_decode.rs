//! Bytes from the link -> `Deframer`, fed in pieces whose sizes come from the input: no panic, every
//! delivered payload fits `MAX_PAYLOAD` and survives a re-encode/decode round trip unchanged.
#![no_main]

use ktap_protocol::frame::{self, Deframer, MAX_FRAME, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let mut d = Deframer::new();
    let mut payloads = Vec::new();
    // chunk size 1..=256: a serial read returns whatever has arrived
    for piece in stream.chunks(usize::from(split) + 1) {
        d.feed(piece, |r| {
            if let Ok(p) = r {
                payloads.push(p.to_vec());
            }
        });
    }
    for p in payloads {
        assert!(p.len() <= MAX_PAYLOAD);
        let mut buf = [0u8; MAX_FRAME];
        let n = frame::encode(&p, &mut buf).expect("a decoded payload re-encodes");
        let mut again = Vec::new();
        Deframer::new().feed(&buf[..n], |r| again.push(r.map(<[u8]>::to_vec)));
        assert_eq!(again, vec![Ok(p)]);
    }
});
