//! Interpreter semantics of ISA v2: calls and frames, tuple keys, aggregates, iteration, memory
//! reads, strings, stacks, exit, and the budget they are charged.

mod common;

use common::{Asm, TestEnv, V, asm};
use ktap_protocol::image::Image;
use ktap_protocol::limits::MAX_STR;
use ktap_protocol::record::RecordKind;
use ktap_vm::{Program, RunError, verify};

fn program(a: &Asm) -> Program {
    let bytes = a.b.build();
    let img = Image::parse(&bytes).unwrap();
    Program::new(verify(&img).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

/// Run fn0 once with `env`; the program and the decoded records.
fn run(src: &str, env: &mut TestEnv) -> (Program, Vec<(RecordKind, u16, Vec<V>)>) {
    let a = asm(src);
    let mut p = program(&a);
    p.run(0, env).unwrap();
    let recs = env.decoded();
    (p, recs)
}

#[test]
fn calls_pass_arguments_by_kind_and_return_results() {
    let src = "
        .func main int=4 str=2
            movi r0, 7
            lds s0, str0
            movi r1, 5
            call r2, fn1, (r0, s0, r1)   ; f(7, \"ab\", 5) = 7 * 5 + len(\"ab\")
            calls s1, fn2, (s0)          ; g(\"ab\") = \"ab!\"
            call r3, fn3, ()             ; void gives 0
            printf f0, (r2, s1, r3)
            ret
        .func f int=4 str=1 pint=2 pstr=1 ret=int
            mul r2, r0, r1
            slen r3, s0
            add r2, r2, r3
            retv r2
        .func g str=2 pstr=1 ret=str
            lds s1, str1
            scat s0, s0, s1
            rets s0
        .func h int=1
            movi r0, 99
            ret
        .string str0 = \"ab\"
        .string str1 = \"!\"
        .format f0 (int, str, int)
    ";
    let (_, recs) = run(src, &mut TestEnv::default());
    assert_eq!(recs, [(RecordKind::Printf, 0, vec![V::I(37), V::S(b"ab!".to_vec()), V::I(0)])]);
}

#[test]
fn caller_registers_survive_calls_and_callee_registers_start_at_zero() {
    let (_, recs) = run(
        "
        .func main int=3
            movi r0, 11
            movi r1, 22
            call r2, fn1, ()
            call r2, fn1, ()
            printf f0, (r0, r1, r2)
            ret
        .func f int=2 ret=int
            addi r1, r1, 1      ; 0 + 1 every time: callee frames are fresh
            movi r0, 5
            retv r1
        .format f0 (int, int, int)
        ",
        &mut TestEnv::default(),
    );
    assert_eq!(recs[0].2, [V::I(11), V::I(22), V::I(1)]);
}

#[test]
fn the_deepest_allowed_call_chain_runs() {
    let mut src = String::from(".func main int=1\n    call r0, fn1, ()\n    printf f0, (r0)\n    ret\n");
    for i in 1..=8 {
        if i < 8 {
            src += &format!(
                ".func f{i} int=1 ret=int\n    call r0, fn{}, ()\n    addi r0, r0, 1\n    retv r0\n",
                i + 1
            );
        } else {
            src += ".func f8 int=1 ret=int\n    movi r0, 100\n    retv r0\n";
        }
    }
    src += ".format f0 (int)\n";
    let (_, recs) = run(&src, &mut TestEnv::default());
    assert_eq!(recs[0].2, [V::I(107)]);
}

#[test]
fn every_call_costs_budget() {
    // a loop calling an empty function: without the call charge the loop alone would fit
    let a = asm("
        .func main int=2
            movi r0, 1000
        top:
            call r1, fn1, ()
            addi r0, r0, -1
            jnz r0, top
            ret
        .func f int=1
            ret
        .budget 3500
    ");
    let mut p = program(&a);
    // each iteration: back edge 3 + call 2 = 5 units, 1000 iterations need 5000
    assert_eq!(p.run(0, &mut TestEnv::default()), Err(RunError::BudgetExhausted));
}

#[test]
fn table_operations_are_charged() {
    let a = asm("
        .func main int=2
            tadd t0, (r0), r1
            tadd t0, (r0), r1
            tadd t0, (r0), r1
            ret
        .table t0 key=int capacity=4
        .budget 11
    ");
    let mut p = program(&a);
    assert_eq!(p.run(0, &mut TestEnv::default()), Err(RunError::BudgetExhausted));
    let mut a = a;
    a.b.budget = 12;
    let mut p = program(&a);
    assert_eq!(p.run(0, &mut TestEnv::default()), Ok(()));
}

#[test]
fn tuple_keys_iterate_and_clear() {
    let (p, recs) = run(
        "
        .func main int=6 str=2
            lds s0, str0
            lds s1, str1
            movi r0, 1
            movi r1, 10
            tadd t0, (s0, r0), r1
            tadd t0, (s1, r0), r1
            tadd t0, (s0, r0), r1
            movi r0, 2
            tst t0, (s0, r0), r1
            tlen r2, t0
            printf f0, (r2)
            movi r3, 0              ; cursor
        loop:
            tnext r3, t0, (s0, r4), r5, done
            printf f1, (s0, r4, r5)
            jmp loop
        done:
            ptable t0
            tclr t0
            tlen r2, t0
            printf f0, (r2)
            ret
        .string str0 = \"sh\"
        .string str1 = \"dd\"
        .table t0 key=str,int capacity=8
        .format f0 (int)
        .format f1 (str, int, int)
        ",
        &mut TestEnv::default(),
    );
    let s = |x: &str| V::S(x.as_bytes().to_vec());
    assert_eq!(recs[0].2, [V::I(3)]);
    assert_eq!(recs[1].2, [s("sh"), V::I(1), V::I(20)]);
    assert_eq!(recs[2].2, [s("dd"), V::I(1), V::I(10)]);
    assert_eq!(recs[3].2, [s("sh"), V::I(2), V::I(10)]);
    assert_eq!((recs[4].0, &recs[4].2), (RecordKind::TableEntry, &vec![s("sh"), V::I(1), V::I(20)]));
    assert_eq!(recs[7], (RecordKind::TableEnd, 0, vec![V::I(3), V::I(0)]));
    assert_eq!(recs[8].2, [V::I(0)]);
    assert_eq!(p.table_len(0), Some(0));
}

#[test]
fn aggregates_keep_stats_and_buckets_and_print_compactly() {
    let (_, recs) = run(
        "
        .func main int=4
            movi r0, 1
            movi r1, 3
            tagg t0, (r0), r1
            movi r1, 100
            tagg t0, (r0), r1
            movi r1, -4
            tagg t0, (r0), r1
            tstat r2, t0, (r0), avg
            tstat r3, t0, (r0), min
            printf f0, (r2, r3)
            movi r0, 2
            tstat r2, t0, (r0), count    ; absent: 0
            printf f0, (r2, r2)
            movi r1, 25
            tagg t1, (r0), r1
            movi r1, 1000
            tagg t1, (r0), r1
            ptable t0
            ptable t1
            ret
        .table t0 key=int value=log2 capacity=4
        .table t1 key=int value=linear min=0 step=10 buckets=5 capacity=4
        .format f0 (int, int)
        ",
        &mut TestEnv::default(),
    );
    assert_eq!(recs[0].2, [V::I(33), V::I(-4)]);
    assert_eq!(recs[1].2, [V::I(0), V::I(0)]);
    // log2: 3 -> bucket 2, 100 -> bucket 7, -4 -> bucket 0
    assert_eq!(
        recs[2].2,
        [V::I(1), V::I(3), V::I(99), V::I(-4), V::I(100), V::B(vec![(0, 1), (2, 1), (7, 1)])]
    );
    // linear: 25 -> bucket 2, 1000 -> over (5 + 1)
    assert_eq!(recs[4].2, [V::I(2), V::I(2), V::I(1025), V::I(25), V::I(1000), V::B(vec![(2, 1), (6, 1)])]);
}

#[test]
fn memory_reads_go_through_the_env_and_faults_are_counted() {
    let mut env = TestEnv::default();
    env.mem.push((0x1000, b"Linux version 6.1\0junk".to_vec()));
    env.mem.push((0x2000, (-2i32).to_ne_bytes().iter().chain(&0x1122u16.to_ne_bytes()).copied().collect()));
    let (p, recs) = run(
        "
        .func main int=6 str=3
            ldc r0, c0
            movi r1, 128
            kstr s0, r0, r1
            movi r2, 5
            kstr s1, r0, r2         ; cut at max
            ldc r3, c1
            ldk r4, r3, 0, s32
            ldk r5, r3, 4, u16
            printf f0, (s0, s1, r4, r5)
            ldk r4, r3, 4, u32      ; runs off the mapping: 0 and counted
            ustr s2, r4, r1         ; address 0: \"\" and counted
            slen r5, s2
            printf f1, (r4, r5)
            ret
        .const c0 = 0x1000
        .const c1 = 0x2000
        .format f0 (str, str, int, int)
        .format f1 (int, int)
        ",
        &mut env,
    );
    let s = |x: &str| V::S(x.as_bytes().to_vec());
    assert_eq!(recs[0].2, [s("Linux version 6.1"), s("Linux"), V::I(-2), V::I(0x1122)]);
    assert_eq!(recs[1].2, [V::I(0), V::I(0)]);
    assert_eq!(p.counters().mem_faults, 2);
}

#[test]
fn kstack_packs_return_addresses_and_scat_truncates() {
    let mut env = TestEnv { stack: (0..20).map(|i| 0xc000_0000 + i).collect(), ..Default::default() };
    let (_, recs) = run(
        "
        .func main int=1 str=3
            kstack s0, 3
            kstack s1, 16
            scat s2, s1, s1
            slen r0, s2
            printf f0, (s0, r0)
            ret
        .format f0 (str, int)
        ",
        &mut env,
    );
    let want: Vec<u8> = (0..3u64).flat_map(|i| (0xc000_0000 + i).to_le_bytes()).collect();
    assert_eq!(recs[0].2, [V::S(want), V::I(MAX_STR as i64)]);
}

#[test]
fn exit_emits_its_record_and_stops_all_but_the_end_handler() {
    let a = asm("
        .func main int=1
            call r0, fn2, ()
            printf f0, ()       ; never reached: exit ends the whole hit
            ret
        .func end
            printf f0, ()
            ret
        .func quit int=1
            exit
        .probe kprobe vfs_read @0xc0001000 -> fn0
        .probe end -> fn1
        .format f0 ()
    ");
    let mut p = program(&a);
    let mut env = TestEnv::default();
    p.run(0, &mut env).unwrap();
    assert!(p.exited());
    p.run(0, &mut env).unwrap();
    p.run(1, &mut env).unwrap();
    let kinds: Vec<_> = env.decoded().iter().map(|r| r.0).collect();
    assert_eq!(kinds, [RecordKind::Exit, RecordKind::Printf]);
    assert_eq!(p.counters().hits, 2);
}
