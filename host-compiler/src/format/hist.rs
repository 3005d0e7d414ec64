//! ASCII histograms (ktap/DTrace style): one row per bucket or key, a bar of `@` scaled to the
//! largest count, and the count.
//!
//! ```text
//!                value  ---------------- distribution ----------------  count
//!                    8 |@@@@@@@@@@@@@@@@@@@@                              2
//!                   16 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 5
//! ```

use std::fmt::Write;

/// Width of a full bar.
pub const BAR_WIDTH: usize = 50;
/// Width of the label column.
pub const LABEL_WIDTH: usize = 20;

/// Rows (label, count) as a histogram under a header naming the label column.
pub fn rows(out: &mut String, what: &str, rows: &[(String, u64)]) {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let _ = writeln!(out, "{what:>LABEL_WIDTH$}  {:-^BAR_WIDTH$}  count", " distribution ");
    for (label, count) in rows {
        // round up so that every non-zero count shows at least one `@`
        let n = if max == 0 { 0 } else { (count * BAR_WIDTH as u64).div_ceil(max) as usize };
        let _ = writeln!(out, "{label:>LABEL_WIDTH$} |{:<BAR_WIDTH$} {count}", "@".repeat(n));
    }
}

/// The rows of a power-of-two histogram from its non-empty buckets: bucket 0 holds values <= 0,
/// bucket i the values in [2^(i-1), 2^i). Rows run from the first to the last non-empty bucket.
pub fn log2_rows(buckets: &[(u8, u32)]) -> Vec<(String, u64)> {
    let (Some(lo), Some(hi)) = (buckets.iter().map(|b| b.0).min(), buckets.iter().map(|b| b.0).max()) else {
        return Vec::new();
    };
    (lo..=hi)
        .map(|i| {
            let label = match i {
                0 => "<= 0".to_string(),
                i => (1u64 << (i - 1)).to_string(),
            };
            (label, count_of(buckets, i))
        })
        .collect()
}

/// The rows of a linear histogram: `nb` buckets of width `step` from `min`, the under bucket (index
/// `nb`) first and the over bucket (`nb + 1`) last, in-range rows from the first to the last non-empty.
pub fn linear_rows(buckets: &[(u8, u32)], min: i64, step: i64, nb: u8) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let under = count_of(buckets, nb);
    if under > 0 {
        out.push((format!("< {min}"), under));
    }
    let inside = buckets.iter().map(|b| b.0).filter(|i| *i < nb);
    if let (Some(lo), Some(hi)) = (inside.clone().min(), inside.max()) {
        for i in lo..=hi {
            let start = min.saturating_add(step.saturating_mul(i64::from(i)));
            out.push((start.to_string(), count_of(buckets, i)));
        }
    }
    let over = count_of(buckets, nb.saturating_add(1));
    if over > 0 {
        out.push((format!(">= {}", min.saturating_add(step.saturating_mul(i64::from(nb)))), over));
    }
    out
}

/// Rows labelled by bucket index, for a histogram whose kind the sidecar does not say.
pub fn raw_rows(buckets: &[(u8, u32)]) -> Vec<(String, u64)> {
    buckets.iter().map(|(i, c)| (format!("bucket {i}"), u64::from(*c))).collect()
}

fn count_of(buckets: &[(u8, u32)], i: u8) -> u64 {
    buckets.iter().find(|b| b.0 == i).map_or(0, |b| u64::from(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_rows_fill_the_gaps_and_bars_scale() {
        let r = log2_rows(&[(4, 2), (6, 5)]);
        assert_eq!(r, [("8".into(), 2), ("16".into(), 0), ("32".into(), 5)]);
        let mut out = String::new();
        rows(&mut out, "value", &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains(" distribution ") && lines[0].ends_with("count"));
        assert_eq!(lines[1].matches('@').count(), 20);
        assert_eq!(lines[2].matches('@').count(), 0);
        assert_eq!(lines[3].matches('@').count(), BAR_WIDTH);
        assert!(lines[3].ends_with("@ 5"));
    }

    #[test]
    fn linear_rows_put_under_first_and_over_last() {
        let r = linear_rows(&[(3, 1), (0, 4), (1, 1), (2, 1)], 10, 5, 2);
        let labels: Vec<&str> = r.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["< 10", "10", "15", ">= 20"]);
        assert_eq!(log2_rows(&[(0, 1)]), [("<= 0".to_string(), 1)]);
    }
}
