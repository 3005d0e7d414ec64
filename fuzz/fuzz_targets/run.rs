//! Bytes -> parse -> verify -> `Program::new` -> run every function twice with a small budget (1000
//! back edges, written over the image's own) against
//! a synthetic `Env` (fixed context values, a ring that fills up): no panic, no hang, no overrun.
#![no_main]

use ktap_protocol::image::{Image, SectionKind};
use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::MAX_STR;
use ktap_vm::{Env, Program};
use libfuzzer_sys::fuzz_target;

/// Context values derived from the field, a short comm, and room for a few records.
struct Synthetic {
    room: usize,
}

impl Env for Synthetic {
    fn ctx(&mut self, field: CtxField) -> i64 {
        match field {
            CtxField::Retval => -1,
            CtxField::TimeNs => i64::MAX,
            f => i64::from(f as u8).wrapping_mul(0x0101_0101_0101),
        }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        out[..4].copy_from_slice(b"fuzz");
        4
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        assert!(record.len() <= ktap_protocol::limits::MAX_RECORD);
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        true
    }

    // memory: an address with bit 3 set faults; others read a pattern derived from the address
    fn read_kernel(&mut self, addr: u64, out: &mut [u8]) -> bool {
        if addr & 8 != 0 {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = (addr as u8).wrapping_add(i as u8);
        }
        true
    }

    fn read_str(&mut self, _user: bool, addr: u64, out: &mut [u8]) -> Option<usize> {
        if addr & 8 != 0 {
            return None;
        }
        let n = (addr as usize % 200).min(out.len());
        out[..n].fill(b'k');
        Some(n)
    }

    fn kstack(&mut self, out: &mut [u64]) -> usize {
        for (i, a) in out.iter_mut().enumerate() {
            *a = 0xc000_0000 + i as u64;
        }
        out.len()
    }
}

/// The budget every run gets (the image's own is replaced): small, so a hit is quick.
const BUDGET: u32 = 1000;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = Image::parse(data) else { return };
    // give the program a small budget by rewriting its META section, then parse again
    let at = img.section_offset(SectionKind::Meta);
    let mut bytes = data.to_vec();
    if at != 0 {
        bytes[at..at + 4].copy_from_slice(&BUDGET.to_le_bytes());
    }
    let Ok(img) = Image::parse(&bytes) else { return };
    let Ok(v) = ktap_vm::verify(&img) else { return };
    let n = v.funcs().len();
    let Ok(mut prog) = Program::new(v) else { return };
    let mut env = Synthetic { room: 16 };
    for _ in 0..2 {
        for f in 0..n {
            let _ = prog.run(f as u16, &mut env);
        }
    }
});
