//! The peer in the kernel's own idiom: hand-written eBPF run by `rbpf`'s interpreter.
//!
//! Helpers keep the kernel's numbers and contracts: `map_lookup_elem` (1) returns a pointer to the
//! value or 0, `map_update_elem` (2), `get_current_pid_tgid` (14), `get_current_comm` (16) and
//! `perf_event_output` (25) copying a stack struct into the ring. A map is named by a small handle
//! loaded with `lddw`, as the kernel's loader patches a map pointer into `ld_imm64`. Globals are direct
//! pointers (libbpf's `.bss`). rbpf checks every load and store against its stack, the context and the
//! addresses registered with `register_allowed_memory`, so every map value slot is registered.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use rbpf::EbpfVmMbuff;

use crate::{Engine, Hit, Outcome, Ring, Workload};

/// Helper ids, as in `include/uapi/linux/bpf.h`.
const MAP_LOOKUP_ELEM: u32 = 1;
const MAP_UPDATE_ELEM: u32 = 2;
const GET_CURRENT_PID_TGID: u32 = 14;
const GET_CURRENT_COMM: u32 = 16;
const PERF_EVENT_OUTPUT: u32 = 25;

/// Byte offset of `argN` in the context (`pt_regs` as six argument words).
const fn arg(n: usize) -> usize {
    n * 8
}

/// A fixed-capacity map with fixed-size keys and values: open addressing over dense entries, the same
/// hash (FNV-1a, then a multiplicative mix) and layout as the VM's tables.
pub struct NativeMap {
    key_size: usize,
    /// Values, `value_words` u64 per entry (8-aligned, as BPF map values are).
    values: Vec<u64>,
    value_words: usize,
    keys: Vec<u8>,
    index: Vec<u16>,
    mask: usize,
    len: usize,
}

impl NativeMap {
    fn new(key_size: usize, value_words: usize, capacity: usize) -> NativeMap {
        let slots = (capacity * 2).next_power_of_two();
        NativeMap {
            key_size,
            values: vec![0; capacity * value_words],
            value_words,
            keys: vec![0; capacity * key_size],
            index: vec![0; slots],
            mask: slots - 1,
            len: 0,
        }
    }

    fn hash(key: &[u8]) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        ((h ^ key.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
    }

    /// `(slot, Some(entry))` if present, else `(empty slot, None)`.
    fn find(&self, key: &[u8]) -> (usize, Option<usize>) {
        let mut slot = Self::hash(key) & self.mask;
        loop {
            let idx = self.index[slot];
            if idx == 0 {
                return (slot, None);
            }
            let e = usize::from(idx - 1);
            if &self.keys[e * self.key_size..(e + 1) * self.key_size] == key {
                return (slot, Some(e));
            }
            slot = (slot + 1) & self.mask;
        }
    }

    fn value_ptr(&mut self, e: usize) -> *mut u64 {
        self.values[e * self.value_words..].as_mut_ptr()
    }

    fn lookup(&mut self, key: &[u8]) -> Option<*mut u64> {
        let (_, e) = self.find(key);
        e.map(|e| self.value_ptr(e))
    }

    /// Insert or overwrite; `false` when full.
    fn update(&mut self, key: &[u8], value: &[u64]) -> bool {
        let e = match self.find(key) {
            (_, Some(e)) => e,
            (slot, None) => {
                if self.len * self.value_words >= self.values.len() {
                    return false;
                }
                let e = self.len;
                self.keys[e * self.key_size..(e + 1) * self.key_size].copy_from_slice(key);
                self.index[slot] = e as u16 + 1;
                self.len += 1;
                e
            }
        };
        self.values[e * self.value_words..(e + 1) * self.value_words].copy_from_slice(value);
        true
    }

    /// Start address of every value word, for rbpf's allowed-memory check.
    fn value_addrs(&self) -> Vec<u64> {
        self.values.iter().map(|v| v as *const u64 as u64).collect()
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u64])> {
        (0..self.len).map(|e| {
            (
                &self.keys[e * self.key_size..(e + 1) * self.key_size],
                &self.values[e * self.value_words..(e + 1) * self.value_words],
            )
        })
    }
}

