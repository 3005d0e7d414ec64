//! Fixed-capacity hash tables with tuple keys and int or aggregate values, allocated once and never
//! grown.
//!
//! A stored key is encoded into bytes: per component, an integer as 8 little-endian bytes, a string as
//! a length byte and its bytes. The encoding is prefix-free, so two keys are equal exactly when their
//! encodings are. Lookups never encode: a [`Key`] holds the components as the registers give them,
//! is hashed component by component and compared against the stored encoding in place; only an
//! insert writes the encoding, straight into the table's own storage. Entries are dense arrays of exactly `capacity` slots (heapless
//! `IndexMap` style): key bytes at a fixed stride (the longest encoding of the shape) with their
//! lengths, values at a fixed stride of i64s (1 for int tables; count, sum, min, max and the buckets
//! for aggregates), hashes. `index` is an open-addressing array of `u16` entry numbers (0 = empty,
//! else entry + 1) of at least twice the capacity, probed linearly. Deletion shifts the following
//! probe run back (no tombstones) and moves the last entry into the hole, so a table that sees
//! endless insert/delete churn never degrades. A lookup visits at most every slot of `index`; with a
//! load factor of at most one half it is short in practice.

use alloc::vec::Vec;

use ktap_protocol::image::{KeyKind, KeyShape, TableSpec, ValueKind};
use ktap_protocol::limits::{MAX_KEYS, MAX_STR, MAX_TABLE_CAPACITY};

use crate::error::AllocFailed;
use crate::fixed::try_filled;
use crate::verified::StrBuf;

// entry numbers + 1 must fit the u16 index
const _: () = assert!(MAX_TABLE_CAPACITY < u16::MAX as u32);

/// Aggregate value slots before the buckets.
pub(crate) const AGG_COUNT: usize = 0;
pub(crate) const AGG_SUM: usize = 1;
pub(crate) const AGG_MIN: usize = 2;
pub(crate) const AGG_MAX: usize = 3;
pub(crate) const AGG_STATS: usize = 4;

/// One decoded key component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comp<'a> {
    Int(i64),
    Str(&'a [u8]),
}

/// A key as components, read where they are (the VM's registers, or a [`Key`]): what lookups hash
/// and compare. Nothing is copied to build one.
pub(crate) trait KeyParts {
    /// Number of components.
    fn len(&self) -> usize;
    /// Component `i` (`None` past the end; the verifier rules out anything else).
    fn part(&self, i: usize) -> Option<Comp<'_>>;
}

/// A key held as an array of components (host lookups, decoded keys, tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    n: usize,
    c: [Comp<'a>; MAX_KEYS],
}

impl<'a> Key<'a> {
    pub(crate) fn new() -> Key<'a> {
        Key { n: 0, c: [Comp::Int(0); MAX_KEYS] }
    }

    /// Append a component; past `MAX_KEYS` it is dropped.
    pub(crate) fn push(&mut self, c: Comp<'a>) {
        if let Some(slot) = self.c.get_mut(self.n) {
            *slot = c;
            self.n = self.n.wrapping_add(1);
        }
    }

    /// A one-component key.
    pub(crate) fn one(c: Comp<'a>) -> Key<'a> {
        let mut k = Key::new();
        k.push(c);
        k
    }

    /// The key an encoding of shape `shape` holds.
    #[cfg(test)]
    fn decode(shape: KeyShape, enc: &'a [u8]) -> Key<'a> {
        let mut k = Key::new();
        for c in components(shape, enc) {
            k.push(c);
        }
        k
    }
}

impl KeyParts for Key<'_> {
    fn len(&self) -> usize {
        self.n
    }

    fn part(&self, i: usize) -> Option<Comp<'_>> {
        self.c.get(..self.n)?.get(i).copied()
    }
}

/// A key of exactly one component, read where the registers hold it: what the compiler emits
/// most (`t[execname]`, `t[pid]`). Hashed and compared without walking components, a string a word
/// at a time with its tail loaded whole from the register's buffer and masked (no byte loop); the
/// hash equals the general one of the same key, so both paths meet in one table.
#[derive(Clone, Copy)]
pub(crate) enum One<'a> {
    Int(i64),
    Str(&'a StrBuf),
}

impl KeyParts for One<'_> {
    fn len(&self) -> usize {
        1
    }

    fn part(&self, i: usize) -> Option<Comp<'_>> {
        match (i, *self) {
            (0, One::Int(v)) => Some(Comp::Int(v)),
            (0, One::Str(s)) => Some(Comp::Str(s.as_bytes())),
            _ => None,
        }
    }
}

