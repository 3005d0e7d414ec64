//! Test helpers: the shared text assembler (`ktap_protocol::asm`, driven by `Opcode::operands` like
//! the verifier; its module docs describe the language) with label lookups, and a recording [`Env`].
#![allow(dead_code)]

use std::collections::HashMap;

use ktap_protocol::image::Image;
use ktap_protocol::image::build::ImageBuilder;
use ktap_protocol::isa::CtxField;
use ktap_protocol::limits::MAX_STR;
use ktap_protocol::record::{self, RecordKind, Value};
use ktap_vm::Env;

/// An assembled program: the image builder (code + funcs filled in) and the label offsets.
pub struct Asm {
    pub b: ImageBuilder,
    pub labels: HashMap<String, u32>,
}

impl Asm {
    /// Code offset of `label`.
    pub fn at(&self, label: &str) -> u32 {
        *self.labels.get(label).unwrap_or_else(|| panic!("no label {label}"))
    }

    /// Image offset of code offset `code_off` in the built image.
    pub fn image_off(&self, code_off: u32) -> u32 {
        let bytes = self.b.build();
        Image::parse(&bytes).unwrap().code_offset as u32 + code_off
    }

    /// Image offset of `label`.
    pub fn image_at(&self, label: &str) -> u32 {
        self.image_off(self.at(label))
    }
}

/// Assemble `src` with the shared assembler (`ktap_protocol::asm`); panics on a syntax error.
pub fn asm(src: &str) -> Asm {
    let a = ktap_protocol::asm::assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    Asm { b: a.image, labels: a.labels.into_iter().collect() }
}

/// One decoded record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    I(i64),
    S(Vec<u8>),
    /// The non-empty buckets of an aggregate: (bucket, count).
    B(Vec<(u8, u32)>),
}

/// An [`Env`] with fixed context values that keeps what the VM emits.
pub struct TestEnv {
    pub comm: Vec<u8>,
    pub records: Vec<Vec<u8>>,
    /// Emits beyond this many are refused (a full ring).
    pub room: usize,
    /// Readable memory: (address, bytes); everything else faults.
    pub mem: Vec<(u64, Vec<u8>)>,
    /// The kernel stack `kstack` sees.
    pub stack: Vec<u64>,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv {
            comm: b"dd".to_vec(),
            records: Vec::new(),
            room: usize::MAX,
            mem: Vec::new(),
            stack: Vec::new(),
        }
    }
}

impl TestEnv {
    fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.mem.iter().find_map(|(a, b)| {
            let off = usize::try_from(addr.checked_sub(*a)?).ok()?;
            b.get(off..off.checked_add(len)?)
        })
    }
}

impl TestEnv {
    /// The records as (kind, id, values).
    pub fn decoded(&self) -> Vec<(RecordKind, u16, Vec<V>)> {
        let all = self.records.concat();
        record::records(&all)
            .map(|r| {
                let r = r.unwrap();
                let vals = r
                    .values()
                    .map(|v| match v.unwrap() {
                        Value::Int(i) => V::I(i),
                        Value::Str(s) => V::S(s.to_vec()),
                        b @ Value::Buckets(_) => V::B(b.buckets().collect()),
                    })
                    .collect();
                (r.kind, r.id, vals)
            })
            .collect()
    }
}

impl Env for TestEnv {
    fn ctx(&mut self, field: CtxField) -> i64 {
        match field {
            CtxField::Pid => 42,
            CtxField::Tid => 43,
            CtxField::Cpu => 1,
            CtxField::Uid => 0,
            CtxField::TimeNs => 1_000_000,
            CtxField::Retval => -5,
            f => 100 + f.arg_index().map_or(0, i64::from),
        }
    }

    fn comm(&mut self, out: &mut [u8; MAX_STR]) -> usize {
        let n = self.comm.len().min(MAX_STR);
        out[..n].copy_from_slice(&self.comm[..n]);
        n
    }

    fn emit(&mut self, record: &[u8]) -> bool {
        if self.records.len() >= self.room {
            return false;
        }
        self.records.push(record.to_vec());
        true
    }

    fn read_kernel(&mut self, addr: u64, out: &mut [u8]) -> bool {
        match self.bytes_at(addr, out.len()) {
            Some(b) => {
                out.copy_from_slice(b);
                true
            }
            None => false,
        }
    }

    fn read_str(&mut self, _user: bool, addr: u64, out: &mut [u8]) -> Option<usize> {
        for (i, d) in out.iter_mut().enumerate() {
            let b = self.bytes_at(addr + i as u64, 1)?[0];
            if b == 0 {
                return Some(i);
            }
            *d = b;
        }
        Some(out.len())
    }

    fn kstack(&mut self, out: &mut [u64]) -> usize {
        let n = out.len().min(self.stack.len());
        out[..n].copy_from_slice(&self.stack[..n]);
        n
    }
}
