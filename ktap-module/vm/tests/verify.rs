//! One test per verifier rejection class: the exact variant and the exact image offset.

mod common;

use common::{Asm, asm};
use ktap_protocol::image::build::{ImageBuilder, OwnedProbe};
use ktap_protocol::image::{ArgKind, FuncSpec, Image, KeyKind, ProbeKind, SectionKind, TableSpec};
use ktap_protocol::limits::*;
use ktap_vm::{VerifyError as E, describe_code, verify};

fn result(b: &ImageBuilder) -> Result<ktap_vm::Verified, E> {
    let bytes = b.build();
    let img = Image::parse(&bytes).expect("the test image must be structurally valid");
    verify(&img)
}

fn reject(b: &ImageBuilder) -> E {
    let e = result(b).expect_err("the verifier accepted the image");
    assert!(describe_code(e.code()).is_some(), "{e:?} has no description");
    assert!(e.to_string().contains(&e.offset().to_string()), "{e} does not name its offset");
    e
}

/// Image offset of something the parsed image can locate.
fn locate(b: &ImageBuilder, f: impl Fn(&Image<'_>) -> usize) -> u32 {
    let bytes = b.build();
    f(&Image::parse(&bytes).unwrap()) as u32
}

fn probe(kind: ProbeKind, func: u16, addr: u64, name: &str) -> OwnedProbe {
    OwnedProbe { kind, func, addr, name: name.as_bytes().to_vec() }
}

/// Image offset of probe entry `i`.
fn probe_entry(b: &ImageBuilder, i: usize) -> u32 {
    let base = locate(b, |img| img.section_offset(SectionKind::Probes) + 2);
    base + b.probes[..i].iter().map(|p| 12 + p.name.len() as u32).sum::<u32>()
}

fn ok_prog() -> Asm {
    asm("
        .func main int=2
            movi r0, 1
            ret
    ")
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
            tadds t1, s0, r0
        skip:
            ldc r1, c0
            tadd t0, r0, r1
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
    a.b.tables =
        vec![TableSpec { key: KeyKind::Int, capacity: 8 }, TableSpec { key: KeyKind::Str, capacity: 8 }];
    a.b.formats = vec![vec![ArgKind::Int, ArgKind::Str]];
    a.b.probes = vec![probe(ProbeKind::Kprobe, 0, 0xc000_1000, "vfs_read"), probe(ProbeKind::End, 1, 0, "")];
    let v = result(&a.b).unwrap();
    assert_eq!(v.funcs().len(), 2);
    assert_eq!(v.end_func(), Some(1));
    assert_eq!(v.probes()[0].name(), b"vfs_read");
    assert_eq!(v.budget(), DEFAULT_BUDGET);
}

#[test]
fn unknown_opcode() {
    let a = asm("
        .func main
            ret
        bad:
        .byte 0xee
            ret
    ");
    assert_eq!(reject(&a.b), E::UnknownOpcode { offset: a.image_at("bad"), byte: 0xee });
}

#[test]
fn truncated_instruction() {
    // movi needs 6 bytes; the function ends after 3
    let a = asm("
        .func main int=2
            ret
        bad:
        .byte 0x10 0x01 0x00
    ");
    assert_eq!(reject(&a.b), E::TruncatedInsn { offset: a.image_at("bad") });
}

#[test]
fn instruction_cut_by_the_end_of_its_function() {
    // the bytes exist in the code section, but belong to the next function
    let mut a = asm("
        .func f int=1
            ret
        bad:
            movi r0, 7
        .func g
            ret
    ");
    a.b.funcs[0].code_len = a.at("bad") + 2;
    a.b.funcs[1].code_off = a.at("bad") + 2;
    a.b.funcs[1].code_len = a.b.code.len() as u32 - a.b.funcs[1].code_off;
    assert_eq!(reject(&a.b), E::TruncatedInsn { offset: a.image_at("bad") });
}

#[test]
fn too_many_printf_args() {
    let a = asm("
        .func main
        bad:
        .byte 0x38 0x00 0x00 9 0 0 0 0 0 0 0 0 0
            ret
    ");
    assert_eq!(reject(&a.b), E::TooManyArgs { offset: a.image_at("bad") });
}

#[test]
fn code_too_large() {
    let mut b = ok_prog().b;
    b.code.resize(MAX_CODE + 1, 0);
    let offset = locate(&b, |img| img.code_offset);
    assert_eq!(reject(&b), E::CodeTooLarge { offset, len: MAX_CODE as u32 + 1 });
}

#[test]
fn too_many_funcs() {
    let mut b = ok_prog().b;
    b.code = vec![0; MAX_FUNCS as usize + 1];
    b.funcs =
        (0..=MAX_FUNCS as u32).map(|i| FuncSpec { code_off: i, code_len: 1, n_int: 0, n_str: 0 }).collect();
    let offset = locate(&b, |img| img.section_offset(SectionKind::Funcs));
    assert_eq!(reject(&b), E::TooManyFuncs { offset, count: MAX_FUNCS as u32 + 1 });
    b.funcs.pop();
    assert!(result(&b).is_ok());
}

#[test]
fn function_outside_the_code_section() {
    let mut b = ok_prog().b;
    b.funcs.push(FuncSpec { code_off: 1, code_len: b.code.len() as u32, n_int: 0, n_str: 0 });
    let offset = locate(&b, |img| img.func_entry_offset(1));
    assert_eq!(reject(&b), E::FuncOutOfBounds { offset, func: 1 });
    b.funcs[1] = FuncSpec { code_off: u32::MAX, code_len: 2, n_int: 0, n_str: 0 };
    assert_eq!(reject(&b), E::FuncOutOfBounds { offset, func: 1 });
}

#[test]
fn empty_function() {
    let mut b = ok_prog().b;
    b.funcs.push(FuncSpec { code_off: 0, code_len: 0, n_int: 0, n_str: 0 });
    let offset = locate(&b, |img| img.func_entry_offset(1));
    assert_eq!(reject(&b), E::EmptyFunc { offset, func: 1 });
}

#[test]
fn overlapping_functions() {
    let mut b = ok_prog().b;
    let f = b.funcs[0];
    b.funcs.push(FuncSpec { code_off: f.code_len - 1, code_len: 1, ..f });
    let offset = locate(&b, |img| img.func_entry_offset(1));
    assert_eq!(reject(&b), E::FuncsOverlap { offset, func: 1 });
}

#[test]
fn frame_too_large() {
    let mut b = ok_prog().b;
    b.funcs[0].n_int = MAX_INT_REGS + 1;
    let offset = locate(&b, |img| img.func_entry_offset(0));
    assert_eq!(reject(&b), E::FrameTooLarge { offset, func: 0 });
    b.funcs[0].n_int = MAX_INT_REGS;
    b.funcs[0].n_str = MAX_STR_REGS + 1;
    assert_eq!(reject(&b), E::FrameTooLarge { offset, func: 0 });
}

#[test]
fn jump_into_the_middle_of_an_instruction() {
    let a = asm("
        .func main int=1
        bad:
            jmp @4          ; movi starts at 3 and is 6 bytes long
            movi r0, 1
            ret
    ");
    assert_eq!(reject(&a.b), E::JumpIntoInsn { offset: a.image_at("bad") });
}

#[test]
fn jump_out_of_its_function() {
    for src in [
        ".func main int=1\n ret\n bad:\n jmp @-1\n",    // before the start
        ".func main int=1\n bad:\n jnz r0, @5\n ret\n", // exactly one past the end
        ".func main int=1\n bad:\n jnz r0, @30000\n ret\n", // far past the end
        ".func f\n ret\n .func g int=1\n bad:\n jz r0, @0\n ret\n", // into the previous function
    ] {
        let a = asm(src);
        assert_eq!(reject(&a.b), E::JumpOutOfFunc { offset: a.image_at("bad") }, "{src}");
    }
}

#[test]
fn function_that_can_fall_through() {
    let a = asm("
        .func main int=1
        top:
            movi r0, 1
        bad:
            jnz r0, top
    ");
    assert_eq!(reject(&a.b), E::FallsThrough { offset: a.image_at("bad") });
    let a = asm(".func main int=1\n bad:\n movi r0, 1\n");
    assert_eq!(reject(&a.b), E::FallsThrough { offset: a.image_at("bad") });
}

#[test]
fn int_register_out_of_range() {
    let a = asm(".func main int=4 str=1\n mov r3, r0\n bad:\n add r0, r1, r4\n ret\n");
    assert_eq!(reject(&a.b), E::IntRegOutOfRange { offset: a.image_at("bad"), reg: 4 });
    // register lists are checked too
    let mut a = asm(".func main int=1\n bad:\n printf f0, (r1)\n ret\n");
    a.b.formats = vec![vec![ArgKind::Int]];
    assert_eq!(reject(&a.b), E::IntRegOutOfRange { offset: a.image_at("bad"), reg: 1 });
}

#[test]
fn string_register_out_of_range() {
    let a = asm(".func main int=4 str=2\n bad:\n movs s2, s0\n ret\n");
    assert_eq!(reject(&a.b), E::StrRegOutOfRange { offset: a.image_at("bad"), reg: 2 });
    let mut a = asm(".func main int=1 str=1\n bad:\n printf f0, (s3)\n ret\n");
    a.b.formats = vec![vec![ArgKind::Str]];
    assert_eq!(reject(&a.b), E::StrRegOutOfRange { offset: a.image_at("bad"), reg: 3 });
}

#[test]
fn pool_and_index_operands_out_of_range() {
    let mut a = asm(".func main int=1 str=1\n ldc r0, c0\n bad:\n ldc r0, c1\n ret\n");
    a.b.consts = vec![7];
    assert_eq!(reject(&a.b), E::ConstOutOfRange { offset: a.image_at("bad"), index: 1 });

    let mut a = asm(".func main int=1 str=1\n bad:\n lds s0, str2\n ret\n");
    a.b.strings = vec![b"a".to_vec(), b"b".to_vec()];
    assert_eq!(reject(&a.b), E::StringOutOfRange { offset: a.image_at("bad"), index: 2 });

    let mut a = asm(".func main int=1\n stg g2, r0\n bad:\n addg g3, r0\n ret\n");
    a.b.globals = 3;
    assert_eq!(reject(&a.b), E::GlobalOutOfRange { offset: a.image_at("bad"), index: 3 });

    let mut a = asm(".func main int=2\n bad:\n tld r0, t1, r1\n ret\n");
    a.b.tables = vec![TableSpec { key: KeyKind::Int, capacity: 4 }];
    assert_eq!(reject(&a.b), E::TableOutOfRange { offset: a.image_at("bad"), index: 1 });

    let a = asm(".func main int=2\n bad:\n printf f0, ()\n ret\n");
    assert_eq!(reject(&a.b), E::FormatOutOfRange { offset: a.image_at("bad"), index: 0 });
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

#[test]
fn table_op_with_the_wrong_key_kind() {
    let mut a = asm("
        .func main int=2 str=1
            tadds t1, s0, r0
            tld r0, t0, r1
        bad:
            tld r0, t1, r1
            ret
    ");
    a.b.tables =
        vec![TableSpec { key: KeyKind::Int, capacity: 4 }, TableSpec { key: KeyKind::Str, capacity: 4 }];
    assert_eq!(reject(&a.b), E::TableKeyMismatch { offset: a.image_at("bad"), table: 1 });
    for op in [
        "tadds t0, s0, r0",
        "tsts t0, s0, r0",
        "tdels t0, s0",
        "tlds r0, t0, s0",
        "tst t1, r0, r0",
        "tdel t1, r0",
    ] {
        let mut a = asm(&format!(".func main int=2 str=1\n bad:\n {op}\n ret\n"));
        a.b.tables =
            vec![TableSpec { key: KeyKind::Int, capacity: 4 }, TableSpec { key: KeyKind::Str, capacity: 4 }];
        assert!(matches!(reject(&a.b), E::TableKeyMismatch { .. }), "{op}");
    }
}

#[test]
fn printf_arguments_differ_from_the_format() {
    let mut a = asm(".func main int=2 str=1\n printf f0, (r0, s0)\n bad:\n printf f0, (r0)\n ret\n");
    a.b.formats = vec![vec![ArgKind::Int, ArgKind::Str]];
    assert_eq!(reject(&a.b), E::PrintfArgCount { offset: a.image_at("bad"), format: 0 });

    let mut a = asm(".func main int=2 str=1\n bad:\n printf f0, (r0, r1)\n ret\n");
    a.b.formats = vec![vec![ArgKind::Int, ArgKind::Str]];
    assert_eq!(reject(&a.b), E::PrintfArgKind { offset: a.image_at("bad"), arg: 1 });
}

#[test]
fn unknown_context_field() {
    let a = asm(".func main int=1\n ctx r0, arg9\n bad:\n ctx r0, ctx7\n ret\n");
    assert_eq!(reject(&a.b), E::UnknownCtxField { offset: a.image_at("bad"), field: 7 });
}

#[test]
fn probe_specs() {
    let base = ok_prog().b;
    let with = |probes: Vec<OwnedProbe>| ImageBuilder { probes, ..base.clone() };

    let b = with(vec![probe(ProbeKind::Kprobe, 0, 0x1000, "a"), probe(ProbeKind::Kprobe, 1, 0x1000, "b")]);
    assert_eq!(reject(&b), E::ProbeFuncOutOfRange { offset: probe_entry(&b, 1), probe: 1 });

    let b = with(vec![probe(ProbeKind::Begin, 0, 0, ""), probe(ProbeKind::Begin, 0, 0, "")]);
    assert_eq!(reject(&b), E::DuplicateBegin { offset: probe_entry(&b, 1) });

    let b = with(vec![
        probe(ProbeKind::End, 0, 0, ""),
        probe(ProbeKind::Begin, 0, 0, ""),
        probe(ProbeKind::End, 0, 0, ""),
    ]);
    assert_eq!(reject(&b), E::DuplicateEnd { offset: probe_entry(&b, 2) });

    for kind in [ProbeKind::Kprobe, ProbeKind::Kretprobe] {
        let b = with(vec![probe(ProbeKind::Tracepoint, 0, 0, "sched:x"), probe(kind, 0, 0, "vfs_read")]);
        assert_eq!(reject(&b), E::ProbeAddrZero { offset: probe_entry(&b, 1), probe: 1 });
    }

    let b = with(vec![probe(ProbeKind::Tracepoint, 0, 0, "")]);
    assert_eq!(reject(&b), E::TracepointNameEmpty { offset: probe_entry(&b, 0), probe: 0 });

    let b = with((0..=MAX_PROBES).map(|_| probe(ProbeKind::Kprobe, 0, 0x1000, "f")).collect());
    let offset = locate(&b, |img| img.section_offset(SectionKind::Probes));
    assert_eq!(reject(&b), E::TooManyProbes { offset, count: MAX_PROBES as u32 + 1 });
}

#[test]
fn table_specs() {
    let mut b = ok_prog().b;
    b.tables =
        vec![TableSpec { key: KeyKind::Int, capacity: 4 }, TableSpec { key: KeyKind::Str, capacity: 0 }];
    assert_eq!(
        reject(&b),
        E::BadTableCapacity { offset: locate(&b, |img| img.table_entry_offset(1)), capacity: 0 }
    );
    b.tables[1].capacity = MAX_TABLE_CAPACITY + 1;
    let offset = locate(&b, |img| img.table_entry_offset(1));
    assert_eq!(reject(&b), E::BadTableCapacity { offset, capacity: MAX_TABLE_CAPACITY + 1 });
    b.tables[1].capacity = MAX_TABLE_CAPACITY;
    assert!(result(&b).is_ok());

    b.tables = vec![TableSpec { key: KeyKind::Int, capacity: 1 }; MAX_TABLES as usize + 1];
    let offset = locate(&b, |img| img.section_offset(SectionKind::Tables));
    assert_eq!(reject(&b), E::TooManyTables { offset, count: MAX_TABLES as u32 + 1 });
}

#[test]
fn too_many_globals() {
    let mut b = ok_prog().b;
    b.globals = MAX_GLOBALS + 1;
    let offset = locate(&b, |img| img.section_offset(SectionKind::Globals));
    assert_eq!(reject(&b), E::TooManyGlobals { offset, count: MAX_GLOBALS + 1 });
}

#[test]
fn budget_too_large() {
    let mut b = ok_prog().b;
    b.budget = MAX_BUDGET + 1;
    let offset = locate(&b, |img| img.section_offset(SectionKind::Meta));
    assert_eq!(reject(&b), E::BudgetTooLarge { offset, budget: MAX_BUDGET + 1 });
    b.budget = MAX_BUDGET;
    assert_eq!(result(&b).unwrap().budget(), MAX_BUDGET);
}

#[test]
fn every_code_is_distinct_and_described() {
    let all = [
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
        E::OutOfMemory,
    ];
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
