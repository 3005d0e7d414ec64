//! The compiler's public API: `check` vs `compile`, limits that need generated scripts, and
//! what `compile` hands to `push` (an image that parses and verifies, and a matching sidecar).

#[path = "lang/support.rs"]
mod support;

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, NoKernel};
use ktap_protocol::image::{Image, ProbeKind};
use support::FakeKernel;

const SKELETON: &str = "# count vfs_read calls per process name
var reads = {}
kprobe:vfs_read {
    reads[execname] += 1
}
trace_end {
    print(reads)
}
";

fn opts() -> CompileOptions {
    CompileOptions { arch: Arch::Arm, build_id: support::BUILD_ID.to_vec() }
}

#[test]
fn skeleton_compiles_with_symbols_and_checks_without() {
    let c = lang::compile(SKELETON, "skel.kp", &opts(), &FakeKernel).unwrap();
    let img = Image::parse(&c.image).unwrap();
    ktap_vm::verify(&img).unwrap();
    assert_eq!(img.build_id, &support::BUILD_ID);
    assert_eq!(img.budget, 0);
    let mut probes = Vec::new();
    img.probes(|p| probes.push((p.kind, p.addr != 0, p.name.to_vec())));
    assert_eq!(
        probes,
        [(ProbeKind::Kprobe, true, b"vfs_read".to_vec()), (ProbeKind::End, false, Vec::new())]
    );
    assert_eq!(c.sidecar.source_file, "skel.kp");
    assert_eq!(c.sidecar.tables[0].name, "reads");
    assert_eq!(c.sidecar.probes[0].spec, "kprobe:vfs_read");
    assert_eq!(&SKELETON[c.sidecar.probes[0].span.start..c.sidecar.probes[0].span.end], "kprobe:vfs_read");

    assert!(lang::check(SKELETON, "skel.kp", &opts(), &NoKernel).is_empty());
    let d = lang::compile(SKELETON, "skel.kp", &opts(), &NoKernel).unwrap_err();
    assert_eq!(d.len(), 1);
    assert!(lang::render(&d, "skel.kp", SKELETON).contains("pass `--vmlinux PATH`"));
}

#[test]
fn rendered_errors_name_file_line_and_column() {
    let src = "kprobe:vfs_read {\n    print(nope)\n}\n";
    let d = lang::check(src, "scripts/x.kp", &opts(), &NoKernel);
    let text = lang::render(&d, "scripts/x.kp", src);
    assert!(text.starts_with("error: unknown identifier `nope`\n"), "{text}");
    assert!(text.contains("--> scripts/x.kp:2:11"), "{text}");
    assert!(text.contains("    print(nope)"), "{text}");
    assert!(text.contains("^^^^"), "{text}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let src = "kprobe:vfs_read {\n a = 1\n b = 2\n}\nkprobe:no_such_x { c = 3 }\n";
    let d = lang::compile(src, "x.kp", &opts(), &FakeKernel).unwrap_err();
    let msgs: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "unknown identifier `a`",
            "unknown identifier `b`",
            "unknown kernel function `no_such_x`",
            "unknown identifier `c`"
        ]
    );
}

#[test]
fn code_size_limit() {
    let body = "    print(1)\n".repeat(7000);
    let src = format!("kprobe:vfs_read {{\n{body}}}\n");
    let d = lang::compile(&src, "big.kp", &opts(), &FakeKernel).unwrap_err();
    assert!(d[0].message.starts_with("the program is too large"), "{:?}", d[0]);
}

#[test]
fn probe_limit() {
    let src: String = (0..65).map(|i| format!("kprobe:f{i} {{ print({i}) }}\n")).collect();
    let d = lang::compile(&src, "many.kp", &opts(), &FakeKernel).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].message, "too many probes: a program may have at most 64");
    let ok: String = (0..64).map(|i| format!("kprobe:f{i} {{ print({i}) }}\n")).collect();
    lang::compile(&ok, "many.kp", &opts(), &FakeKernel).unwrap();
}

#[test]
fn arch_decides_the_argument_registers() {
    let src = "kprobe:f { print(arg5) }";
    let arm = lang::check(src, "a.kp", &opts(), &NoKernel);
    assert_eq!(arm.len(), 1);
    assert!(arm[0].message.contains("not available on arm"));
    for arch in [Arch::X86_64, Arch::Aarch64, Arch::Powerpc, Arch::Powerpc64] {
        let o = CompileOptions { arch, build_id: Vec::new() };
        assert!(lang::check(src, "a.kp", &o, &NoKernel).is_empty(), "{arch:?}");
    }
}

#[test]
fn listing_without_a_sidecar() {
    let c = lang::compile(SKELETON, "skel.kp", &opts(), &FakeKernel).unwrap();
    let text = lang::disasm::disassemble(&c.image, None).unwrap();
    assert!(text.contains("taddi t0, (s0), 1"), "{text}");
    assert!(!text.contains("reads"), "{text}");
    assert!(lang::disasm::disassemble(&c.image[..20], None).is_err());
}

#[test]
fn the_format_spec_parser_is_what_the_formatter_reuses() {
    use ktap_host::lang::format_spec::{Piece, parse, render};
    use ktap_protocol::record::Value;
    let c = lang::compile(
        "kprobe:f { printf(\"%-6s|%5d|%#x\\n\", execname, pid, 255) }",
        "f.kp",
        &opts(),
        &FakeKernel,
    )
    .unwrap();
    let pieces = parse(&c.sidecar.formats[0]).unwrap();
    assert!(matches!(pieces[0], Piece::Conv(_)));
    assert_eq!(render(&pieces, &[Value::Str(b"dd"), Value::Int(42), Value::Int(255)]), "dd    |   42|0xff\n");
}

#[test]
fn sidecar_tells_the_renderer_about_histograms_bars_and_stacks() {
    use ktap_host::sidecar::{Show, Slot, TableView};
    let src = r#"
var lat = {}
var lin = {}
var plain = {}
var stats = {}
var stacks = {}
kprobe:vfs_read {
    lat[execname] <<< hist(arg2)
    lin[cpu] <<< lhist(arg2, 0, 100, 10)
    plain[execname] += 1
    stats[pid] <<< arg2
    stacks[stack(), pid] += 1
    printf("%d %s\n", pid, stack(4))
}
trace_end {
    print_hist(plain)
}
"#;
    let c = lang::compile(src, "v.kp", &opts(), &FakeKernel).unwrap();
    assert_eq!(
        c.sidecar.views,
        [
            TableView { table: 0, show: Show::Hist },
            TableView { table: 1, show: Show::Lhist { min: 0, step: 10, buckets: 10 } },
            TableView { table: 2, show: Show::Bars },
        ]
    );
    assert_eq!(
        c.sidecar.stacks,
        [Slot::TableKey { table: 4, key: 0 }, Slot::FormatArg { format: 0, arg: 1 }]
    );
}