/// The little-endian 4-byte word at `at` of `b`, only its first `keep` bytes (the rest zero; 0 if
/// the word is not inside `b`).
fn word32(b: &[u8], at: usize, keep: usize) -> u32 {
    let Some(w) = b.get(at..).and_then(|r| r.first_chunk::<4>()) else { return 0 };
    let x = u32::from_le_bytes(*w);
    if keep >= 4 { x } else { x & 1u32.wrapping_shl((keep as u32).wrapping_mul(8)).wrapping_sub(1) }
}

/// [`word32`] with 8-byte words.
fn word64(b: &[u8], at: usize, keep: usize) -> u64 {
    let Some(w) = b.get(at..).and_then(|r| r.first_chunk::<8>()) else { return 0 };
    let x = u64::from_le_bytes(*w);
    if keep >= 8 { x } else { x & 1u64.wrapping_shl((keep as u32).wrapping_mul(8)).wrapping_sub(1) }
}

/// The hash [`hash`] gives a one-string key, from the register's whole buffer: full words, then
/// the tail word loaded whole (it lies inside the buffer) and masked to the bytes in use.
fn hash_str_padded(buf: &[u8; MAX_STR], n: usize) -> u32 {
    if cfg!(target_pointer_width = "64") { hash_str_padded64(buf, n) } else { hash_str_padded32(buf, n) }
}

/// [`hash_str_padded`] on 32-bit targets (`Hasher::W32`).
fn hash_str_padded32(buf: &[u8; MAX_STR], n: usize) -> u32 {
    let mut h = Hasher::word32(0, n as u32);
    let full = n >> 2;
    for i in 0..full {
        h = Hasher::word32(h, word32(buf, i << 2, 4));
    }
    Hasher::W32(Hasher::word32(h, word32(buf, full << 2, n & 3))).finish()
}

/// [`hash_str_padded`] on 64-bit targets (`Hasher::W64`).
fn hash_str_padded64(buf: &[u8; MAX_STR], n: usize) -> u32 {
    let mut h = Hasher::word64(0, n as u64);
    let full = n >> 3;
    for i in 0..full {
        h = Hasher::word64(h, word64(buf, i << 3, 8));
    }
    Hasher::W64(Hasher::word64(h, word64(buf, full << 3, n & 7))).finish()
}

/// The hash of a one-component key (equal to [`hash`] of it).
fn hash_one(k: One<'_>) -> u32 {
    match k {
        One::Int(v) => mix(v as u64),
        One::Str(s) => {
            let (buf, n) = s.padded();
            hash_str_padded(buf, n)
        }
    }
}

/// Whether the stored entry `slot` (a whole key stride, at least one length byte and `MAX_STR`
/// bytes for a string key) of encoded length `klen` holds the one-component key `k`.
fn matches_one(k: One<'_>, slot: &[u8], klen: usize) -> bool {
    match k {
        One::Int(v) => klen == 8 && slot.first_chunk::<8>().is_some_and(|b| i64::from_le_bytes(*b) == v),
        One::Str(s) => {
            let (buf, n) = s.padded();
            if klen != n.wrapping_add(1) || slot.first().copied() != Some(n as u8) {
                return false;
            }
            let stored = slot.get(1..).unwrap_or(&[]);
            let full = n >> 2;
            (0..full).all(|i| word32(buf, i << 2, 4) == word32(stored, i << 2, 4))
                && word32(buf, full << 2, n & 3) == word32(stored, full << 2, n & 3)
        }
    }
}

/// The components of `key`, in order.
fn parts<K: KeyParts + ?Sized>(key: &K) -> impl Iterator<Item = Comp<'_>> {
    (0..key.len()).map_while(|i| key.part(i))
}

/// Bytes of the encoding of `key`.
fn encoded_len<K: KeyParts + ?Sized>(key: &K) -> usize {
    parts(key).fold(0usize, |n, c| {
        n.wrapping_add(match c {
            Comp::Int(_) => 8,
            Comp::Str(s) => 1usize.wrapping_add(s.len().min(MAX_STR)),
        })
    })
}

