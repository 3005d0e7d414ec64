//! Checking and counting the whole records of a kernel read.
//!
//! A `read()` of `/dev/ktap` returns whole records back to back. A batch holds as many whole records as
//! fit in `max` bytes; a record longer than `max` stands alone. The session uses batches to find the
//! whole-record prefix of a read (what joins the record stream) and to count records it must drop.

use ktap_protocol::record;

/// One batch of whole records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The records' bytes.
    pub data: &'a [u8],
    /// How many records `data` holds.
    pub records: u32,
}

/// The data did not start with a whole record at `offset`: the kernel broke its promise. The rest
/// of the read is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Offset in the read buffer.
    pub offset: usize,
}

/// Iterate over batches of at most `max` bytes (or one oversize record). After a [`Malformed`] the
/// iteration ends.
pub fn batches(data: &[u8], max: usize) -> impl Iterator<Item = Result<Batch<'_>, Malformed>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    core::iter::from_fn(move || {
        let rest = data.get(pos..).filter(|r| !r.is_empty() && !failed)?;
        let mut len = 0usize;
        let mut records = 0u32;
        while let Some(n) = rest.get(len..).and_then(record::first_len) {
            if records > 0 && len + n > max {
                break;
            }
            len += n;
            records += 1;
        }
        if records == 0 {
            failed = true;
            return Some(Err(Malformed { offset: pos }));
        }
        let batch = Batch { data: rest.get(..len)?, records };
        pos += len;
        Some(Ok(batch))
    })
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::fakes::rec;

    fn collect(data: &[u8], max: usize) -> Vec<Result<(usize, u32), Malformed>> {
        batches(data, max).map(|b| b.map(|b| (b.data.len(), b.records))).collect()
    }

    #[test]
    fn packs_whole_records_up_to_max() {
        let data = [rec(100, 1), rec(100, 2), rec(100, 3), rec(50, 4)].concat();
        assert_eq!(collect(&data, 250), [Ok((200, 2)), Ok((150, 2))]);
        assert_eq!(collect(&data, 350), [Ok((350, 4))]);
        assert_eq!(collect(&data, 100), [Ok((100, 1)), Ok((100, 1)), Ok((100, 1)), Ok((50, 1))]);
    }

    #[test]
    fn an_oversize_record_travels_alone() {
        let data = [rec(10, 1), rec(900, 2), rec(10, 3)].concat();
        assert_eq!(collect(&data, 768), [Ok((10, 1)), Ok((900, 1)), Ok((10, 1))]);
    }

    #[test]
    fn empty_and_malformed() {
        assert!(collect(&[], 768).is_empty());
        let mut data = rec(20, 1);
        data.extend_from_slice(&[50, 0, 1]); // claims 50 bytes, has 3
        assert_eq!(collect(&data, 768), [Ok((20, 1)), Err(Malformed { offset: 20 })]);
        assert_eq!(collect(&[2, 0, 0, 0, 0, 0], 768), [Err(Malformed { offset: 0 })]);
    }
}
