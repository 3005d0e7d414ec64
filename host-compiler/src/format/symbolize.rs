//! Kernel addresses to `symbol+0xoff` for printed stacks, from the board's vmlinux.

use crate::vmlinux::{Vmlinux, VmlinuxError};

use super::Symbolizer;

/// A symbolizer over the function symbols of `vmlinux`, for run-time addresses of the kernel it was
/// rebased to (the KASLR slide is taken off first). Built once: a sorted table, then a binary search
/// per address. Addresses outside every function print as hex (the caller's fallback).
pub fn kernel_symbolizer<'s>(vmlinux: &Vmlinux) -> Result<Symbolizer<'s>, VmlinuxError> {
    let mut funcs: Vec<(u64, u64, String)> = vmlinux
        .all_symbols()?
        .into_iter()
        .filter(|s| s.kind == "func")
        .map(|s| (s.addr, s.size, s.name))
        .collect();
    funcs.sort();
    let slide = vmlinux.slide();
    Ok(Box::new(move |runtime| {
        let addr = runtime.wrapping_sub(slide);
        let i = funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (start, size, name) = funcs.get(i)?;
        let off = addr - start;
        (*size == 0 || off < *size).then(|| format!("{name}+{off:#x}"))
    }))
}
