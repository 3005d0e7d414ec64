//! Link settings for the `ktap-agent` binary that cannot live in `.cargo/config.toml`.
//!
//! Cross builds link with `ld.lld` (see the root `.cargo/config.toml`). A host build of the binary
//! (x86_64 Linux, for smoke tests) links through `cc`, which must be told that the binary brings its
//! own `_start` and no libc: no crt objects, static, not position-independent (nothing would apply
//! the relocations of a PIE).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_bin = std::env::var_os("CARGO_FEATURE_TARGET").is_some();
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "gnu");
    if target_bin && gnu {
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
