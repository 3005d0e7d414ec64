//! Panic-free little-endian readers over byte slices. Every read names the offset it failed at.

/// A cursor over a byte slice that reads little-endian integers and never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Start reading `data` at offset 0.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Start reading `data` at `pos`.
    pub fn at(data: &'a [u8], pos: usize) -> Self {
        Reader { data, pos }
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Take `n` bytes, or `None` (cursor unchanged) if fewer are left.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Read one byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|s| s.first().copied())
    }

    /// Read a little-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// Read a little-endian i16.
    pub fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_le_bytes)
    }

    /// Read a little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// Read a little-endian i32.
    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    /// Read a little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Read a little-endian i64.
    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }
}

/// Copy `src` into `dst` at `*pos`, advancing it; `None` if it does not fit.
pub fn put(dst: &mut [u8], pos: &mut usize, src: &[u8]) -> Option<()> {
    let end = pos.checked_add(src.len())?;
    dst.get_mut(*pos..end)?.copy_from_slice(src);
    *pos = end;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_end_without_moving() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0201));
        assert_eq!(r.u16(), None);
        assert_eq!(r.pos(), 2);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn put_refuses_overflow() {
        let mut buf = [0u8; 3];
        let mut pos = 2;
        assert_eq!(put(&mut buf, &mut pos, &[9, 9]), None);
        assert_eq!(put(&mut buf, &mut pos, &[9]), Some(()));
        assert_eq!(buf, [0, 0, 9]);
    }
}
