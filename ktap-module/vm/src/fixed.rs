//! Fallible allocation without the panic machinery.
//!
//! `Vec::push`, `resize`, `extend` and `with_capacity` all keep a path to `handle_alloc_error` (or a
//! capacity-overflow panic) in the code even when it is never taken, and that path drags the panic
//! handler into the kernel object. These helpers only ever grow a vector through `try_reserve*` and then
//! write into reserved capacity, so the object has no such path. This is the crate's only `unsafe`.
#![allow(unsafe_code)]

use alloc::vec::Vec;

use crate::error::AllocFailed;

/// Append `value`, growing (amortised) through `try_reserve`.
pub(crate) fn try_push<T>(v: &mut Vec<T>, value: T) -> Result<(), AllocFailed> {
    v.try_reserve(1).map_err(|_| AllocFailed)?;
    let len = v.len();
    let Some(slot) = v.spare_capacity_mut().first_mut() else { return Err(AllocFailed) };
    slot.write(value);
    // SAFETY: `try_reserve(1)` succeeded, so capacity > len, and the slot at `len` (the first spare
    // one) was just initialised.
    unsafe { v.set_len(len.wrapping_add(1)) };
    Ok(())
}

/// A vector of exactly `n` copies of `value`, allocated with `try_reserve_exact`.
pub(crate) fn try_filled<T: Copy>(n: usize, value: T) -> Result<Vec<T>, AllocFailed> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| AllocFailed)?;
    let spare = v.spare_capacity_mut();
    let mut written = 0usize;
    for slot in spare.iter_mut().take(n) {
        slot.write(value);
        written = written.wrapping_add(1);
    }
    // SAFETY: the first `written` (<= capacity) slots were initialised just above.
    unsafe { v.set_len(written) };
    if written == n { Ok(v) } else { Err(AllocFailed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_fill_and_grow() {
        let mut v = try_filled(3, 7u8).unwrap();
        assert_eq!(v, [7, 7, 7]);
        for i in 0..100 {
            try_push(&mut v, i).unwrap();
        }
        assert_eq!(v.len(), 103);
        assert_eq!(v[102], 99);
        assert!(try_filled(usize::MAX / 2, 0u64).is_err());
    }
}
