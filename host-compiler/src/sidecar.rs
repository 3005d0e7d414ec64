//! The host-side sidecar of an image: everything the device never sees but the host needs to turn
//! ids back into text (format strings, table and probe names, source spans). The device image holds
//! only ids; `compile` writes the sidecar next to the image as `IMAGE.json`.

use serde::{Deserialize, Serialize};

/// A byte range in the script source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Host-side names and strings for one compiled image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Script file the image was compiled from.
    pub source_file: String,
    /// Format strings, indexed by format id (the `Printf` record id).
    pub formats: Vec<String>,
    /// Tables, indexed by table id.
    pub tables: Vec<TableInfo>,
    /// Probes, indexed by probe index in the image.
    pub probes: Vec<ProbeInfo>,
    /// Globals, indexed by global id.
    pub globals: Vec<String>,
    /// Functions, indexed by function id: name and span (for runtime error reports).
    pub funcs: Vec<FuncInfo>,
    /// Per format id: which arguments are kernel stacks (`stack()`), raw return addresses the
    /// host symbolizes. Empty or shorter lists mean "none".
    #[serde(default)]
    pub format_stacks: Vec<Vec<bool>>,
}

/// A table as the script declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Variable name.
    pub name: String,
    /// Where it was declared.
    pub span: Span,
    /// Which key components are kernel stacks (`t[stack()]`), for the host to symbolize.
    #[serde(default)]
    pub stack_keys: Vec<bool>,
    /// The buckets its aggregations keep, for printing histograms (`None`: no buckets).
    #[serde(default)]
    pub hist: Option<Hist>,
}

/// How an aggregation table's bucket numbers map to value ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hist {
    /// `hist`: bucket 0 holds values <= 0, bucket i holds [2^(i-1), 2^i).
    Log2,
    /// `lhist(v, min, max, step)`: bucket i (0..n) holds [min + i*step, min + (i+1)*step),
    /// bucket n the values below `min`, bucket n+1 those at or above `min + n*step`.
    Linear {
        /// Lower bound of the first in-range bucket.
        min: i64,
        /// Width of each bucket.
        step: i64,
        /// Number of in-range buckets.
        nbuckets: u8,
    },
}

/// A probe as the script wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// The probe as written, e.g. `kprobe:vfs_read`.
    pub spec: String,
    /// Where it was written.
    pub span: Span,
}

/// A function (probe handler) of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncInfo {
    /// Name for messages, e.g. `kprobe:vfs_read` or `trace_end`.
    pub name: String,
    /// Where its body starts.
    pub span: Span,
}

impl Sidecar {
    /// The sidecar path for an image path: `x.kimg` -> `x.kimg.json`.
    pub fn path_for(image: &std::path::Path) -> std::path::PathBuf {
        let mut p = image.as_os_str().to_owned();
        p.push(".json");
        p.into()
    }
}
