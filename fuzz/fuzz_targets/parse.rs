//! Script text -> lexer, parser, checker and code generator (`lang::check`, then `lang::compile`
//! against a kernel where every symbol exists): never a panic or a hang, whatever the input; an
//! image the compiler returns has already passed `Image::parse` and the verifier.
#![no_main]

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, NoKernel};
use ktap_host::sim::AnyKernel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let opts = CompileOptions { arch: Arch::Arm, build_id: Vec::new() };
    let diags = lang::check(src, "fuzz.kp", &opts, &NoKernel);
    // rendering every diagnostic must work too (spans inside the source, on char boundaries)
    let _ = lang::render(&diags, "fuzz.kp", src);
    if let Ok(c) = lang::compile(src, "fuzz.kp", &opts, &AnyKernel) {
        let img = ktap_protocol::image::Image::parse(&c.image).expect("compile returned a malformed image");
        ktap_vm::verify(&img).expect("compile returned an image the verifier refuses");
    }
});