/// Write the encoding of `key` into `out` (exactly `encoded_len` bytes); `false` if it does not fit.
fn encode<K: KeyParts + ?Sized>(key: &K, out: &mut [u8]) -> bool {
    let mut at = 0usize;
    let mut put = |b: &[u8]| {
        let end = at.wrapping_add(b.len());
        match out.get_mut(at..end) {
            Some(d) => {
                d.copy_from_slice(b);
                at = end;
                true
            }
            None => false,
        }
    };
    parts(key).all(|c| match c {
        Comp::Int(v) => put(&v.to_le_bytes()),
        Comp::Str(s) => {
            let s = s.get(..MAX_STR).unwrap_or(s);
            put(&[s.len() as u8]) && put(s)
        }
    })
}

/// Whether the stored encoding `enc` is `key` (compared in place, a word at a time).
fn matches<K: KeyParts + ?Sized>(key: &K, enc: &[u8]) -> bool {
    let mut rest = enc;
    for i in 0..key.len() {
        match key.part(i) {
            Some(Comp::Int(v)) => {
                let Some((b, r)) = rest.split_first_chunk::<8>() else { return false };
                if i64::from_le_bytes(*b) != v {
                    return false;
                }
                rest = r;
            }
            Some(Comp::Str(s)) => {
                let s = s.get(..MAX_STR).unwrap_or(s);
                let Some((n, r)) = rest.split_first() else { return false };
                let Some((b, r)) = r.split_at_checked(usize::from(*n)) else { return false };
                if b.len() != s.len() || !same_bytes(b, s) {
                    return false;
                }
                rest = r;
            }
            None => return false,
        }
    }
    rest.is_empty()
}

/// The hash of `key`: one multiply for a lone integer, else per component in the machine's word
/// width.
fn hash<K: KeyParts + ?Sized>(key: &K) -> u32 {
    if key.len() == 1 {
        if let Some(Comp::Int(v)) = key.part(0) {
            return mix(v as u64);
        }
    }
    let mut h = Hasher::new();
    for c in parts(key) {
        match c {
            Comp::Int(v) => h.int(v),
            Comp::Str(s) => h.str(s.get(..MAX_STR).unwrap_or(s)),
        }
    }
    h.finish()
}

/// `a == b` for slices of equal length, four bytes at a time (a call to `memcmp` costs more than
/// the short keys it would compare).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let (mut x, mut y) = (a.chunks_exact(4), b.chunks_exact(4));
    for (p, q) in (&mut x).zip(&mut y) {
        let w = |c: &[u8]| u32::from_ne_bytes(c.try_into().unwrap_or([0; 4]));
        if w(p) != w(q) {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// The components of an encoded key of shape `shape`.
pub(crate) fn components(shape: KeyShape, mut enc: &[u8]) -> impl Iterator<Item = Comp<'_>> {
    (0..usize::from(shape.n)).map_while(move |i| match shape.kind(i)? {
        KeyKind::Int => {
            let (b, rest) = enc.split_first_chunk::<8>()?;
            enc = rest;
            Some(Comp::Int(i64::from_le_bytes(*b)))
        }
        KeyKind::Str => {
            let (n, rest) = enc.split_first()?;
            let (s, rest) = rest.split_at_checked(usize::from(*n))?;
            enc = rest;
            Some(Comp::Str(s))
        }
    })
}

/// The insert was refused because the table holds `capacity` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

fn key_stride(shape: KeyShape) -> usize {
    (0..usize::from(shape.n))
        .map(|i| if shape.kind(i) == Some(KeyKind::Str) { 1 + MAX_STR } else { 8 })
        .fold(0usize, usize::saturating_add)
}

fn value_stride(v: &ValueKind) -> usize {
    if v.is_aggregate() { AGG_STATS.saturating_add(v.buckets()) } else { 1 }
}

/// Bytes one entry of `spec` takes (keys, key length, values, hash, and at most 8 bytes of index),
/// for the verifier's memory limit.
pub(crate) fn entry_bytes(spec: &TableSpec) -> usize {
    key_stride(spec.keys)
        .saturating_add(2)
        .saturating_add(value_stride(&spec.value).saturating_mul(8))
        .saturating_add(12)
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) spec: TableSpec,
    stride: usize,
    vstride: usize,
    keys: Vec<u8>,
    klens: Vec<u16>,
    values: Vec<i64>,
    hashes: Vec<u32>,
    index: Vec<u16>,
    mask: usize,
    len: usize,
    /// Inserts refused because the table was full.
    pub(crate) refused: u64,
}