/// What the helpers work on: the current hit, the maps, the ring.
struct State {
    hit: *const Hit,
    maps: Vec<NativeMap>,
    ring: Ring,
}

thread_local! {
    /// The state of the engine running on this thread (set before every run: helpers are plain
    /// `fn`s, as kernel helpers reach their per-CPU state).
    static CURRENT: Cell<*mut State> = const { Cell::new(std::ptr::null_mut()) };
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // SAFETY: `Rbpf::hit` points CURRENT at its boxed state for the duration of the run, on this thread.
    CURRENT.with(|c| f(unsafe { &mut *c.get() }))
}

fn map_lookup_elem(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    with_state(|s| {
        let m = &mut s.maps[map as usize];
        // SAFETY: the programs pass a pointer to `key_size` bytes of their stack
        let key = unsafe { std::slice::from_raw_parts(key as *const u8, m.key_size) };
        m.lookup(key).map_or(0, |p| p as u64)
    })
}

fn map_update_elem(map: u64, key: u64, value: u64, _flags: u64, _: u64) -> u64 {
    with_state(|s| {
        let m = &mut s.maps[map as usize];
        // SAFETY: the programs pass pointers to a key and a value on their stack
        let (key, value) = unsafe {
            (
                std::slice::from_raw_parts(key as *const u8, m.key_size),
                std::slice::from_raw_parts(value as *const u64, m.value_words),
            )
        };
        if m.update(key, value) { 0 } else { (-7i64) as u64 } // -E2BIG
    })
}

fn get_current_pid_tgid(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: the hit outlives the run
    with_state(|s| unsafe { ((*s.hit).pid as u64) << 32 | (*s.hit).tid as u64 })
}

fn get_current_comm(buf: u64, size: u64, _: u64, _: u64, _: u64) -> u64 {
    with_state(|s| {
        // SAFETY: the programs pass `size` bytes of their stack; the hit outlives the run
        let (out, comm) =
            unsafe { (std::slice::from_raw_parts_mut(buf as *mut u8, size as usize), &(*s.hit).comm) };
        let n = comm.len().min(out.len().saturating_sub(1));
        out[..n].copy_from_slice(&comm[..n]);
        out[n..].fill(0);
        0
    })
}

fn perf_event_output(_ctx: u64, _map: u64, _flags: u64, data: u64, size: u64) -> u64 {
    with_state(|s| {
        // SAFETY: the programs pass `size` bytes of their stack
        let data = unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) };
        if s.ring.push(data) { 0 } else { (-28i64) as u64 } // -ENOSPC
    })
}

