//! Golden tests of the script compiler: `tests/lang/ok/*.kp` must compile, and the listing of the
//! image (with its sidecar) must equal `*.disasm`; `tests/lang/err/*.kp` must fail, and the rendered
//! diagnostics must equal `*.err`; every listing assembles back to the same image bytes.
//! `UPDATE_GOLDEN=1 cargo test -p ktap-host --test lang_golden` rewrites the expected files; review the diff.

#[path = "lang/support.rs"]
mod support;

use std::path::Path;

use ktap_host::lang::{self, disasm::disassemble};
use ktap_protocol::image::Image;
use support::{Settings, scripts};

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Compare `actual` with the file `expected`, or rewrite it under `UPDATE_GOLDEN=1`.
fn golden(expected: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    if want != actual {
        failures.push(format!(
            "{} differs (UPDATE_GOLDEN=1 to accept):\n--- expected\n{want}\n+++ actual\n{actual}",
            expected.display()
        ));
    }
}

#[test]
fn ok_scripts_compile_to_their_listing() {
    let mut failures = Vec::new();
    let all = scripts("ok");
    assert!(all.len() >= 8, "ok scripts missing");
    for path in all {
        let src = std::fs::read_to_string(&path).unwrap();
        let s = Settings::of(&src);
        let name = file_name(&path);
        let out = match lang::compile(&src, &name, &s.options(), s.resolver()) {
            Ok(c) => {
                let img = Image::parse(&c.image).expect("compile returned an unparsable image");
                ktap_vm::verify(&img).expect("compile returned an image the VM refuses");
                // the sidecar survives the trip through its JSON file
                let json = serde_json::to_string(&c.sidecar).unwrap();
                assert_eq!(serde_json::from_str::<ktap_host::sidecar::Sidecar>(&json).unwrap(), c.sidecar);
                assert!(c.sidecar.probes.len() <= c.sidecar.funcs.len());
                disassemble(&c.image, Some(&c.sidecar)).unwrap()
            }
            Err(d) => {
                failures.push(format!("{name} should compile:\n{}", lang::render(&d, &name, &src)));
                continue;
            }
        };
        golden(&path.with_extension("disasm"), &out, &mut failures);
        // `check` agrees
        let diags = lang::check(&src, &name, &s.options(), s.resolver());
        assert!(diags.is_empty(), "{name}: check reports {diags:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn err_scripts_report_their_diagnostics() {
    let mut failures = Vec::new();
    let all = scripts("err");
    assert!(all.len() >= 15, "err scripts missing");
    for path in all {
        let src = std::fs::read_to_string(&path).unwrap();
        let s = Settings::of(&src);
        let name = file_name(&path);
        let text = match lang::compile(&src, &name, &s.options(), s.resolver()) {
            Ok(_) => {
                failures.push(format!("{name} should not compile"));
                continue;
            }
            Err(d) => {
                let mut sorted = d.clone();
                sorted.sort_by_key(|d| d.primary.start);
                assert_eq!(sorted, d, "{name}: diagnostics are not sorted by position");
                lang::render(&d, &name, &src)
            }
        };
        golden(&path.with_extension("err"), &text, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ok_listings_assemble_back_to_the_same_bytes() {
    for path in scripts("ok") {
        let src = std::fs::read_to_string(&path).unwrap();
        let s = Settings::of(&src);
        let name = file_name(&path);
        let c = lang::compile(&src, &name, &s.options(), s.resolver()).unwrap();
        for sidecar in [None, Some(&c.sidecar)] {
            let text = disassemble(&c.image, sidecar).unwrap();
            let back = ktap_protocol::asm::assemble(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert!(
                back.image.build() == c.image,
                "{name}: the listing does not assemble to the image\n{text}"
            );
        }
    }
}