fn mix(x: u64) -> u32 {
    // multiplicative (Fibonacci) hashing; the high half carries the entropy
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// The hash of a key with more than a lone integer: component by component, a machine word at a
/// time in the word's own width (a 32-bit board never does 64-bit multiplies here; the byte-wise
/// FNV-1a it replaces did one per byte). Only this table ever sees the value.
#[derive(Clone, Copy)]
enum Hasher {
    /// 32-bit targets: one rotate, xor and multiply per word (FxHash's step; murmur3's block step
    /// it replaces took two multiplies, two rotates and an add, which showed per hit on ARMv7),
    /// then murmur3's finaliser so the index's low bits depend on every input bit.
    W32(u32),
    /// 64-bit targets: a multiply-xorshift per 8-byte word.
    W64(u64),
}

impl Hasher {
    fn new() -> Hasher {
        if cfg!(target_pointer_width = "64") { Hasher::W64(0) } else { Hasher::W32(0) }
    }

    fn word32(h: u32, w: u32) -> u32 {
        (h.rotate_left(5) ^ w).wrapping_mul(0x9e37_79b9)
    }

    fn word64(h: u64, w: u64) -> u64 {
        let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }

    fn int(&mut self, v: i64) {
        *self = match *self {
            Hasher::W32(h) => Hasher::W32(Hasher::word32(Hasher::word32(h, v as u32), (v >> 32) as u32)),
            Hasher::W64(h) => Hasher::W64(Hasher::word64(h, v as u64)),
        }
    }

    /// The length, then the bytes a word at a time (the tail zero-padded).
    fn str(&mut self, s: &[u8]) {
        *self = match *self {
            Hasher::W32(mut h) => {
                h = Hasher::word32(h, s.len() as u32);
                let mut c = s.chunks_exact(4);
                for w in &mut c {
                    h = Hasher::word32(h, u32::from_le_bytes(w.try_into().unwrap_or([0; 4])));
                }
                let tail = c.remainder().iter().rev().fold(0u32, |w, b| w << 8 | u32::from(*b));
                Hasher::W32(Hasher::word32(h, tail))
            }
            Hasher::W64(mut h) => {
                h = Hasher::word64(h, s.len() as u64);
                let mut c = s.chunks_exact(8);
                for w in &mut c {
                    h = Hasher::word64(h, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
                }
                let tail = c.remainder().iter().rev().fold(0u64, |w, b| w << 8 | u64::from(*b));
                Hasher::W64(Hasher::word64(h, tail))
            }
        }
    }

    fn finish(self) -> u32 {
        match self {
            Hasher::W32(mut h) => {
                h ^= h >> 16;
                h = h.wrapping_mul(0x85eb_ca6b);
                h ^= h >> 13;
                h = h.wrapping_mul(0xc2b2_ae35);
                h ^ (h >> 16)
            }
            Hasher::W64(h) => mix(h),
        }
    }
}

impl Table {
    /// Allocate a table for `spec` (shape, kind and capacity already checked by the verifier).
    pub(crate) fn new(spec: &TableSpec) -> Result<Table, AllocFailed> {
        let cap = spec.capacity.min(MAX_TABLE_CAPACITY) as usize;
        let slots = cap.saturating_mul(2).max(2).next_power_of_two();
        let stride = key_stride(spec.keys);
        let vstride = value_stride(&spec.value);
        Ok(Table {
            spec: *spec,
            stride,
            vstride,
            keys: try_filled(cap.saturating_mul(stride), 0)?,
            klens: try_filled(cap, 0)?,
            values: try_filled(cap.saturating_mul(vstride), 0)?,
            hashes: try_filled(cap, 0)?,
            index: try_filled(slots, 0)?,
            mask: slots.wrapping_sub(1),
            len: 0,
            refused: 0,
        })
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        self.klens.len()
    }

    fn key_of(&self, e: usize) -> &[u8] {
        let start = e.wrapping_mul(self.stride);
        let n = usize::from(self.klens.get(e).copied().unwrap_or(0));
        self.keys.get(start..start.wrapping_add(n)).unwrap_or(&[])
    }

    fn vals(&self, e: usize) -> &[i64] {
        let start = e.wrapping_mul(self.vstride);
        self.values.get(start..start.wrapping_add(self.vstride)).unwrap_or(&[])
    }

    fn vals_mut(&mut self, e: usize) -> Option<&mut [i64]> {
        let start = e.wrapping_mul(self.vstride);
        self.values.get_mut(start..start.wrapping_add(self.vstride))
    }

    /// Probe for the key with hash `h` that `is_key(entry)` recognises: `(slot, Some(entry))` if
    /// present, `(empty slot, None)` if not. `None` only if the index has no empty slot, which the
    /// load factor rules out.
    fn find_by(&self, h: u32, is_key: impl Fn(usize) -> bool) -> Option<(usize, Option<usize>)> {
        let mut slot = h as usize & self.mask;
        for _ in 0..self.index.len() {
            let idx = *self.index.get(slot)?;
            if idx == 0 {
                return Some((slot, None));
            }
            let e = usize::from(idx).wrapping_sub(1);
            if self.hashes.get(e) == Some(&h) && is_key(e) {
                return Some((slot, Some(e)));
            }
            slot = slot.wrapping_add(1) & self.mask;
        }
        None
    }

    /// Probe for `key` (see [`Table::find_by`]).
    fn find<K: KeyParts + ?Sized>(&self, key: &K, h: u32) -> Option<(usize, Option<usize>)> {
        self.find_by(h, |e| matches(key, self.key_of(e)))
    }

    /// Probe for a one-component key: the entry's whole stride is compared a word at a time.
    fn find_one(&self, key: One<'_>, h: u32) -> Option<(usize, Option<usize>)> {
        self.find_by(h, |e| self.holds_one(e, key))
    }

    /// Whether entry `e` holds `key`. Out of line: inlined into the probe loop, its loads of the
    /// key storage were hoisted in front of the loop and spilled, a few dozen guest instructions
    /// per lookup, though it runs only for an entry whose hash matched (about once per lookup).
    #[inline(never)]
    fn holds_one(&self, e: usize, key: One<'_>) -> bool {
        let start = e.wrapping_mul(self.stride);
        let slot = self.keys.get(start..start.wrapping_add(self.stride)).unwrap_or(&[]);
        matches_one(key, slot, usize::from(self.klens.get(e).copied().unwrap_or(0)))
    }

    /// The value slots for `key` (one for int tables), if present.
    pub(crate) fn get<K: KeyParts + ?Sized>(&self, key: &K) -> Option<&[i64]> {
        let (_, e) = self.find(key, hash(key))?;
        Some(self.vals(e?))
    }

    /// [`Table::get`] of a one-component key.
    pub(crate) fn get_one(&self, key: One<'_>) -> Option<&[i64]> {
        let (_, e) = self.find_one(key, hash_one(key))?;
        Some(self.vals(e?))
    }

    /// The value slots for `key`, inserting an empty value if absent (0; for aggregates count 0 and
    /// min/max ready for the first value). A full table refuses (and counts) the insert.
    pub(crate) fn entry<K: KeyParts + ?Sized>(&mut self, key: &K) -> Result<&mut [i64], Full> {
        let h = hash(key);
        let (slot, found) = self.find(key, h).ok_or(Full)?;
        self.entry_found(key, h, slot, found)
    }

    /// [`Table::entry`] of a one-component key.
    pub(crate) fn entry_one(&mut self, key: One<'_>) -> Result<&mut [i64], Full> {
        let h = hash_one(key);
        let (slot, found) = self.find_one(key, h).ok_or(Full)?;
        self.entry_found(&key, h, slot, found)
    }

    /// The value slots of entry `found`, or of a new entry for `key` (hash `h`) linked at the empty
    /// index slot `slot`.
    fn entry_found<K: KeyParts + ?Sized>(
        &mut self,
        key: &K,
        h: u32,
        slot: usize,
        found: Option<usize>,
    ) -> Result<&mut [i64], Full> {
        let e = match found {
            Some(e) => e,
            None => {
                let e = self.len;
                let n = encoded_len(key);
                if e >= self.capacity() || n > self.stride {
                    self.refused = self.refused.wrapping_add(1);
                    return Err(Full);
                }
                let start = e.wrapping_mul(self.stride);
                let dst = self.keys.get_mut(start..start.wrapping_add(n)).ok_or(Full)?;
                if !encode(key, dst) {
                    return Err(Full);
                }
                *self.klens.get_mut(e).ok_or(Full)? = n as u16;
                *self.hashes.get_mut(e).ok_or(Full)? = h;
                let aggregate = self.spec.value.is_aggregate();
                let v = self.vals_mut(e).ok_or(Full)?;
                v.fill(0);
                if aggregate {
                    if let Some(m) = v.get_mut(AGG_MIN) {
                        *m = i64::MAX;
                    }
                    if let Some(m) = v.get_mut(AGG_MAX) {
                        *m = i64::MIN;
                    }
                }
                *self.index.get_mut(slot).ok_or(Full)? = (e as u16).wrapping_add(1);
                self.len = e.wrapping_add(1);
                e
            }
        };
        self.vals_mut(e).ok_or(Full)
    }

    /// Record `x` into an aggregate entry's slots.
    pub(crate) fn record(value: &ValueKind, v: &mut [i64], x: i64) {
        if let [count, sum, min, max, buckets @ ..] = v {
            *count = count.wrapping_add(1);
            *sum = sum.wrapping_add(x);
            *min = (*min).min(x);
            *max = (*max).max(x);
            let b = match *value {
                ValueKind::Log2 if x <= 0 => 0,
                ValueKind::Log2 => 64usize.wrapping_sub(x.leading_zeros() as usize),
                ValueKind::Linear { min, step, nbuckets } => {
                    let nb = usize::from(nbuckets);
                    if x < min {
                        nb
                    } else {
                        // in i128 so min and step anywhere in i64 cannot overflow
                        let i = i128::from(x)
                            .wrapping_sub(i128::from(min))
                            .checked_div(i128::from(step))
                            .unwrap_or(0);
                        if i >= nb as i128 { nb.wrapping_add(1) } else { i as usize }
                    }
                }
                ValueKind::Int | ValueKind::Stats => return,
            };
            if let Some(slot) = buckets.get_mut(b) {
                *slot = slot.wrapping_add(1);
            }
        }
    }

    /// Remove `key` if present.
    pub(crate) fn remove<K: KeyParts + ?Sized>(&mut self, key: &K) {
        let Some((slot, Some(e))) = self.find(key, hash(key)) else { return };
        self.unlink(slot);
        let last = self.len.wrapping_sub(1);
        if e != last {
            self.move_entry(last, e);
        }
        self.len = last;
    }

    /// Remove every entry: clears the index slots of the live entries only, so it costs O(len).
    pub(crate) fn clear(&mut self) {
        for e in 0..self.len {
            let mut slot = self.hashes.get(e).copied().unwrap_or(0) as usize & self.mask;
            let want = (e as u16).wrapping_add(1);
            for _ in 0..self.index.len() {
                match self.index.get_mut(slot) {
                    Some(idx) if *idx == want => {
                        *idx = 0;
                        break;
                    }
                    None => break,
                    Some(_) => slot = slot.wrapping_add(1) & self.mask,
                }
            }
        }
        self.len = 0;
    }

    /// Empty index slot `hole`, shifting later members of its probe run back (linear probing).
    fn unlink(&mut self, mut hole: usize) {
        let mask = self.mask;
        let mut j = hole;
        for _ in 0..self.index.len() {
            j = j.wrapping_add(1) & mask;
            let idx = self.index.get(j).copied().unwrap_or(0);
            if idx == 0 {
                break;
            }
            let e = usize::from(idx).wrapping_sub(1);
            let home = self.hashes.get(e).copied().unwrap_or(0) as usize & mask;
            // the entry at j may fill the hole unless its home lies cyclically in (hole, j]
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = idx;
                }
                hole = j;
            }
        }
        if let Some(h) = self.index.get_mut(hole) {
            *h = 0;
        }
    }

    /// Move entry `from` (the last) to the free entry `to` and repoint its index slot.
    fn move_entry(&mut self, from: usize, to: usize) {
        let h = self.hashes.get(from).copied().unwrap_or(0);
        let mut slot = h as usize & self.mask;
        let want = (from as u16).wrapping_add(1);
        for _ in 0..self.index.len() {
            match self.index.get_mut(slot) {
                Some(idx) if *idx == want => {
                    *idx = (to as u16).wrapping_add(1);
                    break;
                }
                Some(0) | None => break,
                Some(_) => slot = slot.wrapping_add(1) & self.mask,
            }
        }
        for i in 0..self.stride {
            copy_within(
                &mut self.keys,
                from.wrapping_mul(self.stride).wrapping_add(i),
                to.wrapping_mul(self.stride).wrapping_add(i),
            );
        }
        for i in 0..self.vstride {
            copy_within(
                &mut self.values,
                from.wrapping_mul(self.vstride).wrapping_add(i),
                to.wrapping_mul(self.vstride).wrapping_add(i),
            );
        }
        copy_within(&mut self.klens, from, to);
        copy_within(&mut self.hashes, from, to);
    }

    /// Entry `e`: encoded key and value slots.
    pub(crate) fn entry_at(&self, e: usize) -> Option<(&[u8], &[i64])> {
        (e < self.len).then(|| (self.key_of(e), self.vals(e)))
    }
}