/// Assemble rbpf text whose jumps name labels (`name:` lines): `lddw` takes two slots.
fn assemble(src: &str) -> Vec<u8> {
    let lines: Vec<&str> =
        src.lines().map(|l| l.split(';').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
    let mut labels = HashMap::new();
    let mut slot = 0i64;
    for l in &lines {
        if let Some(name) = l.strip_suffix(':') {
            labels.insert(name, slot);
        } else {
            slot += if l.starts_with("lddw") { 2 } else { 1 };
        }
    }
    let mut text = String::new();
    let mut slot = 0i64;
    for l in lines.iter().filter(|l| !l.ends_with(':')) {
        let mut l = l.to_string();
        if l.starts_with('j') {
            let (head, target) = l.rsplit_once([' ', ',']).expect("a jump target");
            if let Some(t) = labels.get(target.trim()) {
                l = format!("{head} {:+}", t - slot - 1);
            }
        }
        slot += if l.starts_with("lddw") { 2 } else { 1 };
        text.push_str(&l);
        text.push('\n');
    }
    rbpf::assembler::assemble(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Handles of the maps a workload uses (index into `State::maps`).
const MAP_T: u64 = 0;
const MAP_HIST: u64 = 1;

/// Words of a histogram value: count, sum, min, max, 64 buckets.
const HIST_WORDS: usize = 4 + 64;

fn program(w: Workload, globals: u64) -> String {
    match w {
        Workload::Count => format!(
            "
            lddw r1, {globals}      ; &hits
            ldxdw r2, [r1]
            add r2, 1
            stxdw [r1], r2
            mov r0, 0
            exit"
        ),
        Workload::ExecnameCount => format!(
            "
            mov r1, r10
            add r1, -16
            mov r2, 16
            call {GET_CURRENT_COMM}
            lddw r1, {MAP_T}
            mov r2, r10
            add r2, -16
            call {MAP_LOOKUP_ELEM}
            jeq r0, 0, missing
            ldxdw r1, [r0]
            add r1, 1
            stxdw [r0], r1
            ja out
            missing:
            stdw [r10-24], 1
            lddw r1, {MAP_T}
            mov r2, r10
            add r2, -16
            mov r3, r10
            add r3, -24
            mov r4, 0
            call {MAP_UPDATE_ELEM}
            out:
            mov r0, 0
            exit"
        ),
        Workload::Log2Hist => format!(
            "
            ldxdw r6, [r1+{a2}]     ; arg2
            stdw [r10-8], 0
            lddw r1, {MAP_HIST}
            mov r2, r10
            add r2, -8
            call {MAP_LOOKUP_ELEM}
            jeq r0, 0, out
            ldxdw r1, [r0]          ; count
            jne r1, 0, have
            stxdw [r0+16], r6       ; first value: min = max = v
            stxdw [r0+24], r6
            have:
            add r1, 1
            stxdw [r0], r1
            ldxdw r1, [r0+8]        ; sum
            add r1, r6
            stxdw [r0+8], r1
            ldxdw r1, [r0+16]       ; min
            jsle r1, r6, notmin
            stxdw [r0+16], r6
            notmin:
            ldxdw r1, [r0+24]       ; max
            jsge r1, r6, notmax
            stxdw [r0+24], r6
            notmax:
            mov r2, 0               ; bucket: 0 for v <= 0, else fls(v)
            jsle r6, 0, bucket
            mov r2, 1
            lddw r3, 0x100000000
            jlt r6, r3, b16
            rsh r6, 32
            add r2, 32
            b16:
            jlt r6, 0x10000, b8
            rsh r6, 16
            add r2, 16
            b8:
            jlt r6, 0x100, b4
            rsh r6, 8
            add r2, 8
            b4:
            jlt r6, 16, b2
            rsh r6, 4
            add r2, 4
            b2:
            jlt r6, 4, b1
            rsh r6, 2
            add r2, 2
            b1:
            jlt r6, 2, bucket
            add r2, 1
            bucket:
            lsh r2, 3
            add r2, r0
            ldxdw r1, [r2+32]
            add r1, 1
            stxdw [r2+32], r1
            out:
            mov r0, 0
            exit",
            a2 = arg(2)
        ),
        Workload::Loop10 => format!(
            "
            mov r1, 0               ; i
            mov r2, 0               ; s
            loop:
            add r2, r1
            add r1, 1
            jlt r1, 10, loop
            lddw r3, {globals}
            stxdw [r3], r2
            mov r0, 0
            exit"
        ),
        Workload::Printf3 => format!(
            "
            mov r6, r1              ; ctx
            stdw [r10-40], 0        ; printf id
            call {GET_CURRENT_PID_TGID}
            rsh r0, 32
            stxdw [r10-32], r0      ; pid
            ldxdw r2, [r6+{a2}]
            stxdw [r10-24], r2      ; arg2
            mov r1, r10
            add r1, -16
            mov r2, 16
            call {GET_CURRENT_COMM}
            mov r1, r6
            lddw r2, 3
            lddw r3, 0xffffffff     ; BPF_F_CURRENT_CPU
            mov r4, r10
            add r4, -40
            mov r5, 40
            call {PERF_EVENT_OUTPUT}
            mov r0, 0
            exit",
            a2 = arg(2)
        ),
    }
}

/// rbpf loaded with one workload.
pub struct Rbpf {
    w: Workload,
    vm: EbpfVmMbuff<'static>,
    state: Box<State>,
    globals: Box<[u64; 1]>,
}

/// Load `w`.
pub fn load(w: Workload) -> Box<dyn Engine> {
    Box::new(Rbpf::new(w))
}

impl Rbpf {
    /// Load `w`.
    pub fn new(w: Workload) -> Rbpf {
        let globals = Box::new([0u64; 1]);
        let code = assemble(&program(w, globals.as_ptr() as u64));
        // rbpf borrows the program for the VM's lifetime; a handful of programs per process
        let mut vm = EbpfVmMbuff::new(Some(Box::leak(code.into_boxed_slice()))).expect("rbpf verifier");
        for (id, f) in [
            (MAP_LOOKUP_ELEM, map_lookup_elem as rbpf::ebpf::Helper),
            (MAP_UPDATE_ELEM, map_update_elem),
            (GET_CURRENT_PID_TGID, get_current_pid_tgid),
            (GET_CURRENT_COMM, get_current_comm),
            (PERF_EVENT_OUTPUT, perf_event_output),
        ] {
            vm.register_helper(id, f).expect("helper");
        }
        let mut hist = NativeMap::new(8, HIST_WORDS, 1);
        // an array map: every key exists, zero-filled
        hist.update(&0u64.to_le_bytes(), &[0; HIST_WORDS]);
        let maps = vec![NativeMap::new(16, 1, 256), hist];
        for m in &maps {
            vm.register_allowed_memory(&m.value_addrs());
        }
        vm.register_allowed_memory(&[globals.as_ptr() as u64]);
        let state = Box::new(State { hit: std::ptr::null(), maps, ring: Ring::default() });
        Rbpf { w, vm, state, globals }
    }

    /// One hit (what the benchmark times).
    #[inline]
    pub fn run(&mut self, hit: &Hit) {
        self.state.hit = hit;
        CURRENT.with(|c| c.set(&mut *self.state));
        // the context: pt_regs as six argument words
        // SAFETY: [i64; 6] is 48 initialised bytes
        let ctx = unsafe { std::slice::from_raw_parts(hit.args.as_ptr().cast::<u8>(), 48) };
        let r = self.vm.execute_program(&[], ctx);
        debug_assert!(r.is_ok(), "{r:?}");
    }
}

fn trim(name: &[u8]) -> Vec<u8> {
    name.iter().copied().take_while(|b| *b != 0).collect()
}

impl Engine for Rbpf {
    fn hit(&mut self, h: &Hit) {
        self.run(h);
    }

    fn outcome(&mut self) -> Outcome {
        let maps = &self.state.maps;
        match self.w {
            Workload::Count | Workload::Loop10 => Outcome::Value(self.globals[0] as i64),
            Workload::ExecnameCount => Outcome::PerName(
                maps[MAP_T as usize].entries().map(|(k, v)| (trim(k), v[0] as i64)).collect(),
            ),
            Workload::Log2Hist => {
                let (_, v) = maps[MAP_HIST as usize].entries().next().expect("the array entry");
                let buckets: BTreeMap<usize, i64> = v[4..]
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n != 0)
                    .map(|(b, n)| (b, *n as i64))
                    .collect();
                Outcome::Hist {
                    count: v[0] as i64,
                    sum: v[1] as i64,
                    min: v[2] as i64,
                    max: v[3] as i64,
                    buckets,
                }
            }
            Workload::Printf3 => {
                let r = self.state.ring.last();
                let word = |i: usize| i64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
                Outcome::Records { n: self.state.ring.records, last: (trim(&r[24..40]), word(1), word(2)) }
            }
        }
    }
}
