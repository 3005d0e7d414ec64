//! The verifier's rejection classes as data: `tests/reject/<class>.kasm`, one file per class, each
//! holding one or more cases in the shared text assembly, each case headed by
//! `# expect: Variant at OFFSET { other fields }` (or `# expect: ok`). The runner assembles every case,
//! verifies it, and asserts the exact variant and image offset; `UPDATE_GOLDEN=1 cargo test -p ktap-vm
//! --test verify` rewrites the expectations (review the diff). Independently of the expectations,
//! an error inside the code must sit at the case's `bad:` label, any other error at a section or an
//! entry of the function, table or probe table, and every class must be covered by its own file.
//! Below them: what cannot be written as a case.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::asm;
use ktap_protocol::asm::assemble;
use ktap_protocol::image::build::{ImageBuilder, OwnedProbe};
use ktap_protocol::image::{ArgKind, Image, KeyKind, PROBE_ENTRY_FIXED, ProbeKind, SectionKind, TableSpec};
use ktap_protocol::limits::*;
use ktap_vm::{VerifyError as E, describe_code, verify};

fn result(b: &ImageBuilder) -> Result<ktap_vm::Verified, E> {
    let bytes = b.build();
    let img = Image::parse(&bytes).expect("the test image must be structurally valid");
    verify(&img)
}

fn probe(kind: ProbeKind, func: u16, addr: u64, name: &str) -> OwnedProbe {
    OwnedProbe { kind, func, addr, flags: 0, name: name.as_bytes().to_vec() }
}

/// `IntRegOutOfRange at 40 { reg: 4 }` for `IntRegOutOfRange { offset: 40, reg: 4 }`.
fn expectation(e: &E) -> String {
    let off = e.offset();
    let d = format!("{e:?}")
        .replace(&format!(" {{ offset: {off} }}"), "")
        .replace(&format!("offset: {off}, "), "");
    match d.split_once(' ') {
        Some((name, fields)) => format!("{name} at {off} {fields}"),
        None => format!("{d} at {off}"),
    }
}

/// `JumpIntoInsn` -> `jump_into_insn`.
fn snake(variant: &str) -> String {
    let mut out = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Offsets a non-code error may name: each section, and each function, table and probe entry.
fn anchors(img: &Image<'_>, b: &ImageBuilder) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = SectionKind::ALL.iter().map(|k| img.section_offset(*k) as u32).collect();
    set.extend((0..b.funcs.len()).map(|i| img.func_entry_offset(i) as u32));
    set.extend((0..b.tables.len()).map(|i| img.table_entry_offset(i) as u32));
    let mut at = img.section_offset(SectionKind::Probes) as u32 + 2;
    for p in &b.probes {
        set.insert(at);
        at += PROBE_ENTRY_FIXED as u32 + p.name.len() as u32;
    }
    // the frame budget field of the meta section
    set.insert(img.section_offset(SectionKind::Meta) as u32 + 4);
    set
}

/// Check one case; returns what it gave (`ok` or the expectation text) and the variant name.
fn run_case(what: &str, src: &str) -> (String, Option<String>) {
    let a = assemble(src).unwrap_or_else(|e| panic!("{what}: {e}"));
    let bytes = a.image.build();
    let img = Image::parse(&bytes).unwrap_or_else(|e| panic!("{what}: not structurally valid: {e}"));
    let e = match verify(&img) {
        Ok(_) => return ("ok".to_string(), None),
        Err(e) => e,
    };
    assert!(describe_code(e.code()).is_some(), "{what}: {e:?} has no description");
    assert!(e.to_string().contains(&e.offset().to_string()), "{what}: `{e}` does not name its offset");
    let code = img.code_offset as u32..(img.code_offset + img.code.len()) as u32;
    match a.labels.get("bad") {
        Some(bad) => assert_eq!(e.offset(), img.code_offset as u32 + bad, "{what}: {e:?} is not at `bad:`"),
        None => {
            assert!(
                !code.contains(&e.offset()) || e.offset() == code.start,
                "{what}: {e:?} needs a `bad:` label"
            );
            assert!(anchors(&img, &a.image).contains(&e.offset()), "{what}: {e:?} names no section or entry");
        }
    }
    let name = format!("{e:?}").split([' ', '{']).next().unwrap_or("").to_string();
    (expectation(&e), Some(name))
}

#[test]
fn reject_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reject");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kasm"))
        .collect();
    files.sort();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let starts: Vec<usize> =
            lines.iter().enumerate().filter(|(_, l)| l.starts_with("# expect:")).map(|(i, _)| i).collect();
        assert!(!starts.is_empty(), "{stem}.kasm has no `# expect:` case");
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        for (n, &at) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            let what = format!("{stem}.kasm:{}", at + 1);
            let (got, variant) = run_case(&what, &lines[at..end].join("\n"));
            if let Some(v) = variant {
                assert_eq!(snake(&v), stem, "{what}: a {v} case belongs in {}.kasm", snake(&v));
                covered.insert(v);
            }
            let want = lines[at].trim_start_matches("# expect:").trim();
            if want != got {
                failures.push(format!("{what}: expected `{want}`, got `{got}`"));
                out[at] = format!("# expect: {got}");
            }
        }
        if update {
            std::fs::write(&path, out.join("\n") + "\n").unwrap();
        }
    }
    let all: BTreeSet<String> = every_variant()
        .iter()
        .filter(|e| !matches!(e, E::OutOfMemory | E::FuncOutOfRange { .. }))
        .map(|e| format!("{e:?}").split([' ', '{']).next().unwrap().to_string())
        .collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "rejection classes without a tests/reject file: {missing:?}");
    if !update {
        assert!(failures.is_empty(), "(UPDATE_GOLDEN=1 to accept)\n{}", failures.join("\n"));
    }
}

