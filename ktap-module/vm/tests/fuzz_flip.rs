//! Untrusted input end to end: every single-bit flip (and a batch of random multi-byte corruptions) of
//! a valid image goes through parse -> verify -> Program::new -> run of every function, and nothing
//! panics or runs away (the budget bounds every run).

mod common;

use common::{TestEnv, asm};
use ktap_protocol::image::build::{ImageBuilder, OwnedProbe};
use ktap_protocol::image::{ArgKind, Image, KeyKind, ProbeKind, TableSpec};
use ktap_vm::{Program, verify};

/// A program that uses every opcode.
fn rich() -> ImageBuilder {
    let mut a = asm("
        .func main int=6 str=3
            ctx r0, pid
            ctx r1, arg1
            comm s0
            lds s1, str0
            movs s2, s1
            ldc r2, c0
        top:
            addi r3, r3, 1
            add r4, r3, r2
            sub r4, r4, r1
            mul r4, r4, r3
            div r5, r4, r3
            mod r5, r4, r2
            and r5, r5, r4
            or r5, r5, r1
            xor r5, r5, r0
            shl r5, r5, r3
            shr r5, r5, r3
            neg r5, r5
            not r5, r5
            mov r1, r5
            tadd t0, (r3), r5
            tst t0, (r0), r3
            tld r5, t0, (r0)
            tdel t0, (r1)
            tadd t1, (s0), r3
            tst t1, (s1), r3
            tld r5, t1, (s2)
            tdel t1, (s2)
            stg g0, r5
            addg g1, r3
            ldg r5, g1
            jz r5, out
            jnz r4, next
        next:
            jeq r4, r5, out
            jne r3, r2, more
        more:
            jle r3, r2, top
            jlt r2, r3, out
            jseq s0, s1, out
            jsne s0, s2, out
        out:
            printf f0, (r3, s0)
            ptable t0
            ret
        .func end int=1
            ptable t1
        spin:
            jmp spin
    ");
    a.b.consts = vec![5];
    a.b.strings = vec![b"dd".to_vec()];
    a.b.globals = 2;
    a.b.tables = vec![TableSpec::single(KeyKind::Int, 4), TableSpec::single(KeyKind::Str, 2)];
    a.b.formats = vec![vec![ArgKind::Int, ArgKind::Str]];
    a.b.probes = vec![
        OwnedProbe {
            kind: ProbeKind::Kprobe,
            func: 0,
            addr: 0xc010_0000,
            flags: 0,
            name: b"vfs_read".to_vec(),
        },
        OwnedProbe { kind: ProbeKind::End, func: 1, addr: 0, flags: 0, name: vec![] },
    ];
    a.b.budget = 2000;
    a.b
}

/// Parse, verify, allocate and run every function a few times. Returns whether it verified.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(img) = Image::parse(bytes) else { return false };
    let Ok(v) = verify(&img) else { return false };
    let nfuncs = v.funcs().len() as u16;
    let Ok(mut p) = Program::new(v) else { return true };
    let mut env = TestEnv { room: 64, ..Default::default() };
    for _ in 0..3 {
        for f in 0..=nfuncs {
            let _ = p.run(f, &mut env);
        }
    }
    true
}

#[test]
fn the_rich_program_runs() {
    let bytes = rich().build();
    let img = Image::parse(&bytes).unwrap();
    let mut p = Program::new(verify(&img).unwrap()).unwrap();
    let mut env = TestEnv::default();
    for _ in 0..5 {
        p.run(0, &mut env).unwrap();
    }
    assert!(p.run(1, &mut env).is_err()); // the end function spins until the budget runs out
    assert_eq!(p.counters().budget_exhausted, 1);
    assert!(!env.records.is_empty());
}

#[test]
fn every_bit_flip_is_refused_or_runs_safely() {
    let good = rich().build();
    let mut accepted = 0;
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            accepted += usize::from(exercise(&b));
        }
    }
    // some flips (immediates, constants) keep the program valid; most must be refused
    assert!(accepted > 0 && accepted < good.len() * 8, "{accepted}");
}

#[test]
fn random_corruptions_never_panic() {
    let good = rich().build();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        exercise(&b);
    }
}
