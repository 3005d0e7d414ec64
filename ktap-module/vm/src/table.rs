//! Fixed-capacity hash tables (int or string keys, i64 values), allocated once and never grown.
//!
//! Layout (heapless `IndexMap` style): entries are dense arrays `keys`/`values`/`hashes` of exactly
//! `capacity` slots, so iteration touches only live entries; `index` is an open-addressing array of
//! `u16` entry numbers (0 = empty, else entry + 1) of at least twice the capacity, probed linearly.
//! Deletion shifts the following probe run back (no tombstones) and moves the last entry into the hole,
//! so a table that sees endless insert/delete churn never degrades. A lookup visits at most every slot
//! of `index`; with a load factor of at most one half it is short in practice.

use alloc::vec::Vec;

use ktap_protocol::image::{KeyKind, TableSpec};
use ktap_protocol::limits::MAX_TABLE_CAPACITY;

use crate::error::AllocFailed;
use crate::fixed::try_filled;
use crate::verified::StrBuf;

// entry numbers + 1 must fit the u16 index
const _: () = assert!(MAX_TABLE_CAPACITY < u16::MAX as u32);

/// A key to look up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Int(i64),
    Str(&'a [u8]),
}

#[derive(Debug)]
enum Keys {
    Int(Vec<i64>),
    Str(Vec<StrBuf>),
}