fn copy_within<T: Copy>(v: &mut [T], from: usize, to: usize) {
    if let Some(x) = v.get(from).copied() {
        if let Some(d) = v.get_mut(to) {
            *d = x;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::{HashMap, HashSet};
    use std::vec::Vec;

    use super::*;

    fn int_table(cap: u32) -> Table {
        Table::new(&TableSpec::single(KeyKind::Int, cap)).unwrap()
    }

    fn ik(k: i64) -> Key<'static> {
        Key::one(Comp::Int(k))
    }

    #[test]
    fn matches_a_hash_map_under_churn() {
        let mut t = int_table(64);
        let mut m: HashMap<i64, i64> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 97) as i64 - 48;
            match x % 3 {
                0 => {
                    t.remove(&ik(k));
                    m.remove(&k);
                }
                _ => match t.entry(&ik(k)) {
                    Ok(v) => {
                        v[0] += 1;
                        *m.entry(k).or_default() += 1;
                    }
                    Err(Full) => assert!(m.len() == 64 && !m.contains_key(&k)),
                },
            }
            assert_eq!(t.len(), m.len());
        }
        for k in -48..=48 {
            assert_eq!(t.get(&ik(k)).map(|v| v[0]), m.get(&k).copied());
        }
        let mut seen = 0;
        while let Some((key, v)) = t.entry_at(seen) {
            let Some(Comp::Int(k)) = components(t.spec.keys, key).next() else { panic!() };
            assert_eq!(m.get(&k), Some(&v[0]));
            seen += 1;
        }
        assert_eq!(seen, m.len());
        t.clear();
        assert_eq!(t.len(), 0);
        assert!(t.get(&ik(0)).is_none());
        assert!(t.index.iter().all(|i| *i == 0));
    }

    #[test]
    fn tuple_keys_decode_and_full_refusal() {
        let spec = TableSpec {
            keys: KeyShape::of(&[KeyKind::Str, KeyKind::Int]),
            value: ValueKind::Int,
            capacity: 2,
        };
        let mut t = Table::new(&spec).unwrap();
        let key = |s: &'static [u8], i: i64| {
            let mut k = Key::one(Comp::Str(s));
            k.push(Comp::Int(i));
            k
        };
        t.entry(&key(b"a", 1)).unwrap()[0] += 5;
        t.entry(&key(b"a", 2)).unwrap()[0] += 7;
        assert_eq!(t.entry(&key(b"c", 1)), Err(Full));
        assert_eq!(t.refused, 1);
        assert_eq!(t.get(&key(b"a", 2)), Some(&[7][..]));
        let (k, _) = t.entry_at(1).unwrap();
        assert_eq!(components(spec.keys, k).collect::<Vec<_>>(), [Comp::Str(b"a"), Comp::Int(2)]);
        t.remove(&key(b"a", 1));
        assert_eq!(t.get(&key(b"a", 1)), None);
        assert_eq!(t.get(&key(b"a", 2)), Some(&[7][..]));
    }

    #[test]
    fn hashes_spread_similar_keys_in_both_widths() {
        // keys like the comm names of one workload: the index uses the low bits
        for width in [Hasher::W32(0), Hasher::W64(0)] {
            let h = |k: &Key<'_>| {
                let mut h = width;
                for c in parts(k) {
                    match c {
                        Comp::Int(v) => h.int(v),
                        Comp::Str(s) => h.str(s),
                    }
                }
                h.finish()
            };
            let names: Vec<Vec<u8>> = (0..4096).map(|i| std::format!("kworker/{i}").into_bytes()).collect();
            let full: HashSet<u32> = names.iter().map(|n| h(&Key::one(Comp::Str(n)))).collect();
            let low: HashSet<u32> = names.iter().map(|n| h(&Key::one(Comp::Str(n))) & 0x1fff).collect();
            assert_eq!(full.len(), 4096);
            // 4096 keys in 8192 slots: a random function leaves about 2 600 distinct slots
            assert!(low.len() > 2400, "{}", low.len());
            // the length is hashed: a string and its extension by zero bytes differ
            assert_ne!(h(&Key::one(Comp::Str(b"ab"))), h(&Key::one(Comp::Str(b"ab\0"))));
            let mut two = Key::one(Comp::Str(b"a"));
            two.push(Comp::Str(b""));
            assert_ne!(h(&two), h(&Key::one(Comp::Str(b"a"))));
        }
    }

    #[test]
    fn keys_compare_in_place_with_their_encoding() {
        let mut k = Key::one(Comp::Str(b"hello, world"));
        k.push(Comp::Int(-5));
        let mut enc = [0u8; 64];
        assert!(encode(&k, &mut enc[..encoded_len(&k)]));
        let enc = &enc[..encoded_len(&k)];
        assert_eq!(enc.len(), 1 + 12 + 8);
        assert!(matches(&k, enc));
        let shape = KeyShape::of(&[KeyKind::Str, KeyKind::Int]);
        assert!(matches(&Key::decode(shape, enc), enc));
        assert_eq!(hash(&Key::decode(shape, enc)), hash(&k));
        let mut other = Key::one(Comp::Str(b"hello, worle"));
        other.push(Comp::Int(-5));
        assert!(!matches(&other, enc));
        assert!(!matches(&Key::one(Comp::Str(b"hello, world")), enc));
        assert!(!matches(&k, &enc[..enc.len() - 1]));
    }

    #[test]
    fn one_component_keys_meet_the_general_path() {
        // every string length (tails of 0..3 bytes, and the full buffer), bytes past the length
        // left dirty in the register, looked up both ways in one table
        let mut t = Table::new(&TableSpec::single(KeyKind::Str, 200)).unwrap();
        for n in 0..=MAX_STR {
            let text: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut reg = StrBuf::new(&[0xff; MAX_STR]);
            reg.set(&text);
            let general = Key::one(Comp::Str(&text));
            assert_eq!(hash_one(One::Str(&reg)), hash(&general), "length {n}");
            // both word widths, whichever this host uses
            let (buf, len) = reg.padded();
            for (fast, mut slow) in
                [(hash_str_padded32(buf, len), Hasher::W32(0)), (hash_str_padded64(buf, len), Hasher::W64(0))]
            {
                slow.str(&text);
                assert_eq!(fast, slow.finish(), "length {n}");
            }
            t.entry_one(One::Str(&reg)).unwrap()[0] += n as i64 + 1;
            assert_eq!(t.get(&general), Some(&[n as i64 + 1][..]), "length {n}");
            t.entry(&general).unwrap()[0] += 1;
            assert_eq!(t.get_one(One::Str(&reg)), Some(&[n as i64 + 2][..]), "length {n}");
            // one byte different in the tail or the body, or one byte shorter: another key
            if n > 0 {
                let mut other = text.clone();
                other[n - 1] ^= 1;
                assert!(t.get_one(One::Str(&StrBuf::new(&other))).is_none(), "length {n}");
                assert!(
                    t.get_one(One::Str(&StrBuf::new(&text[..n - 1]))).map(|v| v[0]) != Some(n as i64 + 2)
                );
            }
        }
        assert_eq!(t.len(), MAX_STR + 1);
        let mut ints = int_table(16);
        for k in [0, -1, 7, i64::MIN, i64::MAX] {
            ints.entry_one(One::Int(k)).unwrap()[0] += 2;
            assert_eq!(hash_one(One::Int(k)), hash(&ik(k)));
            assert_eq!(ints.get(&ik(k)), Some(&[2][..]));
        }
        assert!(ints.get_one(One::Int(8)).is_none());
    }

    #[test]
    fn aggregates_keep_stats_and_buckets() {
        let log2 = ValueKind::Log2;
        let mut v = [0, 0, i64::MAX, i64::MIN].to_vec();
        v.extend([0; 64]);
        for x in [0, 1, 2, 3, 1000, -7, i64::MAX] {
            Table::record(&log2, &mut v, x);
        }
        assert_eq!(&v[..4], &[7, i64::MAX.wrapping_add(999), -7, i64::MAX]);
        assert_eq!((v[4], v[5], v[6], v[4 + 10], v[4 + 63]), (2, 1, 2, 1, 1));
        let lin = ValueKind::Linear { min: 10, step: 5, nbuckets: 2 };
        let mut v = [0, 0, i64::MAX, i64::MIN, 0, 0, 0, 0].to_vec();
        for x in [9, 10, 14, 15, 20, i64::MIN] {
            Table::record(&lin, &mut v, x);
        }
        assert_eq!(&v[4..], &[2, 1, 2, 1]);
    }
}
