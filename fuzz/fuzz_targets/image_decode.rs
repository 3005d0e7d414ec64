//! Bytes -> `Image::parse`, then every accessor the verifier and the agent use: no panic, whatever
//! the input.
#![no_main]

use ktap_protocol::image::Image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = Image::parse(data) {
        let _ = img.funcs().count() + img.consts().count() + img.tables().count();
        img.strings(|s| assert!(s.len() <= ktap_protocol::limits::MAX_STR));
        img.probes(|p| assert!(p.name.len() <= ktap_protocol::limits::MAX_PROBE_NAME));
        img.formats(|f| assert!(f.len() <= ktap_protocol::limits::MAX_ARGS));
        // the optional SYMBOLS section: every counted entry readable, each found again by offset
        if let Some(syms) = img.symbols {
            assert_eq!(syms.iter().count(), syms.count);
            for s in syms.iter() {
                assert_eq!(syms.at_offset(s.offset), Some(s));
            }
        }
        for insn in ktap_protocol::isa::decode_all(img.code) {
            let _ = insn;
        }
    }
});