/// The insert was refused because the table holds `capacity` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Debug)]
pub(crate) struct Table {
    keys: Keys,
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

fn hash(key: Key<'_>) -> u32 {
    match key {
        Key::Int(k) => mix(k as u64),
        Key::Str(s) => {
            // FNV-1a
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in s {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            mix(h ^ s.len() as u64)
        }
    }
}

impl Table {
    /// Allocate a table for `spec` (capacity already checked by the verifier).
    pub(crate) fn new(spec: &TableSpec) -> Result<Table, AllocFailed> {
        let cap = spec.capacity.min(MAX_TABLE_CAPACITY) as usize;
        let slots = cap.saturating_mul(2).max(2).next_power_of_two();
        let keys = match spec.key {
            KeyKind::Int => Keys::Int(try_filled(cap, 0)?),
            KeyKind::Str => Keys::Str(try_filled(cap, StrBuf::EMPTY)?),
        };
        Ok(Table {
            keys,
            values: try_filled(cap, 0)?,
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
        self.values.len()
    }

    fn key_eq(&self, e: usize, key: Key<'_>) -> bool {
        match (&self.keys, key) {
            (Keys::Int(k), Key::Int(x)) => k.get(e) == Some(&x),
            (Keys::Str(k), Key::Str(x)) => k.get(e).is_some_and(|s| s.as_bytes() == x),
            _ => false,
        }
    }

    /// Probe for `key`: `(slot, Some(entry))` if present, `(empty slot, None)` if not.
    /// `None` only if the index has no empty slot, which the load factor rules out.
    fn find(&self, key: Key<'_>, h: u32) -> Option<(usize, Option<usize>)> {
        let mut slot = h as usize & self.mask;
        for _ in 0..self.index.len() {
            let idx = *self.index.get(slot)?;
            if idx == 0 {
                return Some((slot, None));
            }
            let e = usize::from(idx).wrapping_sub(1);
            if self.hashes.get(e) == Some(&h) && self.key_eq(e, key) {
                return Some((slot, Some(e)));
            }
            slot = slot.wrapping_add(1) & self.mask;
        }
        None
    }

    /// The value for `key`, if present.
    pub(crate) fn get(&self, key: Key<'_>) -> Option<i64> {
        let (_, e) = self.find(key, hash(key))?;
        self.values.get(e?).copied()
    }

    /// The value slot for `key`, inserting 0 if absent. A full table refuses (and counts) the insert.
    pub(crate) fn entry(&mut self, key: Key<'_>) -> Result<&mut i64, Full> {
        let h = hash(key);
        let (slot, found) = self.find(key, h).ok_or(Full)?;
        let e = match found {
            Some(e) => e,
            None => {
                let e = self.len;
                if e >= self.capacity() {
                    self.refused = self.refused.wrapping_add(1);
                    return Err(Full);
                }
                match (&mut self.keys, key) {
                    (Keys::Int(k), Key::Int(x)) => *k.get_mut(e).ok_or(Full)? = x,
                    (Keys::Str(k), Key::Str(x)) => k.get_mut(e).ok_or(Full)?.set(x),
                    _ => return Err(Full),
                }
                *self.hashes.get_mut(e).ok_or(Full)? = h;
                *self.values.get_mut(e).ok_or(Full)? = 0;
                *self.index.get_mut(slot).ok_or(Full)? = (e as u16).wrapping_add(1);
                self.len = e.wrapping_add(1);
                e
            }
        };
        self.values.get_mut(e).ok_or(Full)
    }

    /// Remove `key` if present.
    pub(crate) fn remove(&mut self, key: Key<'_>) {
        let Some((slot, Some(e))) = self.find(key, hash(key)) else { return };
        self.unlink(slot);
        let last = self.len.wrapping_sub(1);
        if e != last {
            self.move_entry(last, e);
        }
        self.len = last;
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
        match &mut self.keys {
            Keys::Int(k) => copy_within(k, from, to),
            Keys::Str(k) => copy_within(k, from, to),
        }
        copy_within(&mut self.values, from, to);
        copy_within(&mut self.hashes, from, to);
    }

    /// Entry `e`: key and value.
    pub(crate) fn entry_at(&self, e: usize) -> Option<(Key<'_>, i64)> {
        if e >= self.len {
            return None;
        }
        let key = match &self.keys {
            Keys::Int(k) => Key::Int(*k.get(e)?),
            Keys::Str(k) => Key::Str(k.get(e)?.as_bytes()),
        };
        Some((key, *self.values.get(e)?))
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
    use std::collections::HashMap;

    use super::*;

    fn int_table(cap: u32) -> Table {
        Table::new(&TableSpec { key: KeyKind::Int, capacity: cap }).unwrap()
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
                    t.remove(Key::Int(k));
                    m.remove(&k);
                }
                _ => match t.entry(Key::Int(k)) {
                    Ok(v) => {
                        *v += 1;
                        *m.entry(k).or_default() += 1;
                    }
                    Err(Full) => assert!(m.len() == 64 && !m.contains_key(&k)),
                },
            }
            assert_eq!(t.len(), m.len());
        }
        for k in -48..=48 {
            assert_eq!(t.get(Key::Int(k)), m.get(&k).copied());
        }
        let mut seen = 0;
        while let Some((Key::Int(k), v)) = t.entry_at(seen) {
            assert_eq!(m.get(&k), Some(&v));
            seen += 1;
        }
        assert_eq!(seen, m.len());
    }

    #[test]
    fn string_keys_and_full_refusal() {
        let mut t = Table::new(&TableSpec { key: KeyKind::Str, capacity: 2 }).unwrap();
        *t.entry(Key::Str(b"a")).unwrap() += 5;
        *t.entry(Key::Str(b"bb")).unwrap() += 7;
        assert_eq!(t.entry(Key::Str(b"c")), Err(Full));
        assert_eq!(t.refused, 1);
        assert_eq!(t.get(Key::Str(b"bb")), Some(7));
        t.remove(Key::Str(b"a"));
        assert_eq!(t.get(Key::Str(b"a")), None);
        assert_eq!(t.get(Key::Str(b"bb")), Some(7));
        *t.entry(Key::Str(b"c")).unwrap() = 1;
        assert_eq!(t.len(), 2);
        // a key of the wrong kind is never found and never inserted
        assert_eq!(t.get(Key::Int(1)), None);
    }
}