#[test]
fn a_well_formed_program_verifies() {
    let mut a = asm("
        .func main int=3 str=2
        top:
            ctx r0, pid
            comm s0
            lds s1, str0
            jseq s0, s1, skip
            tadd t1, (s0), r0
        skip:
            ldc r1, c0
            tadd t0, (r0), r1
            printf f0, (r0, s0)
            addi r2, r2, 1
            jlt r2, r1, top
            ptable t0
            ret
        .func end
            ptable t1
            ret
    ");
    a.b.consts = vec![3];
    a.b.strings = vec![b"dd".to_vec()];
    a.b.tables = vec![TableSpec::single(KeyKind::Int, 8), TableSpec::single(KeyKind::Str, 8)];
    a.b.formats = vec![vec![ArgKind::Int, ArgKind::Str]];
    a.b.probes = vec![probe(ProbeKind::Kprobe, 0, 0xc000_1000, "vfs_read"), probe(ProbeKind::End, 1, 0, "")];
    let v = result(&a.b).unwrap();
    assert_eq!(v.funcs().len(), 2);
    assert_eq!(v.end_func(), Some(1));
    assert_eq!(v.probes()[0].name(), b"vfs_read");
    assert_eq!(v.budget(), DEFAULT_BUDGET);
}

#[test]
fn function_index_operand_out_of_range() {
    // No opcode takes a function operand yet (`call` is future work), so this class cannot be
    // produced from bytecode today; the check is table-driven and will apply once one exists.
    assert_eq!(
        describe_code(E::FuncOutOfRange { offset: 0, index: 9 }.code()),
        Some("function index out of range")
    );
}

fn every_variant() -> Vec<E> {
    vec![
        E::UnknownOpcode { offset: 1, byte: 0 },
        E::TruncatedInsn { offset: 1 },
        E::TooManyArgs { offset: 1 },
        E::CodeTooLarge { offset: 1, len: 0 },
        E::TooManyFuncs { offset: 1, count: 0 },
        E::FuncOutOfBounds { offset: 1, func: 0 },
        E::EmptyFunc { offset: 1, func: 0 },
        E::FuncsOverlap { offset: 1, func: 0 },
        E::FrameTooLarge { offset: 1, func: 0 },
        E::JumpIntoInsn { offset: 1 },
        E::JumpOutOfFunc { offset: 1 },
        E::FallsThrough { offset: 1 },
        E::IntRegOutOfRange { offset: 1, reg: 0 },
        E::StrRegOutOfRange { offset: 1, reg: 0 },
        E::ConstOutOfRange { offset: 1, index: 0 },
        E::StringOutOfRange { offset: 1, index: 0 },
        E::GlobalOutOfRange { offset: 1, index: 0 },
        E::TableOutOfRange { offset: 1, index: 0 },
        E::FormatOutOfRange { offset: 1, index: 0 },
        E::FuncOutOfRange { offset: 1, index: 0 },
        E::TableKeyMismatch { offset: 1, table: 0 },
        E::PrintfArgCount { offset: 1, format: 0 },
        E::PrintfArgKind { offset: 1, arg: 0 },
        E::UnknownCtxField { offset: 1, field: 0 },
        E::TooManyProbes { offset: 1, count: 0 },
        E::ProbeFuncOutOfRange { offset: 1, probe: 0 },
        E::DuplicateBegin { offset: 1 },
        E::DuplicateEnd { offset: 1 },
        E::ProbeAddrZero { offset: 1, probe: 0 },
        E::TracepointNameEmpty { offset: 1, probe: 0 },
        E::TooManyTables { offset: 1, count: 0 },
        E::BadTableCapacity { offset: 1, capacity: 0 },
        E::TooManyGlobals { offset: 1, count: 0 },
        E::BudgetTooLarge { offset: 1, budget: 0 },
        E::TableValueMismatch { offset: 1, table: 0 },
        E::BadKeyShape { offset: 1, table: 0 },
        E::BadAggSpec { offset: 1, table: 0 },
        E::TableTooLarge { offset: 1, table: 0 },
        E::BadSelector { offset: 1 },
        E::CallArgMismatch { offset: 1, func: 0 },
        E::CallResultMismatch { offset: 1, func: 0 },
        E::ReturnKindMismatch { offset: 1 },
        E::Recursion { offset: 1, func: 0 },
        E::CallTooDeep { offset: 1, depth: 0 },
        E::FrameBudgetExceeded { offset: 1, need: 0, budget: 0 },
        E::FrameBudgetTooLarge { offset: 1, budget: 0 },
        E::BadParams { offset: 1, func: 0 },
        E::TimerPeriodOutOfRange { offset: 1, probe: 0, period: 0 },
        E::BadHandler { offset: 1, probe: 0 },
        E::BadProbeFlags { offset: 1, probe: 0 },
        E::OutOfMemory,
    ]
}

#[test]
fn every_code_is_distinct_and_described() {
    let all = every_variant();
    let mut codes: Vec<u16> = all.iter().map(E::code).collect();
    for e in &all {
        assert!(describe_code(e.code()).is_some(), "{e:?}");
        assert_eq!(e.code() >> 8, 2);
        if *e != E::OutOfMemory {
            assert_eq!(e.offset(), 1);
        }
    }
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn verification_is_deterministic() {
    let a = asm(".func main int=1\n bad:\n jmp @4\n movi r0, 1\n ret\n");
    let bytes = a.b.build();
    let img = Image::parse(&bytes).unwrap();
    assert_eq!(verify(&img).unwrap_err(), verify(&img).unwrap_err());
}
