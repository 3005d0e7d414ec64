//! Bytes -> `Image::parse` -> `ktap_vm::verify`: no panic; a refusal always names an offset inside the
//! image and has a description.
#![no_main]

use ktap_protocol::image::Image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = Image::parse(data) else { return };
    if let Err(e) = ktap_vm::verify(&img) {
        assert!((e.offset() as usize) < data.len() || e.offset() == 0, "{e:?} outside the image");
        assert!(ktap_vm::describe_code(e.code()).is_some(), "{e:?}");
    }
});
