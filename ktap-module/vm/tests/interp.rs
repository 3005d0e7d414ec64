//! Interpreter semantics: arithmetic edge cases, branches, context, tables, records, budget.

mod common;

use common::{Asm, TestEnv, V, asm};
use ktap_protocol::image::{ArgKind, Image, KeyKind, TableSpec};
use ktap_protocol::record::RecordKind;
use ktap_vm::{Program, RunError, verify};

fn program(a: &Asm) -> Program {
    let bytes = a.b.build();
    let img = Image::parse(&bytes).unwrap();
    Program::new(verify(&img).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

/// Run function 0 once and return the globals.
fn globals_after(src: &str, nglobals: u16) -> Vec<i64> {
    let mut a = asm(src);
    a.b.globals = nglobals;
    a.b.consts = vec![i64::MIN, -1, 1 << 40];
    let mut p = program(&a);
    p.run(0, &mut TestEnv::default()).unwrap();
    p.globals().to_vec()
}

#[test]
fn arithmetic_wraps_and_never_traps() {
    let g = globals_after(
        "
        .func main int=8
            ldc r0, c0          ; MIN
            ldc r1, c1          ; -1
            movi r2, 0
            movi r3, 7
            div r4, r3, r2      ; 7 / 0 = 0
            stg g0, r4
            mod r4, r3, r2      ; 7 % 0 = 7
            stg g1, r4
            div r4, r0, r1      ; MIN / -1 wraps to MIN
            stg g2, r4
            mod r4, r0, r1      ; MIN % -1 = 0
            stg g3, r4
            neg r4, r0          ; -MIN wraps to MIN
            stg g4, r4
            sub r4, r0, r3      ; MIN - 7 wraps
            stg g5, r4
            mul r4, r0, r1      ; MIN * -1 wraps
            stg g6, r4
            movi r5, 65
            shl r4, r3, r5      ; shift by 65 & 63 = 1
            stg g7, r4
            movi r5, -8
            movi r6, 1
            shr r4, r5, r6      ; arithmetic: -4
            stg g8, r4
            not r4, r3          ; logical: 0
            stg g9, r4
            not r4, r2          ; 1
            stg g10, r4
            movi r4, -3
            div r6, r4, r6      ; -3 / 1
            movi r7, 2
            div r6, r4, r7      ; -3 / 2 truncates to -1
            stg g11, r6
            mod r6, r4, r7      ; -3 % 2 = -1
            stg g12, r6
            addi r4, r0, -1     ; MIN + -1 wraps to MAX
            stg g13, r4
            ldc r4, c2
            xor r4, r4, r3
            and r5, r4, r3
            or r5, r5, r2
            stg g14, r5
            movi r4, -1         ; sign-extended immediate
            stg g15, r4
            ret
        ",
        16,
    );
    assert_eq!(
        g,
        [
            0,
            7,
            i64::MIN,
            0,
            i64::MIN,
            i64::MIN.wrapping_sub(7),
            i64::MIN,
            14,
            -4,
            0,
            1,
            -1,
            -1,
            i64::MAX,
            7,
            -1
        ]
    );
}

#[test]
fn branches_compare_signed_and_strings() {
    let mut a = asm("
        .func main int=4 str=2
            movi r0, -1
            movi r1, 1
            jlt r0, r1, lt_ok   ; -1 < 1 signed
            ret
        lt_ok:
            addg g0, r1
            jle r1, r1, le_ok
            ret
        le_ok:
            addg g0, r1
            jeq r0, r1, bad
            jne r0, r1, ne_ok
            ret
        ne_ok:
            addg g0, r1
            jz r2, z_ok
            ret
        z_ok:
            addg g0, r1
            jnz r2, bad
            lds s0, str0
            comm s1
            jsne s0, s1, bad
            jseq s0, s1, s_ok
            ret
        s_ok:
            addg g0, r1
            ret
        bad:
            movi r3, 100
            stg g0, r3
            ret
    ");
    a.b.globals = 1;
    a.b.strings = vec![b"dd".to_vec()];
    let mut p = program(&a);
    p.run(0, &mut TestEnv::default()).unwrap();
    assert_eq!(p.globals(), [5]);
}

#[test]
fn context_comm_and_printf_records() {
    let mut a = asm("
        .func main int=3 str=1
            ctx r0, pid
            ctx r1, arg2
            ctx r2, retval
            comm s0
            printf f1, (r0, s0, r1, r2)
            ret
    ");
    a.b.formats = vec![vec![], vec![ArgKind::Int, ArgKind::Str, ArgKind::Int, ArgKind::Int]];
    let mut p = program(&a);
    let mut env = TestEnv {
        comm: b"a-very-long-command-name-that-is-longer-than-max-str-bytes-in-total-".repeat(2),
        ..Default::default()
    };
    p.run(0, &mut env).unwrap();
    let recs = env.decoded();
    assert_eq!(recs.len(), 1);
    let (kind, id, vals) = &recs[0];
    assert_eq!((*kind, *id), (RecordKind::Printf, 1));
    assert_eq!(vals[0], V::I(42));
    assert_eq!(vals[1], V::S(env.comm[..ktap_protocol::limits::MAX_STR].to_vec()));
    assert_eq!(vals[2..], [V::I(102), V::I(-5)]);
}

#[test]
fn registers_start_at_zero_on_every_run() {
    let mut a = asm("
        .func main int=2 str=1
            addg g0, r0
            movi r0, 9
            movs s0, s0
            printf f0, (s0)
            ret
    ");
    a.b.globals = 1;
    a.b.formats = vec![vec![ArgKind::Str]];
    let mut p = program(&a);
    let mut env = TestEnv::default();
    for _ in 0..3 {
        p.run(0, &mut env).unwrap();
    }
    assert_eq!(p.globals(), [0]);
    assert!(env.decoded().iter().all(|r| r.2 == [V::S(vec![])]));
    assert_eq!(p.counters().hits, 3);
}

fn counting_program(capacity: u32) -> Asm {
    let mut a = asm("
        .func count int=3
            ctx r0, arg0         ; key
            movi r1, 1
            tadd t0, (r0), r1
            ret
        .func read int=3
            ctx r0, arg0
            tld r1, t0, (r0)
            stg g0, r1
            ret
        .func del int=3
            ctx r0, arg0
            tdel t0, (r0)
            ret
        .func dump
            ptable t0
            ret
    ");
    a.b.globals = 1;
    a.b.tables = vec![TableSpec::single(KeyKind::Int, capacity)];
    a
}

/// An env whose arg0 is a chosen key.
struct KeyEnv(TestEnv, i64);
impl ktap_vm::Env for KeyEnv {
    fn ctx(&mut self, f: ktap_protocol::isa::CtxField) -> i64 {
        if f == ktap_protocol::isa::CtxField::Arg0 { self.1 } else { self.0.ctx(f) }
    }
    fn comm(&mut self, out: &mut [u8; ktap_protocol::limits::MAX_STR]) -> usize {
        self.0.comm(out)
    }
    fn emit(&mut self, r: &[u8]) -> bool {
        self.0.emit(r)
    }
}

#[test]
fn tables_count_refuse_when_full_and_delete() {
    let a = counting_program(3);
    let mut p = program(&a);
    let mut env = KeyEnv(TestEnv::default(), 0);
    for key in [10, 20, 10, 30, 40, 10, 50] {
        env.1 = key;
        p.run(0, &mut env).unwrap();
    }
    assert_eq!(p.table_len(0), Some(3));
    assert_eq!(p.counters().table_full, 2); // 40 and 50
    assert_eq!(p.table_get_int(0, 10), Some(3));
    assert_eq!(p.table_get_int(0, 40), None);

    env.1 = 777; // a missing key reads 0
    p.run(1, &mut env).unwrap();
    assert_eq!(p.globals(), [0]);

    env.1 = 20;
    p.run(2, &mut env).unwrap(); // delete
    assert_eq!(p.table_len(0), Some(2));
    env.1 = 40;
    p.run(0, &mut env).unwrap(); // room again
    assert_eq!(p.table_get_int(0, 40), Some(1));
    assert_eq!(p.counters().table_full, 2);

    p.run(3, &mut env).unwrap();
    let recs = env.0.decoded();
    let entries: Vec<_> =
        recs.iter().filter(|r| r.0 == RecordKind::TableEntry).map(|r| r.2.clone()).collect();
    assert_eq!(entries.len(), 3);
    assert!(entries.contains(&vec![V::I(10), V::I(3)]));
    assert!(entries.contains(&vec![V::I(30), V::I(1)]));
    assert!(entries.contains(&vec![V::I(40), V::I(1)]));
    let end = recs.last().unwrap();
    assert_eq!((end.0, end.1), (RecordKind::TableEnd, 0));
    assert_eq!(end.2, [V::I(3), V::I(2)]); // 3 entries, 2 refused inserts
}

#[test]
fn string_tables() {
    let mut a = asm("
        .func main int=2 str=2
            comm s0
            movi r0, 5
            tadd t0, (s0), r0
            lds s1, str0
            movi r1, 1
            tst t0, (s1), r1
            tst t0, (s1), r1      ; overwrite, not add
            tld r0, t0, (s0)
            stg g0, r0
            tdel t0, (s1)
            ptable t0
            ret
    ");
    a.b.globals = 1;
    a.b.strings = vec![b"other".to_vec()];
    a.b.tables = vec![TableSpec::single(KeyKind::Str, 4)];
    let mut p = program(&a);
    let mut env = TestEnv::default();
    p.run(0, &mut env).unwrap();
    p.run(0, &mut env).unwrap();
    assert_eq!(p.globals(), [10]);
    assert_eq!(p.table_get_str(0, b"dd"), Some(10));
    assert_eq!(p.table_get_str(0, b"other"), None);
    let last_dump: Vec<_> = env.decoded().into_iter().skip(2).collect();
    assert_eq!(last_dump[0], (RecordKind::TableEntry, 0, vec![V::S(b"dd".to_vec()), V::I(10)]));
    assert_eq!(last_dump[1], (RecordKind::TableEnd, 0, vec![V::I(1), V::I(0)]));
}

#[test]
fn an_infinite_loop_exhausts_the_budget_and_only_that_hit() {
    let mut a = asm("
        .func spin int=1
        top:
            addg g0, r0
            jmp top
        .func ok int=1
            movi r0, 1
            addg g1, r0
            ret
    ");
    a.b.globals = 2;
    a.b.budget = 1000;
    let mut p = program(&a);
    let mut env = TestEnv::default();
    assert_eq!(p.run(0, &mut env), Err(RunError::BudgetExhausted));
    assert_eq!(p.run(0, &mut env), Err(RunError::BudgetExhausted));
    p.run(1, &mut env).unwrap();
    let c = p.counters();
    assert_eq!((c.hits, c.budget_exhausted, c.runtime_errors), (3, 2, 0));
    assert_eq!(p.globals()[1], 1);
    // the first exhaustion of `spin` names it in a record (for the host to name the probe), once
    assert_eq!(env.decoded(), [(RecordKind::BudgetExhausted, 0, vec![])]);
}

#[test]
fn the_budget_bounds_loop_iterations() {
    // a 2-instruction loop costs 2 per iteration: budget 100 allows 50 back edges
    let src = "
        .func main int=2
            ctx r0, arg0
        top:
            addi r0, r0, -1
            jnz r0, top
            ret
    ";
    let mut a = asm(src);
    a.b.budget = 100;
    let mut p = program(&a);
    let mut env = KeyEnv(TestEnv::default(), 51); // 50 back edges
    assert_eq!(p.run(0, &mut env), Ok(()));
    env.1 = 52; // 51 back edges
    assert_eq!(p.run(0, &mut env), Err(RunError::BudgetExhausted));
}

#[test]
fn ptable_is_charged_per_entry() {
    let mut a = counting_program(64);
    a.b.budget = 10;
    let mut p = program(&a);
    let mut env = KeyEnv(TestEnv::default(), 0);
    for key in 0..10 {
        env.1 = key;
        p.run(0, &mut env).unwrap();
    }
    assert_eq!(p.run(3, &mut env), Ok(()));
    env.1 = 10;
    p.run(0, &mut env).unwrap();
    assert_eq!(p.run(3, &mut env), Err(RunError::BudgetExhausted));
}

#[test]
fn a_full_ring_drops_and_counts() {
    let mut a = asm("
        .func main int=1
            printf f0, (r0)
            printf f0, (r0)
            printf f0, (r0)
            ret
    ");
    a.b.formats = vec![vec![ArgKind::Int]];
    let mut p = program(&a);
    let mut env = TestEnv { room: 1, ..Default::default() };
    p.run(0, &mut env).unwrap();
    assert_eq!(env.records.len(), 1);
    assert_eq!(p.counters().ring_dropped, 2);
}

#[test]
fn a_bad_function_index_is_an_error_not_a_panic() {
    let a = asm(".func main\n ret\n");
    let mut p = program(&a);
    assert_eq!(p.run(7, &mut TestEnv::default()), Err(RunError::NoSuchFunc));
    assert_eq!(p.counters().runtime_errors, 1);
}

#[test]
fn globals_persist_across_hits() {
    let mut a = asm(".func main int=1\n movi r0, 3\n addg g0, r0\n ldg r0, g0\n stg g1, r0\n ret\n");
    a.b.globals = 2;
    let mut p = program(&a);
    let mut env = TestEnv::default();
    for _ in 0..4 {
        p.run(0, &mut env).unwrap();
    }
    assert_eq!(p.globals(), [12, 12]);
}

#[test]
fn taddi_adds_its_immediate_like_movi_and_tadd() {
    let mut a = asm("
        .func main int=1 str=1
            comm s0
            taddi t0, (s0), 1
            ctx r0, arg0
            taddi t1, (r0), -3
            ret
    ");
    a.b.tables = vec![TableSpec::single(KeyKind::Str, 4), TableSpec::single(KeyKind::Int, 4)];
    let mut p = program(&a);
    let mut env = KeyEnv(TestEnv::default(), 9);
    for _ in 0..5 {
        p.run(0, &mut env).unwrap();
    }
    assert_eq!(p.table_get_str(0, b"dd"), Some(5));
    assert_eq!(p.table_get_int(1, 9), Some(-15));
}

#[test]
fn registers_read_before_written_start_at_zero_on_every_hit() {
    // The entry zeroes only what the verifier could not prove written before read. r1 is written
    // on one path only (after the jump target), s1 and r3 never before their reads, r2 and s0 in the
    // entry run: on the second hit r1, r3 and s1 must read 0 / "" again, not the first hit's values.
    let mut a = asm("
        .func main int=4 str=2
            lds s0, str0
            movi r2, 1
            ldg r0, g0
            jnz r0, skip
            movi r1, 5
            movi r3, 7
            lds s1, str0
        skip:
            addg g1, r1
            addg g1, r3
            slen r3, s1
            addg g1, r3
            stg g0, r2
            ret
    ");
    a.b.globals = 2;
    a.b.strings = vec![b"abc".to_vec()];
    let mut p = program(&a);
    let mut env = TestEnv::default();
    p.run(0, &mut env).unwrap();
    assert_eq!(p.globals(), [1, 5 + 7 + 3]);
    p.run(0, &mut env).unwrap();
    assert_eq!(p.globals(), [1, 15], "stale registers were read");
    let f = p.verified().funcs()[0];
    // r0 is written before read too, but only r1..r3 after it need zeroing; s0 is written first
    assert_eq!((f.clear_int.lo, f.clear_int.hi, f.clear_str.lo, f.clear_str.hi), (1, 4, 1, 2));
}

#[test]
fn a_callee_frame_is_zeroed_past_its_arguments() {
    let mut a = asm("
        .func main int=2
            ldg r0, g0
            call r1, fn1, (r0)
            addg g1, r1
            movi r0, 1
            stg g0, r0
            ret
        .func f int=3 pint=1 ret=int
            jnz r0, late
            movi r1, 4
        late:
            add r2, r0, r1
            retv r2
    ");
    a.b.globals = 2;
    let mut p = program(&a);
    let mut env = TestEnv::default();
    p.run(0, &mut env).unwrap();
    p.run(0, &mut env).unwrap();
    // 0 + 4 on the first hit, then 1 + a zeroed r1
    assert_eq!(p.globals(), [1, 5]);
    let f = p.verified().funcs()[1];
    assert_eq!((f.clear_int.lo, f.clear_int.hi), (1, 3));
}
